"""Registry transfer speed: dockyard versus `skopeo copy` on the same loopback CNCF registry.

An image of about 300 MB (compressed) in several layers, made offline: incompressible random layers
plus compressible text layers, gzip-compressed once into a dockyard store (an OCI layout skopeo reads).

* push: dockyard store -> registry (dockyard push) vs oci layout -> registry (skopeo copy); the
  registry is wiped and restarted before every push (docker and skopeo skip blobs it already has).
* pull: registry -> empty store (dockyard pull) vs registry -> empty oci layout (skopeo copy).

Runs alternate (dockyard, skopeo, dockyard, ...) to cancel disk drift; medians and the
dockyard/skopeo ratio are printed (target: <= 0.8 both ways). CPU time (user+sys) per run is printed
too: on a shared machine it is steadier than wall time. dockyard's is this process's (all threads),
skopeo's its child's; the registry's own CPU is in neither.

    .venv/bin/python bench/transfer.py [--mb 300] [--runs 3] [--only push|pull] [--work DIR] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import random
import resource
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from engine.oci import mediatypes as mt  # noqa: E402
from engine.oci.models import Descriptor, ImageConfig, Manifest  # noqa: E402
from engine.oci.platform import Platform  # noqa: E402
from engine.oci.reference import Reference  # noqa: E402
from engine.registry.client import RegistryClient  # noqa: E402
from engine.registry.pull import pull_image  # noqa: E402
from engine.registry.push import push_image  # noqa: E402
from engine.store.importer import now_rfc3339, store_layer_from_tar  # noqa: E402
from engine.store.layout import ImageStore  # noqa: E402
from tests.registryfixtures import start_registry  # noqa: E402

NAME = "bench.local/transfer/big:1"
WORDS = [hashlib.sha1(str(i).encode()).hexdigest()[: 3 + i % 9] for i in range(5000)]


def _layer_tar(path: Path, kind: str, size: int, seed: int) -> None:
    rng = random.Random(seed)
    with tarfile.open(path, "w") as tar:
        remaining, index = size, 0
        while remaining > 0:
            n = min(remaining, 16 * 1024 * 1024)
            if kind == "random":
                data = os.urandom(n)
            else:
                lines = []
                total = 0
                while total < n:
                    line = " ".join(rng.choice(WORDS) for _ in range(12)) + "\n"
                    lines.append(line)
                    total += len(line)
                data = "".join(lines).encode()[:n]
            info = tarfile.TarInfo(f"layer{seed}/file{index}.{'bin' if kind == 'random' else 'txt'}")
            info.size = len(data)
            import io

            tar.addfile(info, io.BytesIO(data))
            remaining -= n
            index += 1


def make_image(store: ImageStore, total_mb: int, scratch: Path) -> Reference:
    """~total_mb MB compressed: 5 random layers and 2 text layers (text compresses ~3-4x)."""
    ref = Reference.parse(NAME)
    if store.exists(NAME):
        return ref
    random_mb = int(total_mb * 0.85)
    text_mb = total_mb - random_mb
    plan = [("random", random_mb // 5 * 1024 * 1024, i) for i in range(5)]
    plan += [("text", text_mb * 3 // 2 * 1024 * 1024, 100 + i) for i in range(2)]
    layers, diff_ids = [], []
    with store.writing():
        for kind, size, seed in plan:
            tar_path = scratch / f"layer-{seed}.tar"
            _layer_tar(tar_path, kind, size, seed)
            with open(tar_path, "rb") as fh:
                layer, diff_id = store_layer_from_tar(store, fh)
            tar_path.unlink()
            layers.append(layer)
            diff_ids.append(str(diff_id))
        created = now_rfc3339()
        config = ImageConfig.build({
            "created": created, **Platform.host().to_json(), "config": {"Cmd": ["/bin/sh"]},
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
            "history": [{"created": created, "created_by": "bench"} for _ in layers],
        })
        store.put_blob(config.raw)
        manifest = Manifest.build(Descriptor(mt.OCI_CONFIG, config.digest, len(config.raw)), layers)
        store.put_blob(manifest.raw)
        store.add_image(manifest.descriptor(), [ref], image_id=config.digest)
    return ref


def _median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def _cpu() -> float:
    """user+sys seconds of this process (all threads) plus its waited-for children (skopeo)."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


async def _dockyard_push(store: ImageStore, registry: str, target: Reference) -> None:
    image = store.resolve(NAME)
    async with RegistryClient(registry) as client:
        async for _ in push_image(client, store, image, target):
            pass


