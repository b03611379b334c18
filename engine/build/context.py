"""The build context: which files COPY/ADD may read, how their sources are selected, and their content hash.

The hash of a COPY source is over content, mode, ownership of the copy (decided by --chown, not the
host) and the relative path — never mtime — so touching a file does not bust the cache and editing
it always does. Hashes of unchanged files are reused from a small stat-keyed cache (size, mtime_ns,
inode), as BuildKit's contenthash does, so a rebuild hashes only what changed.
"""

from __future__ import annotations

import contextlib
import fnmatch
import hashlib
import json
import os
import stat
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from engine.errors import BuildError, InvalidInputError

IGNORE_FILES = (".dockerignore", ".containerignore")


@dataclass(frozen=True, slots=True)
class ContextFile:
    rel: str  # posix path relative to the context root ("" for the root itself)
    path: Path
    mode: int  # st_mode
    size: int
    link_target: str | None = None


def read_ignore_patterns(context: Path, dockerfile: Path | None) -> list[str]:
    """<Dockerfile>.dockerignore beside the Dockerfile wins, then .dockerignore, then .containerignore."""
    from engine.build.ignore import read_ignore_file

    candidates = []
    if dockerfile is not None:
        candidates.append(dockerfile.with_name(dockerfile.name + ".dockerignore"))
    candidates += [context / name for name in IGNORE_FILES]
    for candidate in candidates:
        try:
            return read_ignore_file(candidate.read_text())
        except FileNotFoundError:
            continue
        except (OSError, UnicodeDecodeError) as exc:
            raise InvalidInputError(f"cannot read {candidate}: {exc}") from None
    return []


