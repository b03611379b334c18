"""Snapshot gc: remove unpacked layers nothing needs any more, and what crashed unpacks and builds left.

The rule.  ``<snapshots>/<chain id hex>`` is kept when any of these holds, and removed otherwise:

1. its chain id is a prefix chain of an image in the store (every manifest the index reaches, all
   platforms): the image's next ``run`` would unpack it again;
2. a container record names it as a lowerdir (or, while the record has none yet, it is a prefix chain
   of the record's image);
3. it is a lowerdir of an overlay mounted right now (``/proc/self/mountinfo``): a running container, a
   RUN step, a build's read-only view;
4. its unpack lock (``.<hex>.lock``, the snapshot store's own) is held;
5. a build is running (see below), or it is younger than the grace period (see below).

Removed snapshots cost nothing but time: their layers stay blobs while an image or the build cache
holds them, and ``SnapshotStore.ensure`` unpacks a missing one again on demand.

Builds.  A build uses snapshots no image names yet (the chain it is building, cache hits of removed
images) and work dirs (``.run-*``, ``.copy-*``, ``.view-*``) with no lock of their own, for as long
as it runs.  So every build holds :func:`build_lease` (``$DOCKYARD_ROOT/.snapshots-builds.lock``, shared)
from start to end, and
gc takes that lock exclusively *without waiting*: when it cannot, a build runs and gc removes neither
unnamed snapshots nor build work dirs (the report says so).  While gc holds it (only while it decides
and renames, never while it deletes), a starting build waits.

The grace period.  Creating a container unpacks its image's layers and mounts them before its record
names them as lowerdirs; no lock spans that window.  Rule 1 covers it unless the image is removed at
the same moment, and a process from before the lease existed holds no lease: so a directory younger
than ``grace`` seconds (by ctime, which a rename into place updates) is kept when no lock tells us
whether it is in use.  Unpack temp dirs (``.tmp-*``) are removed when old and their snapshot's unpack
lock is free; ``.del-*`` (half-deleted snapshots) always go.

Deletion is two-phase like ``SnapshotStore.remove``: rename to ``.del-*`` (atomic; a reader sees a
whole snapshot or none), then delete the tree after the locks are released.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import shutil
import stat
import time
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from engine.errors import EngineError, from_os_error
from engine.oci.digest import Digest
from engine.runtime.snapshots import chain_ids
from engine.store.locking import try_flock

if TYPE_CHECKING:
    from engine.store.layout import ImageStore

GRACE_SECONDS = 600.0
BUILD_LEASE_SUFFIX = "-builds.lock"  # $DOCKYARD_ROOT/.snapshots-builds.lock: beside the snapshots, not in them
BUILD_DIR_PREFIXES = (".run-", ".copy-", ".view-")
_HEX64 = re.compile(r"[0-9a-f]{64}")


@dataclass
class SnapshotGcReport:
    removed_snapshots: int = 0
    removed_temp_dirs: int = 0  # .tmp-*, .run-*, .copy-*, .view-*, .del-* and stray download files
    freed_bytes: int = 0
    kept_young: int = 0  # unreferenced, but younger than the grace period
    build_running: bool = False  # a build held the lease: unnamed snapshots and build dirs were left alone
    removed: list[str] = field(default_factory=list)  # names under the snapshots dir


# ---- the build lease ----------------------------------------------------------------------------------


class BuildLease:
    """Held (shared) by a build for its whole run, so gc leaves its snapshots and work dirs alone.

    ``acquire`` blocks only while a gc decides what to remove (it holds the lock exclusively then).
    """

    def __init__(self, snapshots_root: Path) -> None:
        self.path = lease_path(snapshots_root)
        self._fd: int | None = None

    def acquire(self, *, wait: bool = True) -> bool:
        """Take the lease; without ``wait``, False (and nothing held) while a gc sweeps."""
        if self._fd is not None:
            return True
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            raise from_os_error(exc, f"cannot take the build lease {self.path}") from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            os.close(fd)
            return False
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd
        return True

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)  # closing releases the lock

    def __enter__(self) -> BuildLease:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def build_lease(snapshots_root: Path) -> BuildLease:
    return BuildLease(snapshots_root)


def lease_path(snapshots_root: Path) -> Path:
    root = Path(snapshots_root)
    return root.with_name(f".{root.name}{BUILD_LEASE_SUFFIX}")


@contextlib.contextmanager
def _try_exclusive(path: Path, *, create: bool) -> Iterator[bool]:
    """Yield True while holding ``flock(LOCK_EX)`` on ``path``; False when another holds it.

    Without ``create`` a missing file counts as free (nobody can hold a lock on it)."""
    flags = os.O_RDWR | os.O_CLOEXEC | (os.O_CREAT if create else 0)
    try:
        fd = os.open(path, flags, 0o600)
    except FileNotFoundError:
        yield True
        return
    try:
        with try_flock(fd, wait=False) as held:
            yield held
    finally:
        os.close(fd)


# ---- what is in use -----------------------------------------------------------------------------------


def image_chains(store: ImageStore) -> set[str]:
    """Hex chain ids of every layer prefix of every image manifest the store's index reaches."""
    from engine.oci import mediatypes as mt
    from engine.oci.models import ImageConfig, Index, Manifest

    out: set[str] = set()
    seen: set[Digest] = set()

    def visit(digest: Digest, media_type: str) -> None:
        if digest in seen:
            return
        seen.add(digest)
        try:
            raw = store.read_blob(digest, max_size=8 * 1024 * 1024)
            if media_type in mt.INDEX_TYPES:
                for child in Index.parse(raw, media_type).manifests:
                    visit(child.digest, child.media_type)
                return
            if media_type not in mt.MANIFEST_TYPES:
                return
            manifest = Manifest.parse(raw, media_type)
            config = ImageConfig.parse(store.read_blob(manifest.config.digest, max_size=32 * 1024 * 1024))
            out.update(c.hex for c in chain_ids(config.diff_ids))
        except EngineError:
            return  # an incomplete image is fsck's business; its missing layers were never unpacked

    for entry in store.entries():
        visit(entry.descriptor.digest, entry.descriptor.media_type)
    return out


