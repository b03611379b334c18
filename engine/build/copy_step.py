"""COPY and ADD: the selected files are laid out in a staging directory exactly as the layer will hold
them (parents included, owners from --chown resolved in the image's own /etc/passwd, modes from
--chmod), then the directory is written as the layer and kept as its snapshot."""

from __future__ import annotations

import contextlib
import os
import posixpath
import shutil
import stat
import tempfile
import urllib.parse
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from engine.build.context import BuildContext, ContextFile
from engine.errors import BuildError, EngineError, InvalidInputError
from engine.runtime.userdb import lookup_user_in_rootfs, resolve_in_root


@dataclass(frozen=True, slots=True)
class CopyPlan:
    dest: str  # absolute path inside the image
    dest_is_dir: bool
    uid: int
    gid: int
    mode: int | None  # --chmod


def parse_chmod(text: str | None) -> int | None:
    if not text:
        return None
    try:
        value = int(text, 8)
    except ValueError:
        raise InvalidInputError(f"invalid --chmod {text!r}: use an octal mode such as 755") from None
    if not 0 <= value <= 0o7777:
        raise InvalidInputError(f"invalid --chmod {text!r}: out of range")
    return value


def resolve_chown(rootfs: Path, chown: str | None) -> tuple[int, int]:
    """--chown user[:group] with names read from the image's /etc/passwd and /etc/group (as data)."""
    if not chown:
        return 0, 0
    user, _, group = chown.partition(":")
    try:
        resolved = lookup_user_in_rootfs(rootfs, f"{user}:{group}" if group else user)
    except EngineError as exc:
        raise BuildError(f"--chown {chown}: {exc}") from None
    # docker: a user without a group (name or uid) gets the same number as its gid
    return resolved.uid, resolved.gid if group else resolved.uid


def dest_path(dest: str, workdir: str) -> str:
    path = dest if dest.startswith("/") else posixpath.join(workdir or "/", dest)
    normal = posixpath.normpath(path)
    if dest.endswith("/") or dest.endswith("/.") or dest in (".", "./"):
        return normal.rstrip("/") + "/"
    return normal


def _in_image(rootfs: Path, path: str) -> str:
    """``path`` with the image's symlinks resolved inside the image (as docker copies through them)."""
    resolved = resolve_in_root(rootfs, path)
    return "/" + str(resolved.relative_to(rootfs)) if resolved != rootfs else "/"


def make_plan(dest: str, workdir: str, n_sources: int, rootfs: Path, chown: str | None,
              chmod: str | None) -> CopyPlan:
    path = dest_path(dest, workdir)
    is_dir = path.endswith("/") or n_sources > 1
    if not is_dir:
        existing = resolve_in_root(rootfs, path)
        is_dir = existing.is_dir() and not existing.is_symlink()
    if is_dir:
        path = _in_image(rootfs, path.rstrip("/") or "/")
    else:
        parent, name = posixpath.split(path)
        path = posixpath.join(_in_image(rootfs, parent or "/"), name)
    uid, gid = resolve_chown(rootfs, chown)
    return CopyPlan(path.rstrip("/") or "/", is_dir, uid, gid, parse_chmod(chmod))


