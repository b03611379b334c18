"""Bounded, reproducible fuzzing of every parser that reads outside input (issue 8, docs/security.md).

Property for every target (tests/fuzz/targets.py): it returns or raises an EngineError subclass, never
another exception; the tar target also proves no byte lands outside the extraction directory.  Inputs
come from the corpus (tests/fuzz/corpus/<target>/), mutations of it and structure-aware generators.

Budget: DOCKYARD_FUZZ_EXAMPLES per target (default 600; the tar target gets a quarter), seeded by
DOCKYARD_FUZZ_SEED (default fixed, printed).  A failing input is written to the corpus when
DOCKYARD_FUZZ_SAVE=1, then fixed and kept there as a regression case.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, note, seed, settings

from engine.errors import EngineError
from tests.fuzz.strategies import inputs
from tests.fuzz.targets import CORPUS, TARGETS, corpus

REPO = Path(__file__).resolve().parent.parent
SEED = int(os.environ.get("DOCKYARD_FUZZ_SEED", "20240801"))
EXAMPLES = int(os.environ.get("DOCKYARD_FUZZ_EXAMPLES", "600"))
# Divide the budget for targets whose every example costs a temp tree, a store or an event loop.
SLOW_TARGETS = {"tar_layer": 4, "image_archive": 4, "challenge": 2, "registry_response": 2}
STATS: dict[str, int] = {}


def _check(target: str, data: bytes) -> None:
    with contextlib.suppress(EngineError):
        TARGETS[target](data)


def _save(target: str, data: bytes) -> None:
    directory = CORPUS / target
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"crash-{hashlib.sha256(data).hexdigest()[:16]}"
    path.write_bytes(data)
    print(f"\nsaved the failing input as {path}")


@pytest.mark.parametrize("target", sorted(TARGETS))
def test_corpus_replays(target: str) -> None:
    """Every stored input (seeds and past findings) still holds the property."""
    cases = corpus(target)
    assert cases, f"no corpus for {target}"
    for data in cases:
        _check(target, data)


@pytest.mark.parametrize("target", sorted(TARGETS))
def test_fuzz(target: str, capsys: pytest.CaptureFixture[str]) -> None:
    budget = max(10, EXAMPLES // SLOW_TARGETS.get(target, 1))
    with capsys.disabled():
        print(f"\nfuzz {target}: seed {SEED}, {budget} examples (DOCKYARD_FUZZ_SEED={SEED} replays)", end="")
    count = 0
    last: bytes | None = None

    @seed(SEED)
    @settings(max_examples=budget, deadline=None, database=None, print_blob=True,
              suppress_health_check=list(HealthCheck))
    @given(data=inputs(target))
    def run(data: bytes) -> None:
        nonlocal count, last
        count += 1
        note(f"target={target} seed={SEED} input={data!r}")
        last = data
        _check(target, data)
        last = None

    started = time.monotonic()
    try:
        run()
    except BaseException:
        # hypothesis replays the shrunk example last, so ``last`` is the minimal failing input.
        if last is not None and os.environ.get("DOCKYARD_FUZZ_SAVE") == "1":
            _save(target, last)
        raise
    STATS[target] = count
    with capsys.disabled():
        print(f" -> {count} cases in {time.monotonic() - started:.1f}s", end="")


ATHERIS_RUNS = int(os.environ.get("DOCKYARD_ATHERIS_RUNS", "0"))


@pytest.mark.parametrize("target", sorted(TARGETS))
def test_atheris_bounded(target: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A short coverage-guided pass (libFuzzer via atheris), seeded and bounded in runs; longer runs:
    ``python -m tests.fuzz.run_atheris TARGET -max_total_time=600``."""
    if not ATHERIS_RUNS:
        pytest.skip("coverage-guided pass is opt-in: DOCKYARD_ATHERIS_RUNS=100000 (runs per target)")
    pytest.importorskip("atheris", reason="atheris is not installed (pip install atheris)")
    runs = max(50, ATHERIS_RUNS // (25 if target in ("tar_layer", "image_archive") else 1))
    command = [sys.executable, "-m", "tests.fuzz.run_atheris", target, f"-runs={runs}", f"-seed={SEED}",
               "-rss_limit_mb=2048", "-max_total_time=300", "-print_final_stats=1"]
    proc = subprocess.run(command, cwd=tmp_path, env=dict(os.environ, PYTHONPATH=str(REPO)), capture_output=True,
                          text=True, timeout=400)
    executed = re.search(r"stat::number_of_executed_units:\s*(\d+)", proc.stderr)
    with capsys.disabled():
        print(f"\natheris {target}: seed {SEED}, {executed.group(1) if executed else '?'} runs", end="")
    crashes = [p.name for p in tmp_path.glob("crash-*")]
    assert proc.returncode == 0 and not crashes, f"{' '.join(command)}\n{proc.stderr[-3000:]}"