def container_records(containers_dir: Path) -> Iterator[dict[str, Any]]:
    """Every readable container record as plain JSON (``lowerdirs``, ``image_id``, ...)."""
    if not containers_dir.is_dir():
        return
    for entry in os.scandir(containers_dir):
        try:
            data = json.loads(Path(entry.path, "config.json").read_bytes())
        except (OSError, ValueError):
            continue  # no record (yet): a container being created keeps its image (rule 1) and is young
        if isinstance(data, dict):
            yield data


def container_chains(containers_dir: Path, store: ImageStore | None) -> set[str]:
    """Snapshot names container records use: their lowerdirs, or their image's chains before they have any."""
    from engine.oci.models import ImageConfig

    out: set[str] = set()
    for data in container_records(containers_dir):
        lowerdirs = data.get("lowerdirs") or []
        if isinstance(lowerdirs, list) and lowerdirs:
            out.update(os.path.basename(str(p).rstrip("/")) for p in lowerdirs)
            continue
        if store is None:
            continue
        with contextlib.suppress(EngineError, ValueError, TypeError):
            config = ImageConfig.parse(store.read_blob(Digest.parse(str(data.get("image_id"))),
                                                       max_size=32 * 1024 * 1024))
            out.update(c.hex for c in chain_ids(config.diff_ids))
    return out


def mounted_lowerdirs(mountinfo: Path = Path("/proc/self/mountinfo")) -> tuple[set[str], list[str]]:
    """(basenames of every overlay lowerdir mounted now, every mount point) from ``mountinfo``."""
    names: set[str] = set()
    points: list[str] = []
    try:
        text = mountinfo.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return names, points
    for line in text.splitlines():
        before, sep, after = line.partition(" - ")
        fields = before.split(" ")
        if len(fields) > 4:
            points.append(_unescape(fields[4]))
        tail = after.split(" ")
        if not sep or len(tail) < 3 or tail[0] != "overlay":
            continue
        for option in tail[2].split(","):
            if option.startswith("lowerdir="):
                for lower in option[len("lowerdir="):].split(":"):
                    names.add(os.path.basename(_unescape(lower).rstrip("/")))
    return names, points


def _unescape(text: str) -> str:
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), text)


# ---- the sweep ----------------------------------------------------------------------------------------


