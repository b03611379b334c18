"""`dockyard` command line: docker-style verbs over engine.Engine. With no argument, the TUI opens."""

from __future__ import annotations

import importlib
import sys
from typing import Any

import click

# Each area module defines `register(group)`; imported lazily per call to keep start-up lean.
AREA_MODULES = ("cli.images", "cli.archives", "cli.registry", "cli.build", "cli.containers", "cli.watch")


class DockyardGroup(click.Group):
    """Turns every EngineError into one line on stderr and exit status 1 (never a traceback)."""

    def invoke(self, ctx: click.Context) -> Any:
        from engine.errors import EngineError

        try:
            return super().invoke(ctx)
        except EngineError as exc:
            click.echo(f"dockyard: error: {exc}", err=True)
            ctx.exit(1)
        except KeyboardInterrupt:
            click.echo("dockyard: interrupted", err=True)
            ctx.exit(130)
        except BrokenPipeError:
            ctx.exit(141)


@click.group(cls=DockyardGroup, invoke_without_command=True,
             context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--root", envvar="DOCKYARD_ROOT", type=click.Path(), default=None,
              help="State directory (default /var/lib/dockyard as root).")
@click.option("--read-only", is_flag=True, help="TUI: disable every action that changes state.")
@click.version_option(package_name="dockyard", prog_name="dockyard")
@click.pass_context
def cli(ctx: click.Context, root: str | None, read_only: bool) -> None:
    """dockyard: build, tag, push, pull and run container images without a daemon."""
    ctx.ensure_object(dict)
    ctx.obj["root"] = root
    if ctx.invoked_subcommand is None:
        try:
            app_module = importlib.import_module("tui.app")
        except ImportError:
            click.echo(ctx.get_help())
            return
        app_module.run_app(root=root, read_only=read_only)


def get_engine(ctx: click.Context | None = None) -> Any:
    """The Engine for this invocation (honours --root)."""
    from pathlib import Path

    from engine.api import Engine
    from engine.config import EngineConfig

    ctx = ctx or click.get_current_context()
    root = (ctx.find_root().obj or {}).get("root")
    return Engine(EngineConfig.from_env(Path(root) if root else None))


def run(coro: Any) -> Any:
    import asyncio

    return asyncio.run(coro)


for _name in AREA_MODULES:
    try:
        _module = importlib.import_module(_name)
    except ModuleNotFoundError as _exc:
        if _exc.name != _name:
            raise
        continue
    _module.register(cli)


def main() -> None:
    cli(prog_name="dockyard")


if __name__ == "__main__":
    sys.exit(main())
