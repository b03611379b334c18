"""`dockyard` command line: docker-style verbs over engine.Engine. With no argument, the TUI opens."""

from __future__ import annotations

import importlib
import sys
from typing import Any

import click

# Each area module defines `register(group)`. Only the module of the command being run is imported,
# so `dockyard run` does not pay for the registry client or the builder (start-up time is latency).
COMMAND_MODULES = {
    "cli.images": ("images", "tag", "rmi", "inspect", "import", "history", "gc", "fsck"),
    "cli.archives": ("save", "load", "export"),
    "cli.registry": ("pull", "push", "login", "logout", "registry"),
    "cli.build": ("build",),
    "cli.containers": ("run", "create", "start", "stop", "restart", "kill", "rm", "ps", "logs", "exec",
                       "stats", "port", "wait"),
    "cli.watch": ("watch",),
}
AREA_MODULES = tuple(COMMAND_MODULES)


class DockyardGroup(click.Group):
    """Loads command modules on demand and turns every EngineError into one line on stderr and exit
    status 1 (never a traceback)."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({name for names in COMMAND_MODULES.values() for name in names} | set(self.commands))

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.commands:
            for module_name, names in COMMAND_MODULES.items():
                if cmd_name in names:
                    importlib.import_module(module_name).register(self)
                    break
        return self.commands.get(cmd_name)

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


def main() -> None:
    cli(prog_name="dockyard")


if __name__ == "__main__":
    sys.exit(main())
