"""A deterministic, in-memory stand-in for engine.Engine, for TUI unit and snapshot tests only.

It implements the protocols in tui/engine_protocols.py with fixed data and fixed times (see CLOCK), so
SVG snapshots do not change between runs. Integration tests use the real Engine.
"""

from __future__ import annotations

import asyncio
import datetime as _dt
from collections.abc import AsyncIterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from engine.archive.changes import Change, ImageChanges, Inefficiency
from engine.archive.changes import LayerChanges as ImageLayerChanges
from engine.build.builder import BuildOptions
from engine.errors import AuthenticationError, ContainerNotFoundError, ImageNotFoundError
from engine.events import (
    BuildFinished,
    BuildStarted,
    ContainerStateChanged,
    Event,
    ImageStored,
    LayerProgress,
    LogLine,
    PortBound,
    StepFailed,
    StepFinished,
    StepLog,
    StepStarted,
    TransferFinished,
    TransferStarted,
    WatchStatus,
)
from engine.runtime.options import RunOptions
from engine.summaries import ContainerStats, ContainerSummary, ImageSummary, LayerSummary, PortSummary
from engine.watch.loop import WatchOptions

NOW = _dt.datetime(2025, 1, 15, 12, 0, 0, tzinfo=_dt.UTC)


def CLOCK() -> _dt.datetime:
    return NOW


def at(**delta: float) -> str:
    return (NOW - _dt.timedelta(**delta)).strftime("%Y-%m-%dT%H:%M:%SZ")


def digest(seed: str) -> str:
    import hashlib

    return "sha256:" + hashlib.sha256(seed.encode()).hexdigest()


@dataclass(frozen=True)
class FakeConfig:
    root: Path = Path("/var/lib/dockyard")
    runtime: str = "runc"
    config_file: Path = Path("/root/.config/dockyard/config.toml")
    keymap: dict[str, str] = field(default_factory=dict)

    @property
    def store_dir(self) -> Path:
        return self.root / "images"


@dataclass(frozen=True)
class RemoteLayer:
    digest: str
    size: int
    local: bool


@dataclass(frozen=True)
class TagDetails:
    reference: str
    digest: str
    size: int
    platforms: tuple[str, ...]
    created: str | None
    layers: tuple[RemoteLayer, ...]
    local_layers: int
    pull_bytes: int
    media_type: str = "application/vnd.oci.image.manifest.v1+json"


BUSYBOX_LAYER = digest("layer-busybox")
HELLO_LAYER = digest("layer-hello")
CONFIG_LAYER = digest("layer-config")


def is_hello(image: ImageSummary) -> bool:
    return any("hello" in name for name in image.repo_tags)


