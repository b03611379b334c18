"""Build benchmark: dockyard vs `buildah bud --layers` vs docker with BuildKit, on the same contexts.

    .venv/bin/python bench/build.py [--runs 3] [--no-docker] [--no-buildah] [--big-mb 200]

Scenarios (each tool from the same busybox base, runs alternated A B C A B C, medians reported):
  a  cold build of a small multi-step image (FROM/WORKDIR/ENV/RUN/COPY/EXPOSE/CMD), no cache
  b  rebuild with nothing changed
  c  rebuild after editing one COPY'd file
  d  a build that adds a 200 MB layer (RUN writes random bytes), no cache

Every tool gets a private state directory; dockerd is started privately (tests/dockerd.py) and stopped.
Not a test: prints a table of medians and dockyard's ratios against each peer.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engine.oci.reference import Reference  # noqa: E402
from engine.store.archives import save_images  # noqa: E402
from engine.store.importer import import_rootfs  # noqa: E402
from engine.store.layout import ImageStore  # noqa: E402
from tests.dockerd import Dockerd, dockerd_unavailable, running_dockerd  # noqa: E402
from tests.images import make_busybox_tar  # noqa: E402

PATH_ENV = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
SMALL = """FROM busybox
WORKDIR /app
ENV APP_ENV=production PORT=8080
RUN mkdir -p /app/data && echo "built" > /app/data/stamp && adduser -D -H app 2>/dev/null || true
COPY . /app/
EXPOSE 8080
CMD ["sh", "/app/main.sh"]
"""
BIG = """FROM busybox
RUN head -c {size} /dev/urandom > /big.bin
CMD ["sh"]
"""


def small_context(root: Path) -> Path:
    ctx = root / "small"
    (ctx / "lib").mkdir(parents=True)
    (ctx / "Dockerfile").write_text(SMALL)
    (ctx / "main.sh").write_text("#!/bin/sh\necho serving on $PORT\n")
    for i in range(20):
        (ctx / "lib" / f"mod{i}.sh").write_text(f"# module {i}\n" + "echo x\n" * 50)
    return ctx


def big_context(root: Path, megabytes: int) -> Path:
    ctx = root / "big"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text(BIG.format(size=megabytes * 1_000_000))
    return ctx


class Tools:
    def __init__(self, work: Path, docker: Dockerd | None, use_buildah: bool) -> None:
        self.work = work
        self.docker = docker
        self.use_buildah = use_buildah
        self.dockyard_root = work / "dockyard"
        self.buildah_root = work / "buildah"
        self.dockyard_bin = str(Path(sys.executable).parent / "dockyard")
        self.env = {k: v for k, v in os.environ.items() if k != "DOCKER_CONFIG"}
        self.env["DOCKYARD_ROOT"] = str(self.dockyard_root)

    def prepare(self) -> None:
        tar = make_busybox_tar(self.work / "busybox.tar")
        store = ImageStore(self.dockyard_root / "images")
        import_rootfs(store, tar, Reference.parse("busybox"), changes=[f"ENV {PATH_ENV}", 'CMD ["sh"]'])
        if self.use_buildah:
            storage = (f"containers-storage:[overlay@{self.buildah_root}/root+{self.buildah_root}/run]"
                       "docker.io/library/busybox:latest")
            subprocess.run(["skopeo", "copy", "-q", f"oci:{store.root}:docker.io/library/busybox:latest", storage],
                           check=True, env=self.env)
        if self.docker is not None:
            archive = io.BytesIO()
            save_images(store, ["busybox"], archive)
            self.docker.docker("load", stdin=archive.getvalue(), timeout=120)

    def commands(self, ctx: Path, no_cache: bool) -> dict[str, list[str]]:
        flag = ["--no-cache"] if no_cache else []
        out = {"dockyard": [self.dockyard_bin, "build", "-q", *flag, "-t", "bench:latest", str(ctx)]}
        if self.use_buildah:
            out["buildah"] = ["buildah", "--root", f"{self.buildah_root}/root", "--runroot", f"{self.buildah_root}/run",
                              "--storage-driver", "overlay", "bud", "--runtime", "/usr/sbin/runc", "--isolation",
                              "chroot", "--layers", "--pull-never", "-q", *flag, "-t", "localhost/bench", str(ctx)]
        if self.docker is not None:
            out["buildkit"] = ["/usr/bin/docker", "build", "--network", "none", "-q", *flag, "-t", "bench", str(ctx)]
        return out

    def run(self, tool: str, argv: list[str]) -> float:
        env = dict(self.env)
        if tool == "buildkit":
            assert self.docker is not None
            env.update(self.docker.env, DOCKER_BUILDKIT="1")
        start = time.perf_counter()
        result = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=600)
        elapsed = time.perf_counter() - start
        if result.returncode != 0:
            raise SystemExit(f"{tool} failed: {result.stderr.strip()[-1500:]}")
        return elapsed


def measure(tools: Tools, runs: int, ctx: Path, no_cache: bool,
            before: Callable[[str, int], None] | None = None) -> dict[str, float]:
    commands = tools.commands(ctx, no_cache)
    times: dict[str, list[float]] = {name: [] for name in commands}
    for i in range(runs):
        for name, argv in commands.items():
            if before is not None:
                before(name, i)
            times[name].append(tools.run(name, argv))
    return {name: statistics.median(values) for name, values in times.items()}


def report(title: str, medians: dict[str, float]) -> None:
    ours = medians["dockyard"]
    parts = [f"{name} {seconds:.3f}s" for name, seconds in medians.items()]
    ratios = [f"{ours / seconds:.2f}x {name}" for name, seconds in medians.items() if name != "dockyard"]
    print(f"{title:<34} " + "  ".join(parts) + ("   dockyard = " + ", ".join(ratios) if ratios else ""))


@contextlib.contextmanager
def maybe_dockerd(enabled: bool, base: Path) -> Iterator[Dockerd | None]:
    if not enabled or dockerd_unavailable() is not None:
        yield None
        return
    with running_dockerd(base) as daemon:
        yield daemon


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--big-mb", type=int, default=200)
    parser.add_argument("--no-docker", action="store_true")
    parser.add_argument("--no-buildah", action="store_true")
    parser.add_argument("--only", default="abcd", help="scenarios to run, e.g. 'bc'")
    args = parser.parse_args()
    use_buildah = not args.no_buildah and shutil.which("buildah") is not None and shutil.which("skopeo") is not None
    with tempfile.TemporaryDirectory(prefix="dybench-") as tmp:
        work = Path(tmp)
        with maybe_dockerd(not args.no_docker, work) as docker:
            tools = Tools(work, docker, use_buildah)
            tools.prepare()
            small = small_context(work)
            print(f"runs per tool: {args.runs} (alternated), medians")
            if "a" in args.only:
                report("(a) cold small build", measure(tools, args.runs, small, no_cache=True))
            if "b" in args.only or "c" in args.only:
                measure(tools, 1, small, no_cache=False)  # warm every tool's cache once
            if "b" in args.only:
                report("(b) rebuild, nothing changed", measure(tools, args.runs, small, no_cache=False))
            if "c" in args.only:
                counter = iter(range(1_000_000))

                def edit(_tool: str, _run: int) -> None:
                    (small / "main.sh").write_text(f"#!/bin/sh\necho edit {next(counter)}\n")

                report("(c) rebuild, one COPY'd file edited", measure(tools, args.runs, small, False, before=edit))
            if "d" in args.only:
                big = big_context(work, args.big_mb)
                report(f"(d) {args.big_mb} MB layer, cold", measure(tools, args.runs, big, no_cache=True))


if __name__ == "__main__":
    main()
