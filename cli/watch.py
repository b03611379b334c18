"""`dockyard watch`: rebuild on change and swap the running container with no downtime."""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click

from cli.main import get_engine, run


def register(group: click.Group) -> None:
    group.add_command(watch)


@contextlib.contextmanager
def _quit_key(stop: Any) -> Iterator[None]:
    """While the loop runs, ``q`` on a terminal or a first Ctrl-C stops it cleanly."""
    import asyncio
    import signal

    loop = asyncio.get_running_loop()

    def on_interrupt() -> None:
        stop()  # stop cleanly (the final events still print); a second Ctrl-C interrupts at once
        loop.remove_signal_handler(signal.SIGINT)

    loop.add_signal_handler(signal.SIGINT, on_interrupt)
    if not sys.stdin.isatty():
        try:
            yield
        finally:
            loop.remove_signal_handler(signal.SIGINT)
        return
    import termios
    import tty

    fd = sys.stdin.fileno()
    saved = termios.tcgetattr(fd)
    tty.setcbreak(fd)

    def on_key() -> None:
        with contextlib.suppress(OSError):
            if os.read(fd, 32).lower().startswith(b"q"):
                stop()

    loop.add_reader(fd, on_key)
    try:
        yield
    finally:
        loop.remove_reader(fd)
        loop.remove_signal_handler(signal.SIGINT)
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)


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
@click.option("--ready-timeout", type=float, default=30.0, show_default=True,
              help="Seconds a new container gets to pass its HEALTHCHECK or accept on the first port.")
@click.argument("context", default=".")
def watch(tag: str | None, dockerfile: str | None, build_args: tuple[str, ...], target: str | None,
          publish: tuple[str, ...], env: tuple[str, ...], volumes: tuple[str, ...], name: str | None,
          config_file: str | None, keep: bool, ready_timeout: float, context: str) -> None:
    """Watch CONTEXT: rebuild with the cache on change, start the new container, swap the ports.

    Press q (or Ctrl-C) to stop; the container is removed unless --keep."""
    from dataclasses import replace

    from cli.build import _pairs
    from engine import events as ev
    from engine.runtime.options import parse_volume
    from engine.watch.service import options_for
    from engine.watch.state import WatchFailed

    options = options_for(Path(context), tag=tag, ports=publish, name=name,
                          dockerfile=Path(dockerfile) if dockerfile else None, keep=keep,
                          config_file=Path(config_file) if config_file else None,
                          build_args=dict(_pairs(build_args, "--build-arg")), target=target, env=env)
    options = replace(options, ready_timeout=ready_timeout,
                      run=replace(options.run, volumes=tuple(parse_volume(v) for v in volumes)))
    loop = get_engine().watch(options)

    async def go() -> None:
        with _quit_key(loop.stop):
            async for event in loop.run():
                if isinstance(event, ev.WatchStatus):
                    if event.phase == "building" and event.detail.startswith("step "):
                        continue  # the StepStarted line says it
                    took = f" ({event.seconds:.2f}s)" if event.seconds is not None else ""
                    click.echo(f"[{event.phase}] {event.detail}{took}", err=event.phase == "failed")
                    if isinstance(event, WatchFailed):
                        for line in event.last_lines[-5:]:
                            click.echo(f"    {line}", err=True)
                elif isinstance(event, ev.StepStarted):
                    click.echo(f"  STEP {event.step}/{event.total}: {event.instruction}")
                elif isinstance(event, ev.StepLog):
                    click.echo(f"    {event.line}")

    try:
        run(go())
    except KeyboardInterrupt:
        click.echo("stopped")
