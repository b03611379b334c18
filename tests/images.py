"""Test images made offline: a busybox root filesystem from Debian's busybox-static.

The code lives in the engine (engine/store/busybox.py: the TUI's first run imports the same image);
these names stay for the tests that use them.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from engine.store.busybox import make_busybox_rootfs as _make_rootfs
from engine.store.busybox import make_busybox_rootfs_tar

BUSYBOX = shutil.which("busybox") or "/bin/busybox"


def have_busybox() -> bool:
    return os.path.exists(BUSYBOX)


def make_busybox_rootfs(dest: Path) -> Path:
    """/bin/busybox plus one symlink per applet, /etc/passwd and /etc/group, a few standard dirs."""
    return _make_rootfs(dest, Path(BUSYBOX))


def make_busybox_tar(path: Path, *, compress: bool = False) -> Path:
    """A rootfs tarball for `dockyard import` (numeric owners root:root)."""
    return make_busybox_rootfs_tar(path, compress=compress, busybox=Path(BUSYBOX))
