"""Image commands: images, tag, rmi, inspect, import, history, gc, fsck."""

from __future__ import annotations

import json
from pathlib import Path

import click

from cli.format import human_size, table, time_ago
from cli.main import get_engine, run


def register(group: click.Group) -> None:
    for command in (images, tag, rmi, inspect, import_, history, gc, fsck):
        group.add_command(command)


def _split_tag(name: str) -> tuple[str, str]:
    repo, sep, tag_ = name.rpartition(":")
    if not sep or "/" in tag_:
        return name, "<none>"
    return repo, tag_


@click.command("images")
@click.option("-q", "--quiet", is_flag=True, help="Only show image IDs.")
@click.option("--digests", is_flag=True, help="Show digests.")
@click.option("--no-trunc", is_flag=True, help="Don't truncate output.")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table")
@click.argument("repository", required=False)
def images(quiet: bool, digests: bool, no_trunc: bool, fmt: str, repository: str | None) -> None:
    """List images in the local store."""
    summaries = run(get_engine().images.list())
    rows: list[dict[str, str | int]] = []
    for image in summaries:
        names = image.repo_tags or ("<none>:<none>",)
        for name in names:
            repo, tag_ = _split_tag(name)
            if repository and repo != repository:
                continue
            digest = next((d.split("@", 1)[1] for d in image.repo_digests if d.startswith(repo + "@")), "<none>")
            rows.append({
                "Repository": repo, "Tag": tag_, "Digest": digest,
                "ID": image.id if no_trunc else image.id.split(":", 1)[1][:12],
                "CreatedAt": image.created or "", "CreatedSince": time_ago(image.created),
                "Size": human_size(image.size), "VirtualSize": image.size,
            })
    if quiet:
        seen: list[str] = []
        for row in rows:
            if row["ID"] not in seen:
                seen.append(str(row["ID"]))
        click.echo("\n".join(seen) if seen else "", nl=bool(seen))
        return
    if fmt == "json":
        for row in rows:
            click.echo(json.dumps(row))
        return
    headers = ["REPOSITORY", "TAG"] + (["DIGEST"] if digests else []) + ["IMAGE ID", "CREATED", "SIZE"]
    body = [
        [str(r["Repository"]), str(r["Tag"])] + ([str(r["Digest"])] if digests else [])
        + [str(r["ID"]), str(r["CreatedSince"]), str(r["Size"])]
        for r in rows
    ]
    click.echo(table(headers, body))


@click.command("tag")
@click.argument("source")
@click.argument("target")
def tag(source: str, target: str) -> None:
    """Create a tag TARGET that refers to SOURCE."""
    run(get_engine().images.tag(source, target))


@click.command("rmi")
@click.option("-f", "--force", is_flag=True, help="Remove even when tagged in several repositories.")
@click.argument("names", nargs=-1, required=True)
def rmi(force: bool, names: tuple[str, ...]) -> None:
    """Remove one or more images."""
    engine = get_engine()
    for name in names:
        for line in run(engine.images.remove(name, force=force)):
            click.echo(line)
    run(engine.images.gc())


@click.command("inspect")
@click.option("--type", "kind", type=click.Choice(["image", "container", "any"]), default="any")
@click.option("-f", "--format", "fmt", default=None, help="Print one field, e.g. '{{.Id}}' or '.Config.Cmd'.")
@click.argument("names", nargs=-1, required=True)
def inspect(kind: str, fmt: str | None, names: tuple[str, ...]) -> None:
    """Show low-level information on images or containers as JSON."""
    from engine.errors import ImageNotFoundError, NotFoundError

    engine = get_engine()
    results = []
    for name in names:
        if kind in ("container", "any"):
            containers = getattr(engine, "containers", None)
            if containers is not None:
                try:
                    results.append(run(containers.inspect(name)))
                    continue
                except NotFoundError:
                    if kind == "container":
                        raise
        try:
            results.append(run(engine.images.inspect(name)))
        except ImageNotFoundError:
            raise ImageNotFoundError(f"no such object: {name}") from None
    if fmt:
        for result in results:
            click.echo(_format_field(result, fmt))
        return
    click.echo(json.dumps(results, indent=4))


def _format_field(data: object, fmt: str) -> str:
    path = fmt.strip().removeprefix("{{").removesuffix("}}").strip().removeprefix("json ").strip()
    value = data
    for part in [p for p in path.split(".") if p]:
        value = value.get(part) if isinstance(value, dict) else None
    return value if isinstance(value, str) else json.dumps(value)


