"""Write a layer tar from files on disk: deterministic, compressed and hashed in one streaming pass.

Entries come from a *source* (an iterator of :class:`LayerItem`): a whole directory, an overlayfs upper
directory (whose whiteouts become OCI ``.wh.`` entries) or an explicit list of ``(path in tar, file)``
pairs for COPY.  The writer emits PAX headers with numeric ids only (uname/gname empty), integer
mtimes optionally clamped (``SOURCE_DATE_EPOCH``), hardlinks by (st_dev, st_ino), xattrs except
``security.selinux`` and overlay metadata; the tar bytes are hashed (diff id), compressed, hashed again
(blob digest) and written to ``out`` as they are produced.
"""

from __future__ import annotations

import errno
import hashlib
import os
import stat
import tarfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from engine.archive.compression import CHUNK, Compression, media_type_for, new_compressor
from engine.archive.untar import OVERLAY_OPAQUE_XATTR, WHITEOUT_OPAQUE, WHITEOUT_PREFIX
from engine.errors import ArchiveError, EngineError, from_os_error
from engine.oci.digest import Digest

BLOCK = tarfile.BLOCKSIZE
_SKIPPED_XATTRS = ("security.selinux", "trusted.overlay.", "user.overlay.")
_OPAQUE_XATTRS = (OVERLAY_OPAQUE_XATTR, "user.overlay.opaque")
_UNREPRESENTABLE = ("trusted.overlay.redirect", "trusted.overlay.metacopy", "user.overlay.redirect",
                    "user.overlay.metacopy")
_XATTR_UNSUPPORTED = {errno.ENOTSUP, errno.EOPNOTSUPP}


@dataclass(frozen=True, slots=True)
class LayerItem:
    """One entry to write.  ``source`` None means an empty marker file (a whiteout)."""

    name: str
    source: Path | None = None
    uid: int | None = None
    gid: int | None = None
    mode: int | None = None


@dataclass(frozen=True, slots=True)
class LayerResult:
    diff_id: Digest
    digest: Digest
    size: int
    uncompressed_size: int
    compression: Compression
    media_type: str


# --------------------------------------------------------------------------------------------- sources


def _sorted_children(directory: Path) -> list[os.DirEntry[str]]:
    try:
        with os.scandir(directory) as it:
            return sorted(it, key=lambda e: e.name)
    except OSError as exc:
        raise ArchiveError(f"cannot list {directory}: {exc.strerror}") from exc


def directory_items(root: Path, *, prefix: str = "") -> Iterator[LayerItem]:
    """Everything below ``root`` (not ``root`` itself unless ``prefix`` names it), parents first,
    names sorted per directory.  With ``prefix`` the entries are placed under that tar path."""
    base = prefix.strip("/")
    if base:
        yield LayerItem(base, root)
    yield from _walk(root, base)


def _walk(directory: Path, tar_dir: str) -> Iterator[LayerItem]:
    for entry in _sorted_children(directory):
        name = f"{tar_dir}/{entry.name}" if tar_dir else entry.name
        yield LayerItem(name, Path(entry.path))
        if entry.is_dir(follow_symlinks=False):
            yield from _walk(Path(entry.path), name)


def overlay_upper_items(upper: Path) -> Iterator[LayerItem]:
    """The changes recorded in an overlayfs upper directory, as OCI layer entries.

    A 0/0 character device ``x`` becomes ``.wh.x``; a directory marked opaque
    (``trusted.overlay.opaque=y``, or ``user.overlay.opaque`` for userxattr mounts) is followed by its
    ``.wh..wh..opq`` marker.  Only the upper directory is read, never the lower layers.
    """
    yield from _walk_upper(upper, "")


