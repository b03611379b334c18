"""Where dockyard keeps its state and how it is configured (environment first, then the config file)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.errors import InvalidInputError


def default_root() -> Path:
    if os.environ.get("DOCKYARD_ROOT"):
        return Path(os.environ["DOCKYARD_ROOT"])
    if os.geteuid() == 0:
        return Path("/var/lib/dockyard")
    data_home = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(data_home) / "dockyard"


def default_config_file() -> Path:
    if os.environ.get("DOCKYARD_CONFIG"):
        return Path(os.environ["DOCKYARD_CONFIG"])
    config_home = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(config_home) / "dockyard" / "config.toml"


@dataclass(frozen=True)
class EngineConfig:
    root: Path
    runtime: str = "runc"
    bridge_name: str = "dockyard0"
    subnet: str = "10.213.0.0/24"
    insecure_registries: tuple[str, ...] = ()
    registries: tuple[str, ...] = ()
    config_file: Path = field(default_factory=default_config_file)
    keymap: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_env(cls, root: Path | None = None) -> EngineConfig:
        config_file = default_config_file()
        settings = load_config_file(config_file)
        engine = settings.get("engine", {}) if isinstance(settings.get("engine"), dict) else {}
        registries = settings.get("registries", {}) if isinstance(settings.get("registries"), dict) else {}
        return cls(
            root=root or default_root(),
            runtime=os.environ.get("DOCKYARD_RUNTIME") or str(engine.get("runtime", "runc")),
            bridge_name=os.environ.get("DOCKYARD_BRIDGE") or str(engine.get("bridge", "dockyard0")),
            subnet=os.environ.get("DOCKYARD_SUBNET") or str(engine.get("subnet", "10.213.0.0/24")),
            insecure_registries=tuple(str(r) for r in registries.get("insecure", [])),
            registries=tuple(str(r) for r in registries.get("saved", [])),
            config_file=config_file,
            keymap={str(k): str(v) for k, v in (settings.get("keymap") or {}).items()},
        )

    def ensure_root(self) -> None:
        """Create the state directory private to its owner (0700): layers, container file systems and
        logs are not for other local users. An existing directory that is wider is narrowed."""
        import stat

        try:
            self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
            info = self.root.stat()
            if info.st_uid == os.geteuid() and stat.S_IMODE(info.st_mode) & 0o077:
                os.chmod(self.root, 0o700)
        except OSError as exc:
            from engine.errors import from_os_error

            raise from_os_error(exc, f"cannot create the state directory {self.root}") from exc

    @property
    def store_dir(self) -> Path:
        """The OCI image layout (oci-layout, index.json, blobs/)."""
        return self.root / "images"

    @property
    def snapshots_dir(self) -> Path:
        return self.root / "snapshots"

    @property
    def containers_dir(self) -> Path:
        return self.root / "containers"

    @property
    def net_dir(self) -> Path:
        return self.root / "net"

    @property
    def cache_dir(self) -> Path:
        return self.root / "cache"

    @property
    def tmp_dir(self) -> Path:
        return self.root / "tmp"


def load_config_file(path: Path) -> dict[str, Any]:
    try:
        fh = open(path, "rb")  # noqa: SIM115 - closed below; most users have no config file
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise InvalidInputError(f"cannot read config file {path}: {exc}") from None
    import tomllib  # only when there is a file: every CLI verb reads the config

    with fh:
        try:
            return tomllib.load(fh)
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise InvalidInputError(f"cannot read config file {path}: {exc}") from None
