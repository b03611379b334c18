"""A busybox base image made offline from the host's static busybox (Debian's busybox-static)."""

from __future__ import annotations

import os
import shutil
import subprocess
import tarfile
import tempfile
from pathlib import Path

from engine.errors import NotFoundError, StoreError

BUSYBOX_CANDIDATES = ("/bin/busybox", "/usr/bin/busybox")


def find_busybox() -> Path:
    found = shutil.which("busybox") or next((p for p in BUSYBOX_CANDIDATES if os.path.exists(p)), None)
    if found is None:
        raise NotFoundError("no busybox binary on this host (apt-get install busybox-static)")
    return Path(found)


def make_busybox_rootfs(dest: Path, busybox: Path | None = None) -> Path:
    """/bin/busybox plus one symlink per applet, /etc/passwd and /etc/group, a few standard dirs."""
    binary = busybox or find_busybox()
    for sub in ("bin", "etc", "tmp", "root", "var/www", "proc", "sys", "dev"):
        (dest / sub).mkdir(parents=True, exist_ok=True)
    os.chmod(dest / "tmp", 0o1777)
    shutil.copy2(binary, dest / "bin" / "busybox")
    try:
        applets = subprocess.run([str(binary), "--list"], check=True, capture_output=True, text=True).stdout.split()
    except (OSError, subprocess.CalledProcessError) as exc:
        raise StoreError(f"cannot list the applets of {binary}: {exc}") from exc
    for applet in applets:
        link = dest / "bin" / applet
        if applet != "busybox" and not link.exists():
            os.symlink("busybox", link)
    (dest / "etc" / "passwd").write_text(
        "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n"
        "www-data:x:33:33:www-data:/var/www:/bin/false\n"
    )
    (dest / "etc" / "group").write_text("root:x:0:\nnogroup:x:65534:\nwww-data:x:33:\n")
    return dest


def make_busybox_rootfs_tar(path: Path, *, compress: bool = False, busybox: Path | None = None) -> Path:
    """A rootfs tarball for `dockyard import` (numeric owners root:root, sorted, PAX)."""
    with tempfile.TemporaryDirectory(dir=path.parent, prefix=".busybox-") as scratch:
        rootfs = make_busybox_rootfs(Path(scratch) / "rootfs", busybox)
        with tarfile.open(path, "w:gz" if compress else "w", format=tarfile.PAX_FORMAT) as tar:
            for entry in sorted(rootfs.rglob("*")):
                info = tar.gettarinfo(str(entry), arcname=str(entry.relative_to(rootfs)))
                info.uid = info.gid = 0
                info.uname = info.gname = ""
                if info.isreg():
                    with open(entry, "rb") as fh:
                        tar.addfile(info, fh)
                else:
                    tar.addfile(info)
    return path