def _walk_upper(directory: Path, tar_dir: str) -> Iterator[LayerItem]:
    children: list[tuple[str, LayerItem, bool]] = []
    for entry in _sorted_children(directory):
        name = f"{tar_dir}/{entry.name}" if tar_dir else entry.name
        st = entry.stat(follow_symlinks=False)
        if stat.S_ISCHR(st.st_mode) and st.st_rdev == 0:
            wh = f"{tar_dir}/{WHITEOUT_PREFIX}{entry.name}" if tar_dir else f"{WHITEOUT_PREFIX}{entry.name}"
            children.append((wh.rsplit("/", 1)[-1], LayerItem(wh), False))
        else:
            children.append((entry.name, LayerItem(name, Path(entry.path)), stat.S_ISDIR(st.st_mode)))
    children.sort(key=lambda c: c[0])
    for _, item, is_dir in children:
        yield item
        if is_dir:
            assert item.source is not None
            if _is_opaque(item.source):
                yield LayerItem(f"{item.name}/{WHITEOUT_OPAQUE}")
            yield from _walk_upper(item.source, item.name)


def _is_opaque(path: Path) -> bool:
    for attr in _OPAQUE_XATTRS:
        try:
            if os.getxattr(path, attr, follow_symlinks=False) == b"y":
                return True
        except OSError as exc:
            if exc.errno not in (errno.ENODATA, *_XATTR_UNSUPPORTED, errno.EPERM):
                raise ArchiveError(f"cannot read xattrs of {path}: {exc.strerror}") from exc
    return False


def file_list_items(
    pairs: Iterable[tuple[str, Path]],
    *,
    recursive: bool = True,
    uid: int | None = None,
    gid: int | None = None,
    mode: int | None = None,
) -> list[LayerItem]:
    """Explicit ``(path in tar, file on disk)`` pairs (COPY), sorted; directories are walked when
    ``recursive``.  ``uid``/``gid``/``mode`` override what the files say (COPY --chown / --chmod)."""
    items: dict[str, LayerItem] = {}
    for tar_path, source in pairs:
        name = tar_path.strip("/")
        if not name:
            raise ArchiveError(f"empty path in tar for {source}")
        items[name] = LayerItem(name, source, uid, gid, mode)
        if recursive and source.is_dir() and not source.is_symlink():
            for item in _walk(source, name):
                items[item.name] = LayerItem(item.name, item.source, uid, gid, mode)
    return [items[k] for k in sorted(items, key=lambda n: n.split("/"))]


# --------------------------------------------------------------------------------------------- writing


class _Sink:
    """tar bytes -> diff-id hash -> compressor -> digest hash -> ``out``, batched in ~1 MiB writes."""

    def __init__(self, out: BinaryIO, compression: Compression, level: int | None) -> None:
        self._out = out
        self._compressor = new_compressor(compression, level)
        self._pending = bytearray()
        self.diff = hashlib.sha256()
        self.blob = hashlib.sha256()
        self.raw_size = 0
        self.size = 0

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if len(data) >= CHUNK:
            self._flush_pending()
            self._push(data)
            return
        self._pending += data
        if len(self._pending) >= CHUNK:
            self._flush_pending()

    def _flush_pending(self) -> None:
        if self._pending:
            self._push(self._pending)
            self._pending = bytearray()

    def _push(self, data: bytes | bytearray | memoryview) -> None:
        self.diff.update(data)
        self.raw_size += len(data)
        self._emit(self._compressor.compress(data))

    def _emit(self, compressed: bytes) -> None:
        if not compressed:
            return
        self.blob.update(compressed)
        self.size += len(compressed)
        try:
            self._out.write(compressed)
        except OSError as exc:
            raise from_os_error(exc, "writing layer blob") from exc

    def close(self) -> None:
        self._flush_pending()
        self._emit(self._compressor.flush())


def write_layer(
    items: Iterable[LayerItem],
    out: BinaryIO,
    *,
    compression: Compression | str = Compression.GZIP,
    level: int | None = None,
    mtime_clamp: int | None = None,
    xattrs: bool = True,
) -> LayerResult:
    """Write ``items`` as a layer tar to ``out``; returns diff id, blob digest and sizes.

    ``mtime_clamp`` (e.g. SOURCE_DATE_EPOCH) caps every mtime.  Sockets are skipped (tar cannot hold
    them).  Raises ArchiveError (unreadable or changing sources), NoSpaceError (``out`` full).
    """
    comp = Compression.parse(compression)
    sink = _Sink(out, comp, level)
    writer = _TarWriter(sink, mtime_clamp, xattrs)
    for item in items:
        writer.add(item)
    sink.write(bytes(2 * BLOCK))
    sink.close()
    return LayerResult(
        diff_id=Digest("sha256", sink.diff.hexdigest()),
        digest=Digest("sha256", sink.blob.hexdigest()),
        size=sink.size,
        uncompressed_size=sink.raw_size,
        compression=comp,
        media_type=media_type_for(comp),
    )


