"""``RunOptions``: docker's ``run`` options as one frozen value, plus the pure parsers for their strings."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from engine.errors import InvalidInputError

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
NETWORK_MODES = ("bridge", "host", "none")


@dataclass(frozen=True, slots=True)
class VolumeSpec:
    """``-v``: a bind (``source`` absolute host path), a named volume, or an anonymous one (no source)."""

    target: str
    source: str | None = None
    read_only: bool = False

    @property
    def is_bind(self) -> bool:
        return self.source is not None and self.source.startswith("/")

    @property
    def is_named(self) -> bool:
        return self.source is not None and not self.source.startswith("/")

    def __str__(self) -> str:
        text = f"{self.source}:{self.target}" if self.source else self.target
        return text + (":ro" if self.read_only else "")


@dataclass(frozen=True, slots=True)
class HealthOptions:
    """``--health-*`` flags; None means "take the image's value" (seconds for the durations)."""

    cmd: str | None = None
    interval: float | None = None
    timeout: float | None = None
    retries: int | None = None
    start_period: float | None = None
    disabled: bool = False


@dataclass(frozen=True, slots=True)
class RunOptions:
    """Everything ``dockyard run`` accepts besides the image (docker's names and meanings)."""

    command: tuple[str, ...] = ()
    entrypoint: str | None = None  # None: the image's; "": cleared
    env: tuple[str, ...] = ()  # -e, in order; "KEY" alone takes the caller's value
    env_file_lines: tuple[str, ...] = ()  # --env-file contents, already read (lines)
    workdir: str | None = None
    user: str | None = None
    group_add: tuple[str, ...] = ()
    name: str | None = None
    hostname: str | None = None
    publish: tuple[str, ...] = ()  # -p specs, parsed by engine.net.ports
    publish_all: bool = False
    volumes: tuple[VolumeSpec, ...] = ()
    network: str = "bridge"
    memory: int | None = None  # bytes
    cpus: float | None = None
    pids_limit: int | None = None
    ulimits: tuple[tuple[str, int, int], ...] = ()  # (name, soft, hard) e.g. ("nofile", 1024, 1024)
    tty: bool = False
    interactive: bool = False
    detach: bool = False
    remove: bool = False
    read_only: bool = False
    health: HealthOptions = field(default_factory=HealthOptions)
    stop_signal: str | None = None
    stop_timeout: int | None = None
    labels: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.network not in NETWORK_MODES:
            raise InvalidInputError(
                f"unknown network {self.network!r} (use one of: {', '.join(NETWORK_MODES)})"
            )
        if self.workdir is not None and self.workdir and not self.workdir.startswith("/"):
            raise InvalidInputError(
                f"the working directory '{self.workdir}' is invalid, it needs to be an absolute path"
            )
        if self.name is not None:
            check_name(self.name)
        if self.cpus is not None and self.cpus <= 0:
            raise InvalidInputError(f"invalid --cpus {self.cpus}: must be greater than 0")
        if self.memory is not None and self.memory < 6 * 1024 * 1024:
            raise InvalidInputError("minimum memory limit allowed is 6MB")


_NAME = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9_.-]*")


def check_name(name: str) -> str:
    if not _NAME.fullmatch(name) or len(name) > 128:
        raise InvalidInputError(
            f"invalid container name {name!r}: only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed"
        )
    return name


_SIZE = re.compile(r"(\d+(?:\.\d+)?)\s*([kmgtb]?)b?", re.IGNORECASE)
_UNITS = {"": 1, "b": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}


def parse_memory(text: str) -> int:
    """docker's ``--memory`` sizes: ``512m``, ``1g``, ``1048576`` (bytes), ``64k``."""
    match = _SIZE.fullmatch(text.strip())
    if not match:
        raise InvalidInputError(f"invalid size: {text!r} (use e.g. 512m or 1g)")
    return int(float(match.group(1)) * _UNITS[match.group(2).lower()])


