"""Random access to the members of an image archive (``docker save`` / OCI archive tar).

The archive is opened seekable: tarfile reads every header once, then each member is streamed from
its offset when asked for.  Paths named inside the archive (manifest.json's ``Config`` and ``Layers``,
blob paths) are resolved lexically and refused when they would leave the archive; symlinks and
hardlinks between members (``docker save`` links duplicate layers) are followed inside the archive only.
A compressed archive, or one that cannot seek (stdin), is first spooled, decompressed, into an
anonymous temp file in the store (gone when closed, even after SIGKILL).
"""

from __future__ import annotations

import io
import posixpath
import shutil
import tarfile
import tempfile
from pathlib import Path
from types import TracebackType
from typing import IO, Any, BinaryIO

from engine.archive.compression import CHUNK, Compression, detect_compression, open_decompressed
from engine.errors import ArchiveError, EngineError, UnsafeArchiveError, from_os_error

MAX_LINK_HOPS = 40


class _MemberReader(io.RawIOBase):
    """A member's data; tar read errors (truncation) become ArchiveError."""

    def __init__(self, inner: IO[bytes], name: str) -> None:
        self._inner = inner
        self._name = name

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        try:
            data = self._inner.read(len(buffer))
        except (tarfile.TarError, OSError, EOFError) as exc:
            raise ArchiveError(f"archive member {self._name!r} is truncated or unreadable: {exc}") from exc
        n = len(data)
        memoryview(buffer).cast("B")[:n] = data
        return n

    def close(self) -> None:
        try:
            self._inner.close()
        finally:
            super().close()


def clean_path(path: str, what: str) -> str:
    """``path`` (as written in manifest.json or index.json) normalised, or UnsafeArchiveError."""
    if not isinstance(path, str) or not path or "\x00" in path:
        raise ArchiveError(f"{what}: invalid path {path!r}")
    if path.startswith("/"):
        raise UnsafeArchiveError(f"{what}: path {path!r} escapes the archive (absolute path)")
    normal = posixpath.normpath(path)
    if normal == ".." or normal.startswith("../"):
        raise UnsafeArchiveError(f"{what}: path {path!r} escapes the archive")
    return "" if normal == "." else normal


