"""save / load / export against the store: formats, round trips, and every bad-input error."""

from __future__ import annotations

import gzip
import io
import json
import os
import tarfile
from pathlib import Path

import pytest

from engine.errors import (
    ArchiveError,
    DigestMismatchError,
    ImageNotFoundError,
    InvalidInputError,
    InvalidManifestError,
    StoreError,
    UnsafeArchiveError,
)
from engine.oci import mediatypes as mt
from engine.store.archives import export_image, load_archive, loaded_lines, open_input, save_images, write_output
from engine.store.layout import ImageStore
from tests.store_helpers import (
    config_for,
    import_files,
    layer_tar,
    legacy_docker_archive,
    oci_archive,
    sha,
    write_tar,
)


@pytest.fixture
def store(tmp_path: Path) -> ImageStore:
    return ImageStore(tmp_path / "store")


@pytest.fixture
def other(tmp_path: Path) -> ImageStore:
    return ImageStore(tmp_path / "other")


def _save(store: ImageStore, names: list[str], path: Path, fmt: str = "docker-archive") -> Path:
    write_output(path, lambda fh: save_images(store, names, fh, fmt))
    return path


def _load(store: ImageStore, path: Path) -> list[str]:
    with open_input(path) as fh:
        return loaded_lines(load_archive(store, fh, label=path.name))


def _members(path: Path) -> dict[str, bytes]:
    with tarfile.open(path) as tar:
        return {m.name: (tar.extractfile(m).read() if m.isreg() else b"") for m in tar}  # type: ignore[union-attr]


# ---------------------------------------------------------------------------------------- round trips


def test_docker_archive_has_docker25_layout_and_round_trips(store: ImageStore, other: ImageStore,
                                                            tmp_path: Path) -> None:
    image = import_files(store, "localhost/app:1", {"etc": None, "etc/hello": b"hi\n"})
    archive = _save(store, ["localhost/app:1"], tmp_path / "a.tar")
    members = _members(archive)
    assert {"oci-layout", "index.json", "manifest.json", "repositories"} <= set(members)
    manifest_json = json.loads(members["manifest.json"])
    assert manifest_json == [{
        "Config": f"blobs/sha256/{image.id.hex}", "RepoTags": ["localhost/app:1"],
        "Layers": [f"blobs/sha256/{image.manifest.layers[0].digest.hex}"],
    }]
    index = json.loads(members["index.json"])
    assert index["manifests"][0]["digest"] == str(image.manifest.digest)
    assert index["manifests"][0]["annotations"] == {
        "io.containerd.image.name": "localhost/app:1", "org.opencontainers.image.ref.name": "1"}
    assert json.loads(members["repositories"]) == {"localhost/app": {"1": image.manifest.layers[0].digest.hex}}
    assert _load(other, archive) == ["Loaded image: localhost/app:1"]
    loaded = other.resolve("localhost/app:1")
    assert loaded.id == image.id
    assert loaded.manifest_digest == image.manifest.digest  # the exact manifest came along
    assert loaded.config.diff_ids == image.config.diff_ids
    assert other.fsck().clean


def test_oci_archive_round_trip_by_id_is_untagged(store: ImageStore, other: ImageStore, tmp_path: Path) -> None:
    image = import_files(store, "localhost/app:1", {"a": b"a"})
    archive = _save(store, [image.id.hex[:12]], tmp_path / "o.tar", "oci-archive")
    members = _members(archive)
    assert "manifest.json" not in members and "repositories" not in members
    assert "annotations" not in json.loads(members["index.json"])["manifests"][0]
    assert _load(other, archive) == [f"Loaded image ID: {image.id}"]
    assert other.resolve(image.id.hex).manifest_digest == image.manifest.digest


def test_two_tags_of_one_image_and_a_second_image(store: ImageStore, other: ImageStore, tmp_path: Path) -> None:
    a = import_files(store, "localhost/a:1", {"a": b"a"})
    store.tag("localhost/a:1", __import__("engine.oci.reference", fromlist=["Reference"]).Reference.parse("b:2"))
    b = import_files(store, "localhost/c:3", {"c": b"c"})
    archive = _save(store, ["localhost/a:1", "b:2", "localhost/c:3"], tmp_path / "m.tar")
    manifest_json = json.loads(_members(archive)["manifest.json"])
    assert [sorted(e["RepoTags"]) for e in manifest_json] == [["b:2", "localhost/a:1"], ["localhost/c:3"]]
    assert sorted(_load(other, archive)) == sorted([
        "Loaded image: localhost/a:1", "Loaded image: b:2", "Loaded image: localhost/c:3"])
    assert other.resolve("b:2").id == a.id
    assert other.resolve("localhost/c:3").id == b.id


