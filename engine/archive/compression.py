"""Layer compression: detection by magic bytes, streaming (de)compressors, media-type mapping.

Reading accepts gzip (via isal, several members allowed), zstd (several frames allowed), bzip2 and xz
(stdlib; some ``ADD`` archives use them) and plain tar.  Writing produces gzip (isal, fast level by
default) or zstd.  Every foreign exception is turned into :class:`ArchiveError` at this boundary, and a
decompression-bomb guard caps the number of bytes a reader may produce.
"""

from __future__ import annotations

import bz2
import enum
import io
import lzma
import zlib
from typing import IO, Any, BinaryIO, Protocol

import zstandard
from isal import igzip, isal_zlib

from engine.errors import ArchiveError
from engine.oci import mediatypes

CHUNK = 1 << 20
"""Bytes moved per read/write on every streaming path of the archive package."""

GZIP_FAST_LEVEL = isal_zlib.ISAL_BEST_SPEED + 1
"""isal levels go 0..3; 1 is the fast default dockyard writes layers with."""

ZSTD_DEFAULT_LEVEL = 3

_GZIP_MAGIC = b"\x1f\x8b"
_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
_BZIP2_MAGIC = b"BZh"
_XZ_MAGIC = b"\xfd7zXZ\x00"
MAGIC_LENGTH = 6


class Compression(enum.StrEnum):
    NONE = "none"
    GZIP = "gzip"
    ZSTD = "zstd"
    BZIP2 = "bzip2"
    XZ = "xz"

    @classmethod
    def parse(cls, value: str | Compression) -> Compression:
        try:
            return cls(value)
        except ValueError:
            names = ", ".join(c.value for c in cls)
            raise ArchiveError(f"unknown compression {value!r} (use one of {names})") from None


WRITABLE = frozenset({Compression.NONE, Compression.GZIP, Compression.ZSTD})


def detect_compression(head: bytes) -> Compression:
    """The compression of a stream whose first bytes are ``head`` (at least 6 bytes for xz)."""
    if head.startswith(_GZIP_MAGIC):
        return Compression.GZIP
    if head.startswith(_ZSTD_MAGIC):
        return Compression.ZSTD
    if head.startswith(_BZIP2_MAGIC):
        return Compression.BZIP2
    if head.startswith(_XZ_MAGIC):
        return Compression.XZ
    return Compression.NONE


def compression_for_media_type(media_type: str) -> Compression:
    """The compression a layer media type promises (OCI ``+gzip``/``+zstd``, docker ``.tar.gzip``)."""
    if media_type not in mediatypes.LAYER_TYPES:
        raise ArchiveError(f"not a layer media type: {media_type!r}")
    return Compression(mediatypes.layer_compression(media_type))


def media_type_for(compression: Compression | str, *, docker: bool = False) -> str:
    """The layer media type for blobs written with ``compression`` (OCI unless ``docker``)."""
    comp = Compression.parse(compression)
    if comp not in WRITABLE or (docker and comp is Compression.ZSTD):
        raise ArchiveError(f"no {'docker' if docker else 'OCI'} layer media type for {comp} compression")
    return mediatypes.layer_media_type(comp.value, docker=docker)


# --------------------------------------------------------------------------------------------- reading


class _Prefixed(io.RawIOBase):
    """Replays bytes already read for sniffing, then continues with the stream."""

    def __init__(self, head: bytes, stream: IO[bytes]) -> None:
        self._head = memoryview(head)
        self._stream = stream

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        if self._head:
            n = min(len(view), len(self._head))
            view[:n] = self._head[:n]
            self._head = self._head[n:]
            return n
        readinto = getattr(self._stream, "readinto", None)
        if readinto is not None:
            got = readinto(view)
            return int(got or 0)
        data = self._stream.read(len(view))
        view[: len(data)] = data
        return len(data)


_ISAL_ERROR: type[BaseException] = getattr(isal_zlib, "error")  # noqa: B009 - typed as an instance upstream
_CODEC_ERRORS: tuple[type[BaseException], ...] = (
    OSError, EOFError, ValueError, zlib.error, _ISAL_ERROR, zstandard.ZstdError, lzma.LZMAError,
)


