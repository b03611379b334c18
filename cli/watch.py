"""`dockyard watch`: rebuild on change and swap the running container with no downtime."""

from __future__ import annotations

from pathlib import Path

import click

from cli.main import get_engine, run


def register(group: click.Group) -> None:
    group.add_command(watch)


@click.command("watch")
@click.option("-t", "--tag", default=None, help="Image name for the builds (default: <dir>-dev:latest).")
@click.option("-f", "--file", "dockerfile", type=click.Path(), default=None)
@click.option("--build-arg", "build_args", multiple=True)
@click.option("--target", default=None)
@click.option("-p", "--publish", multiple=True, help="Publish a port: [ip:]host:container[/udp].")
@click.option("-e", "--env", multiple=True)
@click.option("-v", "--volume", "volumes", multiple=True)
@click.option("--name", default=None, help="Container name prefix (default: the directory name).")
@click.option("--config", "config_file", type=click.Path(), default=None,
              help="Watch rules (default CONTEXT/dockyard.toml, or compose develop.watch).")
@click.option("--keep", is_flag=True, help="Leave the last container running when the loop stops.")
@click.argument("context", default=".")
def watch(tag: str | None, dockerfile: str | None, build_args: tuple[str, ...], target: str | None,
          publish: tuple[str, ...], env: tuple[str, ...], volumes: tuple[str, ...], name: str | None,
          config_file: str | None, keep: bool, context: str) -> None:
    """Watch CONTEXT: rebuild with the cache on change, start the new container, swap the ports."""
    from cli.build import _pairs
    from engine import events as ev
    from engine.build.builder import BuildOptions
    from engine.runtime.options import RunOptions, parse_volume
    from engine.watch.loop import WatchLoop, WatchOptions

    root = Path(context).resolve()
    base = name or (root.name.lower().replace("_", "-") or "app")
    build = BuildOptions(context=root, dockerfile=Path(dockerfile) if dockerfile else None,
                         tags=(tag or f"{base}-dev:latest",), build_args=_pairs(build_args, "--build-arg"),
                         target=target)
    options = WatchOptions(
        build=build,
        run=RunOptions(publish=publish, env=env, volumes=tuple(parse_volume(v) for v in volumes)),
        name=base, keep=keep, config_file=Path(config_file) if config_file else None,
    )
    loop = WatchLoop(get_engine(), options)

    async def go() -> None:
        async for event in loop.run():
            if isinstance(event, ev.WatchStatus):
                took = f" ({event.seconds:.2f}s)" if event.seconds is not None else ""
                click.echo(f"[{event.phase}] {event.detail}{took}")
            elif isinstance(event, ev.StepStarted):
                click.echo(f"  STEP {event.step}/{event.total}: {event.instruction}")
            elif isinstance(event, ev.StepFailed):
                click.echo(f"  error: {event.message}", err=True)
                for line in event.last_lines[-5:]:
                    click.echo(f"    {line}", err=True)

    try:
        run(go())
    except KeyboardInterrupt:
        click.echo("stopped")
