"""Users and groups of an image, read as DATA from its root filesystem (never by running its code).

``resolve_user`` follows runc's rules for ``--user``: ``name``, ``uid``, ``name:group``, ``uid:gid``;
a name must exist in /etc/passwd, a number need not; without an explicit group the user's primary
group is used and the groups listing the user as a member become supplementary groups.

``read_in_root`` opens a file inside a root filesystem resolving every symlink *within* that root
(an absolute link target or a ``..`` never leaves it), like ``openat2(RESOLVE_IN_ROOT)``.
"""

from __future__ import annotations

import errno
import os
import stat
from dataclasses import dataclass
from pathlib import Path

from engine.errors import InvalidInputError

MAX_DB_SIZE = 4 * 1024 * 1024
_MAX_SYMLINKS = 40


@dataclass(frozen=True, slots=True)
class PasswdEntry:
    """One /etc/passwd line."""

    name: str
    uid: int
    gid: int
    home: str


@dataclass(frozen=True, slots=True)
class GroupEntry:
    """One /etc/group line."""

    name: str
    gid: int
    members: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class ExecUser:
    """The uid, gid, extra groups and home a process runs with."""

    uid: int
    gid: int
    additional_gids: tuple[int, ...] = ()
    home: str = "/"


def parse_passwd(text: str) -> list[PasswdEntry]:
    out: list[PasswdEntry] = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.split(":")
        if len(parts) < 4:
            continue
        try:
            uid, gid = int(parts[2]), int(parts[3])
        except ValueError:
            continue
        home = parts[5] if len(parts) > 5 and parts[5] else "/"
        out.append(PasswdEntry(parts[0], uid, gid, home))
    return out


def parse_group(text: str) -> list[GroupEntry]:
    out: list[GroupEntry] = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.split(":")
        if len(parts) < 3:
            continue
        try:
            gid = int(parts[2])
        except ValueError:
            continue
        members = tuple(m for m in (parts[3].split(",") if len(parts) > 3 else []) if m)
        out.append(GroupEntry(parts[0], gid, members))
    return out


def _id(text: str) -> int | None:
    if text.isdigit():
        value = int(text)
        if value < 2**31:
            return value
    return None


def resolve_user(
    spec: str, passwd: list[PasswdEntry], groups: list[GroupEntry], group_add: tuple[str, ...] = ()
) -> ExecUser:
    """The uid, gid, supplementary gids and home for ``--user spec`` (empty: root)."""
    user_part, _, group_part = (spec or "").partition(":")
    uid, gid, home = 0, 0, "/"
    matched: PasswdEntry | None = None
    if user_part:
        numeric = _id(user_part)
        if numeric is None:
            matched = next((p for p in passwd if p.name == user_part), None)
            if matched is None:
                raise InvalidInputError(f"unable to find user {user_part}: no matching entries in passwd file")
        else:
            matched = next((p for p in passwd if p.uid == numeric), None)
            uid = numeric
    else:
        matched = next((p for p in passwd if p.uid == 0), None)
    if matched is not None:
        uid, gid, home = matched.uid, matched.gid, matched.home
    sgids: list[int] = []
    if group_part:
        gid = _lookup_group(group_part, groups)
    elif matched is not None:
        sgids = [g.gid for g in groups if matched.name in g.members and g.gid != gid]
    for extra in group_add:
        value = _lookup_group(extra, groups)
        if value not in sgids:
            sgids.append(value)
    return ExecUser(uid, gid, tuple(sgids), home)


def _lookup_group(text: str, groups: list[GroupEntry]) -> int:
    numeric = _id(text)
    if numeric is not None:
        return numeric
    found = next((g for g in groups if g.name == text), None)
    if found is None:
        raise InvalidInputError(f"unable to find group {text}: no matching entries in group file")
    return found.gid


# ---- reading files inside a root filesystem --------------------------------------------------------------


def read_in_root(root: Path, path: str, max_size: int = MAX_DB_SIZE) -> bytes | None:
    """The bytes of ``path`` inside ``root`` (symlinks resolved within root); None when absent."""
    try:
        fd = _open_in_root(root, path)
    except FileNotFoundError:
        return None
    except OSError as exc:
        if exc.errno in (errno.ENOTDIR, errno.ELOOP, errno.ENOENT):
            return None
        raise
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            return None
        chunks: list[bytes] = []
        total = 0
        while True:
            chunk = os.read(fd, 65536)
            if not chunk:
                break
            total += len(chunk)
            if total > max_size:
                raise InvalidInputError(f"{path} in the image is larger than {max_size} bytes")
            chunks.append(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


def resolve_in_root(root: Path, path: str) -> Path:
    """``path`` inside ``root`` with every symlink resolved within root (missing tail kept as is)."""
    parts = [p for p in path.split("/") if p not in ("", ".")]
    resolved: list[str] = []
    links = 0
    while parts:
        part = parts.pop(0)
        if part == "..":
            if resolved:
                resolved.pop()
            continue
        candidate = root.joinpath(*resolved, part)
        try:
            info = os.lstat(candidate)
        except OSError:
            resolved.append(part)
            resolved.extend(p for p in parts if p not in ("", "."))
            break
        if stat.S_ISLNK(info.st_mode):
            links += 1
            if links > _MAX_SYMLINKS:
                raise OSError(errno.ELOOP, "too many symlinks", str(candidate))
            target = os.readlink(candidate)
            if target.startswith("/"):
                resolved = []
            parts = [p for p in target.split("/") if p not in ("", ".")] + parts
            continue
        resolved.append(part)
    # ".." left in an unresolved tail is clamped too
    clean: list[str] = []
    for part in resolved:
        if part == "..":
            if clean:
                clean.pop()
        else:
            clean.append(part)
    return root.joinpath(*clean)


def _open_in_root(root: Path, path: str) -> int:
    target = resolve_in_root(root, path)
    # the final component was checked not to be a symlink; O_NOFOLLOW guards against a swap since then
    return os.open(target, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)


def lookup_user_in_rootfs(rootfs: Path, spec: str, group_add: tuple[str, ...] = ()) -> ExecUser:
    """Resolve ``--user`` against the image's own /etc/passwd and /etc/group (read as data)."""
    passwd_raw = read_in_root(rootfs, "/etc/passwd")
    group_raw = read_in_root(rootfs, "/etc/group")
    passwd = parse_passwd(passwd_raw.decode("utf-8", "replace")) if passwd_raw else []
    groups = parse_group(group_raw.decode("utf-8", "replace")) if group_raw else []
    return resolve_user(spec, passwd, groups, group_add)
