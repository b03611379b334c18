"""Coverage-guided fuzzing of one target with atheris (libFuzzer), seeded from its corpus.

    .venv/bin/python -m tests.fuzz.run_atheris TARGET [-runs=N] [-max_total_time=S] [-seed=N]

Not part of the default suite (tests/test_hardening_fuzz.py runs a short bounded pass when atheris is
installed).  Anything but an EngineError is a finding: libFuzzer writes the input to ``crash-*`` in the
working directory; copy it into tests/fuzz/corpus/TARGET/ once fixed.  New coverage-increasing inputs
go to a scratch directory, not into the committed corpus.
"""

from __future__ import annotations

import sys
import tempfile

import atheris

from tests.fuzz.targets import CORPUS, TARGETS, import_engine, run

with atheris.instrument_imports(include=["engine"]):
    import_engine()


def main() -> None:
    if len(sys.argv) < 2 or sys.argv[1] not in TARGETS:
        raise SystemExit(f"usage: run_atheris TARGET [libFuzzer flags]; targets: {', '.join(sorted(TARGETS))}")
    target = sys.argv[1]
    scratch = tempfile.mkdtemp(prefix=f"atheris-{target}-")
    args = [sys.argv[0], *sys.argv[2:], scratch, str(CORPUS / target)]
    atheris.Setup(args, lambda data: run(target, data))
    atheris.Fuzz()


if __name__ == "__main__":
    main()
