"""Suite-wide isolation: every test gets its own dockyard state, config and docker config, so the
suite never touches /var/lib/dockyard, ~/.docker or a real dockyard0 bridge."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

_SESSION_TAG = os.getpid() % 200


@pytest.fixture(scope="session", autouse=True)
def _fresh_session_bridge(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """A crashed earlier run on this machine may have left this session's bridge name behind, with
    namespaces still holding addresses of its subnet: clear them before any test hands them out."""
    bridge, subnet = f"dyt{_SESSION_TAG}", f"10.214.{_SESSION_TAG}.0/24"
    _release_network(tmp_path_factory.mktemp("stale-net"), bridge, subnet, force=True)
    yield
    _release_network(tmp_path_factory.mktemp("final-net"), bridge, subnet, force=True)


@pytest.fixture(autouse=True)
def isolated_dockyard(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    root = tmp_path / "dockyard-root"
    bridge, subnet = f"dyt{_SESSION_TAG}", f"10.214.{_SESSION_TAG}.0/24"
    monkeypatch.setenv("DOCKYARD_ROOT", str(root))
    monkeypatch.setenv("DOCKYARD_CONFIG", str(tmp_path / "dockyard-config.toml"))
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "docker-config"))
    monkeypatch.setenv("DOCKYARD_BRIDGE", bridge)
    monkeypatch.setenv("DOCKYARD_SUBNET", subnet)
    yield root
    _release_network(root / "net", bridge, subnet)


def _release_network(state_dir: Path, bridge: str, subnet: str, *, force: bool = False) -> None:
    """Each test's root has its own IPAM on the session's shared bridge: what one test leaves there
    (spare pool attachments answer ARP for their addresses) must go before the next test's fresh IPAM
    hands the same addresses out again."""
    if not (force or state_dir.is_dir()) or not Path(f"/sys/class/net/{bridge}").exists():
        return
    from engine.net.network import BridgeNetwork

    with contextlib.suppress(Exception):
        BridgeNetwork(state_dir, bridge=bridge, subnet=subnet).destroy()


# CI runs as root with every peer tool installed and ../shared beside the clone: there a skip can only
# mean something broke (a mount that fails, a tool that vanished), so it fails the run instead of
# hiding. The opt-in coverage-guided fuzz pass is the one skip CI expects.
_CI_ALLOWED_SKIPS = ("coverage-guided pass is opt-in",)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    if not (report.skipped and os.environ.get("CI") == "true" and os.geteuid() == 0):
        return
    if hasattr(report, "wasxfail"):
        return
    reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
    if any(allowed in reason for allowed in _CI_ALLOWED_SKIPS):
        return
    report.outcome = "failed"
    report.longrepr = f"skipped in CI, where every capability is present: {reason}"
