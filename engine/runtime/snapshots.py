"""Layer snapshots (one unpacked directory per chain id) and overlayfs root filesystems over them.

Every layer is unpacked once, into ``<snapshots>/<chain id hex>``, by extracting into a temporary
directory next to it and renaming it into place under a per-snapshot lock, so concurrent ``ensure``
calls (two ``run``s, a ``run`` and a build) never see half a snapshot.  Whiteouts become overlay
whiteouts (engine.archive.untar.extract_layer_for_overlay) so each snapshot is a lowerdir of its own.

``prepare_rootfs(lowerdirs, upper, work, target)`` is generic: the builder uses it for RUN steps too.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import hashlib
import os
import shutil
import subprocess
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import BinaryIO

from engine.errors import ContainerRuntimeError, EngineError, StoreError, from_os_error
from engine.oci.digest import Digest

# mount(2) copies at most one page of option data; longer lowerdir lists go through relative paths.
MOUNT_DATA_LIMIT = 4095
MS_RDONLY = 1
MNT_DETACH = 2

LayerOpener = Callable[[int], BinaryIO]


def chain_ids(diff_ids: Sequence[Digest | str]) -> list[Digest]:
    """OCI image spec: ChainID(L0) = DiffID(L0); ChainID(Ln) = sha256(ChainID(Ln-1) + " " + DiffID(Ln))."""
    out: list[Digest] = []
    for diff_id in diff_ids:
        current = diff_id if isinstance(diff_id, Digest) else Digest.parse(diff_id)
        if out:
            current = Digest("sha256", hashlib.sha256(f"{out[-1]} {current}".encode()).hexdigest())
        out.append(current)
    return out


class SnapshotStore:
    """``<root>/<chain id hex>``: the unpacked contents of the layer at the top of that chain."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def path(self, chain_id: Digest) -> Path:
        return self.root / chain_id.hex

    def has(self, chain_id: Digest) -> bool:
        return self.path(chain_id).is_dir()

    def ensure(self, diff_ids: Sequence[Digest | str], open_layer: LayerOpener) -> list[Path]:
        """Unpack the layers not unpacked yet; the lowerdirs in layer order (bottom layer first).

        ``open_layer(i)`` returns a readable stream of layer ``i`` (compressed or not); it is called only
        for layers whose snapshot is missing and is closed here.
        """
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise from_os_error(exc, f"cannot create snapshot directory {self.root}") from exc
        out: list[Path] = []
        for index, (diff_id, chain_id) in enumerate(zip(diff_ids, chain_ids(diff_ids), strict=True)):
            final = self.path(chain_id)
            if not final.is_dir():
                self._unpack(index, str(diff_id), final, open_layer)
            out.append(final)
        return out

    def _unpack(self, index: int, diff_id: str, final: Path, open_layer: LayerOpener) -> None:
        from engine.archive.untar import extract_layer_for_overlay
        from engine.store.locking import file_lock

        with file_lock(self.root / f".{final.name}.lock"):
            if final.is_dir():
                return  # another process unpacked it while we waited
            tmp = self.root / f".tmp-{final.name[:12]}-{uuid.uuid4().hex[:8]}"
            try:
                with open_layer(index) as stream:
                    extract_layer_for_overlay(stream, tmp, expected_diff_id=diff_id)
                os.chmod(tmp, 0o755)
                os.rename(tmp, final)
            except EngineError:
                shutil.rmtree(tmp, ignore_errors=True)
                raise
            except OSError as exc:
                shutil.rmtree(tmp, ignore_errors=True)
                raise from_os_error(exc, f"cannot unpack layer {diff_id}") from exc
            finally:
                with contextlib.suppress(OSError):
                    os.unlink(self.root / f".{final.name}.lock")

    def remove(self, chain_id: Digest) -> bool:
        path = self.path(chain_id)
        if not path.exists():
            return False
        doomed = self.root / f".del-{chain_id.hex[:12]}-{uuid.uuid4().hex[:8]}"
        os.rename(path, doomed)
        shutil.rmtree(doomed, ignore_errors=True)
        return True

    def list(self) -> list[Digest]:
        if not self.root.is_dir():
            return []
        return [Digest("sha256", p.name) for p in self.root.iterdir()
                if len(p.name) == 64 and not p.name.startswith(".")]


# ---- overlay ----------------------------------------------------------------------------------------------

_libc: ctypes.CDLL | None = None