def test_save_streams_to_a_pipe_and_load_reads_a_pipe(store: ImageStore, other: ImageStore) -> None:
    image = import_files(store, "localhost/p:1", {"x": b"x" * 100_000})
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: stream the archive into the pipe
        os.close(read_fd)
        with os.fdopen(write_fd, "wb") as out:
            save_images(store, ["localhost/p:1"], out)
        os._exit(0)
    os.close(write_fd)
    with os.fdopen(read_fd, "rb") as pipe:
        loaded = load_archive(other, pipe, label="stdin")
    assert os.waitpid(pid, 0)[1] == 0
    assert loaded[0].image_id == image.id and loaded[0].manifest_digest == image.manifest.digest


def test_gzip_compressed_archive_loads(store: ImageStore, other: ImageStore, tmp_path: Path) -> None:
    image = import_files(store, "localhost/z:1", {"x": b"x"})
    archive = _save(store, ["localhost/z:1"], tmp_path / "z.tar")
    zipped = tmp_path / "z.tar.gz"
    zipped.write_bytes(gzip.compress(archive.read_bytes()))
    assert _load(other, zipped) == ["Loaded image: localhost/z:1"]
    assert other.resolve("localhost/z:1").id == image.id


def test_legacy_docker_save_recompresses_plain_layers(store: ImageStore, tmp_path: Path) -> None:
    layers = [layer_tar({"a": b"one"}), layer_tar({"b": b"two"})]
    archive = legacy_docker_archive(tmp_path / "legacy.tar", layers)
    assert _load(store, archive) == ["Loaded image: localhost/legacy:1"]
    image = store.resolve("localhost/legacy:1")
    assert str(image.id) == sha(config_for(layers))
    assert [str(d) for d in image.config.diff_ids] == [sha(layer) for layer in layers]
    assert [layer.media_type for layer in image.manifest.layers] == [mt.OCI_LAYER_GZIP] * 2
    for layer, raw in zip(image.manifest.layers, layers, strict=True):
        assert gzip.decompress(store.read_blob(layer.digest)) == raw
    # loading it again gives byte-identical blobs (deterministic compression): nothing new, same manifest
    before = image.manifest_digest
    _load(store, archive)
    assert store.resolve("localhost/legacy:1").manifest_digest == before
    assert store.fsck().clean


def test_duplicate_layer_linked_inside_the_archive(store: ImageStore, tmp_path: Path) -> None:
    layer = layer_tar({"a": b"same"})
    config = config_for([layer, layer])
    path = write_tar(tmp_path / "link.tar", {
        "c.json": config,
        "one/layer.tar": layer,
        "two/layer.tar": ("symlink", "../one/layer.tar"),
        "manifest.json": json.dumps([{"Config": "c.json", "RepoTags": ["l:1"],
                                      "Layers": ["one/layer.tar", "two/layer.tar"]}]).encode(),
    })
    assert _load(store, path) == ["Loaded image: l:1"]
    assert len(store.resolve("l:1").manifest.layers) == 2


def test_oci_archive_names_from_annotations(store: ImageStore, tmp_path: Path) -> None:
    layers = [layer_tar({"f": b"1"})]
    short, config_id, _ = oci_archive(tmp_path / "short.tar", layers,
                                      {"org.opencontainers.image.ref.name": "latest"})
    assert _load(store, short) == [f"Loaded image ID: {config_id}"]
    full, _, _ = oci_archive(tmp_path / "full.tar", layers,
                             {"org.opencontainers.image.ref.name": "localhost/full:v2"})
    assert _load(store, full) == ["Loaded image: localhost/full:v2"]
    both, _, _ = oci_archive(tmp_path / "both.tar", layers, {
        "org.opencontainers.image.ref.name": "v3", "io.containerd.image.name": "docker.io/library/both:v3"})
    assert _load(store, both) == ["Loaded image: both:v3"]