class FakeImages:
    def __init__(self) -> None:
        self.images: list[ImageSummary] = [
            ImageSummary(digest("busybox-config"), ("busybox:latest",), ("busybox@" + digest("busybox"),),
                         digest("busybox"), at(days=30), 1_196_431),
            ImageSummary(digest("hello-config"), ("hello:dev", "localhost:5000/hello:latest"),
                         ("localhost:5000/hello@" + digest("hello"),), digest("hello"), at(minutes=12), 1_201_877),
            ImageSummary(digest("old-config"), (), (), digest("old"), at(days=3), 1_210_002),
        ]

    def _find(self, name: str) -> ImageSummary:
        for image in self.images:
            if name in image.repo_tags or name in (image.id, image.manifest_digest) or image.id.startswith(name):
                return image
        raise ImageNotFoundError(f"no such image: {name}")

    async def list(self) -> list[ImageSummary]:
        return list(self.images)

    async def inspect(self, name: str) -> dict[str, Any]:
        image = self._find(name)
        hello = is_hello(image)
        return {
            "Id": image.id, "RepoTags": list(image.repo_tags), "Created": image.created, "Os": "linux",
            "Architecture": "amd64", "Size": image.size,
            "Config": {
                "Entrypoint": None, "Cmd": ["httpd", "-f", "-p", "8080", "-h", "/www"] if hello else ["sh"],
                "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "GREETING=hello"]
                if hello else ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
                "ExposedPorts": {"8080/tcp": {}} if hello else None, "Volumes": {"/data": {}} if hello else None,
                "WorkingDir": "/www" if hello else "",
                "Labels": {"org.opencontainers.image.title": "hello"} if hello else None,
            },
        }

    async def layers(self, name: str) -> list[LayerSummary]:
        image = self._find(name)
        base = [LayerSummary(BUSYBOX_LAYER, digest("diff-busybox"), 1_195_000, "import busybox rootfs")]
        if not is_hello(image):
            return base
        return [
            *base,
            LayerSummary("", "", 0, "WORKDIR /www", empty_layer=True),
            LayerSummary(HELLO_LAYER, digest("diff-hello"), 612, "COPY index.html /www/index.html"),
            LayerSummary(CONFIG_LAYER, digest("diff-config"), 265, "RUN echo 'Listen 8080' > /etc/httpd.conf"),
            LayerSummary("", "", 0, "EXPOSE 8080/tcp", empty_layer=True),
            LayerSummary("", "", 0, 'CMD ["httpd","-f","-p","8080","-h","/www"]', empty_layer=True),
        ]

    async def layer_changes(self, name: str) -> ImageChanges:
        image = self._find(name)
        base = (Change("bin", "added", "dir", 0, 0o755), Change("bin/busybox", "added", "file", 1_131_168, 0o755),
                Change("bin/sh", "added", "symlink", 0, 0o777), Change("bin/ls", "added", "symlink", 0, 0o777),
                Change("etc", "added", "dir", 0, 0o755), Change("etc/passwd", "added", "file", 132, 0o644),
                Change("etc/group", "added", "file", 46, 0o644), Change("etc/httpd.conf", "added", "file", 64, 0o644),
                Change("var/www/index.html", "added", "file", 300, 0o644))
        if not is_hello(image):
            return ImageChanges((ImageLayerChanges(0, base, 1_131_710, 0),), 1_131_710, 0, ())
        return ImageChanges(
            (ImageLayerChanges(0, base, 1_131_710, 364),
             ImageLayerChanges(1, (Change("www", "added", "dir", 0, 0o755),
                                   Change("www/index.html", "added", "file", 512, 0o644),
                                   Change("var/www/index.html", "deleted", "", 0, 0)), 512, 0),
             ImageLayerChanges(2, (Change("etc/httpd.conf", "modified", "file", 12, 0o644),), 12, 0)),
            1_132_234, 364,
            (Inefficiency("var/www/index.html", 1, 300), Inefficiency("etc/httpd.conf", 2, 64)))

    async def export_file(self, name: str, layer: int, path: str, dest: Path) -> int:
        data = f"{path} from layer {layer} of {name}\n".encode()
        dest.write_bytes(data)
        return len(data)

    async def tag(self, source: str, target: str) -> None:
        image = self._find(source)
        self.images[self.images.index(image)] = replace(image, repo_tags=(*image.repo_tags, target))

    async def remove(self, name: str, *, force: bool = False) -> list[str]:
        image = self._find(name)
        tags = tuple(t for t in image.repo_tags if t != name)
        index = self.images.index(image)
        if tags:
            self.images[index] = replace(image, repo_tags=tags)
            return [f"Untagged: {name}"]
        del self.images[index]
        return [f"Deleted: {image.id}"]


class FakeRegistry:
    def __init__(self, repositories: int = 0, tags: int = 0, page: int = 1000) -> None:
        self.repository_names = ["hello", "busybox", "team/api", "team/web", "tools/debug"] + [
            f"bulk/repo-{i:05d}" for i in range(repositories)]
        self.tag_count = tags
        self.page = page
        self.deleted: list[str] = []
        self.needs_login = False
        self.logins: list[tuple[str, str]] = []
        self.pushed: list[tuple[str | None, str]] = []

    async def known_registries(self) -> list[str]:
        return ["localhost:5000", "docker.io"]

    async def repositories(self, registry: str, filter: str | None = None) -> AsyncIterator[list[str]]:
        if self.needs_login:
            raise AuthenticationError(f"{registry}: authentication required", status=401)
        names = [n for n in self.repository_names if (filter or "") in n]
        for start in range(0, len(names), self.page):
            yield names[start:start + self.page]
            await asyncio.sleep(0)

    async def tags(self, repository: str) -> AsyncIterator[list[str]]:
        names = ["latest", "1.0", "1.1", "dev"] + [f"build-{i:05d}" for i in range(self.tag_count)]
        for start in range(0, len(names), self.page):
            yield names[start:start + self.page]
            await asyncio.sleep(0)

    async def tag_details(self, reference: str) -> TagDetails:
        repo, _, tag = reference.rpartition(":")
        same = tag in ("latest", "1.1")  # two tags share a digest
        seed = f"{repo}:latest" if same else reference
        local = "hello" in repo and same
        layers = (RemoteLayer(BUSYBOX_LAYER, 1_195_000, True),
                  RemoteLayer(digest(seed + "-app"), 612, local))
        return TagDetails(reference, digest(seed), sum(layer.size for layer in layers) + 1_400,
                          ("linux/amd64",) if tag != "1.0" else ("linux/amd64", "linux/arm64"),
                          at(hours=2), layers, sum(1 for layer in layers if layer.local),
                          sum(layer.size for layer in layers if not layer.local))

    async def inspect(self, reference: str) -> dict[str, Any]:
        details = await self.tag_details(reference)
        return {"schemaVersion": 2, "mediaType": details.media_type,
                "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": digest("cfg"),
                           "size": 1400},
                "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": layer.digest,
                            "size": layer.size} for layer in details.layers]}

    async def sibling_tags(self, reference: str) -> list[str]:
        tag = reference.rpartition(":")[2]
        return [t for t in ("latest", "1.1") if t != tag] if tag in ("latest", "1.1") else []

    async def delete(self, reference: str) -> list[str]:
        self.deleted.append(reference)
        return await self.sibling_tags(reference)

    async def login(self, registry: str, username: str, password: str) -> str:
        self.logins.append((registry, username))
        self.needs_login = False
        return "/root/.docker/config.json"

    async def pull(self, reference: str) -> AsyncIterator[Event]:
        yield TransferStarted("pull", reference, 2)
        for step in range(0, 101, 25):
            yield LayerProgress("pull", digest(reference + "-app"), step * 6, 600, "downloading")
            await asyncio.sleep(0)
        yield LayerProgress("pull", BUSYBOX_LAYER, 1_195_000, 1_195_000, "exists")
        yield ImageStored(reference, digest(reference + "-config"), digest(reference))
        yield TransferFinished("pull", reference, digest(reference), 600, 0.2)

    async def push(self, reference: str, *, source: str | None = None) -> AsyncIterator[Event]:
        self.pushed.append((source, reference))
        yield TransferStarted("push", reference, 2)
        yield LayerProgress("push", BUSYBOX_LAYER, 1_195_000, 1_195_000, "exists")
        yield LayerProgress("push", HELLO_LAYER, 612, 612, "done")
        yield TransferFinished("push", reference, digest(reference), 612, 0.1)