def collect(
    snapshots_root: Path, *, keep: Iterable[str], grace: float = GRACE_SECONDS, now: float | None = None,
) -> SnapshotGcReport:
    """Remove snapshots and leftovers under ``snapshots_root`` by the module's rule.

    ``keep``: hex chain ids images and containers use (``image_chains`` | ``container_chains``).
    """
    report = SnapshotGcReport()
    root = Path(snapshots_root)
    if not root.is_dir():
        return report
    now = time.time() if now is None else now
    keep_set = set(keep)
    doomed: list[Path] = []
    with _try_exclusive(lease_path(root), create=True) as no_build:
        report.build_running = not no_build
        mounted, mount_points = mounted_lowerdirs()
        for entry in sorted(os.scandir(root), key=lambda e: e.name):
            name = entry.name
            try:
                info = entry.stat(follow_symlinks=False)
            except FileNotFoundError:
                continue
            young = now - max(info.st_ctime, info.st_mtime) < grace
            is_dir = stat.S_ISDIR(info.st_mode)
            if is_dir and _HEX64.fullmatch(name):
                if name in keep_set or name in mounted or not no_build:
                    continue
                if young:
                    report.kept_young += 1
                    continue
                with _try_exclusive(root / f".{name}.lock", create=False) as free:
                    renamed = _rename_away(root, entry.path, name[:12]) if free else None
                if renamed is not None:
                    doomed.append(renamed)
                    report.removed_snapshots += 1
                    report.removed.append(name)
                continue
            if is_dir and name.startswith(".del-"):
                doomed.append(Path(entry.path))  # already renamed away by a remove that did not finish
            elif is_dir and name.startswith(".tmp-"):
                if young or not _unpack_locks_free(root, name[len(".tmp-"):].split("-")[0]):
                    continue
                doomed.append(Path(entry.path))
            elif name.startswith(BUILD_DIR_PREFIXES) and is_dir:
                if not no_build or young:
                    continue
                _unmount_under(entry.path, mount_points)  # a crashed build's overlay stays mounted
                doomed.append(Path(entry.path))
            elif stat.S_ISREG(info.st_mode) and name.startswith("tmp") and no_build and not young:
                doomed.append(Path(entry.path))  # an ADD download a crashed build left
            else:
                continue
            report.removed_temp_dirs += 1
            report.removed.append(name)
    # Renamed away (or dead) under the lease: delete without holding anything.
    for path in doomed:
        report.freed_bytes += _disk_usage(path)
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
    return report


def _rename_away(root: Path, path: str, short: str) -> Path | None:
    doomed = root / f".del-{short}-{uuid.uuid4().hex[:8]}"
    try:
        os.rename(path, doomed)
    except FileNotFoundError:
        return None
    return doomed


def _unpack_locks_free(root: Path, short: str) -> bool:
    """No unpack lock of a snapshot whose name starts with ``short`` is held."""
    if not re.fullmatch(r"[0-9a-f]{1,64}", short):
        return True
    for lock in root.glob(f".{short}*.lock"):
        with _try_exclusive(lock, create=False) as free:
            if not free:
                return False
    return True


def _unmount_under(path: str, mount_points: list[str]) -> None:
    from engine.runtime.snapshots import release_rootfs

    prefix = os.path.abspath(path) + "/"
    for point in sorted((p for p in mount_points if p.startswith(prefix)), key=len, reverse=True):
        with contextlib.suppress(EngineError, OSError):
            release_rootfs(point)


def _disk_usage(path: Path) -> int:
    """Bytes on disk under ``path`` (hard links counted once); 0 when it vanished."""
    total = 0
    seen: set[tuple[int, int]] = set()
    try:
        top = path.lstat()
    except OSError:
        return 0
    stack = [str(path)] if stat.S_ISDIR(top.st_mode) else []
    total += top.st_blocks * 512
    seen.add((top.st_dev, top.st_ino))
    while stack:
        current = stack.pop()
        try:
            with os.scandir(current) as it:
                for entry in it:
                    try:
                        info = entry.stat(follow_symlinks=False)
                    except OSError:
                        continue
                    key = (info.st_dev, info.st_ino)
                    if key in seen:
                        continue
                    seen.add(key)
                    total += info.st_blocks * 512
                    if stat.S_ISDIR(info.st_mode):
                        stack.append(entry.path)
        except OSError:
            continue  # vanished or unreadable: counted as far as we got
    return total
