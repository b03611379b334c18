"""Command-log lines for container (re)creation: adding a port mapping recreates the container with the
options the engine stored for it (``engine.containers.recreate``), plus the new -p."""

from __future__ import annotations

import shlex
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from engine.runtime.options import RunOptions


def recreate_command(name: str, image: str, spec: str) -> str:
    """The command-log line of a recreate (the CLI has no single command for it: rm, then run again)."""
    return (f"# recreate {name}: dockyard rm -f {shlex.quote(name)}, then dockyard run -d --name {shlex.quote(name)}"
            f" with its stored options and -p {spec} {image}")


def run_command(image: str, options: RunOptions) -> str:
    """The `dockyard run` line equivalent to ``options`` (for the command log)."""
    parts = ["dockyard run -d"]
    if options.name:
        parts.append(f"--name {options.name}")
    parts.extend(f"-p {spec}" for spec in options.publish)
    parts.append(image)
    parts.extend(shlex.quote(arg) for arg in options.command)
    return " ".join(parts)