def parse_volume(spec: str) -> VolumeSpec:
    """``-v``: ``/host:/ctr[:ro|rw]``, ``name:/ctr[:ro]`` or ``/ctr`` (anonymous)."""
    parts = spec.split(":")
    mode = ""
    if len(parts) == 3 or (len(parts) == 2 and not parts[1].startswith("/")):
        mode = parts.pop()
    if len(parts) == 1:
        target, source = parts[0], None
    elif len(parts) == 2:
        source, target = parts
    else:
        raise InvalidInputError(f"invalid volume specification: {spec!r}")
    flags = [m for m in mode.split(",") if m]
    for flag in flags:
        if flag not in ("ro", "rw", "z", "Z", "rprivate", "private", "rshared", "shared", "rslave", "slave",
                        "nocopy"):
            raise InvalidInputError(f"invalid volume specification: {spec!r}: invalid mode {flag!r}")
    if not target.startswith("/"):
        raise InvalidInputError(f"invalid volume specification: {spec!r}: the container path must be absolute")
    if target == "/":
        raise InvalidInputError(f"invalid volume specification: {spec!r}: the destination can't be '/'")
    if source is not None and not source:
        raise InvalidInputError(f"invalid volume specification: {spec!r}: empty source")
    if source is not None and not source.startswith("/") and not _NAME.fullmatch(source):
        raise InvalidInputError(
            f"invalid volume specification: {spec!r}: {source!r} is neither an absolute path nor a volume name"
        )
    return VolumeSpec(target=target, source=source, read_only="ro" in flags)


def parse_env_file(text: str) -> tuple[str, ...]:
    """docker's ``--env-file``: one ``KEY=VALUE`` or ``KEY`` a line; ``#`` comments and blanks skipped."""
    out: list[str] = []
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.lstrip()
        if not line or line.startswith("#"):
            continue
        key = line.split("=", 1)[0]
        if not key or any(c.isspace() for c in key):
            raise InvalidInputError(f"invalid env file line {number}: variable {key!r} contains whitespaces")
        out.append(line if "=" in line else line.rstrip())
    return tuple(out)


_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)")
_DURATION_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(text: str) -> float:
    """Go-style durations as docker takes them (``30s``, ``1m30s``, ``500ms``); seconds as a float."""
    text = text.strip()
    if text in ("0", ""):
        return 0.0
    pos, total = 0, 0.0
    for match in _DURATION.finditer(text):
        if match.start() != pos:
            break
        total += float(match.group(1)) * _DURATION_UNITS[match.group(2)]
        pos = match.end()
    if pos != len(text) or pos == 0:
        raise InvalidInputError(f"invalid duration {text!r} (use e.g. 30s, 1m30s, 500ms)")
    return total


_ULIMIT_NAMES = {
    "core": "RLIMIT_CORE", "cpu": "RLIMIT_CPU", "data": "RLIMIT_DATA", "fsize": "RLIMIT_FSIZE",
    "locks": "RLIMIT_LOCKS", "memlock": "RLIMIT_MEMLOCK", "msgqueue": "RLIMIT_MSGQUEUE", "nice": "RLIMIT_NICE",
    "nofile": "RLIMIT_NOFILE", "nproc": "RLIMIT_NPROC", "rss": "RLIMIT_RSS", "rtprio": "RLIMIT_RTPRIO",
    "rttime": "RLIMIT_RTTIME", "sigpending": "RLIMIT_SIGPENDING", "stack": "RLIMIT_STACK", "as": "RLIMIT_AS",
}


def parse_ulimit(text: str) -> tuple[str, int, int]:
    """``--ulimit nofile=1024:2048`` -> ("nofile", 1024, 2048)."""
    name, sep, values = text.partition("=")
    if not sep or name not in _ULIMIT_NAMES:
        raise InvalidInputError(f"invalid ulimit {text!r} (use e.g. nofile=1024:1024)")
    soft_text, _, hard_text = values.partition(":")
    try:
        soft = int(soft_text)
        hard = int(hard_text) if hard_text else soft
    except ValueError:
        raise InvalidInputError(f"invalid ulimit {text!r}: values must be integers") from None
    if soft > hard:
        raise InvalidInputError(f"invalid ulimit {text!r}: soft limit {soft} is above hard limit {hard}")
    return name, soft, hard


def rlimit_type(name: str) -> str:
    return _ULIMIT_NAMES[name]