class _TarWriter:
    def __init__(self, sink: _Sink, mtime_clamp: int | None, xattrs: bool) -> None:
        self._sink = sink
        self._clamp = mtime_clamp
        self._xattrs = xattrs
        self._inodes: dict[tuple[int, int], str] = {}
        self._buffer = bytearray(CHUNK)

    def add(self, item: LayerItem) -> None:
        try:
            self._add(item)
        except EngineError:
            raise
        except OSError as exc:
            where = item.source if item.source is not None else item.name
            raise ArchiveError(f"cannot add {where} to the layer: {exc.strerror or exc}") from exc

    def _add(self, item: LayerItem) -> None:
        info = tarfile.TarInfo(item.name)
        info.uname = info.gname = ""
        if item.source is None:  # whiteout marker
            info.mode = 0
            info.mtime = 0
            self._header(info)
            return
        st = os.lstat(item.source)
        fmt = stat.S_IFMT(st.st_mode)
        if fmt == stat.S_IFSOCK:
            return
        info.mode = stat.S_IMODE(st.st_mode) if item.mode is None else item.mode
        info.uid = st.st_uid if item.uid is None else item.uid
        info.gid = st.st_gid if item.gid is None else item.gid
        mtime = int(st.st_mtime)
        info.mtime = mtime if self._clamp is None else min(mtime, self._clamp)
        if fmt == stat.S_IFREG and st.st_nlink > 1:
            first = self._inodes.setdefault((st.st_dev, st.st_ino), item.name)
            if first != item.name:
                info.type = tarfile.LNKTYPE
                info.linkname = first
                self._header(info)
                return
        if self._xattrs:
            info.pax_headers = self._xattr_headers(item.source)
        if fmt == stat.S_IFDIR:
            info.type = tarfile.DIRTYPE
        elif fmt == stat.S_IFLNK:
            info.type = tarfile.SYMTYPE
            info.linkname = os.readlink(item.source)
        elif fmt in (stat.S_IFCHR, stat.S_IFBLK):
            info.type = tarfile.CHRTYPE if fmt == stat.S_IFCHR else tarfile.BLKTYPE
            info.devmajor, info.devminor = os.major(st.st_rdev), os.minor(st.st_rdev)
        elif fmt == stat.S_IFIFO:
            info.type = tarfile.FIFOTYPE
        elif fmt == stat.S_IFREG:
            info.size = st.st_size
            self._header(info)
            self._data(item.source, st.st_size)
            return
        self._header(info)

    def _header(self, info: tarfile.TarInfo) -> None:
        self._sink.write(info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape"))

    def _data(self, source: Path, size: int) -> None:
        fd = os.open(source, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        try:
            view = memoryview(self._buffer)
            remaining = size
            while remaining:
                n = os.readv(fd, [view[: min(remaining, CHUNK)]])
                if n == 0:
                    raise ArchiveError(f"{source} shrank while it was being added to the layer")
                self._sink.write(view[:n])
                remaining -= n
        finally:
            os.close(fd)
        if size % BLOCK:
            self._sink.write(bytes(BLOCK - size % BLOCK))

    def _xattr_headers(self, path: Path) -> dict[str, str]:
        try:
            names = os.listxattr(path, follow_symlinks=False)
        except OSError as exc:
            if exc.errno in _XATTR_UNSUPPORTED:
                return {}
            raise
        headers: dict[str, str] = {}
        for attr in sorted(names):
            if attr.startswith(_UNREPRESENTABLE):
                raise ArchiveError(
                    f"{path} carries {attr}: mount the overlay with redirect_dir=off,metacopy=off"
                )
            if attr.startswith(_SKIPPED_XATTRS):
                continue
            value = os.getxattr(path, attr, follow_symlinks=False)
            headers[f"SCHILY.xattr.{attr}"] = value.decode("utf-8", "surrogateescape")
        return headers


__all__ = [
    "LayerItem", "LayerResult", "directory_items", "file_list_items", "overlay_upper_items", "write_layer",
]