async def _dockyard_pull(store: ImageStore, registry: str, target: Reference) -> None:
    async with RegistryClient(registry) as client:
        async for _ in pull_image(client, store, target):
            pass


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mb", type=int, default=300)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--work", type=Path, default=None, help="keep the generated image here between runs")
    parser.add_argument("--only", choices=("push", "pull"), default=None)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if shutil.which("skopeo") is None:
        sys.exit("skopeo is not installed")
    work = args.work or Path(tempfile.mkdtemp(prefix="dockyard-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    source = ImageStore(work / "source")
    t0 = time.monotonic()
    ref = make_image(source, args.mb, work)
    image = source.resolve(NAME)
    size_mb = image.size / 1e6
    print(f"image: {len(image.manifest.layers)} layers, {size_mb:.0f} MB compressed "
          f"(made in {time.monotonic() - t0:.1f} s)", file=sys.stderr)
    directions = [args.only] if args.only else ["push", "pull"]
    results: dict[str, list[float]] = {f"{d}_{t}": [] for d in directions for t in ("dockyard", "skopeo")}
    cpu: dict[str, list[float]] = {key: [] for key in results}
    with start_registry(work / "registry") as reg:
        target = Reference(reg.host, "bench/big", "1")
        for run in range(args.runs):
            # push, alternating which tool goes first
            order = ["dockyard", "skopeo"] if run % 2 == 0 else ["skopeo", "dockyard"]
            if "push" not in directions and run == 0:
                asyncio.run(_dockyard_push(source, reg.host, target))
            for tool in order if "push" in directions else []:
                reg.wipe()
                start, cpu_start = time.monotonic(), _cpu()
                if tool == "dockyard":
                    asyncio.run(_dockyard_push(source, reg.host, target))
                else:
                    subprocess.run(["skopeo", "copy", "-q", "--dest-tls-verify=false", f"oci:{source.root}:{ref}",
                                    f"docker://{target}"], check=True)
                results[f"push_{tool}"].append(time.monotonic() - start)
                cpu[f"push_{tool}"].append(_cpu() - cpu_start)
            for tool in order if "pull" in directions else []:
                dest = work / f"pull-{tool}"
                shutil.rmtree(dest, ignore_errors=True)
                start, cpu_start = time.monotonic(), _cpu()
                if tool == "dockyard":
                    asyncio.run(_dockyard_pull(ImageStore(dest), reg.host, target))
                else:
                    subprocess.run(["skopeo", "copy", "-q", "--src-tls-verify=false", f"docker://{target}",
                                    f"oci:{dest}:{ref}"], check=True)
                results[f"pull_{tool}"].append(time.monotonic() - start)
                cpu[f"pull_{tool}"].append(_cpu() - cpu_start)
            print(f"run {run + 1}: " + ", ".join(f"{k}={v[-1]:.2f}s (cpu {cpu[k][-1]:.2f}s)"
                                                 for k, v in results.items()), file=sys.stderr)
    summary = {}
    for direction in directions:
        ours, theirs = _median(results[f"{direction}_dockyard"]), _median(results[f"{direction}_skopeo"])
        ours_cpu, theirs_cpu = _median(cpu[f"{direction}_dockyard"]), _median(cpu[f"{direction}_skopeo"])
        summary[direction] = {"dockyard_s": round(ours, 3), "skopeo_s": round(theirs, 3),
                              "dockyard_MBps": round(size_mb / ours, 1), "skopeo_MBps": round(size_mb / theirs, 1),
                              "ratio": round(ours / theirs, 3), "dockyard_cpu_s": round(ours_cpu, 3),
                              "skopeo_cpu_s": round(theirs_cpu, 3), "cpu_ratio": round(ours_cpu / theirs_cpu, 3)}
    if args.json:
        print(json.dumps({"image_mb": round(size_mb, 1), "runs": args.runs, **summary}, indent=2))
    else:
        print(f"{'':6} {'dockyard':>10} {'skopeo':>10} {'ratio':>7}   {'cpu dy':>8} {'cpu sk':>8} {'ratio':>7}"
              f"   (image {size_mb:.0f} MB, {args.runs} runs, medians)")
        for direction, row in summary.items():
            print(f"{direction:6} {row['dockyard_s']:>9.2f}s {row['skopeo_s']:>9.2f}s {row['ratio']:>7.2f}"
                  f"   {row['dockyard_cpu_s']:>7.2f}s {row['skopeo_cpu_s']:>7.2f}s {row['cpu_ratio']:>7.2f}"
                  f"   ({row['dockyard_MBps']:.0f} vs {row['skopeo_MBps']:.0f} MB/s)")
    if args.work is None:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
