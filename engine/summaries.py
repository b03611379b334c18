"""Plain, frozen records the facade returns for listings (what `images`, `ps`, the TUI tables show)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class ImageSummary:
    id: str  # config digest, "sha256:..."
    repo_tags: tuple[str, ...]  # familiar form, "busybox:latest"
    repo_digests: tuple[str, ...]  # "busybox@sha256:..."
    manifest_digest: str
    created: str | None  # RFC 3339
    size: int  # sum of compressed layer sizes + config (what the store holds for it)


@dataclass(frozen=True, slots=True)
class LayerSummary:
    digest: str  # compressed blob digest
    diff_id: str
    size: int  # compressed
    created_by: str  # the instruction from history
    empty_layer: bool = False


@dataclass(frozen=True, slots=True)
class PortSummary:
    host_ip: str
    host_port: int
    container_port: int
    protocol: str

    def __str__(self) -> str:
        return f"{self.host_ip}:{self.host_port}->{self.container_port}/{self.protocol}"


@dataclass(frozen=True, slots=True)
class ContainerSummary:
    id: str
    name: str
    image: str
    image_id: str
    command: str
    state: str  # created, running, exited
    status: str  # docker's "Up 3 minutes", "Exited (0) 2 seconds ago"
    created: str
    started_at: str | None = None
    finished_at: str | None = None
    exit_code: int | None = None
    health: str | None = None
    ports: tuple[PortSummary, ...] = field(default=())
    ip_address: str | None = None
    pid: int | None = None


@dataclass(frozen=True, slots=True)
class ContainerStats:
    container_id: str
    cpu_percent: float
    memory_bytes: int
    memory_limit: int | None
    pids: int
    net_rx: int = 0
    net_tx: int = 0
