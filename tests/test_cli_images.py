"""The images and archive commands end to end through click (a temp DOCKYARD_ROOT per test): output
shapes, exit codes, and one clear error line for bad input."""

from __future__ import annotations

import gzip
import json
import tarfile
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from cli.main import cli
from tests.store_helpers import layer_tar, write_tar


def dy(*args: str, input: bytes | None = None) -> Result:
    return CliRunner().invoke(cli, list(args), input=input, catch_exceptions=False)


def ok(*args: str, input: bytes | None = None) -> str:
    result = dy(*args, input=input)
    assert result.exit_code == 0, f"dockyard {' '.join(args)}: {result.output}"
    return result.stdout


def fails(*args: str, match: str, input: bytes | None = None) -> str:
    result = dy(*args, input=input)
    assert result.exit_code == 1, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("dockyard: error: "), result.stderr
    assert match in lines[0], lines[0]
    return lines[0]


@pytest.fixture
def rootfs(tmp_path: Path) -> Path:
    path = tmp_path / "rootfs.tar"
    path.write_bytes(layer_tar({"bin": None, "bin/app": b"#!/bin/sh\n", "etc": None, "etc/motd": b"hi\n"}))
    return path


def test_import_images_tag_inspect_history(rootfs: Path) -> None:
    image_id = ok("import", "-c", 'CMD ["/bin/app"]', "-m", "first", str(rootfs), "app:1").strip()
    assert image_id.startswith("sha256:") and len(image_id) == 71
    ok("tag", "app:1", "localhost:5000/team/app:v2")
    listing = ok("images")
    assert listing.splitlines()[0].split() == ["REPOSITORY", "TAG", "IMAGE", "ID", "CREATED", "SIZE"]
    assert {tuple(line.split()[:2]) for line in listing.splitlines()[1:]} == {
        ("app", "1"), ("localhost:5000/team/app", "v2")}
    assert ok("images", "-q").strip() == image_id[7:19]
    rows = [json.loads(line) for line in ok("images", "--format", "json").splitlines()]
    assert {(r["Repository"], r["Tag"]) for r in rows} == {("app", "1"), ("localhost:5000/team/app", "v2")}
    inspected = json.loads(ok("inspect", "app:1"))[0]
    assert inspected["Id"] == image_id
    assert inspected["Config"]["Cmd"] == ["/bin/app"]
    assert sorted(inspected["RepoTags"]) == ["app:1", "localhost:5000/team/app:v2"]
    assert ok("inspect", "-f", "{{.Id}}", "app:1").strip() == image_id
    history = ok("history", "app:1")
    assert "dockyard import" in history and history.splitlines()[0].split()[:2] == ["IMAGE", "CREATED"]


def test_rmi_gc_fsck(rootfs: Path) -> None:
    ok("import", str(rootfs), "app:1")
    ok("tag", "app:1", "app:2")
    assert ok("rmi", "app:2").strip() == "Untagged: app:2"
    out = ok("rmi", "app:1").splitlines()
    assert out[0] == "Untagged: app:1" and out[1].startswith("Deleted: sha256:")
    assert ok("images", "-q") == ""
    assert "clean" in ok("fsck")
    assert ok("gc").startswith("removed 0 blobs")
    fails("rmi", "app:1", match="no such image")


def test_save_load_round_trip_through_files_and_pipes(rootfs: Path, tmp_path: Path, isolated_dockyard: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    image_id = ok("import", str(rootfs), "localhost/app:1").strip()
    archive = tmp_path / "app.tar"
    ok("save", "-o", str(archive), "localhost/app:1")
    streamed = dy("save", "localhost/app:1").stdout_bytes  # no -o: the archive goes to stdout
    assert streamed == archive.read_bytes()
    oci = tmp_path / "app-oci.tar"
    ok("save", "--format", "oci-archive", "-o", str(oci), "localhost/app:1")
    with tarfile.open(oci) as tar:
        assert "manifest.json" not in tar.getnames() and "index.json" in tar.getnames()

    monkeypatch.setenv("DOCKYARD_ROOT", str(tmp_path / "second"))
    assert ok("load", "-i", str(archive)) == "Loaded image: localhost/app:1\n"
    assert ok("inspect", "-f", "{{.Id}}", "localhost/app:1").strip() == image_id
    monkeypatch.setenv("DOCKYARD_ROOT", str(tmp_path / "third"))
    assert ok("load", input=gzip.compress(streamed)) == "Loaded image: localhost/app:1\n"
    assert ok("load", "-q", "-i", str(oci)) == ""
    assert ok("images", "-q").strip() == image_id[7:19]


def test_export_writes_the_flattened_filesystem(rootfs: Path, tmp_path: Path) -> None:
    ok("import", str(rootfs), "app:1")
    out = tmp_path / "fs.tar"
    ok("export", "app:1", "-o", str(out))
    with tarfile.open(out) as tar:
        assert set(tar.getnames()) == {"bin", "bin/app", "etc", "etc/motd"}
        assert tar.extractfile("etc/motd").read() == b"hi\n"  # type: ignore[union-attr]
    assert dy("export", "app:1").stdout_bytes == out.read_bytes()


def test_every_bad_input_is_one_line_and_exit_1(tmp_path: Path, rootfs: Path) -> None:
    fails("load", "-i", str(tmp_path / "missing.tar"), match="no such file")
    (tmp_path / "text.tar").write_text("hello\n" * 200)
    fails("load", "-i", str(tmp_path / "text.tar"), match="not a tar archive")
    fails("load", input=b"", match="empty file")
    broken = write_tar(tmp_path / "broken.tar", {"manifest.json": b"[{"})
    fails("load", "-i", str(broken), match="manifest.json is not valid JSON")
    escape = write_tar(tmp_path / "escape.tar", {"manifest.json": b'[{"Config": "../../etc/passwd", "Layers": []}]'})
    fails("load", "-i", str(escape), match="escapes the archive")
    good = layer_tar({"a": b"a"})
    config = json.dumps({"architecture": "amd64", "os": "linux", "rootfs": {
        "type": "layers", "diff_ids": ["sha256:" + "0" * 64]}}).encode()
    mismatch = write_tar(tmp_path / "mismatch.tar", {
        "c.json": config, "l/layer.tar": good,
        "manifest.json": b'[{"Config": "c.json", "Layers": ["l/layer.tar"], "RepoTags": ["x:1"]}]'})
    fails("load", "-i", str(mismatch), match="diff_id")
    ok("import", str(rootfs), "app:1")
    archive = tmp_path / "app.tar"
    ok("save", "-o", str(archive), "app:1")
    cut = tmp_path / "cut.tar"
    cut.write_bytes(archive.read_bytes()[: archive.stat().st_size // 2])
    fails("load", "-i", str(cut), match="truncated")
    fails("save", "-o", str(tmp_path / "x.tar"), "nope:1", match="no such image: nope:1")
    assert not (tmp_path / "x.tar").exists()
    fails("save", "-o", str(tmp_path / "no-dir" / "x.tar"), "app:1", match="cannot write")
    fails("export", "nope", "-o", str(tmp_path / "e.tar"), match="no such image")
    fails("import", str(tmp_path / "missing.tar"), match="no such file")
    fails("tag", "app:1", "Bad:Name", match="lowercase")
    assert dy("save", "--format", "zip", "app:1").exit_code == 2  # click's usage error
    assert "clean" in ok("fsck")