def test_oci_archive_keeps_gzip_manifest_and_recompresses_plain(store: ImageStore, tmp_path: Path) -> None:
    layers = [layer_tar({"f": b"1"})]
    zipped, config_id, manifest_digest = oci_archive(tmp_path / "gz.tar", layers, {"io.containerd.image.name": "g:1"})
    _load(store, zipped)
    assert str(store.resolve("g:1").manifest_digest) == manifest_digest
    plain, config_id2, plain_digest = oci_archive(tmp_path / "plain.tar", layers, {"io.containerd.image.name": "p:1"},
                                                  compress=False)
    _load(store, plain)
    image = store.resolve("p:1")
    assert str(image.id) == config_id2 == config_id
    assert str(image.manifest_digest) != plain_digest  # layers were recompressed, so a new manifest
    assert image.manifest.layers[0].media_type == mt.OCI_LAYER_GZIP


def test_export_applies_whiteouts(store: ImageStore, tmp_path: Path) -> None:
    layers = [
        layer_tar({"keep": b"k", "gone": b"g", "dir": None, "dir/old": b"o"}),
        layer_tar({".wh.gone": b"", "dir": None, "dir/.wh..wh..opq": b"", "dir/new": b"n", "keep": b"K2"}),
    ]
    archive, _, _ = oci_archive(tmp_path / "wh.tar", layers, {"io.containerd.image.name": "wh:1"})
    _load(store, archive)
    out = tmp_path / "rootfs.tar"
    write_output(out, lambda fh: export_image(store, "wh:1", fh))
    files = _members(out)
    assert set(files) == {"keep", "dir", "dir/new"}
    assert files["keep"] == b"K2"


# ------------------------------------------------------------------------------------------ bad input


def test_missing_file_and_directory_are_clear(tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match="no such file"):
        open_input(tmp_path / "nope.tar")
    with pytest.raises(InvalidInputError, match="is a directory"):
        open_input(tmp_path)


@pytest.mark.parametrize("content, match", [
    (b"", "empty file"),
    (b"this is not a tar archive at all" * 40, "not a tar archive"),
])
def test_not_a_tar(store: ImageStore, tmp_path: Path, content: bytes, match: str) -> None:
    path = tmp_path / "bad.tar"
    path.write_bytes(content)
    with pytest.raises(ArchiveError, match=match):
        _load(store, path)


def test_tar_without_image(store: ImageStore, tmp_path: Path) -> None:
    with pytest.raises(ArchiveError, match="not an image archive"):
        _load(store, write_tar(tmp_path / "x.tar", {"hello": b"x"}))
    with pytest.raises(ArchiveError, match="legacy"):
        _load(store, write_tar(tmp_path / "y.tar", {"repositories": b"{}", "abc/layer.tar": b""}))


@pytest.mark.parametrize("manifest, error, match", [
    (b"{not json", InvalidManifestError, "not valid JSON"),
    (b"null", InvalidManifestError, "non-empty list"),
    (b"[]", InvalidManifestError, "non-empty list"),
    (b'[{"Layers": []}]', InvalidManifestError, "no Config"),
    (b'[{"Config": "c.json", "Layers": "x"}]', InvalidManifestError, "Layers must be a list"),
    (b'[{"Config": "c.json", "Layers": [], "RepoTags": ["UPPER:case"]}]', InvalidInputError, "lowercase"),
    (b'[{"Config": "../c.json", "Layers": []}]', UnsafeArchiveError, "escapes the archive"),
    (b'[{"Config": "/etc/passwd", "Layers": []}]', UnsafeArchiveError, "escapes the archive"),
    (b'[{"Config": "c.json", "Layers": ["a/../../../etc/shadow"]}]', UnsafeArchiveError, "escapes the archive"),
    (b'[{"Config": "missing.json", "Layers": []}]', ArchiveError, "missing from the archive"),
])
def test_broken_manifest_json(store: ImageStore, tmp_path: Path, manifest: bytes, error: type[Exception],
                              match: str) -> None:
    path = write_tar(tmp_path / "m.tar", {"c.json": config_for([]), "manifest.json": manifest})
    with pytest.raises(error, match=match):
        _load(store, path)
    assert store.entries() == []