def _port_summary(spec: str) -> PortSummary:
    host, _, target = spec.rpartition(":")
    port, _, proto = target.partition("/")
    return PortSummary("0.0.0.0", int(host.rpartition(":")[2] or port), int(port), proto or "tcp")


class FakeContainers:
    def __init__(self) -> None:
        self.items: list[ContainerSummary] = [
            ContainerSummary(digest("c-web")[7:], "web", "localhost:5000/hello:latest", digest("hello-config"),
                             "httpd -f -p 8080 -h /www", "running", "Up 25 minutes", at(minutes=26),
                             started_at=at(minutes=25), health="healthy",
                             ports=(PortSummary("0.0.0.0", 18080, 8080, "tcp"),), ip_address="10.213.0.2"),
            ContainerSummary(digest("c-api")[7:], "api", "hello:dev", digest("hello-config"), "sh -c serve",
                             "running", "Up 3 hours", at(hours=3), started_at=at(hours=3),
                             ports=(PortSummary("127.0.0.1", 18081, 8080, "tcp"),
                                    PortSummary("0.0.0.0", 15353, 53, "udp")), ip_address="10.213.0.3"),
            ContainerSummary(digest("c-job")[7:], "migrate", "busybox:latest", digest("busybox-config"),
                             "sh -c 'echo done'", "exited", "Exited (0) 2 hours ago", at(hours=2),
                             started_at=at(hours=2), finished_at=at(hours=2), exit_code=0),
        ]
        self.calls: list[tuple[str, str]] = []

    def _find(self, ref: str) -> ContainerSummary:
        for c in self.items:
            if ref in (c.id, c.name) or c.id.startswith(ref):
                return c
        raise ContainerNotFoundError(f"no such container: {ref}")

    async def list(self, *, all: bool = True) -> list[ContainerSummary]:
        return [c for c in self.items if all or c.state == "running"]

    async def run(self, image: str, options: RunOptions) -> AsyncIterator[Event]:
        mapped = [_port_summary(spec) for spec in options.publish]
        name = options.name or "new"
        summary = ContainerSummary(digest(f"c-{name}")[7:], name, image, digest(image), "sh", "running",
                                   "Up 1 second", at(seconds=1), started_at=at(seconds=1), ports=tuple(mapped))
        self.items.append(summary)
        self.calls.append(("run", summary.name))
        yield ContainerStateChanged(summary.id, name, "created")
        for port in mapped:
            yield PortBound(summary.id, port.host_ip, port.host_port, port.container_port, port.protocol)
        yield ContainerStateChanged(summary.id, name, "running")

    async def recreate(self, container: str, *, publish: tuple[str, ...] | None = None,
                       add_publish: tuple[str, ...] = ()) -> ContainerSummary:
        c = self._find(container)
        specs = [*(publish if publish is not None else ()), *add_publish]
        added = tuple(_port_summary(spec) for spec in specs)
        updated = replace(c, id=digest(f"c-{c.name}-again")[7:],
                          ports=added if publish is not None else (*c.ports, *added))
        self.items[self.items.index(c)] = updated
        self.calls.append(("recreate", c.name))
        return updated

    async def inspect(self, container: str) -> dict[str, Any]:
        c = self._find(container)
        return {"Id": c.id, "Name": "/" + c.name, "Config": {"Image": c.image, "Cmd": c.command.split(),
                                                             "Env": ["GREETING=hello"], "WorkingDir": "/www"}}

    async def _set(self, ref: str, state: str) -> ContainerSummary:
        c = self._find(ref)
        updated = replace(c, state=state)
        self.items[self.items.index(c)] = updated
        self.calls.append((state, c.name))
        return updated

    async def stop(self, container: str) -> ContainerSummary:
        return await self._set(container, "exited")

    async def kill(self, container: str) -> ContainerSummary:
        return await self._set(container, "exited")

    async def restart(self, container: str) -> ContainerSummary:
        return await self._set(container, "running")

    async def remove(self, container: str, *, force: bool = False) -> str:
        c = self._find(container)
        self.items.remove(c)
        self.calls.append(("remove", c.name))
        return c.id

    async def stats(self, container: str) -> ContainerStats:
        c = self._find(container)
        return ContainerStats(c.id, 1.5 if c.name == "web" else 0.3, 3_145_728, None, 2)

    async def logs(self, container: str, *, follow: bool = False) -> AsyncIterator[Event]:
        c = self._find(container)
        for i in range(12):
            stream = "stderr" if i == 7 else "stdout"
            text = f"[{c.name}] GET /index.html 200 ({i * 3 + 1} ms)\n" if i != 7 else \
                f"[{c.name}] warning: slow request\n"
            yield LogLine(c.id, stream, text, at(minutes=12 - i))

    async def events(self) -> AsyncIterator[Event]:
        return
        yield  # an async generator that ends at once


