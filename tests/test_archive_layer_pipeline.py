"""write_layer past one buffer: the threaded pipeline (tar + diff hash | compress + digest + write) gives
the same bytes every time, results that match them, and stops its thread cleanly when anything fails."""

from __future__ import annotations

import errno
import hashlib
import io
import os
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from engine.archive.compression import CHUNK, decompress_bytes
from engine.archive.layer_writer import LayerItem, directory_items, write_layer
from engine.archive.untar import extract_layer
from engine.errors import ArchiveError, NoSpaceError
from tests.archive_helpers import tree_state

PIPELINE_THREADS = {"layer-compress"}


def _big_tree(root: Path) -> Path:
    (root / "d").mkdir(parents=True)
    (root / "random.bin").write_bytes(os.urandom(5 * CHUNK + 12345))  # several full buffers + a tail
    (root / "zeros.bin").write_bytes(bytes(3 * CHUNK))  # compresses to almost nothing
    for i in range(40):
        (root / "d" / f"f{i:02}").write_bytes(os.urandom(i * 1013))
    return root


def _no_pipeline_threads() -> bool:
    return not PIPELINE_THREADS & {t.name for t in threading.enumerate()}


@pytest.mark.parametrize("compression", ["gzip", "zstd", "none"])
def test_multi_buffer_layer_round_trips_and_matches_its_result(tmp_path: Path, compression: str) -> None:
    src = _big_tree(tmp_path / "src")
    out = io.BytesIO()
    result = write_layer(directory_items(src), out, compression=compression)
    blob = out.getvalue()
    raw = decompress_bytes(blob)
    assert result.uncompressed_size == len(raw) > 8 * CHUNK
    assert result.size == len(blob)
    assert str(result.digest) == "sha256:" + hashlib.sha256(blob).hexdigest()
    assert str(result.diff_id) == "sha256:" + hashlib.sha256(raw).hexdigest()
    dest = tmp_path / "dest"
    extract_layer(io.BytesIO(blob), dest, expected_diff_id=str(result.diff_id))
    assert tree_state(dest) == tree_state(src)
    assert _no_pipeline_threads()


def test_same_input_same_blob_every_time(tmp_path: Path) -> None:
    src = _big_tree(tmp_path / "src")
    digests = set()
    for _ in range(3):
        out = io.BytesIO()
        digests.add(write_layer(directory_items(src), out, mtime_clamp=1_000_000).digest)
    assert len(digests) == 1


class _FullDisk(io.RawIOBase):
    def __init__(self, room: int) -> None:
        self.room = room

    def writable(self) -> bool:
        return True

    def write(self, data: object) -> int:
        n = len(memoryview(data))  # type: ignore[arg-type]
        if n > self.room:
            raise OSError(errno.ENOSPC, "No space left on device")
        self.room -= n
        return n


def test_a_full_disk_in_the_writer_thread_surfaces_as_no_space(tmp_path: Path) -> None:
    src = _big_tree(tmp_path / "src")
    with pytest.raises(NoSpaceError):
        write_layer(directory_items(src), _FullDisk(2 * CHUNK), compression="none")  # type: ignore[arg-type]
    assert _no_pipeline_threads()


def test_a_failing_source_stops_the_pipeline(tmp_path: Path) -> None:
    src = _big_tree(tmp_path / "src")

    def items() -> Iterator[LayerItem]:
        yield LayerItem("random.bin", src / "random.bin")
        raise ArchiveError("source went away")

    with pytest.raises(ArchiveError, match="source went away"):
        write_layer(items(), io.BytesIO())
    assert _no_pipeline_threads()


def _short_read_file() -> Path | None:
    """A sysfs attribute: lstat says 4096 bytes, a read gives far fewer (like a file cut mid-copy)."""
    for candidate in (Path("/sys/kernel/mm/transparent_hugepage/enabled"), Path("/sys/kernel/profiling"),
                      Path("/sys/power/state")):
        try:
            if candidate.lstat().st_size > len(candidate.read_bytes()):
                return candidate
        except OSError:
            continue
    return None


def test_a_file_that_reads_short_is_refused_mid_pipeline(tmp_path: Path) -> None:
    short = _short_read_file()
    if short is None:
        pytest.skip("no sysfs file whose size exceeds its content on this machine")
    src = _big_tree(tmp_path / "src")
    items = [LayerItem("random.bin", src / "random.bin"), LayerItem("short", short)]
    with pytest.raises(ArchiveError, match="shrank"):
        write_layer(items, io.BytesIO())
    assert _no_pipeline_threads()
