"""Adding a port mapping means recreating the container with the same configuration plus the new -p."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from engine.summaries import ContainerSummary

if TYPE_CHECKING:
    from engine.runtime.options import RunOptions


def publish_specs(container: ContainerSummary) -> tuple[str, ...]:
    """The container's current mappings as -p specs."""
    out = []
    for port in container.ports:
        host = f"{port.host_ip}:" if port.host_ip not in ("", "0.0.0.0") else ""
        out.append(f"{host}{port.host_port}:{port.container_port}/{port.protocol}")
    return tuple(dict.fromkeys(out))


def recreate_options(container: ContainerSummary, inspect: dict[str, Any], extra: str) -> RunOptions:
    """RunOptions for the same name, command, env, workdir, user and labels, with ``extra`` published too."""
    from engine.runtime.options import RunOptions

    config = inspect.get("Config") or {}
    return RunOptions(
        name=container.name, publish=(*publish_specs(container), extra), detach=True,
        command=tuple(config.get("Cmd") or ()), env=tuple(config.get("Env") or ()),
        workdir=config.get("WorkingDir") or None, user=config.get("User") or None,
    )


def run_command(image: str, options: RunOptions) -> str:
    """The `dockyard run` line equivalent to ``options`` (for the command log)."""
    import shlex

    parts = ["dockyard run -d"]
    if options.name:
        parts.append(f"--name {options.name}")
    parts.extend(f"-p {spec}" for spec in options.publish)
    parts.append(image)
    parts.extend(shlex.quote(arg) for arg in options.command)
    return " ".join(parts)