class Stager:
    """Builds the staging tree for one COPY/ADD."""

    def __init__(self, staging: Path, rootfs: Path, plan: CopyPlan) -> None:
        self.staging = staging
        self.rootfs = rootfs
        self.plan = plan

    def _target(self, image_path: str) -> Path:
        parts = [p for p in image_path.split("/") if p]
        self._ensure_parents(parts[:-1])
        return self.staging.joinpath(*parts)

    def _ensure_parents(self, parts: Sequence[str]) -> None:
        """Create missing parents in staging with the image's metadata where the image has them."""
        for i in range(1, len(parts) + 1):
            here = self.staging.joinpath(*parts[:i])
            if here.is_dir():
                continue
            image_dir = self.rootfs.joinpath(*parts[:i])
            here.mkdir()
            try:
                st = os.lstat(image_dir)
                if stat.S_ISDIR(st.st_mode):
                    os.chmod(here, stat.S_IMODE(st.st_mode))
                    os.chown(here, st.st_uid, st.st_gid)
                    os.utime(here, ns=(st.st_atime_ns, st.st_mtime_ns))
                    continue
            except OSError:
                pass
            os.chmod(here, 0o755)  # a directory the image lacks: owned like the copy, as BuildKit makes it
            os.chown(here, self.plan.uid, self.plan.gid)

    def _dest_dir_parts(self) -> list[str]:
        return [p for p in self.plan.dest.split("/") if p]

    def _own(self, path: Path, *, is_link: bool = False) -> None:
        os.chown(path, self.plan.uid, self.plan.gid, follow_symlinks=False)
        if self.plan.mode is not None and not is_link:
            os.chmod(path, self.plan.mode)

    def add_file(self, source: Path, name: str) -> None:
        """A file, symlink or directory (recursively) from ``source``; ``name`` its base name."""
        image_path = posixpath.join(self.plan.dest, name) if self.plan.dest_is_dir else self.plan.dest
        self._place(source, self._target(image_path))

    def _place(self, source: Path, target: Path) -> None:
        st = os.lstat(source)
        if stat.S_ISLNK(st.st_mode):
            with contextlib.suppress(FileNotFoundError):
                _remove(target)
            os.symlink(os.readlink(source), target)
            self._own(target, is_link=True)
        elif stat.S_ISREG(st.st_mode):
            with contextlib.suppress(FileNotFoundError):
                _remove(target)
            shutil.copy2(source, target, follow_symlinks=False)
            self._own(target)
        elif stat.S_ISDIR(st.st_mode):
            self._copy_dir(source, target, st)

    def _copy_dir(self, source: Path, target: Path, st: os.stat_result) -> None:
        if not target.is_dir():
            with contextlib.suppress(FileNotFoundError):
                _remove(target)
            target.mkdir()
        os.chmod(target, stat.S_IMODE(st.st_mode))
        self._own(target)
        for entry in sorted(os.listdir(source)):
            child = source / entry
            child_st = os.lstat(child)
            if not (stat.S_ISREG(child_st.st_mode) or stat.S_ISLNK(child_st.st_mode)
                    or stat.S_ISDIR(child_st.st_mode)):
                continue
            self._place(child, target / entry)
        os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns))

    def add_context_entries(self, context: BuildContext, top: ContextFile) -> None:
        """One selected context source: a directory's contents go into dest; a file goes to dest."""
        if stat.S_ISDIR(top.mode):
            dest_parts = self._dest_dir_parts()
            self._ensure_parents(dest_parts)
            base = self.staging.joinpath(*dest_parts)
            if not base.is_dir():
                base.mkdir()
                os.chmod(base, 0o755)
                self._own(base)
            prefix = f"{top.rel}/" if top.rel else ""
            for entry in context.walk(top):
                if entry.rel == top.rel:
                    continue
                rel = entry.rel[len(prefix):]
                target = base / rel
                if stat.S_ISDIR(entry.mode):
                    if not target.is_dir():
                        target.mkdir()
                    os.chmod(target, stat.S_IMODE(entry.mode))
                    self._own(target)
                else:
                    self._place(entry.path, target)
            return
        self.add_file(top.path, posixpath.basename(top.rel) or "file")

    def add_directory(self, image_path: str) -> None:
        """An empty directory at ``image_path`` (WORKDIR), owned per the plan, mode 0755."""
        target = self._target(image_path)
        target.mkdir(exist_ok=True)
        os.chmod(target, 0o755)
        self._own(target)

    def add_content(self, name: str, data: str) -> None:
        """A heredoc source (``COPY <<EOF /path``)."""
        image_path = posixpath.join(self.plan.dest, name) if self.plan.dest_is_dir else self.plan.dest
        target = self._target(image_path)
        target.write_text(data)
        os.chmod(target, 0o644)
        self._own(target)

    def add_extracted_archive(self, archive: Path) -> None:
        """ADD of a local tar archive: its contents land in dest (hostile entries refused)."""
        from engine.archive.untar import extract_layer

        dest_parts = self._dest_dir_parts()
        self._ensure_parents(dest_parts)
        base = self.staging.joinpath(*dest_parts)
        base.mkdir(exist_ok=True)
        with open(archive, "rb") as fh:
            extract_layer(fh, base, apply_whiteouts=False)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink()


def is_archive(path: Path) -> bool:
    """Local ADD sources that docker unpacks: tar, optionally gzip/bzip2/xz/zstd compressed."""
    import tarfile

    try:
        with open(path, "rb") as fh:
            head = fh.read(262)
    except OSError:
        return False
    if head[:2] == b"\x1f\x8b" or head[:3] == b"BZh" or head[:6] == b"\xfd7zXZ\x00" or head[:4] == b"\x28\xb5\x2f\xfd":
        return True
    return (len(head) >= 262 and head[257:262] == b"ustar") or (tarfile.is_tarfile(path) if len(head) >= 262 else False)


async def download(url: str, directory: Path, *, max_bytes: int = 4 << 30) -> tuple[Path, str]:
    """ADD <url>: fetch into ``directory``; returns (file, base name from the URL)."""
    import httpx

    name = posixpath.basename(urllib.parse.urlparse(url).path) or "index.html"
    fd, temp = tempfile.mkstemp(dir=directory)
    owned = False
    total = 0
    timeout = httpx.Timeout(30.0, read=300.0)
    try:
        async with httpx.AsyncClient(follow_redirects=True, timeout=timeout) as client, \
                client.stream("GET", url) as response:
            if response.status_code != 200:
                raise BuildError(f"ADD {url}: the server answered HTTP {response.status_code}")
            owned = True  # the file object closes fd from here on
            with os.fdopen(fd, "wb") as out:
                async for chunk in response.aiter_bytes(1 << 20):
                    total += len(chunk)
                    if total > max_bytes:
                        raise BuildError(f"ADD {url}: larger than {max_bytes} bytes")
                    out.write(chunk)
    except BaseException as exc:  # a failed download leaves no file behind (nor an open descriptor)
        if not owned:
            with contextlib.suppress(OSError):
                os.close(fd)
        with contextlib.suppress(OSError):
            os.unlink(temp)
        if isinstance(exc, httpx.HTTPError):
            raise BuildError(f"ADD {url}: {exc.__class__.__name__}: {exc}") from None
        raise
    os.chmod(temp, 0o600)
    return Path(temp), name
