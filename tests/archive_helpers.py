"""Helpers shared by the archive tests: build tars from entry descriptions, list and snapshot trees."""

from __future__ import annotations

import hashlib
import io
import os
import stat
import tarfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

TYPES = {
    "file": tarfile.REGTYPE,
    "dir": tarfile.DIRTYPE,
    "symlink": tarfile.SYMTYPE,
    "hardlink": tarfile.LNKTYPE,
    "char": tarfile.CHRTYPE,
    "block": tarfile.BLKTYPE,
    "fifo": tarfile.FIFOTYPE,
    "pax_global_header": tarfile.XGLTYPE,
}


def make_tar(entries: Iterable[Mapping[str, Any]], *, fmt: int | None = None) -> bytes:
    """A tar from dicts with name/type/linkname/mode/content (+ devmajor/devminor, uid/gid, xattrs).

    PAX format unless a device number is out of range: only GNU base-256 fields can encode those.
    """
    entries = list(entries)
    if fmt is None:
        odd = any(not 0 <= e.get(k, 0) < 0o7777777 for e in entries for k in ("devmajor", "devminor"))
        fmt = tarfile.GNU_FORMAT if odd else tarfile.PAX_FORMAT
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as tar:
        for e in entries:
            info = tarfile.TarInfo(e["name"])
            info.type = TYPES[e.get("type", "file")]
            info.linkname = e.get("linkname", "")
            mode = e.get("mode", 0o644)
            info.mode = int(mode, 8) if isinstance(mode, str) else mode
            info.uid = e.get("uid", os.geteuid())
            info.gid = e.get("gid", os.getegid())
            info.mtime = e.get("mtime", 1_700_000_000)
            info.devmajor = e.get("devmajor", 0)
            info.devminor = e.get("devminor", 0)
            if "xattrs" in e:
                info.pax_headers = {f"SCHILY.xattr.{k}": v for k, v in e["xattrs"].items()}
            data = e.get("content", b"")
            if isinstance(data, str):
                data = data.encode()
            info.size = len(data) if info.type in (tarfile.REGTYPE, tarfile.AREGTYPE) else 0
            tar.addfile(info, io.BytesIO(data) if info.size else None)
    return buf.getvalue()


def snapshot(root: Path, *, exclude: Path | None = None) -> dict[str, tuple[Any, ...]]:
    """Every path under ``root`` (not following symlinks) with type, mode, size, content hash, target."""
    out: dict[str, tuple[Any, ...]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        here = Path(dirpath)
        if exclude is not None and here == exclude:
            dirnames[:] = []
            continue
        for name in dirnames + filenames:
            path = here / name
            if exclude is not None and path == exclude:
                continue
            st = path.lstat()
            rel = str(path.relative_to(root))
            if stat.S_ISLNK(st.st_mode):
                out[rel] = ("symlink", os.readlink(path))
            elif stat.S_ISREG(st.st_mode):
                digest = hashlib.sha256(path.read_bytes()).hexdigest()
                out[rel] = ("file", st.st_mode, st.st_size, st.st_mtime_ns, digest)
            else:
                out[rel] = ("other", st.st_mode, st.st_mtime_ns)
    return out


def walk_listing(root: Path) -> list[str]:
    """filepath.Walk-style listing: lexical per directory, parents first, directories end in '/'."""
    out: list[str] = []

    def visit(d: Path, prefix: str) -> None:
        for name in sorted(os.listdir(d)):
            path = d / name
            if path.is_dir() and not path.is_symlink():
                out.append(f"{prefix}{name}/")
                visit(path, f"{prefix}{name}/")
            else:
                out.append(f"{prefix}{name}")

    visit(root, "")
    return out


def tree_state(root: Path) -> dict[str, tuple[Any, ...]]:
    """Comparable view of a tree for round-trip tests: type, mode, uid, gid, content, target, xattrs."""
    out: dict[str, tuple[Any, ...]] = {}
    for rel in walk_listing(root):
        path = root / rel.rstrip("/")
        st = path.lstat()
        if stat.S_ISLNK(st.st_mode):
            out[rel] = ("symlink", os.readlink(path), st.st_uid, st.st_gid)
            continue
        xattrs = tuple(sorted((k, os.getxattr(path, k)) for k in os.listxattr(path)))
        kind = stat.S_IFMT(st.st_mode)
        content = path.read_bytes() if stat.S_ISREG(st.st_mode) else b""
        rdev = st.st_rdev if stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode) else 0
        out[rel] = (kind, stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid, content, rdev, xattrs)
    return out
