"""Builder test fixtures: a private dockyard store holding an offline busybox base image, and helpers to
build, read an image's config and its exported file system.

Register the fixtures in a test module with ``pytest_plugins = ("tests.buildfixtures",)``, then::

    def test_x(builder_env: BuilderEnv) -> None:
        result = builder_env.build({"Dockerfile": "FROM busybox\\nRUN true\\n"})
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import os
import shutil
import stat
import tarfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from engine import events as ev
from engine.api import Engine
from engine.build.builder import BuildOptions
from engine.config import EngineConfig
from engine.oci.reference import Reference
from engine.store.archives import export_image
from engine.store.importer import import_rootfs
from engine.store.layout import ResolvedImage
from tests.images import have_busybox, make_busybox_tar

BASE = "busybox"


def need_runc() -> None:
    if shutil.which("runc") is None:
        pytest.skip("runc is not installed")
    if os.geteuid() != 0:
        pytest.skip("RUN steps need root (overlay mounts, runc)")


@pytest.fixture(scope="session")
def busybox_tar(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if not have_busybox():
        pytest.skip("busybox-static is not installed")
    return make_busybox_tar(tmp_path_factory.mktemp("busybox") / "busybox.tar")


@dataclass
class BuildResult:
    image: ResolvedImage
    events: list[ev.Event] = field(default_factory=list)

    @property
    def id(self) -> str:
        return str(self.image.id)

    @property
    def config(self) -> dict[str, Any]:
        return dict(self.image.config.config)

    def finished(self) -> list[ev.StepFinished]:
        return [e for e in self.events if isinstance(e, ev.StepFinished)]

    def cached_steps(self) -> list[bool]:
        """Per step that adds a layer: was it a cache hit."""
        return [e.cached for e in self.finished() if e.layer_size is not None]

    def logs(self) -> list[str]:
        return [e.line for e in self.events if isinstance(e, ev.StepLog)]


class BuildFailed(Exception):
    def __init__(self, error: BaseException, events: list[ev.Event]) -> None:
        super().__init__(str(error))
        self.error = error
        self.events = events


@dataclass
class BuilderEnv:
    engine: Engine
    root: Path
    workspace: Path

    @property
    def store(self) -> Any:
        return self.engine.images.store

    def context(self, files: Mapping[str, str | bytes], name: str = "ctx") -> Path:
        ctx = self.workspace / name
        ctx.mkdir(parents=True, exist_ok=True)
        for rel, content in files.items():
            path = ctx / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            if isinstance(content, bytes):
                path.write_bytes(content)
            else:
                path.write_text(content)
        return ctx

    def build(self, files: Mapping[str, str | bytes] | Path | None = None, *, name: str = "ctx",
              **options: Any) -> BuildResult:
        """Build a context (files written into a fresh directory, or an existing directory)."""
        ctx = files if isinstance(files, Path) else (self.context(files, name) if files is not None else None)
        opts = BuildOptions(context=ctx, **options)
        events: list[ev.Event] = []

        async def go() -> None:
            async for event in self.engine.builds.build(opts):
                events.append(event)

        try:
            asyncio.run(go())
        except Exception as exc:
            raise BuildFailed(exc, events) from exc
        finished = [e for e in events if isinstance(e, ev.BuildFinished)]
        assert finished, "the build yielded no BuildFinished event"
        return BuildResult(self.store.resolve(finished[-1].image_id.split(":", 1)[1]), events)

    def filesystem(self, name: str) -> dict[str, tuple[Any, ...]]:
        return exported_tree(self.store, name)


@pytest.fixture
def builder_env(busybox_tar: Path, tmp_path: Path) -> BuilderEnv:
    need_runc()
    engine = Engine(EngineConfig.from_env())
    import_rootfs(engine.images.store, busybox_tar, Reference.parse(BASE), changes=['CMD ["sh"]'])
    workspace = tmp_path / "work"
    workspace.mkdir()
    return BuilderEnv(engine, engine.config.root, workspace)


def exported_tree(store: Any, name: str) -> dict[str, tuple[Any, ...]]:
    """``dockyard export`` of an image as path -> (type, mode, uid, gid, sha256 or link target)."""
    buf = io.BytesIO()
    export_image(store, name, buf)
    buf.seek(0)
    return tar_tree(buf)


def tar_tree(fileobj: io.BufferedIOBase | io.BytesIO) -> dict[str, tuple[Any, ...]]:
    out: dict[str, tuple[Any, ...]] = {}
    with tarfile.open(fileobj=fileobj, mode="r:*") as tar:
        for info in tar:
            name = info.name.removeprefix("./").rstrip("/")
            if not name:
                continue
            if info.isreg():
                extracted = tar.extractfile(info)
                assert extracted is not None
                value: Any = hashlib.sha256(extracted.read()).hexdigest()
                kind = "file"
            elif info.issym():
                kind, value = "symlink", info.linkname
            elif info.islnk():
                kind, value = "hardlink", info.linkname.removeprefix("./")
            elif info.isdir():
                kind, value = "dir", None
            else:
                kind, value = "other", None
            out[name] = (kind, info.mode & 0o7777, info.uid, info.gid, value)
    return out


def directory_tree(root: Path) -> dict[str, tuple[Any, ...]]:
    """The same description for a directory on disk (a mounted image)."""
    out: dict[str, tuple[Any, ...]] = {}
    for entry in _walk(root):
        rel = str(entry.relative_to(root))
        st = os.lstat(entry)
        if stat.S_ISREG(st.st_mode):
            value: Any = hashlib.sha256(entry.read_bytes()).hexdigest()
            kind = "file"
        elif stat.S_ISLNK(st.st_mode):
            kind, value = "symlink", os.readlink(entry)
        elif stat.S_ISDIR(st.st_mode):
            kind, value = "dir", None
        else:
            kind, value = "other", None
        out[rel] = (kind, stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid, value)
    return out


def _walk(root: Path) -> Iterator[Path]:
    for entry in sorted(root.iterdir()):
        yield entry
        if entry.is_dir() and not entry.is_symlink():
            yield from _walk(entry)


def without_hardlinks(tree: dict[str, tuple[Any, ...]]) -> dict[str, tuple[Any, ...]]:
    """Hardlinks resolved to what they point to (a mounted tree cannot tell link from target)."""
    out = dict(tree)
    for path, value in tree.items():
        if value[0] == "hardlink" and value[4] in tree:
            out[path] = tree[value[4]]
    return out
