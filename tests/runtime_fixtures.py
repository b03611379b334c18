"""Fixtures for tests that run real containers: an offline busybox image in the test's private
DOCKYARD_ROOT (tests/conftest.py) and removal of the session's test bridge once it is unused.

Use with ``pytest_plugins = ["tests.runtime_fixtures"]``: a test that asks for ``busybox_image`` is
skipped, with the reason, where containers cannot run (no runc, not root, no busybox-static).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from engine.config import EngineConfig
from engine.oci.reference import Reference
from engine.store.importer import import_rootfs
from engine.store.layout import ImageStore
from tests.images import have_busybox, make_busybox_tar


def missing_capability() -> str | None:
    """Why containers cannot run here, or None."""
    if shutil.which("runc") is None:
        return "runc is not installed"
    if os.geteuid() != 0:
        return "containers need root (namespaces, mounts, runc)"
    if not have_busybox():
        return "busybox-static (/bin/busybox) is not installed"
    return None


@pytest.fixture(scope="module")
def busybox_tar(tmp_path_factory: pytest.TempPathFactory) -> Path:
    reason = missing_capability()
    if reason is not None:
        pytest.skip(reason)
    return make_busybox_tar(tmp_path_factory.mktemp("busybox") / "busybox.tar")


@pytest.fixture
def busybox_image(busybox_tar: Path) -> str:
    """``busybox:latest`` imported into this test's DOCKYARD_ROOT."""
    import_rootfs(ImageStore(EngineConfig.from_env().store_dir), busybox_tar, Reference.parse("busybox:latest"))
    return "busybox:latest"


@pytest.fixture(scope="module", autouse=True)
def _remove_test_bridge() -> Iterator[None]:
    yield
    bridge = os.environ.get("DOCKYARD_BRIDGE") or f"dyt{os.getpid() % 200}"
    brif = Path(f"/sys/class/net/{bridge}/brif")
    if bridge.startswith("dyt") and brif.is_dir() and not any(brif.iterdir()):
        subprocess.run(["ip", "link", "delete", "dev", bridge], check=False, capture_output=True)
