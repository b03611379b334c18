"""The engine is headless: importing it (every module of it) never pulls in a UI package.

One leak is not ours: ``import httpx`` (0.28) eagerly imports its command-line entry point
``httpx._main`` -- click, rich and pygments -- whenever those are installed, and dockyard installs
them for its CLI. The probe therefore also runs with ``httpx._main`` made unimportable (exactly what
an httpx without its ``cli`` extra looks like) and then demands that no ``rich`` module is loaded, so
an engine module that imports rich itself is still caught.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
FORBIDDEN = ("textual", "rich", "tui", "cli")

# Runs in a fresh interpreter so that nothing this test session imported can hide or cause a hit.
PROBE = """
import importlib, json, pathlib, sys

class BlockHttpxCli:
    def find_spec(self, name, path=None, target=None):
        if name == "httpx._main":
            raise ImportError("httpx CLI blocked by the probe")
        return None

if BLOCK_HTTPX_CLI:
    sys.meta_path.insert(0, BlockHttpxCli())
root = pathlib.Path("engine")
names = sorted(
    ".".join(path.with_suffix("").parts[:-1] if path.name == "__init__.py" else path.with_suffix("").parts)
    for path in root.rglob("*.py")
)
failed = {}
for name in names:
    try:
        importlib.import_module(name)
    except Exception as exc:  # a module that cannot even be imported is a bug worth naming
        failed[name] = f"{type(exc).__name__}: {exc}"
forbidden = sorted(m for m in sys.modules if m.split(".")[0] in FORBIDDEN)
print(json.dumps({"imported": names, "failed": failed, "forbidden": forbidden}))
"""


def _probe(*, block_httpx_cli: bool) -> dict[str, object]:
    code = f"FORBIDDEN = {FORBIDDEN!r}\nBLOCK_HTTPX_CLI = {block_httpx_cli!r}\n{PROBE}"
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True,
                            timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    data: dict[str, object] = json.loads(result.stdout.strip().splitlines()[-1])
    return data


def test_engine_and_all_its_modules_import_without_ui_packages() -> None:
    data = _probe(block_httpx_cli=True)
    imported = data["imported"]
    assert isinstance(imported, list)
    assert "engine" in imported and "engine.oci.validate" in imported and "engine.oci.models" in imported
    assert data["failed"] == {}, f"engine modules that fail to import: {data['failed']}"
    assert data["forbidden"] == [], f"engine imported UI modules: {data['forbidden']}"


def test_without_the_block_only_httpx_cli_brings_rich() -> None:
    data = _probe(block_httpx_cli=False)
    forbidden = data["forbidden"]
    assert isinstance(forbidden, list)
    # textual, tui and cli: never, by any route.
    assert [m for m in forbidden if m.split(".")[0] != "rich"] == []
    if forbidden:  # rich arrived; it must be httpx's CLI module that brought it
        probe_httpx = subprocess.run(
            [sys.executable, "-c", "import sys, httpx; print('httpx._main' in sys.modules)"],
            cwd=REPO, capture_output=True, text=True, timeout=60, check=True)
        assert probe_httpx.stdout.strip() == "True"


def test_the_probe_would_notice_a_ui_import() -> None:
    # Guard against a probe that can never fail: the same check sees rich once something imports it.
    code = f"FORBIDDEN = {FORBIDDEN!r}\nimport sys, rich\n" + \
        "print(sorted(m for m in sys.modules if m.split('.')[0] in FORBIDDEN))"
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True,
                            timeout=60, check=True)
    assert "'rich'" in result.stdout