class BuildContext:
    """A directory on disk with an ignore list."""

    def __init__(self, root: Path, ignore_patterns: Sequence[str] = (), *, hash_cache: Path | None = None) -> None:
        from engine.build.ignore import IgnoreMatcher

        self.root = Path(root).resolve()
        if not self.root.is_dir():
            raise InvalidInputError(f"build context {root} is not a directory")
        self.patterns = list(ignore_patterns)
        self._matcher = IgnoreMatcher(self.patterns)
        self._hash_cache_path = hash_cache
        self._hash_cache: dict[str, list[object]] | None = None
        self._hash_cache_dirty = False

    # ---- selection ----------------------------------------------------------------------------------

    def is_ignored(self, rel: str) -> bool:
        return bool(rel) and bool(self._matcher.matches(rel))

    def _stat(self, rel: str) -> ContextFile:
        path = self.root / rel if rel else self.root
        parent = os.path.realpath(path.parent) if rel else str(self.root)
        if parent != str(self.root) and not parent.startswith(str(self.root) + os.sep):
            # A symlinked directory on the way ("link/secret", link -> ../): never read outside the context.
            raise BuildError(f"COPY source {rel!r} is outside the build context (through a symlink)")
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            raise BuildError(f"file not found in build context or excluded by .dockerignore: {rel}") from None
        target = os.readlink(path) if stat.S_ISLNK(st.st_mode) else None
        return ContextFile(rel, path, st.st_mode, st.st_size, target)

    def select(self, source: str) -> list[ContextFile]:
        """The context entries a COPY source names (wildcards per path component, as docker's)."""
        cleaned = _clean(source)
        if cleaned.startswith("../") or cleaned == "..":
            raise BuildError(f"COPY source {source!r} is outside the build context")
        if not any(ch in cleaned for ch in "*?["):
            if cleaned and self.is_ignored(cleaned):
                raise BuildError(f"file not found in build context or excluded by .dockerignore: {source}")
            return [self._stat(cleaned)]
        matches = [f for f in self._glob(cleaned.split("/")) if not self.is_ignored(f.rel)]
        if not matches:
            raise BuildError(f"no source files were specified: {source!r} matches nothing in the build context")
        return matches

    def _glob(self, parts: list[str], prefix: str = "") -> Iterator[ContextFile]:
        head, rest = parts[0], parts[1:]
        directory = self.root / prefix if prefix else self.root
        try:
            names = sorted(os.listdir(directory))
        except OSError:
            return
        for name in names:
            if not fnmatch.fnmatchcase(name, head):
                continue
            rel = f"{prefix}/{name}" if prefix else name
            if rest:
                if (self.root / rel).is_dir() and not (self.root / rel).is_symlink():
                    yield from self._glob(rest, rel)
            else:
                yield self._stat(rel)

    def walk(self, top: ContextFile) -> Iterator[ContextFile]:
        """``top`` and, for a directory, everything below it that is not ignored, depth first, sorted."""
        yield top
        if stat.S_ISDIR(top.mode):
            yield from self._children(top.rel)

    def _children(self, rel_dir: str) -> Iterator[ContextFile]:
        directory = self.root / rel_dir if rel_dir else self.root
        try:
            names = sorted(os.listdir(directory))
        except OSError as exc:
            raise BuildError(f"cannot read {directory}: {exc.strerror}") from None
        for name in names:
            rel = f"{rel_dir}/{name}" if rel_dir else name
            ignored = self.is_ignored(rel)
            entry = self._stat(rel)
            if stat.S_ISDIR(entry.mode):
                if not ignored:
                    yield entry
                    yield from self._children(rel)
                elif self._matcher_may_reinclude(rel):
                    yield from (e for e in self._children(rel) if not self.is_ignored(e.rel))
                continue
            if ignored or not (stat.S_ISREG(entry.mode) or stat.S_ISLNK(entry.mode)):
                continue  # FIFOs, sockets and device nodes never enter an image from a context
            yield entry

    def _matcher_may_reinclude(self, rel: str) -> bool:
        return any(p.startswith("!") for p in self.patterns) and (self.root / rel).is_dir()

    # ---- hashing ------------------------------------------------------------------------------------

    def content_hash(self, sources: Sequence[str]) -> str:
        """One digest over everything ``sources`` select: relative path, type, mode, link target, content."""
        h = hashlib.sha256()
        for source in sources:
            for top in self.select(source):
                for entry in self.walk(top):
                    kind = stat.S_IFMT(entry.mode)
                    h.update(f"{entry.rel}\0{kind:o}\0{stat.S_IMODE(entry.mode):o}\0".encode())
                    if entry.link_target is not None:
                        h.update(entry.link_target.encode() + b"\0")
                    elif stat.S_ISREG(entry.mode):
                        h.update(self.file_digest(entry).encode())
                    h.update(b"\n")
        self._save_hash_cache()
        return h.hexdigest()

    def file_digest(self, entry: ContextFile) -> str:
        cache = self._load_hash_cache()
        try:
            st = os.stat(entry.path)
        except OSError as exc:
            raise BuildError(f"cannot read {entry.rel}: {exc.strerror}") from None
        key = str(entry.path)
        stamp = [st.st_size, st.st_mtime_ns, st.st_ino]
        known = cache.get(key)
        if known is not None and known[:3] == stamp:
            return str(known[3])
        h = hashlib.sha256()
        try:
            with open(entry.path, "rb") as fh:
                while chunk := fh.read(1 << 20):
                    h.update(chunk)
        except OSError as exc:
            raise BuildError(f"cannot read {entry.rel}: {exc.strerror}") from None
        digest = h.hexdigest()
        cache[key] = [*stamp, digest]
        self._hash_cache_dirty = True
        return digest

    def _load_hash_cache(self) -> dict[str, list[object]]:
        if self._hash_cache is None:
            self._hash_cache = {}
            if self._hash_cache_path is not None:
                with contextlib.suppress(OSError, ValueError):
                    loaded = json.loads(self._hash_cache_path.read_text())
                    if isinstance(loaded, dict):
                        self._hash_cache = loaded
        return self._hash_cache

    def _save_hash_cache(self) -> None:
        if not self._hash_cache_dirty or self._hash_cache_path is None or self._hash_cache is None:
            return
        with contextlib.suppress(OSError):
            self._hash_cache_path.parent.mkdir(parents=True, exist_ok=True)
            from engine.build.cache import write_hint_file

            write_hint_file(self._hash_cache_path, json.dumps(self._hash_cache).encode())
        self._hash_cache_dirty = False


def is_url(source: str) -> bool:
    """A COPY/ADD source that names a URL rather than a context path."""
    return source.startswith(("http://", "https://"))


def _clean(path: str) -> str:
    parts: list[str] = []
    for part in path.replace("\\", "/").split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            if parts and parts[-1] != "..":
                parts.pop()
            else:
                parts.append("..")
            continue
        parts.append(part)
    return "/".join(parts)
