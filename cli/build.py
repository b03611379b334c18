"""`dockyard build`: docker/buildah's flags; prints STEP n/N lines, the steps' output and the image id."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from cli.main import get_engine, run


def register(group: click.Group) -> None:
    group.add_command(build)


def _pairs(values: tuple[str, ...], what: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for value in values:
        key, sep, val = value.partition("=")
        if not key:
            raise click.BadParameter(f"{what} {value!r}: expected KEY=VALUE")
        if not sep:
            if key in os.environ:  # docker: --build-arg KEY takes the caller's value
                out[key] = os.environ[key]
            continue
        out[key] = val
    return out


@click.command("build")
@click.option("-t", "--tag", "tags", multiple=True, help="Name and optionally a tag (name:tag).")
@click.option("-f", "--file", "dockerfile", type=click.Path(), default=None,
              help="Dockerfile (default CONTEXT/Dockerfile).")
@click.option("--build-arg", "build_args", multiple=True, help="Set a build-time variable KEY=VALUE.")
@click.option("--target", default=None, help="Build this stage.")
@click.option("--no-cache", is_flag=True, help="Do not use the build cache.")
@click.option("--network", type=click.Choice(["host", "none", "default"]), default="host",
              help="Network for RUN steps.")
@click.option("--label", "labels", multiple=True, help="Set a label KEY=VALUE on the image.")
@click.option("--platform", default=None, help="Target platform (only the host's; no emulation).")
@click.option("--iidfile", type=click.Path(), default=None, help="Write the image id to this file.")
@click.option("--compression", type=click.Choice(["gzip", "zstd", "none"]), default="gzip")
@click.option("-q", "--quiet", is_flag=True, help="Print only the image id.")
@click.argument("context", default=".")
def build(tags: tuple[str, ...], dockerfile: str | None, build_args: tuple[str, ...], target: str | None,
          no_cache: bool, network: str, labels: tuple[str, ...], platform: str | None, iidfile: str | None,
          compression: str, quiet: bool, context: str) -> None:
    """Build an image from a Dockerfile and a context directory (`-` reads a Dockerfile from stdin)."""
    from engine import events as ev
    from engine.build.builder import BuildOptions
    from engine.errors import InvalidInputError

    text = None
    context_path: Path | None = None
    if context == "-":
        text = sys.stdin.read()
    else:
        context_path = Path(context)
        if not context_path.is_dir():
            raise InvalidInputError(f"build context {context}: not a directory")
    if dockerfile == "-":
        text = sys.stdin.read()
        dockerfile = None
    epoch_text = os.environ.get("SOURCE_DATE_EPOCH")
    options = BuildOptions(
        context=context_path, dockerfile=Path(dockerfile) if dockerfile else None, dockerfile_text=text,
        tags=tags, build_args=_pairs(build_args, "--build-arg"), target=target, no_cache=no_cache,
        network=network, labels=_pairs(labels, "--label"), platform=platform, compression=compression,
        source_date_epoch=int(epoch_text) if epoch_text and epoch_text.isdigit() else None,
    )
    engine = get_engine()

    async def go() -> str:
        image_id = ""
        async for event in engine.builds.build(options):
            if quiet:
                if isinstance(event, ev.BuildFinished):
                    image_id = event.image_id
                continue
            if isinstance(event, ev.StepStarted):
                click.echo(f"STEP {event.step}/{event.total}: {event.instruction}")
            elif isinstance(event, ev.StepLog):
                click.echo(event.line, err=event.stream == "stderr")
            elif isinstance(event, ev.StepFinished):
                if event.cached and event.layer_size is not None:
                    click.echo("--> Using cache")
            elif isinstance(event, ev.StepFailed):
                click.echo(f"error: {event.message}", err=True)
            elif isinstance(event, ev.BuildFinished):
                image_id = event.image_id
                for tag_ in event.tags:
                    click.echo(f"Successfully tagged {tag_}")
                click.echo(f"--> {image_id.split(':', 1)[1][:12]} ({event.seconds:.2f}s)")
        return image_id

    image_id = run(go())
    if iidfile:
        Path(iidfile).write_text(image_id)
    click.echo(image_id)
