"""Safe layer extraction: every path is resolved under the destination by hand, never by the kernel.

Each directory is reached by walking its components from a descriptor of the destination root with
``O_PATH | O_NOFOLLOW | O_DIRECTORY`` opens; symlinks met on the way are read and resolved *by us*
(absolute targets restart at the root, relative ones apply to the real directory stack), and any ``..``
that would climb above the root is refused.  Files are then created with ``*at`` calls relative to the
resolved parent descriptor, the last component never followed.  Nothing outside the destination can be
created, changed, removed or read through a link, whatever order the archive's entries come in.

Whiteouts (OCI image spec, "Whiteouts"): in ``apply`` mode ``.wh.<name>`` removes ``<name>`` from lower
layers and ``.wh..wh..opq`` removes a directory's lower-layer children, keeping what this layer adds
(before or after the marker); in ``overlay`` mode they become overlayfs whiteouts (a 0/0 character
device, ``trusted.overlay.opaque=y``) so each layer can be a separate lowerdir; in ``none`` mode they are
extracted as plain files.
"""

from __future__ import annotations

import errno
import os
import shutil
import stat
import tarfile
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Literal

from engine.archive.reader import LayerReader, clean_member_path
from engine.errors import ArchiveError, EngineError, UnsafeArchiveError, from_os_error

WhiteoutMode = Literal["apply", "overlay", "none"]
EntryCallback = Callable[[str, int], None]

WHITEOUT_PREFIX = ".wh."
WHITEOUT_META_PREFIX = ".wh..wh."
WHITEOUT_OPAQUE = ".wh..wh..opq"
OVERLAY_OPAQUE_XATTR = "trusted.overlay.opaque"
IMPLIED_DIR_MODE = 0o755
MAX_SYMLINK_HOPS = 40
_FD_CACHE = 128
_DIR_OPEN = os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_FILE_CREATE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
_XATTR_PREFIX = "SCHILY.xattr."
# Never taken from an archive: overlay metadata would let a layer forge whiteouts or redirects in a
# snapshot used as a lowerdir; selinux labels belong to the host that wrote the layer.
_REFUSED_XATTRS = ("trusted.overlay.", "user.overlay.", "security.selinux")
_XATTR_IGNORABLE = {errno.ENOTSUP, errno.EOPNOTSUPP, errno.EPERM, errno.EACCES, errno.ENODATA}
_UINT32 = 1 << 32


@dataclass(slots=True)
class ExtractStats:
    """What one extraction did (filled in as it goes).  ``diff_id``: sha256 of the uncompressed tar."""

    entries: int = 0
    files: int = 0
    dirs: int = 0
    symlinks: int = 0
    hardlinks: int = 0
    devices: int = 0
    fifos: int = 0
    whiteouts: int = 0
    opaque_dirs: int = 0
    skipped: int = 0
    xattrs_skipped: int = 0
    bytes_written: int = 0
    uncompressed_size: int = 0
    diff_id: str = ""
    compression: str = ""


@dataclass(frozen=True, slots=True)
class _Dir:
    fd: int
    real: tuple[str, ...]
    dev: int
    ino: int
    mode: int
    gid: int


class _Missing(Exception):
    """A path component does not exist and we were asked not to create it."""


def extract_layer(
    stream: BinaryIO,
    dest: Path,
    *,
    apply_whiteouts: bool = True,
    same_owner: bool | None = None,
    on_entry: EntryCallback | None = None,
    max_bytes: int | None = None,
    expected_diff_id: str | None = None,
) -> ExtractStats:
    """Apply a layer (plain, gzip, zstd, bzip2 or xz tar) onto ``dest``, created if missing.

    ``same_owner`` (default: running as root) applies the archive's uid/gid.  Set-id bits survive only
    when running as root; device nodes are created only when the kernel lets us (otherwise skipped).
    ``max_bytes`` caps the decompressed size; ``expected_diff_id`` is checked at the end
    (DigestMismatchError).  Raises ArchiveError / UnsafeArchiveError / NoSpaceError.
    """
    return _extract(
        stream, dest, "apply" if apply_whiteouts else "none", same_owner, on_entry, max_bytes,
        expected_diff_id,
    )


def extract_layer_for_overlay(
    stream: BinaryIO,
    dest: Path,
    *,
    same_owner: bool | None = None,
    on_entry: EntryCallback | None = None,
    max_bytes: int | None = None,
    expected_diff_id: str | None = None,
) -> ExtractStats:
    """Extract one layer into its own (normally empty) snapshot directory for use as an overlay lowerdir.

    Whiteouts become overlayfs whiteouts: ``.wh.x`` a 0/0 character device ``x``, ``.wh..wh..opq`` the
    xattr ``trusted.overlay.opaque=y`` on its directory.  Needs root (mknod, trusted.* xattrs) as soon as
    the layer contains a whiteout.
    """
    return _extract(stream, dest, "overlay", same_owner, on_entry, max_bytes, expected_diff_id)