def _lib() -> ctypes.CDLL:
    global _libc
    if _libc is None:
        # the interpreter's own libc (CDLL(None)): find_library would run ``ldconfig -p`` (a fork+exec)
        _libc = ctypes.CDLL(None, use_errno=True)
        _libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p]
        _libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]
    return _libc


def mount(source: str, target: str, fstype: str, flags: int = 0, data: str | None = None) -> None:
    """mount(2); raises OSError."""
    rc = _lib().mount(source.encode(), target.encode(), fstype.encode(), flags,
                      data.encode() if data is not None else None)
    if rc != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err), target)


def umount(target: str, flags: int = 0) -> None:
    if _lib().umount2(target.encode(), flags) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err), target)


def _check_path(path: str) -> str:
    if any(c in path for c in ",:\n") or not path:
        raise ContainerRuntimeError(f"cannot use {path!r} in an overlay mount (contains ',' or ':')")
    return path


def overlay_options(lowerdirs: Sequence[str], upper: str | None, work: str | None) -> str:
    """The overlay option string; ``lowerdirs`` in layer order (the kernel wants the top one first)."""
    lower = ":".join(_check_path(p) for p in reversed(lowerdirs))
    data = f"lowerdir={lower}"
    if upper is not None and work is not None:
        data += f",upperdir={_check_path(upper)},workdir={_check_path(work)}"
    return data


def prepare_rootfs(lowerdirs: Sequence[Path | str], upper: Path | str | None, work: Path | str | None,
                   target: Path | str) -> None:
    """Mount an overlay of ``lowerdirs`` (layer order, bottom first) with ``upper``/``work`` on ``target``.

    With no upper dir the mount is read-only.  An image with no layers gets an empty lowerdir.  When the
    absolute option string exceeds one page, the mount is made by ``mount(8)`` from the common parent
    directory with relative lowerdirs.
    """
    target = str(target)
    lowers = [str(p) for p in lowerdirs]
    try:
        for path in (target, *(p for p in (upper, work) if p is not None)):
            os.makedirs(path, exist_ok=True)
        upper_s = str(upper) if upper is not None else None
        work_s = str(work) if work is not None else None
        if not lowers or (upper_s is None and len(lowers) == 1):
            # overlay needs a lowerdir, and two of them without an upper dir: add an empty one at the bottom
            empty = target.rstrip("/") + ".empty"
            os.makedirs(empty, exist_ok=True)
            lowers = [empty, *lowers]
        data = overlay_options(lowers, upper_s, work_s)
        flags = MS_RDONLY if upper_s is None else 0
        if len(data) <= MOUNT_DATA_LIMIT:
            mount("overlay", target, "overlay", flags, data)
            return
        _mount_relative(lowers, upper_s, work_s, target, flags)
    except OSError as exc:
        raise ContainerRuntimeError(f"cannot mount the root filesystem on {target}: {exc.strerror}") from exc


def _mount_relative(lowers: list[str], upper: str | None, work: str | None, target: str, flags: int) -> None:
    base = os.path.commonpath(lowers)
    rel = [os.path.relpath(p, base) for p in lowers]
    data = overlay_options(rel, upper, work)
    if len(data) > MOUNT_DATA_LIMIT:
        raise ContainerRuntimeError(f"too many layers for one overlay mount ({len(lowers)})")
    args = ["mount", "-t", "overlay", "overlay", "-o", data + (",ro" if flags & MS_RDONLY else ""), target]
    result = subprocess.run(args, cwd=base, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise ContainerRuntimeError(f"cannot mount the root filesystem on {target}: {result.stderr.strip()}")


def is_mountpoint(path: Path | str) -> bool:
    path = os.path.abspath(str(path))
    try:
        with open("/proc/self/mountinfo", encoding="utf-8", errors="replace") as fh:
            for line in fh:
                fields = line.split(" ")
                if len(fields) > 4 and _unescape(fields[4]) == path:
                    return True
    except OSError:
        return False
    return False


def _unescape(text: str) -> str:
    return text.replace("\\040", " ").replace("\\011", "\t").replace("\\012", "\n").replace("\\134", "\\")


def release_rootfs(target: Path | str) -> None:
    """Unmount ``target`` (lazily when busy); quiet when it is not mounted."""
    target = str(target)
    try:
        umount(target)
    except OSError as exc:
        if exc.errno in (errno.EINVAL, errno.ENOENT):
            return
        if exc.errno == errno.EBUSY:
            try:
                umount(target, MNT_DETACH)
            except OSError as again:
                raise StoreError(f"cannot unmount {target}: {again.strerror}") from again
            return
        raise StoreError(f"cannot unmount {target}: {exc.strerror}") from exc
