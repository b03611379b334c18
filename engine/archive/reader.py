"""Sequential reading of (possibly compressed) layer tars: headers via tarfile, data in 1 MiB chunks.

tarfile is used only to parse headers.  Its stream mode (``r|``) copies its whole internal buffer on
every small read, which turns archives with many small files quadratic, so we open it in plain ``r:``
mode over :class:`_Sequential`, a buffered reader that supports the only seeks tarfile makes while
iterating: forward ones.  Every decompressed byte is hashed as it passes, so the diff id of the layer is
known when the archive has been read to its end, without a second pass.
"""

from __future__ import annotations

import hashlib
import io
import tarfile
from collections.abc import Iterator
from typing import Any, BinaryIO

from engine.archive.compression import CHUNK, Compression, open_decompressed
from engine.errors import ArchiveError, DigestMismatchError, UnsafeArchiveError

BLOCK = tarfile.BLOCKSIZE
# tarfile reports the end of the archive met right after an extended header (a PAX global header is
# the last entry of some real archives) as a ReadError with one of these messages.
_END_AFTER_EXTENDED_HEADER = frozenset({"end of file header", "empty header"})


class _Hashing(io.RawIOBase):
    """Hashes every byte read through it."""

    def __init__(self, inner: io.RawIOBase) -> None:
        self._inner = inner
        self.hash = hashlib.sha256()
        self.count = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        n = self._inner.readinto(buffer) or 0
        if n:
            self.hash.update(memoryview(buffer)[:n])
            self.count += n
        return n


class _Sequential:
    """A buffered, forward-only file object with ``tell`` and forward ``seek`` (what tarfile needs)."""

    def __init__(self, raw: io.RawIOBase) -> None:
        self._buf = io.BufferedReader(raw, CHUNK)
        self._pos = 0
        self.mode = "rb"

    def read(self, size: int = -1) -> bytes:
        data = self._buf.read(size)
        self._pos += len(data)
        return data

    def readinto(self, buffer: Any) -> int:
        n = self._buf.readinto(buffer)
        self._pos += n
        return n

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        target = offset if whence == io.SEEK_SET else self._pos + offset
        if whence not in (io.SEEK_SET, io.SEEK_CUR) or target < self._pos:
            raise ArchiveError("internal error: backwards seek in a layer stream")
        while self._pos < target:
            skipped = len(self._buf.read(min(CHUNK, target - self._pos)))
            if not skipped:
                break
            self._pos += skipped
        return self._pos

    def drain(self) -> None:
        while self._buf.read(CHUNK):
            pass


def clean_member_path(name: str) -> tuple[str, ...]:
    """The components of an archive member name below the root, or UnsafeArchiveError.

    Leading ``/`` and ``.`` components are dropped; ``..`` is resolved lexically and refused when it
    would climb above the root (``../x``, ``/../x``, ``a/../../x``, a bare ``..``).
    """
    parts: list[str] = []
    for comp in name.split("/"):
        if comp in ("", "."):
            continue
        if comp == "..":
            if not parts:
                raise UnsafeArchiveError(f"archive entry {name!r} escapes the destination (breakout attempt)")
            parts.pop()
        else:
            parts.append(comp)
    return tuple(parts)


class LayerReader:
    """Iterate the members of a layer tar (any supported compression) and read their data.

    Use as a context manager; call :meth:`finish` after the last member to read the stream to its end,
    learn the diff id and have ``expected_diff_id`` checked.
    """

    def __init__(
        self,
        stream: BinaryIO,
        *,
        max_bytes: int | None = None,
        expected_diff_id: str | None = None,
    ) -> None:
        self.compression, decompressed = open_decompressed(stream, max_bytes=max_bytes)
        self._hashing = _Hashing(decompressed)
        self._seq = _Sequential(self._hashing)
        self._expected = expected_diff_id
        self._buffer = bytearray(CHUNK)
        self._tar: tarfile.TarFile | None = None
        try:
            self._tar = tarfile.TarFile(fileobj=self._seq, mode="r")  # type: ignore[arg-type]
        except tarfile.ReadError as exc:
            if str(exc) not in _END_AFTER_EXTENDED_HEADER:  # else only a global header: empty archive
                if "empty file" in str(exc):
                    raise ArchiveError("empty layer stream (not a tar archive)") from exc
                raise ArchiveError(f"not a tar archive ({self.compression}): {exc}") from exc
        except tarfile.TarError as exc:
            raise ArchiveError(f"unreadable tar archive: {exc}") from exc
        self.diff_id: str | None = None

    def __enter__(self) -> LayerReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._tar is not None:
            self._tar.members = []  # type: ignore[attr-defined]

    def __iter__(self) -> Iterator[tarfile.TarInfo]:
        tar = self._tar
        if tar is None:
            return
        while True:
            try:
                member = tar.next()
            except ArchiveError:
                raise
            except tarfile.ReadError as exc:
                if str(exc) in _END_AFTER_EXTENDED_HEADER:
                    return  # a PAX global / GNU long-name header right before the end: nothing follows
                raise ArchiveError(f"corrupt or truncated tar archive: {exc}") from exc
            except (tarfile.TarError, EOFError, OSError) as exc:
                raise ArchiveError(f"corrupt or truncated tar archive: {exc}") from exc
            if member is None:
                return
            tar.members.clear()  # type: ignore[attr-defined]  # tarfile keeps every header; we never look back
            yield member

    def chunks(self, member: tarfile.TarInfo) -> Iterator[memoryview]:
        """The member's data in chunks of up to 1 MiB (each view is valid until the next one)."""
        if member.size <= 0:
            return
        if member.issparse():
            yield from self._sparse_chunks(member)
            return
        self._seq.seek(member.offset_data)
        remaining = member.size
        view = memoryview(self._buffer)
        while remaining:
            want = min(remaining, CHUNK)
            got = self._seq.readinto(view[:want])
            if not got:
                raise ArchiveError(f"truncated tar archive: data of {member.name!r} ends early")
            remaining -= got
            yield view[:got]

    def _sparse_chunks(self, member: tarfile.TarInfo) -> Iterator[memoryview]:
        try:
            handle = self._tar.extractfile(member) if self._tar is not None else None
            if handle is None:
                raise ArchiveError(f"cannot read sparse member {member.name!r}")
            while data := handle.read(CHUNK):
                yield memoryview(data)
        except tarfile.TarError as exc:
            raise ArchiveError(f"corrupt sparse member {member.name!r}: {exc}") from exc

    def finish(self) -> str:
        """Read to the end of the stream, record and verify the diff id; returns it."""
        self._seq.drain()
        self.diff_id = "sha256:" + self._hashing.hash.hexdigest()
        if self._expected is not None and self._expected != self.diff_id:
            raise DigestMismatchError(
                f"layer content hashes to {self.diff_id}, expected diff id {self._expected}"
            )
        return self.diff_id

    @property
    def uncompressed_size(self) -> int:
        return self._hashing.count


__all__ = ["BLOCK", "Compression", "LayerReader", "clean_member_path"]
