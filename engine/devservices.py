"""Development services for the first run: a local CNCF registry on 127.0.0.1:5000.

The registry runs as a background process (its own session, so it outlives the app) with its config,
storage, log and pid file under ``DOCKYARD_ROOT/devservices/registry``. :func:`ensure_registry` is
idempotent: a registry that already answers on the address is reused, whoever started it.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from engine.config import EngineConfig
from engine.errors import RegistryUnavailableError

DEV_REGISTRY = "127.0.0.1:5000"
REGISTRY_BINARIES = ("docker-registry", "registry")


@dataclass(frozen=True, slots=True)
class DevRegistry:
    address: str
    started: bool  # False: an already running registry was reused
    pid: int | None
    directory: Path


def registry_dir(config: EngineConfig) -> Path:
    return config.root / "devservices" / "registry"


def answers(address: str, timeout: float = 0.5) -> bool:
    """Whether a distribution registry answers ``GET /v2/`` (200 or 401) on ``address``."""
    try:
        with urllib.request.urlopen(f"http://{address}/v2/", timeout=timeout) as response:
            return int(response.status) in (200, 401)
    except urllib.error.HTTPError as exc:
        return exc.code == 401
    except (OSError, ValueError):
        return False


def ensure_registry(config: EngineConfig, address: str = DEV_REGISTRY, *, wait: float = 10.0) -> DevRegistry:
    """Reuse the registry on ``address`` or start one there; returns once ``/v2/`` answers."""
    directory = registry_dir(config)
    if answers(address):
        return DevRegistry(address, False, _read_pid(directory), directory)
    binary = next((found for name in REGISTRY_BINARIES if (found := shutil.which(name))), None)
    if binary is None:
        raise RegistryUnavailableError("no docker-registry binary (apt-get install docker-registry) "
                                       f"and nothing answers on {address}")
    storage = directory / "data"
    storage.mkdir(parents=True, exist_ok=True)
    settings = {
        "version": 0.1,
        "log": {"level": "warn", "accesslog": {"disabled": True}},
        "storage": {"filesystem": {"rootdirectory": str(storage)}, "delete": {"enabled": True}},
        "http": {"addr": address},
    }
    config_path = directory / "config.yml"
    config_path.write_text(json.dumps(settings, indent=2) + "\n")  # JSON is YAML
    with open(directory / "registry.log", "ab") as log:
        process = subprocess.Popen([binary, "serve", str(config_path)], stdin=subprocess.DEVNULL, stdout=log,
                                   stderr=log, start_new_session=True, close_fds=True)
    (directory / "registry.pid").write_text(f"{process.pid}\n")
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        if answers(address, timeout=0.2):
            return DevRegistry(address, True, process.pid, directory)
        if process.poll() is not None:
            raise RegistryUnavailableError(f"the dev registry exited with status {process.returncode} "
                                           f"(see {directory / 'registry.log'})")
        time.sleep(0.05)
    process.terminate()
    raise RegistryUnavailableError(f"the dev registry did not answer on {address} within {wait:.0f}s")


def stop_registry(config: EngineConfig) -> bool:
    """Stop the dev registry this root started (by its pid file); False when none was running."""
    directory = registry_dir(config)
    pid = _read_pid(directory)
    if pid is None:
        return False
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        cmdline = b""
    if b"registry" not in cmdline:  # stale pid file: that process is gone (or is someone else now)
        (directory / "registry.pid").unlink(missing_ok=True)
        return False
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return False
    finally:
        (directory / "registry.pid").unlink(missing_ok=True)
    return True


def _read_pid(directory: Path) -> int | None:
    try:
        return int((directory / "registry.pid").read_text().strip())
    except (OSError, ValueError):
        return None
