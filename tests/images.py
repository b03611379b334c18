"""Test images made offline: a busybox root filesystem from Debian's busybox-static."""

from __future__ import annotations

import os
import shutil
import subprocess
import tarfile
from pathlib import Path

BUSYBOX = shutil.which("busybox") or "/bin/busybox"


def have_busybox() -> bool:
    return os.path.exists(BUSYBOX)


def make_busybox_rootfs(dest: Path) -> Path:
    """/bin/busybox plus one symlink per applet, /etc/passwd and /etc/group, a few standard dirs."""
    for sub in ("bin", "etc", "tmp", "root", "var/www", "proc", "sys", "dev"):
        (dest / sub).mkdir(parents=True, exist_ok=True)
    os.chmod(dest / "tmp", 0o1777)
    shutil.copy2(BUSYBOX, dest / "bin" / "busybox")
    applets = subprocess.run([BUSYBOX, "--list"], check=True, capture_output=True, text=True).stdout.split()
    for applet in applets:
        if applet == "busybox":
            continue
        link = dest / "bin" / applet
        if not link.exists():
            os.symlink("busybox", link)
    (dest / "etc" / "passwd").write_text(
        "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n"
        "www-data:x:33:33:www-data:/var/www:/bin/false\n"
    )
    (dest / "etc" / "group").write_text("root:x:0:\nnogroup:x:65534:\nwww-data:x:33:\n")
    return dest


def make_busybox_tar(path: Path, *, compress: bool = False) -> Path:
    """A rootfs tarball for `dockyard import` (numeric owners root:root)."""
    rootfs = path.parent / (path.name + ".rootfs")
    make_busybox_rootfs(rootfs)
    mode = "w:gz" if compress else "w"
    with tarfile.open(path, mode, format=tarfile.PAX_FORMAT) as tar:
        for entry in sorted(rootfs.rglob("*")):
            info = tar.gettarinfo(str(entry), arcname=str(entry.relative_to(rootfs)))
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            if info.isreg():
                with open(entry, "rb") as fh:
                    tar.addfile(info, fh)
            else:
                tar.addfile(info)
    shutil.rmtree(rootfs)
    return path
