"""`dockyard gc` removes the network leftovers of a container that vanished without `rm` (a crash),
and leaves those of existing containers alone."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from engine.config import EngineConfig

pytest_plugins = ["tests.runtime_fixtures"]

CLI = [sys.executable, "-m", "cli.main"]


def _dockyard(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=60, check=False)


def _netns() -> str:
    return subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True).stdout


def test_gc_removes_network_of_vanished_containers_only(busybox_image: str) -> None:
    config = EngineConfig.from_env()
    kept = _dockyard("run", "-d", "--name", "kept", busybox_image, "sleep", "60")
    gone = _dockyard("run", "-d", "--name", "gone", busybox_image, "sleep", "60")
    assert kept.returncode == 0 and gone.returncode == 0, kept.stderr + gone.stderr
    kept_id, gone_id = kept.stdout.strip(), gone.stdout.strip()
    try:
        assert f"dockyard-{gone_id[:12]}" in _netns()
        # the crash: the container's processes and state vanish, its network stays behind
        subprocess.run(["runc", "--root", str(config.root / "runtime" / "runc"), "kill", gone_id, "KILL"],
                       capture_output=True, check=False)
        _dockyard("kill", "gone")
        subprocess.run(["umount", "-l", str(config.containers_dir / gone_id / "rootfs")],
                       capture_output=True, check=False)
        shutil.rmtree(Path(config.containers_dir / gone_id))
        result = _dockyard("gc", "--grace", "0")
        assert result.returncode == 0, result.stderr
        assert "network namespaces" in result.stdout
        listing = _netns()
        assert f"dockyard-{gone_id[:12]}" not in listing
        assert f"dockyard-{kept_id[:12]}" in listing
    finally:
        _dockyard("rm", "-f", "kept")