class ArchiveMembers:
    """The members of an archive file, by cleaned name.  Use as a context manager."""

    def __init__(self, source: BinaryIO, *, label: str, spool_dir: Path | None = None) -> None:
        self.label = label
        self._spool: IO[bytes] | None = None
        try:
            self._open(source, spool_dir)
        except BaseException:
            if self._spool is not None:
                self._spool.close()
            raise

    def _open(self, source: BinaryIO, spool_dir: Path | None) -> None:
        label = self.label
        fileobj = self._seekable_plain(source, spool_dir)
        try:
            fileobj.seek(0, io.SEEK_END)
            self._size = fileobj.tell()
            fileobj.seek(0)
        except OSError as exc:
            raise ArchiveError(f"{label}: cannot read: {exc}") from exc
        if self._size == 0:
            raise ArchiveError(f"{label}: empty file (not a tar archive)")
        try:
            self._tar = tarfile.open(fileobj=fileobj, mode="r:")  # noqa: SIM115 (closed by close())
            members = self._tar.getmembers()
        except tarfile.ReadError as exc:
            if "unexpected end of data" in str(exc) or "truncated" in str(exc):
                raise ArchiveError(f"{label}: truncated tar archive ({exc})") from exc
            raise ArchiveError(f"{label}: not a tar archive ({exc})") from exc
        except (tarfile.TarError, EOFError, OSError) as exc:
            raise ArchiveError(f"{label}: corrupt or truncated tar archive ({exc})") from exc
        self._check_end_marker(fileobj, members)
        self._by_name: dict[str, tarfile.TarInfo] = {}
        for member in members:
            if member.isreg() and member.offset_data + member.size > self._size:
                raise ArchiveError(f"{label}: truncated archive ({member.name!r} ends past the end of the file)")
            name = posixpath.normpath(member.name.lstrip("/"))
            if name == "." or name == ".." or name.startswith("../"):
                continue  # never addressed by anything we look up
            self._by_name[name] = member

    def _check_end_marker(self, fileobj: BinaryIO, members: list[tarfile.TarInfo]) -> None:
        """A tar ends with zero blocks; a file cut between two members has none (tarfile does not say)."""
        if not members:
            return
        last = members[-1]
        end = last.offset_data + (-(-last.size // tarfile.BLOCKSIZE) * tarfile.BLOCKSIZE if last.isreg() else 0)
        try:
            fileobj.seek(end)
            block = fileobj.read(tarfile.BLOCKSIZE)
            fileobj.seek(0)
        except OSError as exc:
            raise ArchiveError(f"{self.label}: cannot read: {exc}") from exc
        if len(block) < tarfile.BLOCKSIZE or block.strip(b"\0"):
            raise ArchiveError(f"{self.label}: truncated tar archive (it ends without an end-of-archive marker)")

    def _seekable_plain(self, source: BinaryIO, spool_dir: Path | None) -> BinaryIO:
        seekable = False
        try:
            seekable = source.seekable()
            if seekable:
                start = source.tell()
        except (OSError, ValueError):
            seekable = False
        if seekable:
            head = source.read(6)
            source.seek(start)
            if detect_compression(head) is Compression.NONE:
                return source
        # Not seekable or compressed: spool the plain tar to an anonymous file in the store.
        try:
            spool = tempfile.TemporaryFile(dir=spool_dir)  # noqa: SIM115 (closed by close())
        except OSError as exc:
            raise from_os_error(exc, "cannot create a temporary file for the archive") from exc
        self._spool = spool
        try:
            _, reader = open_decompressed(source)
            with io.BufferedReader(reader, CHUNK) as buffered:
                shutil.copyfileobj(buffered, spool, CHUNK)
            spool.flush()
        except EngineError:
            raise
        except OSError as exc:
            raise from_os_error(exc, f"{self.label}: cannot spool the archive") from exc
        spool.seek(0)
        return spool

    def __enter__(self) -> ArchiveMembers:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        self._tar.close()
        if self._spool is not None:
            self._spool.close()

    def names(self) -> list[str]:
        return list(self._by_name)

    def exists(self, path: str) -> bool:
        try:
            return clean_path(path, "archive") in self._by_name
        except ArchiveError:
            return False

    def resolve(self, path: str, what: str) -> tarfile.TarInfo:
        """The regular-file member ``path`` names (links followed inside the archive)."""
        name = clean_path(path, what)
        for _ in range(MAX_LINK_HOPS):
            member = self._by_name.get(name)
            if member is None:
                raise ArchiveError(f"{self.label}: {what} {path!r} is missing from the archive")
            if member.isreg():
                return member
            if member.issym():
                target = member.linkname
                joined = target if target.startswith("/") else posixpath.join(posixpath.dirname(name), target)
                name = clean_path(joined.lstrip("/") if target.startswith("/") else joined,
                                  f"{what} (link {member.name!r})")
                continue
            if member.islnk():
                name = clean_path(member.linkname, f"{what} (hardlink {member.name!r})")
                continue
            raise ArchiveError(f"{self.label}: {what} {path!r} is not a regular file in the archive")
        raise ArchiveError(f"{self.label}: {what} {path!r}: too many levels of links")

    def open(self, path: str, what: str) -> BinaryIO:
        member = self.resolve(path, what)
        handle = self._tar.extractfile(member)
        if handle is None:  # pragma: no cover - resolve() returns regular files only
            raise ArchiveError(f"{self.label}: cannot read {what} {path!r}")
        return io.BufferedReader(_MemberReader(handle, member.name), CHUNK)

    def size(self, path: str, what: str) -> int:
        return self.resolve(path, what).size

    def read(self, path: str, what: str, limit: int) -> bytes:
        member = self.resolve(path, what)
        if member.size > limit:
            raise ArchiveError(f"{self.label}: {what} {path!r} is larger than {limit} bytes")
        with self.open(path, what) as fh:
            data = fh.read()
        if len(data) != member.size:
            raise ArchiveError(f"{self.label}: {what} {path!r} is truncated")
        return data
