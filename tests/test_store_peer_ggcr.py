"""Archives and layouts written by go-containerregistry (peer data): the good ones load with the ids and
diff_ids their configs promise, the broken ones fail with one clear line, and export applies whiteouts."""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

import pytest

from engine.errors import ArchiveError, EngineError, InvalidManifestError
from engine.store.archives import export_image, load_archive, loaded_lines, write_output
from engine.store.layout import ImageStore
from tests.peerdata import peer_dir
from tests.store_helpers import tar_directory

GGCR = peer_dir("go-containerregistry-testdata", "pkg", "v1")
TARBALLS = GGCR / "tarball" / "testdata"
MUTATE = GGCR / "mutate" / "testdata"
LAYOUTS = GGCR / "layout" / "testdata"


def _load(store: ImageStore, path: Path) -> list[str]:
    with open(path, "rb") as fh:
        return loaded_lines(load_archive(store, fh, label=path.name))


def _configs(path: Path) -> dict[str, dict[str, object]]:
    """Config path -> config JSON, read with tarfile directly (the test's own view of the archive)."""
    with tarfile.open(path) as tar:
        manifest = json.load(tar.extractfile("manifest.json"))  # type: ignore[arg-type]
        return {entry["Config"]: json.load(tar.extractfile(entry["Config"])) for entry in manifest}  # type: ignore[arg-type]


@pytest.mark.parametrize("name, expected", [
    ("test_image_1.tar", ["Loaded image: bazel/v1/tarball:test_image_1"]),
    ("test_image_2.tar", ["Loaded image: bazel/v1/tarball:test_image_2"]),
    ("test_load_manifest.tar", ["Loaded image: bazel/v1/tarball:test_image_1"]),
    ("test_bundle.tar", ["Loaded image: test_image_2:latest", "Loaded image: test_image_1:latest"]),
    # docker save links the layer two images share: b159.../layer.tar -> ../6e77.../layer.tar
    ("test_link.tar", ["Loaded image: bazel/v1/tarball:test_image_1", "Loaded image: bazel/v1/tarball:test_image_3"]),
])
def test_docker_save_tarballs_load(tmp_path: Path, name: str, expected: list[str]) -> None:
    store = ImageStore(tmp_path / "store")
    path = TARBALLS / name
    assert _load(store, path) == expected
    for config_path, config in _configs(path).items():
        image = store.resolve(Path(config_path).stem)
        assert image.id.hex == Path(config_path).stem  # the config digest, as docker names it
        assert [str(d) for d in image.config.diff_ids] == config["rootfs"]["diff_ids"]  # type: ignore[index]
    assert store.fsck().clean


def test_docker25_tarball_with_uncompressed_oci_layer(tmp_path: Path) -> None:
    store = ImageStore(tmp_path / "store")
    assert _load(store, TARBALLS / "hello-world-v25.tar") == [
        "Loaded image ID: sha256:ee301c921b8aadc002973b2e0c3da17d701dcd994b606769a7e6eaa100b81d44"]
    image = store.resolve("ee301c921b8a")
    assert str(image.config.diff_ids[0]) == "sha256:12660636fe55438cc3ae7424da7ac56e845cdb52493ff9cf949c47a7f57f8b43"
    assert image.manifest.layers[0].media_type.endswith("+gzip")  # recompressed for the store


@pytest.mark.parametrize("name, error, match", [
    ("no_manifest.tar", ArchiveError, "no manifest.json"),
    ("null_manifest.tar", InvalidManifestError, "manifest.json must be a non-empty list"),
    ("content.tar", ArchiveError, "not an image archive"),
])
def test_broken_tarballs_fail_clearly(tmp_path: Path, name: str, error: type[EngineError], match: str) -> None:
    store = ImageStore(tmp_path / "store")
    with pytest.raises(error, match=match) as info:
        _load(store, TARBALLS / name)
    assert "\n" not in str(info.value) and name in str(info.value)
    assert store.entries() == []


@pytest.mark.parametrize("name, present", [
    ("whiteout_image.tar", {"bar.txt": b"bar\n"}),            # .wh.foo.txt removes foo.txt
    ("whiteout_dir.tar", {"b/bar": b"", "a/baz": b""}),       # .wh.a removes a/foo; a comes back with baz
    ("overwritten_file.tar", {"bar.txt": b"bar\n"}),          # foo.txt became a symlink
])
def test_export_of_mutate_images_applies_whiteouts(tmp_path: Path, name: str, present: dict[str, bytes]) -> None:
    store = ImageStore(tmp_path / "store")
    loaded = _load(store, MUTATE / name)
    image_name = loaded[0].removeprefix("Loaded image: ")
    out = tmp_path / "rootfs.tar"
    write_output(out, lambda fh: export_image(store, image_name, fh))
    with tarfile.open(out) as tar:
        files = {m.name: tar.extractfile(m).read() for m in tar if m.isreg()}  # type: ignore[union-attr]
        names = tar.getnames()
    assert files == present
    assert not any(".wh." in n for n in names)
    if name == "overwritten_file.tar":
        with tarfile.open(out) as tar:
            assert tar.getmember("foo.txt").issym()


@pytest.mark.parametrize("layout", ["test_index", "test_gc_index", "test_index_one_image"])
def test_oci_layouts_load_as_oci_archives(tmp_path: Path, layout: str) -> None:
    store = ImageStore(tmp_path / "store")
    archive = tar_directory(LAYOUTS / layout, tmp_path / f"{layout}.tar")
    lines = _load(store, archive)
    # Their ref names are bare tags ("1", "3"...), which name no repository: the image loads untagged.
    assert len(lines) == 1 and lines[0].startswith("Loaded image ID: sha256:")
    image = store.resolve(lines[0].split(": ")[1])
    assert image.config.diff_ids and store.fsck().clean


@pytest.mark.parametrize("layout, error, match", [
    ("test_index_media_type", InvalidManifestError, "not a container image"),
    ("test_gc_image_unknown_mediatype", ArchiveError, "lists no container image"),
])
def test_non_image_layouts_fail_clearly(tmp_path: Path, layout: str, error: type[EngineError], match: str) -> None:
    store = ImageStore(tmp_path / "store")
    archive = tar_directory(LAYOUTS / layout, tmp_path / f"{layout}.tar")
    with pytest.raises(error, match=match):
        _load(store, archive)
    assert store.entries() == []