def _extract(
    stream: BinaryIO,
    dest: Path,
    mode: WhiteoutMode,
    same_owner: bool | None,
    on_entry: EntryCallback | None,
    max_bytes: int | None,
    expected_diff_id: str | None,
) -> ExtractStats:
    is_root = os.geteuid() == 0
    try:
        os.makedirs(dest, exist_ok=True)
        root_fd = os.open(dest, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as exc:
        raise from_os_error(exc, f"cannot open extraction directory {dest}") from exc
    extractor = _Extractor(root_fd, mode, is_root if same_owner is None else same_owner, is_root)
    try:
        with LayerReader(stream, max_bytes=max_bytes, expected_diff_id=expected_diff_id) as reader:
            for member in reader:
                extractor.entry(member, reader)
                if on_entry is not None:
                    on_entry(member.name, member.size)
            extractor.finish_dirs()
            stats = extractor.counts
            stats.diff_id = reader.finish()
            stats.uncompressed_size = reader.uncompressed_size
            stats.compression = reader.compression.value
            return stats
    finally:
        extractor.close()


class _Extractor:
    def __init__(self, root_fd: int, mode: WhiteoutMode, same_owner: bool, is_root: bool) -> None:
        st = os.fstat(root_fd)
        self.root = _Dir(root_fd, (), st.st_dev, st.st_ino, st.st_mode, st.st_gid)
        self.mode = mode
        self.same_owner = same_owner
        self.is_root = is_root
        self.counts = ExtractStats()
        self._real: OrderedDict[tuple[str, ...], _Dir] = OrderedDict()
        self._retired: list[int] = []
        self._logical: dict[tuple[str, ...], tuple[str, ...]] = {}
        self._added: set[tuple[str, ...]] = set()
        # real path -> (dev, ino, mode, mtime_ns): applied last, deepest first
        self._dir_meta: dict[tuple[str, ...], tuple[int, int, int, int]] = {}
        self._euid = os.geteuid()
        self._egid = os.getegid()

    # ------------------------------------------------------------------ descriptors and resolution

    def close(self) -> None:
        self._close_retired()
        for d in self._real.values():
            os.close(d.fd)
        self._real.clear()
        os.close(self.root.fd)

    def _forget(self, real: tuple[str, ...], *, was_dir: bool) -> None:
        """``real`` was removed: forget resolutions through it and descriptors below it.

        Descriptors are retired, not closed, until the current entry is done: a caller up the stack
        may still hold one, and a closed number could be reused for an unrelated file.
        """
        self._logical.clear()
        if not was_dir:
            return
        n = len(real)
        for key in [k for k in self._real if k[:n] == real]:
            self._retired.append(self._real.pop(key).fd)

    def _close_retired(self) -> None:
        for fd in self._retired:
            os.close(fd)
        self._retired.clear()

    def _open_real(self, real: tuple[str, ...]) -> _Dir:
        """A descriptor for a path made only of real directories (no symlinks) under the root."""
        if not real:
            return self.root
        cached = self._real.get(real)
        if cached is not None:
            self._real.move_to_end(real)
            return cached
        parent = self._open_real(real[:-1])
        fd = os.open(real[-1], _DIR_OPEN, dir_fd=parent.fd)
        st = os.fstat(fd)
        if not stat.S_ISDIR(st.st_mode):  # O_PATH|O_NOFOLLOW on a symlink yields the link itself
            os.close(fd)
            raise ArchiveError(f"{'/'.join(real)} is not a directory")
        d = _Dir(fd, real, st.st_dev, st.st_ino, st.st_mode, st.st_gid)
        self._real[real] = d
        if len(self._real) > _FD_CACHE:
            _, old = self._real.popitem(last=False)
            self._retired.append(old.fd)
        return d

    def _resolve(self, parts: tuple[str, ...], *, create: bool, what: str) -> _Dir:
        """Resolve a directory path from the archive the way a chroot would, refusing escapes."""
        real = self._logical.get(parts)
        if real is not None:
            return self._open_real(real)
        stack: list[str] = []
        pending = deque(parts)
        hops = 0
        while pending:
            comp = pending.popleft()
            if comp in ("", "."):
                continue
            if comp == "..":
                if not stack:
                    raise UnsafeArchiveError(
                        f"{what}: path escapes from parent (a symlink points above the destination)"
                    )
                stack.pop()
                continue
            parent = self._open_real(tuple(stack))
            try:
                st = os.stat(comp, dir_fd=parent.fd, follow_symlinks=False)
            except FileNotFoundError:
                if not create:
                    raise _Missing() from None
                os.mkdir(comp, IMPLIED_DIR_MODE, dir_fd=parent.fd)
                os.chmod(comp, IMPLIED_DIR_MODE, dir_fd=parent.fd)  # whatever the umask
                self._added.add((*stack, comp))
                stack.append(comp)
                continue
            if stat.S_ISLNK(st.st_mode):
                hops += 1
                if hops > MAX_SYMLINK_HOPS:
                    raise ArchiveError(f"{what}: too many levels of symbolic links")
                target = os.readlink(comp, dir_fd=parent.fd)
                if target.startswith("/"):
                    stack.clear()
                pending.extendleft(reversed(target.split("/")))
                continue
            if not stat.S_ISDIR(st.st_mode):
                raise ArchiveError(f"{what}: {'/'.join((*stack, comp))} is not a directory")
            stack.append(comp)
        real = tuple(stack)
        d = self._open_real(real)
        self._logical[parts] = real
        return d

    # ------------------------------------------------------------------ entries

    def entry(self, member: tarfile.TarInfo, reader: LayerReader) -> None:
        name = member.name
        try:
            self._entry(member, reader)
        except EngineError:
            raise
        except _Missing:
            raise ArchiveError(f"cannot extract {name!r}: a parent directory is missing") from None
        except OSError as exc:
            if exc.errno == errno.ENOSPC:
                raise from_os_error(exc, f"extracting {name!r}") from exc
            raise ArchiveError(f"cannot extract {name!r}: {exc.strerror or exc}") from exc
        finally:
            if self._retired:
                self._close_retired()

    def _entry(self, member: tarfile.TarInfo, reader: LayerReader) -> None:
        self.counts.entries += 1
        if member.ischr() or member.isblk():
            _check_device_numbers(member)  # before touching the filesystem
        parts = clean_member_path(member.name)
        if not parts:
            if not member.isdir():
                raise ArchiveError(f"archive entry {member.name!r} has no name")
            self._defer_dir_meta(self.root, member)
            return
        base = parts[-1]
        if self.mode != "none" and base.startswith(WHITEOUT_PREFIX):
            self._whiteout(parts, member.name)
            return
        parent = self._resolve(parts[:-1], create=True, what=member.name)
        if member.isdir():
            self._dir(parent, base, member)
        elif member.isreg():
            self._file(parent, base, member, reader)
        elif member.issym():
            self._symlink(parent, base, member)
        elif member.islnk():
            self._hardlink(parent, base, member)
        elif member.ischr() or member.isblk() or member.isfifo():
            self._node(parent, base, member)
        else:
            raise ArchiveError(f"archive entry {member.name!r} has unsupported type {member.type!r}")
        self._added.add((*parent.real, base))

    def _make_room(self, parent: _Dir, name: str, *, keep_dir: bool = False) -> bool:
        """Remove what is at parent/name (never following it).  Returns True if a directory was kept."""
        try:
            st = os.stat(name, dir_fd=parent.fd, follow_symlinks=False)
        except FileNotFoundError:
            return False
        if stat.S_ISDIR(st.st_mode):
            if keep_dir:
                return True
            self._forget((*parent.real, name), was_dir=True)
            shutil.rmtree(name, dir_fd=parent.fd)
        else:
            if stat.S_ISLNK(st.st_mode):
                self._forget((*parent.real, name), was_dir=False)
            os.unlink(name, dir_fd=parent.fd)
        return False

    def _dir(self, parent: _Dir, name: str, member: tarfile.TarInfo) -> None:
        try:
            os.mkdir(name, 0o700, dir_fd=parent.fd)
        except FileExistsError:
            if not self._make_room(parent, name, keep_dir=True):
                os.mkdir(name, 0o700, dir_fd=parent.fd)
        d = self._open_real((*parent.real, name))
        self._chown(f"/proc/self/fd/{d.fd}", member, parent, follow=True)
        self._xattrs(f"/proc/self/fd/{d.fd}", member, follow=True)
        self._defer_dir_meta(d, member)
        self.counts.dirs += 1

    def _defer_dir_meta(self, d: _Dir, member: tarfile.TarInfo) -> None:
        self._dir_meta[d.real] = (d.dev, d.ino, self._mode_bits(member), _mtime_ns(member))

    def finish_dirs(self) -> None:
        for real in sorted(self._dir_meta, key=len, reverse=True):
            dev, ino, mode, mtime = self._dir_meta[real]
            try:
                d = self._open_real(real)
            except (OSError, ArchiveError):
                continue  # removed or replaced later in the layer
            if (d.dev, d.ino) != (dev, ino):
                continue
            path = f"/proc/self/fd/{d.fd}"
            try:
                os.chmod(path, mode)
                os.utime(path, ns=(mtime, mtime))
            except OSError as exc:
                raise ArchiveError(f"cannot set attributes of {'/'.join(real) or '/'}: {exc.strerror}") from exc

    def _file(self, parent: _Dir, name: str, member: tarfile.TarInfo, reader: LayerReader) -> None:
        try:
            fd = os.open(name, _FILE_CREATE, 0o600, dir_fd=parent.fd)
        except FileExistsError:
            self._make_room(parent, name)
            fd = os.open(name, _FILE_CREATE, 0o600, dir_fd=parent.fd)
        try:
            written = 0
            for chunk in reader.chunks(member):
                while chunk:
                    n = os.write(fd, chunk)
                    chunk = chunk[n:]
                    written += n
            self.counts.bytes_written += written
            self._chown(fd, member, parent, follow=True)
            mode = self._mode_bits(member)
            if mode != 0o600:
                os.fchmod(fd, mode)
            self._xattrs(fd, member, follow=True)
            mtime = _mtime_ns(member)
            os.utime(fd, ns=(mtime, mtime))
        finally:
            os.close(fd)
        self.counts.files += 1

    def _symlink(self, parent: _Dir, name: str, member: tarfile.TarInfo) -> None:
        try:
            os.symlink(member.linkname, name, dir_fd=parent.fd)
        except FileExistsError:
            self._make_room(parent, name)
            os.symlink(member.linkname, name, dir_fd=parent.fd)
        self._finish_node(parent, name, member, chmod=False)
        self.counts.symlinks += 1

    def _hardlink(self, parent: _Dir, name: str, member: tarfile.TarInfo) -> None:
        target = clean_member_path(member.linkname)
        if not target:
            raise UnsafeArchiveError(f"hardlink {member.name!r} has an invalid target {member.linkname!r}")
        try:
            src = self._resolve(target[:-1], create=False, what=member.name)
        except _Missing:
            raise ArchiveError(f"hardlink {member.name!r}: target {member.linkname!r} does not exist") from None
        src_name = target[-1]
        try:
            st = os.stat(src_name, dir_fd=src.fd, follow_symlinks=False)
        except FileNotFoundError:
            raise ArchiveError(f"hardlink {member.name!r}: target {member.linkname!r} does not exist") from None
        if stat.S_ISDIR(st.st_mode):
            raise ArchiveError(f"hardlink {member.name!r}: target {member.linkname!r} is a directory")
        try:
            os.link(src_name, name, src_dir_fd=src.fd, dst_dir_fd=parent.fd, follow_symlinks=False)
        except FileExistsError:
            try:
                here = os.stat(name, dir_fd=parent.fd, follow_symlinks=False)
            except FileNotFoundError:
                here = None
            if here is not None and (here.st_dev, here.st_ino) == (st.st_dev, st.st_ino):
                return  # already that file
            self._make_room(parent, name)
            os.link(src_name, name, src_dir_fd=src.fd, dst_dir_fd=parent.fd, follow_symlinks=False)
        self.counts.hardlinks += 1

    def _node(self, parent: _Dir, name: str, member: tarfile.TarInfo) -> None:
        if member.isfifo():
            kind, dev = stat.S_IFIFO, 0
        else:
            kind = stat.S_IFCHR if member.ischr() else stat.S_IFBLK
            dev = os.makedev(member.devmajor, member.devminor)
        self._make_room(parent, name)
        try:
            os.mknod(name, kind | 0o600, dev, dir_fd=parent.fd)
        except PermissionError:
            self.counts.skipped += 1  # device nodes need CAP_MKNOD; a non-root unpack skips them
            return
        self._finish_node(parent, name, member, chmod=True)
        if member.isfifo():
            self.counts.fifos += 1
        else:
            self.counts.devices += 1

    def _finish_node(self, parent: _Dir, name: str, member: tarfile.TarInfo, *, chmod: bool) -> None:
        path = f"/proc/self/fd/{parent.fd}/{name}"
        self._chown(path, member, parent, follow=False)
        if chmod:
            os.chmod(name, self._mode_bits(member), dir_fd=parent.fd)
        self._xattrs(path, member, follow=False)
        mtime = _mtime_ns(member)
        os.utime(name, ns=(mtime, mtime), dir_fd=parent.fd, follow_symlinks=False)

    # ------------------------------------------------------------------ metadata helpers

    def _mode_bits(self, member: tarfile.TarInfo) -> int:
        mode = member.mode & 0o7777
        if not self.is_root:
            mode &= ~(stat.S_ISUID | stat.S_ISGID)
        return mode

    def _chown(self, target: int | str, member: tarfile.TarInfo, parent: _Dir, *, follow: bool) -> None:
        if not self.same_owner:
            return
        if (
            member.uid == self._euid
            and member.gid == self._egid
            and not parent.mode & stat.S_ISGID
            and parent.gid == self._egid
        ):
            return  # what the kernel gave the new inode already
        os.chown(target, member.uid, member.gid, follow_symlinks=follow)

    def _xattrs(self, target: int | str, member: tarfile.TarInfo, *, follow: bool) -> None:
        if not member.pax_headers:
            return
        for key, value in member.pax_headers.items():
            if not key.startswith(_XATTR_PREFIX):
                continue
            attr = key[len(_XATTR_PREFIX):]
            if not attr or attr.startswith(_REFUSED_XATTRS):
                self.counts.xattrs_skipped += 1
                continue
            try:
                os.setxattr(target, attr, value.encode("utf-8", "surrogateescape"), follow_symlinks=follow)
            except OSError as exc:
                if exc.errno not in _XATTR_IGNORABLE:
                    raise
                self.counts.xattrs_skipped += 1

    # ------------------------------------------------------------------ whiteouts

    def _whiteout(self, parts: tuple[str, ...], raw_name: str) -> None:
        base = parts[-1]
        if base == WHITEOUT_OPAQUE:
            self._opaque(parts[:-1], raw_name)
            return
        if base.startswith(WHITEOUT_META_PREFIX):
            self.counts.skipped += 1  # other AUFS metadata (.wh..wh.plnk, .wh..wh.aufs): not content
            return
        target = base[len(WHITEOUT_PREFIX):]
        if target in ("", ".", ".."):
            raise UnsafeArchiveError(f"invalid whiteout entry {raw_name!r}")
        self.counts.whiteouts += 1
        if self.mode == "overlay":
            parent = self._resolve(parts[:-1], create=True, what=raw_name)
            self._require_root(raw_name)
            self._make_room(parent, target)
            os.mknod(target, stat.S_IFCHR, os.makedev(0, 0), dir_fd=parent.fd)
            self._added.add((*parent.real, target))
            return
        try:
            parent = self._resolve(parts[:-1], create=False, what=raw_name)
        except _Missing:
            return  # nothing below to hide
        if (*parent.real, target) in self._added:
            return  # whiteouts hide lower layers only, never this layer's own entries
        self._make_room(parent, target)

    def _opaque(self, dir_parts: tuple[str, ...], raw_name: str) -> None:
        self.counts.opaque_dirs += 1
        if self.mode == "overlay":
            self._require_root(raw_name)
            d = self._resolve(dir_parts, create=True, what=raw_name)
            os.setxattr(f"/proc/self/fd/{d.fd}", OVERLAY_OPAQUE_XATTR, b"y")
            return
        try:
            d = self._resolve(dir_parts, create=False, what=raw_name)
        except _Missing:
            return
        self._clear_lower(d)

    def _clear_lower(self, d: _Dir) -> None:
        """Remove everything under ``d`` that this layer did not put there."""
        fd = os.open(".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=d.fd)
        try:
            names = os.listdir(fd)
        finally:
            os.close(fd)
        for name in names:
            path = (*d.real, name)
            if path not in self._added:
                self._make_room(d, name)
                continue
            st = os.stat(name, dir_fd=d.fd, follow_symlinks=False)
            if stat.S_ISDIR(st.st_mode):
                self._clear_lower(self._open_real(path))

    def _require_root(self, raw_name: str) -> None:
        if not self.is_root:
            raise ArchiveError(
                f"overlay-style extraction of whiteout {raw_name!r} needs root (mknod, trusted.* xattrs)"
            )


def _check_device_numbers(member: tarfile.TarInfo) -> None:
    for label, value in (("major", member.devmajor), ("minor", member.devminor)):
        if not 0 <= value < _UINT32:
            raise ArchiveError(f"invalid archive: device {label} number {value} of {member.name!r} out of range")


def _mtime_ns(member: tarfile.TarInfo) -> int:
    return int(member.mtime * 1_000_000_000)


__all__ = ["ExtractStats", "WhiteoutMode", "extract_layer", "extract_layer_for_overlay"]