class _Guarded(io.RawIOBase):
    """The decompressed stream: foreign errors become ArchiveError, output is capped."""

    def __init__(self, inner: Any, compression: Compression, max_bytes: int | None) -> None:
        self._inner = inner
        self.compression = compression
        self._max = max_bytes
        self.produced = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        try:
            got = self._inner.readinto(buffer)
        except ArchiveError:
            raise
        except _CODEC_ERRORS as exc:
            raise ArchiveError(f"corrupt {self.compression} stream: {exc}") from exc
        n = int(got or 0)
        self.produced += n
        if self._max is not None and self.produced > self._max:
            raise ArchiveError(
                f"decompressed data exceeds the limit of {self._max} bytes (possible decompression bomb)"
            )
        return n

    def close(self) -> None:
        try:
            self._inner.close()
        finally:
            super().close()


def open_decompressed(
    stream: BinaryIO, *, max_bytes: int | None = None, expect: Compression | None = None
) -> tuple[Compression, io.RawIOBase]:
    """Sniff ``stream``'s compression and return it with a raw reader of the decompressed bytes.

    ``max_bytes`` caps the decompressed output (ArchiveError beyond it).  ``expect``, when given, must
    match what the magic bytes say.  Closing the returned reader does not close ``stream``.
    """
    head = _read_head(stream)
    comp = detect_compression(head)
    if expect is not None and expect is not Compression.NONE and comp is not expect:
        raise ArchiveError(f"expected a {expect} stream but the data is {comp}")
    source: Any = _Prefixed(head, stream)
    inner: Any
    if comp is Compression.GZIP:
        inner = igzip.IGzipFile(fileobj=io.BufferedReader(source, CHUNK), mode="rb")  # type: ignore[no-untyped-call]
    elif comp is Compression.ZSTD:
        inner = zstandard.ZstdDecompressor().stream_reader(
            source, read_size=CHUNK, read_across_frames=True, closefd=False
        )
    elif comp is Compression.BZIP2:
        inner = bz2.BZ2File(source, "rb")
    elif comp is Compression.XZ:
        inner = lzma.LZMAFile(source, "rb")  # noqa: SIM115 - returned open, closed by _Guarded.close
    else:
        inner = source
    return comp, _Guarded(inner, comp, max_bytes)


def _read_head(stream: BinaryIO) -> bytes:
    head = b""
    try:
        while len(head) < MAGIC_LENGTH:
            chunk = stream.read(MAGIC_LENGTH - len(head))
            if not chunk:
                break
            head += chunk
    except OSError as exc:
        raise ArchiveError(f"cannot read archive: {exc}") from exc
    return head


# --------------------------------------------------------------------------------------------- writing


class Compressor(Protocol):
    """A streaming compressor: bytes in, compressed bytes out (possibly empty until ``flush``)."""

    def compress(self, data: bytes | bytearray | memoryview, /) -> bytes: ...

    def flush(self) -> bytes: ...


class _Identity:
    def compress(self, data: bytes | bytearray | memoryview, /) -> bytes:
        return bytes(data)

    def flush(self) -> bytes:
        return b""


class _Zstd:
    def __init__(self, level: int) -> None:
        self._obj = zstandard.ZstdCompressor(level=level).compressobj()

    def compress(self, data: bytes | bytearray | memoryview, /) -> bytes:
        return self._obj.compress(data)

    def flush(self) -> bytes:
        return self._obj.flush()


def new_compressor(compression: Compression | str, level: int | None = None) -> Compressor:
    """A fresh compressor; gzip output carries no name and mtime 0, so equal input gives equal bytes."""
    comp = Compression.parse(compression)
    if comp is Compression.GZIP:
        lvl = GZIP_FAST_LEVEL if level is None else level
        if not isal_zlib.ISAL_BEST_SPEED <= lvl <= isal_zlib.ISAL_BEST_COMPRESSION:
            raise ArchiveError(f"gzip level {lvl} out of range 0..3 (isal levels)")
        obj: Compressor = isal_zlib.compressobj(lvl, isal_zlib.DEFLATED, 31)
        return obj
    if comp is Compression.ZSTD:
        try:
            return _Zstd(ZSTD_DEFAULT_LEVEL if level is None else level)
        except zstandard.ZstdError as exc:
            raise ArchiveError(f"bad zstd level {level}: {exc}") from exc
    if comp is Compression.NONE:
        return _Identity()
    raise ArchiveError(f"dockyard does not write {comp} layers (use gzip, zstd or none)")


def decompress_bytes(data: bytes, *, max_bytes: int | None = None) -> bytes:
    """Whole-buffer convenience for small blobs (tests, configs); same guard and errors."""
    _, reader = open_decompressed(io.BytesIO(data), max_bytes=max_bytes)
    with io.BufferedReader(reader, CHUNK) as buffered:
        return buffered.read()