@click.command("import")
@click.option("-c", "--change", "changes", multiple=True, help="Apply a Dockerfile instruction, e.g. 'CMD [\"sh\"]'.")
@click.option("-m", "--message", default="", help="Commit message for the imported image.")
@click.argument("tarball", type=click.Path(dir_okay=False, allow_dash=True))
@click.argument("name", required=False)
def import_(changes: tuple[str, ...], message: str, tarball: str, name: str | None) -> None:
    """Create an image from a root filesystem tarball (plain, gzip or zstd)."""
    import sys

    engine = get_engine()
    if tarball == "-":
        import tempfile

        with tempfile.NamedTemporaryFile(dir=engine.config.root if engine.config.root.exists() else None) as tmp:
            while chunk := sys.stdin.buffer.read(1 << 20):
                tmp.write(chunk)
            tmp.flush()
            summary = run(engine.images.import_rootfs(Path(tmp.name), name, changes=changes, message=message))
    else:
        path = Path(tarball)
        if not path.is_file():
            from engine.errors import InvalidInputError

            raise InvalidInputError(f"import: {tarball}: no such file")
        summary = run(engine.images.import_rootfs(path, name, changes=changes, message=message))
    click.echo(summary.id)


@click.command("history")
@click.option("--no-trunc", is_flag=True)
@click.option("-q", "--quiet", is_flag=True)
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table")
@click.argument("name")
def history(no_trunc: bool, quiet: bool, fmt: str, name: str) -> None:
    """Show the history of an image."""
    rows = run(get_engine().images.history(name))
    if quiet:
        click.echo("\n".join(r["id"] if no_trunc else r["id"][7:19] or r["id"] for r in rows))
        return
    if fmt == "json":
        for row in rows:
            click.echo(json.dumps(row))
        return
    body = []
    for row in rows:
        ident = row["id"] if (no_trunc or row["id"] == "<missing>") else row["id"].split(":", 1)[1][:12]
        created_by = row["created_by"] if no_trunc or len(row["created_by"]) <= 45 else row["created_by"][:44] + "…"
        body.append([ident, time_ago(row.get("created")), created_by, human_size(row["size"])])
    click.echo(table(["IMAGE", "CREATED", "CREATED BY", "SIZE"], body))


@click.command("gc")
@click.option("--build-cache", is_flag=True, help="Also empty the build cache (its layers are kept otherwise).")
@click.option("--grace", type=click.FloatRange(min=0), default=None, metavar="SECONDS",
              help="Keep unused snapshots and leftover dirs younger than this (default 600): one a "
                   "container being created or an old build may be about to use.")
def gc(build_cache: bool, grace: float | None) -> None:
    """Remove blobs no image references, unpacked layers nothing uses, and leftovers of interrupted writes."""
    engine = get_engine()
    report = run(engine.images.gc(build_cache=build_cache, grace=grace))
    net = run(engine.containers.gc_network())
    if not net.empty:
        click.echo(f"removed {len(net.netns_removed)} network namespaces, {len(net.links_removed)} veths "
                   f"and {len(net.released)} addresses of containers that no longer exist")
    click.echo(f"removed {report.removed_blobs} blobs ({human_size(report.freed_bytes)}), "
               f"{report.removed_temp_files} temp files")
    snaps = report.snapshots
    if snaps is not None:
        line = (f"removed {snaps.removed_snapshots} layer snapshots and {snaps.removed_temp_dirs} leftover "
                f"build/unpack dirs ({human_size(snaps.freed_bytes)})")
        if snaps.build_running:
            line += "; a build is running, so its snapshots and work dirs were kept"
        elif snaps.kept_young:
            line += f"; kept {snaps.kept_young} unused snapshots younger than the grace period"
        click.echo(line)
        click.echo(f"freed {human_size(report.total_freed_bytes)} in all")


@click.command("fsck")
@click.option("--repair", is_flag=True, help="Remove corrupt blobs and entries of incomplete images.")
def fsck(repair: bool) -> None:
    """Re-hash every blob and check every image is complete."""
    report = run(get_engine().images.fsck(repair=repair))
    for blob in report.corrupt_blobs:
        click.echo(f"corrupt blob: {blob}")
    for entry in report.dangling_entries:
        click.echo(f"incomplete image: {entry}")
    if report.temp_files:
        click.echo(f"{len(report.temp_files)} leftover temp files (removed by `dockyard gc`)")
    click.echo(f"checked {report.blobs_checked} blobs ({human_size(report.bytes_checked)}): "
               + ("clean" if report.clean else ("repaired" if report.repaired else "problems found")))
    if not report.clean and not report.repaired:
        raise SystemExit(1)
