"""Compression sniffing, streaming codecs, the decompression-bomb guard and media-type mapping."""

from __future__ import annotations

import bz2
import gzip
import io
import lzma

import pytest
import zstandard

from engine.archive.compression import (
    Compression,
    compression_for_media_type,
    decompress_bytes,
    detect_compression,
    media_type_for,
    new_compressor,
    open_decompressed,
)
from engine.errors import ArchiveError

PAYLOAD = b"dockyard layer bytes " * 5000


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (gzip.compress(PAYLOAD), Compression.GZIP),
        (zstandard.ZstdCompressor().compress(PAYLOAD), Compression.ZSTD),
        (bz2.compress(PAYLOAD), Compression.BZIP2),
        (lzma.compress(PAYLOAD), Compression.XZ),
        (PAYLOAD, Compression.NONE),
        (b"", Compression.NONE),
    ],
)
def test_detect_and_decompress(data: bytes, expected: Compression) -> None:
    assert detect_compression(data[:6]) is expected
    assert decompress_bytes(data) == PAYLOAD[: len(PAYLOAD) if data else 0]


def test_multi_member_gzip_and_multi_frame_zstd() -> None:
    two_gzip = gzip.compress(b"abc") + gzip.compress(b"def")
    assert decompress_bytes(two_gzip) == b"abcdef"
    zc = zstandard.ZstdCompressor()
    assert decompress_bytes(zc.compress(b"abc") + zc.compress(b"def")) == b"abcdef"


@pytest.mark.parametrize("comp", ["gzip", "zstd", "none"])
def test_compressor_round_trip_and_determinism(comp: str) -> None:
    def run() -> bytes:
        c = new_compressor(comp)
        return b"".join(c.compress(PAYLOAD[i : i + 7000]) for i in range(0, len(PAYLOAD), 7000)) + c.flush()

    first = run()
    assert first == run()
    assert detect_compression(first) is Compression(comp)
    assert decompress_bytes(first) == PAYLOAD


def test_gzip_header_has_no_timestamp() -> None:
    c = new_compressor("gzip")
    out = c.compress(b"x") + c.flush()
    assert out[4:8] == b"\0\0\0\0"


def test_bomb_guard() -> None:
    bomb = gzip.compress(bytes(10 << 20))
    assert len(bomb) < 100_000
    with pytest.raises(ArchiveError, match="decompression bomb"):
        decompress_bytes(bomb, max_bytes=1 << 20)
    assert len(decompress_bytes(bomb, max_bytes=10 << 20)) == 10 << 20


@pytest.mark.parametrize(
    "data",
    [gzip.compress(PAYLOAD)[:-20], b"\x1f\x8b" + b"garbage" * 10, b"\x28\xb5\x2f\xfd" + b"junk" * 10],
)
def test_corrupt_streams_raise_archive_error(data: bytes) -> None:
    with pytest.raises(ArchiveError, match="corrupt"):
        decompress_bytes(data)


def test_expect_mismatch() -> None:
    with pytest.raises(ArchiveError, match="expected a zstd stream"):
        open_decompressed(io.BytesIO(gzip.compress(b"x")), expect=Compression.ZSTD)


def test_media_types() -> None:
    assert compression_for_media_type("application/vnd.oci.image.layer.v1.tar+gzip") is Compression.GZIP
    assert compression_for_media_type("application/vnd.oci.image.layer.v1.tar+zstd") is Compression.ZSTD
    assert compression_for_media_type("application/vnd.oci.image.layer.v1.tar") is Compression.NONE
    assert compression_for_media_type("application/vnd.docker.image.rootfs.diff.tar.gzip") is Compression.GZIP
    assert media_type_for("gzip") == "application/vnd.oci.image.layer.v1.tar+gzip"
    assert media_type_for("zstd") == "application/vnd.oci.image.layer.v1.tar+zstd"
    assert media_type_for("gzip", docker=True) == "application/vnd.docker.image.rootfs.diff.tar.gzip"
    with pytest.raises(ArchiveError):
        compression_for_media_type("application/json")
    with pytest.raises(ArchiveError):
        media_type_for("zstd", docker=True)
    with pytest.raises(ArchiveError):
        new_compressor("bzip2")
    with pytest.raises(ArchiveError, match="unknown compression"):
        Compression.parse("lz4")