def test_symlink_escaping_the_archive(store: ImageStore, tmp_path: Path) -> None:
    path = write_tar(tmp_path / "s.tar", {
        "c.json": ("symlink", "../../../etc/passwd"),
        "manifest.json": b'[{"Config": "c.json", "Layers": []}]',
    })
    with pytest.raises(UnsafeArchiveError, match="escapes the archive"):
        _load(store, path)


def test_layer_not_matching_diff_id(store: ImageStore, tmp_path: Path) -> None:
    good = layer_tar({"a": b"a"})
    evil = layer_tar({"a": b"evil"})
    path = legacy_docker_archive(tmp_path / "bad.tar", [evil], config=config_for([good]))
    with pytest.raises(DigestMismatchError, match="diff_id"):
        _load(store, path)
    assert store.entries() == []
    store.gc()
    assert list(store.all_blobs()) == [] and list(store.ingest_dir.iterdir()) == []


def test_layer_count_differs_from_diff_ids(store: ImageStore, tmp_path: Path) -> None:
    layer = layer_tar({"a": b"a"})
    path = legacy_docker_archive(tmp_path / "n.tar", [layer, layer], config=config_for([layer]))
    with pytest.raises(InvalidManifestError, match="2 layers but the config lists 1"):
        _load(store, path)


def test_oci_blob_not_matching_its_name(store: ImageStore, tmp_path: Path) -> None:
    path, _, _ = oci_archive(tmp_path / "o.tar", [layer_tar({"a": b"a"})])
    with tarfile.open(path) as tar:
        members = {m.name: tar.extractfile(m).read() for m in tar if m.isreg()}  # type: ignore[union-attr]
    layer_name = next(n for n, data in members.items() if data[:2] == b"\x1f\x8b")
    members[layer_name] = gzip.compress(layer_tar({"a": b"a"}), mtime=12345)  # same content, other bytes
    broken = write_tar(tmp_path / "broken.tar", members)
    with pytest.raises(DigestMismatchError):
        _load(store, broken)


def test_truncated_archive(store: ImageStore, tmp_path: Path) -> None:
    import_files(store, "localhost/t:1", {"big": os.urandom(300_000)})
    archive = _save(store, ["localhost/t:1"], tmp_path / "t.tar")
    data = archive.read_bytes()
    fresh = ImageStore(tmp_path / "fresh")
    with tarfile.open(archive) as tar:
        offsets = {m.name: (m.offset_data, m.size) for m in tar}
    layer_start, layer_size = offsets[f"blobs/sha256/{store.resolve('localhost/t:1').manifest.layers[0].digest.hex}"]
    manifest_start, manifest_size = offsets["manifest.json"]
    cuts = (100, layer_start + layer_size // 2, manifest_start + manifest_size // 2, manifest_start - 200)
    for cut in cuts:
        truncated = tmp_path / f"t{cut}.tar"
        truncated.write_bytes(data[:cut])
        with pytest.raises(ArchiveError, match=r"truncated|missing from the archive|not a tar"):
            _load(fresh, truncated)
        # the same bytes through a pipe (spooled) fail the same way
        with pytest.raises(ArchiveError):
            load_archive(fresh, io.BufferedReader(io.BytesIO(data[:cut])), label="stdin")  # type: ignore[arg-type]
    assert fresh.entries() == [] and fresh.fsck().clean


def test_save_errors(store: ImageStore, tmp_path: Path) -> None:
    with pytest.raises(ImageNotFoundError):
        _save(store, ["nope"], tmp_path / "x.tar")
    assert not (tmp_path / "x.tar").exists()
    with pytest.raises(InvalidInputError, match="unknown archive format"):
        save_images(store, ["x"], io.BytesIO(), "zip")
    image = import_files(store, "localhost/c:1", {"a": b"a" * 1000})
    blob = store.blob_path(image.manifest.layers[0].digest)
    os.chmod(blob, 0o644)
    blob.write_bytes(b"\x1f\x8b" + b"0" * (blob.stat().st_size - 2))  # same size, corrupt content
    with pytest.raises(StoreError, match="corrupt"):
        _save(store, ["localhost/c:1"], tmp_path / "c.tar")
    assert not (tmp_path / "c.tar").exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".c.tar")] == []
