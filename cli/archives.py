"""Archive commands: save, load, export (docker's verbs and flags)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import BinaryIO

import click

from cli.main import get_engine, run


def register(group: click.Group) -> None:
    for command in (save, load, export):
        group.add_command(command)


def _stdout_for_archive(command: str) -> BinaryIO:
    if sys.stdout.isatty():
        from engine.errors import InvalidInputError

        raise InvalidInputError(f"{command}: refusing to write an archive to a terminal; use -o FILE or redirect")
    return sys.stdout.buffer


@click.command("save")
@click.option("-o", "--output", type=click.Path(dir_okay=False, allow_dash=True), default=None,
              help="Write to a file instead of STDOUT.")
@click.option("--format", "fmt", type=click.Choice(["docker-archive", "oci-archive"]), default="docker-archive",
              show_default=True, help="docker-archive (docker load, skopeo docker-archive:) or oci-archive.")
@click.argument("images", nargs=-1, required=True)
def save(output: str | None, fmt: str, images: tuple[str, ...]) -> None:
    """Save one or more images to a tar archive (streamed to STDOUT by default)."""
    engine = get_engine()
    target = Path(output) if output and output != "-" else _stdout_for_archive("save")
    run(engine.images.save(list(images), target, fmt=fmt))


@click.command("load")
@click.option("-i", "--input", "input_", type=click.Path(allow_dash=True), default=None,
              help="Read from a tar archive file (plain or compressed) instead of STDIN.")
@click.option("-q", "--quiet", is_flag=True, help="Suppress the load output.")
def load(input_: str | None, quiet: bool) -> None:
    """Load images from a docker-archive or OCI archive."""
    from engine.store.archives import loaded_lines

    engine = get_engine()
    if input_ and input_ != "-":
        loaded = run(engine.images.load(Path(input_)))
    else:
        if sys.stdin.isatty():
            from engine.errors import InvalidInputError

            raise InvalidInputError("load: requested load from stdin, but stdin is a terminal; use -i FILE")
        loaded = run(engine.images.load(sys.stdin.buffer))
    if not quiet:
        for line in loaded_lines(loaded):
            click.echo(line)


@click.command("export")
@click.option("-o", "--output", type=click.Path(dir_okay=False, allow_dash=True), default=None,
              help="Write to a file instead of STDOUT.")
@click.argument("image")
def export(output: str | None, image: str) -> None:
    """Export an image's flattened filesystem (whiteouts applied) as a tar archive."""
    engine = get_engine()
    target = Path(output) if output and output != "-" else _stdout_for_archive("export")
    run(engine.images.export(image, target))
