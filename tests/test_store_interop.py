"""The store and its archives against the real referees: skopeo (oci:, oci-archive:, docker-archive:)
and a private dockerd (docker load / run / save)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from engine.oci.reference import Reference
from engine.store.archives import load_archive, save_images, write_output
from engine.store.importer import import_rootfs
from engine.store.layout import ImageStore, ResolvedImage
from tests.dockerd import Dockerd, dockerd  # noqa: F401 (fixture)
from tests.images import have_busybox, make_busybox_tar
from tests.store_helpers import import_files, tar_directory

SKOPEO = shutil.which("skopeo")
needs_skopeo = pytest.mark.skipif(SKOPEO is None, reason="skopeo is not installed (apt-get install skopeo)")
needs_busybox = pytest.mark.skipif(not have_busybox(), reason="busybox-static is not installed")


def skopeo(*args: str) -> str:
    result = subprocess.run([SKOPEO or "skopeo", "--insecure-policy", *args], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, f"skopeo {' '.join(args)}: {result.stderr.strip()}"
    return result.stdout


def _save(store: ImageStore, names: list[str], path: Path, fmt: str = "docker-archive") -> Path:
    write_output(path, lambda fh: save_images(store, names, fh, fmt))
    return path


def _load(store: ImageStore, path: Path) -> list[ResolvedImage]:
    with open(path, "rb") as fh:
        loaded = load_archive(store, fh, label=path.name)
    return [store.resolve(image.image_id.hex) for image in loaded]


def _diff_ids(image: ResolvedImage) -> list[str]:
    return [str(d) for d in image.config.diff_ids]


# --------------------------------------------------------------------------------------------- skopeo


@needs_skopeo
def test_skopeo_reads_the_store_layout_and_copy_keeps_the_manifest_digest(tmp_path: Path) -> None:
    store = ImageStore(tmp_path / "store")
    image = import_files(store, "localhost/app:1", {"etc": None, "etc/motd": b"hello\n"})
    info = json.loads(skopeo("inspect", f"oci:{store.root}:localhost/app:1"))
    assert info["Digest"] == str(image.manifest_digest)
    assert info["Layers"] == [str(image.manifest.layers[0].digest)]
    raw = skopeo("inspect", "--raw", f"oci:{store.root}:localhost/app:1").encode()
    assert raw == image.manifest.raw
    skopeo("copy", f"oci:{store.root}:localhost/app:1", f"oci:{tmp_path / 'copy'}:x")
    index = json.loads((tmp_path / "copy" / "index.json").read_text())
    assert index["manifests"][0]["digest"] == str(image.manifest_digest)
    # and back into our store, through skopeo writing our layout directly
    skopeo("copy", f"oci:{tmp_path / 'copy'}:x", f"oci:{store.root}:localhost/back:2")
    back = store.resolve("localhost/back:2")
    assert back.manifest_digest == image.manifest_digest and back.id == image.id
    assert store.fsck().clean


@needs_skopeo
def test_skopeo_reads_both_archive_formats(tmp_path: Path) -> None:
    store = ImageStore(tmp_path / "store")
    image = import_files(store, "localhost/app:1", {"a": b"a" * 5000})
    docker_archive = _save(store, ["localhost/app:1"], tmp_path / "d.tar")
    oci_archive = _save(store, ["localhost/app:1"], tmp_path / "o.tar", "oci-archive")
    info = json.loads(skopeo("inspect", f"docker-archive:{docker_archive}"))
    assert info["Layers"] == _diff_ids(image)  # skopeo's docker-archive reader reports diff ids
    info = json.loads(skopeo("inspect", f"oci-archive:{oci_archive}:1"))
    assert info["Digest"] == str(image.manifest_digest)
    skopeo("copy", f"oci-archive:{oci_archive}:1", f"oci:{tmp_path / 'o'}:y")
    copied = json.loads((tmp_path / "o" / "index.json").read_text())["manifests"][0]
    assert copied["digest"] == str(image.manifest_digest)


@needs_skopeo
def test_round_trip_import_save_skopeo_load_keeps_id_and_diff_ids(tmp_path: Path) -> None:
    store = ImageStore(tmp_path / "store")
    image = import_files(store, "localhost/rt:1", {"bin": None, "bin/tool": b"#!/bin/sh\necho hi\n"})
    archive = _save(store, ["localhost/rt:1"], tmp_path / "rt.tar")
    layout = tmp_path / "layout"
    skopeo("copy", f"docker-archive:{archive}", f"oci:{layout}:localhost/rt:1")
    second = ImageStore(tmp_path / "second")
    [loaded] = _load(second, tar_directory(layout, tmp_path / "layout.tar"))
    assert loaded.id == image.id
    assert _diff_ids(loaded) == _diff_ids(image)
    assert loaded.names == ("localhost/rt:1",)  # skopeo wrote the full name as ref.name
    # skopeo's own oci-archive output loads the same way
    skopeo("copy", f"docker-archive:{archive}", f"oci-archive:{tmp_path / 'sk.tar'}:latest")
    third = ImageStore(tmp_path / "third")
    [again] = _load(third, tmp_path / "sk.tar")
    assert again.id == image.id and _diff_ids(again) == _diff_ids(image)
    assert again.names == ()  # a bare tag names no repository


@needs_skopeo
def test_skopeo_docker_archive_output_loads(tmp_path: Path) -> None:
    store = ImageStore(tmp_path / "store")
    image = import_files(store, "localhost/sk:1", {"f": b"f"})
    out = tmp_path / "sk-docker.tar"
    skopeo("copy", f"oci:{store.root}:localhost/sk:1", f"docker-archive:{out}:localhost/sk:2")
    other = ImageStore(tmp_path / "other")
    [loaded] = _load(other, out)
    assert loaded.id == image.id and loaded.names == ("localhost/sk:2",)


# --------------------------------------------------------------------------------------------- docker


def _cli(root: Path, *args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    env = dict(os.environ, DOCKYARD_ROOT=str(root))
    return subprocess.run([sys.executable, "-c", "from cli.main import main; main()", *args], env=env,
                          capture_output=True, input=stdin, timeout=120, cwd=Path(__file__).resolve().parent.parent)


@needs_busybox
def test_docker_loads_and_runs_what_dockyard_saves(dockerd: Dockerd, tmp_path: Path) -> None:  # noqa: F811
    root = tmp_path / "root"
    rootfs = make_busybox_tar(tmp_path / "busybox.tar")
    imported = _cli(root, "import", "-c", 'CMD ["sh"]', str(rootfs), "localhost/dybox:1")
    assert imported.returncode == 0, imported.stderr
    saved = _cli(root, "save", "-o", str(tmp_path / "dybox.tar"), "localhost/dybox:1")
    assert saved.returncode == 0, saved.stderr
    assert "Loaded image: localhost/dybox:1" in dockerd.docker("load", "-i", str(tmp_path / "dybox.tar")).stdout
    ran = dockerd.docker("run", "--rm", "--network", "none", "localhost/dybox:1", "echo", "hello from dockyard")
    assert ran.stdout.strip() == "hello from dockyard"
    image_id = imported.stdout.decode().strip()
    assert dockerd.docker("image", "inspect", "-f", "{{.Id}}", "localhost/dybox:1").stdout.strip() == image_id


@needs_busybox
def test_dockyard_loads_what_docker_saves(dockerd: Dockerd, tmp_path: Path) -> None:  # noqa: F811
    store = ImageStore(tmp_path / "store")
    image = import_rootfs(store, make_busybox_tar(tmp_path / "bb.tar"), Reference.parse("localhost/dsave:1"),
                          changes=['CMD ["sh"]'])
    dockerd.docker("load", "-i", str(_save(store, ["localhost/dsave:1"], tmp_path / "in.tar")))
    dockerd.docker("tag", "localhost/dsave:1", "localhost/dsave:2")
    out = tmp_path / "docker-save.tar"
    dockerd.docker("save", "-o", str(out), "localhost/dsave:2")
    other = tmp_path / "other-root"
    loaded = _cli(other, "load", "-i", str(out))
    assert loaded.returncode == 0, loaded.stderr
    assert loaded.stdout.decode().strip() == "Loaded image: localhost/dsave:2"
    # and through stdin
    piped = _cli(tmp_path / "third-root", "load", stdin=out.read_bytes())
    assert piped.returncode == 0, piped.stderr
    again = ImageStore(other / "images").resolve("localhost/dsave:2")
    assert again.id == image.id and _diff_ids(again) == _diff_ids(image)