class FakeBuilds:
    def __init__(self, fail: bool = False) -> None:
        self.fail = fail
        self.requests: list[BuildOptions] = []

    async def build(self, options: BuildOptions) -> AsyncIterator[Event]:
        self.requests.append(options)
        context, dockerfile, tags = options.context, options.dockerfile, options.tags
        steps = ["FROM busybox:latest", "WORKDIR /www", "COPY index.html /www/index.html",
                 "RUN echo 'Listen 8080' > /etc/httpd.conf", "EXPOSE 8080", 'CMD ["httpd","-f","-p","8080"]']
        yield BuildStarted(str(context), str(dockerfile or "Dockerfile"), len(steps))
        for number, line in enumerate(steps, start=1):
            yield StepStarted(number, len(steps), "0", line, number)
            if line.startswith("RUN"):
                for text in ("+ echo Listen 8080", "configuring httpd", "done"):
                    yield StepLog(number, text)
                if self.fail:
                    yield StepLog(number, "sh: cannot create /etc/httpd.conf: Read-only file system", "stderr")
                    yield StepFailed(number, "RUN exited with code 2", 2,
                                     ("configuring httpd", "sh: cannot create /etc/httpd.conf: Read-only file system"))
                    return
            cached = number < 3
            size = {3: 612, 4: 265}.get(number)
            yield StepFinished(number, cached, 0.0 if cached else 0.4 + number / 10, size)
            await asyncio.sleep(0)
        yield BuildFinished(digest("hello-config"), digest("hello"), tuple(tags), 1.7)


class FakeWatchLoop:
    def __init__(self, options: WatchOptions) -> None:
        self.options = options
        self.stopped = False

    def stop(self) -> None:
        self.stopped = True

    async def run(self) -> AsyncIterator[Event]:
        yield WatchStatus("watching", f"watching {self.options.build.context}")
        yield WatchStatus("changed", "1 file changed", ("index.html",))
        yield WatchStatus("building")
        yield WatchStatus("ready", "hello ready", image_id=digest("hello-config"), seconds=1.4)
        yield WatchStatus("changed", "1 file changed", ("Dockerfile",))
        yield WatchStatus("failed", "Dockerfile:3: unknown instruction: COPPY", seconds=0.1)
        yield WatchStatus("watching", "waiting for changes")


class FakeEngine:
    """engine.Engine's shape with deterministic data. ``repositories``/``tags``: extra bulk entries."""

    def __init__(self, *, repositories: int = 0, tags: int = 0, fail_build: bool = False,
                 config: FakeConfig | None = None) -> None:
        self.config = config or FakeConfig()
        self.images = FakeImages()
        self.registry = FakeRegistry(repositories, tags)
        self.containers = FakeContainers()
        self.builds = FakeBuilds(fail_build)
        self.loops: list[FakeWatchLoop] = []

    def watch(self, options: WatchOptions) -> FakeWatchLoop:
        loop = FakeWatchLoop(options)
        self.loops.append(loop)
        return loop
