"""Registry commands: pull, push, login, logout, and the `registry` group (repos, tags, inspect, rm)."""

from __future__ import annotations

import json
import sys
from collections.abc import AsyncIterator, Callable
from typing import Any

import click

from cli.format import human_size, table, time_ago
from cli.main import get_engine, run


def register(group: click.Group) -> None:
    for command in (pull, push, login, logout, registry):
        group.add_command(command)


def _service(insecure_registry: str | None = None) -> Any:
    service = get_engine().registry
    if insecure_registry:
        from engine.registry.hosts import normalize_registry

        service.insecure.add(normalize_registry(insecure_registry))
    return service


def _registry_of(ref: str) -> str:
    from engine.oci.reference import Reference

    return Reference.parse(ref, default_tag=False).registry


async def _closing(service: Any, work: Callable[[], Any]) -> Any:
    try:
        return await work()
    finally:
        await service.aclose()


# ---- progress rendering ------------------------------------------------------------------------------


class TransferView:
    """Per-blob rich progress bars for a stream of transfer events (plain lines when not a terminal)."""

    def __init__(self, quiet: bool) -> None:
        from rich.console import Console

        self.quiet = quiet
        self.console = Console(stderr=True)
        self.progress: Any = None
        self.tasks: dict[str, Any] = {}
        self.finished: Any = None
        self.stored: Any = None
        self.verb = {"pull": "Downloading", "push": "Pushing"}

    def __enter__(self) -> TransferView:
        if not self.quiet and self.console.is_terminal:
            from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn

            self.progress = Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(),
                                     TransferSpeedColumn(), console=self.console, transient=False)
            self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.progress is not None:
            self.progress.stop()

    def show(self, event: Any) -> None:
        from engine import events as ev

        if isinstance(event, ev.TransferFinished):
            self.finished = event
        elif isinstance(event, ev.ImageStored):
            self.stored = event
        elif isinstance(event, ev.RateLimit):
            if not self.quiet:
                self.console.print(f"rate limit: {event.remaining or '?'} of {event.limit or '?'} pulls left")
        elif isinstance(event, ev.Message):
            if not self.quiet:
                self.console.print(("warning: " if event.level == "warning" else "") + event.text)
        elif isinstance(event, ev.TransferStarted):
            if not self.quiet and self.progress is None:
                self.console.print(f"{event.operation}: {event.reference} ({event.layers} layers)")
        elif isinstance(event, ev.LayerProgress):
            self._layer(event)

    def _layer(self, event: Any) -> None:
        short = event.digest.split(":", 1)[-1][:12]
        labels = {"exists": "Already exists", "mounted": "Mounted", "done": "Complete", "waiting": "Waiting",
                  "verifying": "Verifying", "retrying": "Retrying"}
        label = labels.get(event.status, self.verb.get(event.operation, event.status))
        if self.quiet:
            return
        if self.progress is None:
            if event.status in ("exists", "mounted", "done", "retrying"):
                self.console.print(f"{short}: {label}")
            return
        task = self.tasks.get(event.digest)
        if task is None:
            task = self.progress.add_task(f"{short}: {label}", total=event.total)
            self.tasks[event.digest] = task
        self.progress.update(task, completed=event.done, total=event.total, description=f"{short}: {label}")


async def _drive(stream: AsyncIterator[Any], view: TransferView) -> None:
    async for event in stream:
        view.show(event)


# ---- pull / push ---------------------------------------------------------------------------------------


@click.command("pull")
@click.option("--platform", default=None, help="os/arch[/variant] to pull from a multi-platform image.")
@click.option("-q", "--quiet", is_flag=True, help="Suppress progress; print only the image reference.")
@click.option("--insecure", is_flag=True, help="Allow plain HTTP / unverified TLS for this registry.")
@click.argument("reference")
def pull(platform: str | None, quiet: bool, insecure: bool, reference: str) -> None:
    """Pull an image from a registry into the local store."""
    from engine.oci.reference import Reference

    ref = Reference.parse(reference)
    service = _service(ref.registry if insecure else None)
    with TransferView(quiet) as view:
        run(_closing(service, lambda: _drive(service.pull(ref, platform), view)))
    finished, stored = view.finished, view.stored
    if quiet:
        click.echo(ref.familiar)
        return
    if finished is not None:
        click.echo(f"Digest: {finished.manifest_digest}")
        verb = "Downloaded newer image for" if finished.bytes_moved > 0 else "Image is up to date for"
        click.echo(f"Status: {verb} {ref.familiar}")
    if stored is not None:
        click.echo(str(ref))


@click.command("push")
@click.option("-q", "--quiet", is_flag=True, help="Suppress progress.")
@click.option("--insecure", is_flag=True, help="Allow plain HTTP / unverified TLS for this registry.")
@click.option("--chunked", is_flag=True, hidden=True, help="Force chunked uploads.")
@click.argument("reference")
@click.argument("target", required=False)
def push(quiet: bool, insecure: bool, chunked: bool, reference: str, target: str | None) -> None:
    """Push an image (REFERENCE, or the local REFERENCE to TARGET) to a registry."""
    from engine.oci.reference import Reference
    from engine.registry.push import PushOptions

    dest = Reference.parse(target or reference)
    service = _service(dest.registry if insecure else None)
    options = PushOptions(chunked=chunked)
    with TransferView(quiet) as view:
        run(_closing(service, lambda: _drive(service.push(dest, source=reference if target else None,
                                                          options=options), view)))
    finished = view.finished
    if finished is not None:
        click.echo(f"{dest.tag or 'latest'}: digest: {finished.manifest_digest}" if not quiet
                   else finished.manifest_digest)


# ---- login / logout ------------------------------------------------------------------------------------


@click.command("login")
@click.option("-u", "--username", default=None, help="Username.")
@click.option("-p", "--password", default=None, help="Password (prefer --password-stdin).")
@click.option("--password-stdin", is_flag=True, help="Read the password from stdin.")
@click.option("--insecure", is_flag=True, help="Allow plain HTTP / unverified TLS for this registry.")
@click.argument("server", required=False, default="docker.io")
def login(username: str | None, password: str | None, password_stdin: bool, insecure: bool, server: str) -> None:
    """Log in to a registry (verified against it before the credentials are saved)."""
    if password and password_stdin:
        raise click.UsageError("--password and --password-stdin are mutually exclusive")
    if password_stdin:
        if not username:
            raise click.UsageError("--password-stdin needs --username")
        password = sys.stdin.read().rstrip("\r\n")
    elif password:
        click.echo("WARNING! Using --password via the CLI is insecure. Use --password-stdin.", err=True)
    if not username:
        username = click.prompt("Username")
    if not password:
        password = click.prompt("Password", hide_input=True)
    service = _service(server if insecure else None)
    where = run(_closing(service, lambda: service.login(server, username, password)))
    click.echo(f"Login Succeeded (credentials saved in {where})")


@click.command("logout")
@click.argument("server", required=False, default="docker.io")
def logout(server: str) -> None:
    """Forget the credentials of a registry."""
    service = _service()
    removed = run(_closing(service, lambda: service.logout(server)))
    if removed:
        click.echo(f"Removing login credentials for {server}")
    else:
        click.echo(f"Not logged in to {server}")


# ---- browsing ------------------------------------------------------------------------------------------


@click.group("registry")
def registry() -> None:
    """Browse a registry: repositories, tags, remote inspect, delete."""


async def _print_pages(pages: AsyncIterator[list[str]], prefix: str = "") -> int:
    count = 0
    async for page in pages:
        for name in page:
            click.echo(prefix + name)
        count += len(page)
    return count


@registry.command("repos")
@click.option("--filter", "pattern", default=None, help="Substring, or a glob like 'team/*'.")
@click.option("--insecure", is_flag=True, help="Allow plain HTTP / unverified TLS for this registry.")
@click.argument("server")
def repos(pattern: str | None, insecure: bool, server: str) -> None:
    """List the repositories of a registry (the catalog, streamed page by page)."""
    service = _service(server if insecure else None)
    run(_closing(service, lambda: _print_pages(service.repositories(server, pattern))))


@registry.command("tags")
@click.option("--insecure", is_flag=True, help="Allow plain HTTP / unverified TLS for this registry.")
@click.argument("repository")
def tags(insecure: bool, repository: str) -> None:
    """List the tags of a repository (streamed page by page)."""
    service = _service(_registry_of(repository) if insecure else None)
    run(_closing(service, lambda: _print_pages(service.tags(repository))))


@registry.command("inspect")
@click.option("--platform", default=None, help="os/arch[/variant] of a multi-platform image.")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text")
@click.option("--insecure", is_flag=True, help="Allow plain HTTP / unverified TLS for this registry.")
@click.argument("reference")
def inspect(platform: str | None, fmt: str, insecure: bool, reference: str) -> None:
    """Show a remote image: digest, platforms, created, layers with sizes, labels, exposed ports."""
    service = _service(_registry_of(reference) if insecure else None)
    info = run(_closing(service, lambda: service.inspect(reference, platform)))
    if fmt == "json":
        click.echo(json.dumps(info, indent=2))
        return
    lines = [
        ("Name", info["Reference"]), ("Digest", info["Digest"]), ("Media type", info["MediaType"]),
        ("Platforms", ", ".join(info["Platforms"]) or "-"),
        ("Created", f"{info['Created'] or '-'} ({time_ago(info['Created'])})" if info["Created"] else "-"),
        ("Size", human_size(info["Size"])),
        ("Entrypoint", json.dumps(info["Entrypoint"]) if info["Entrypoint"] else "-"),
        ("Cmd", json.dumps(info["Cmd"]) if info["Cmd"] else "-"),
        ("Exposed ports", ", ".join(info["ExposedPorts"]) or "-"),
    ]
    width = max(len(k) for k, _ in lines)
    for key, value in lines:
        click.echo(f"{key + ':':<{width + 1}} {value}")
    if info["Labels"]:
        click.echo("Labels:")
        for key, value in sorted(info["Labels"].items()):
            click.echo(f"  {key}={value}")
    click.echo("Layers:")
    rows = [[layer["digest"], human_size(layer["size"]), layer["mediaType"]] for layer in info["Layers"]]
    click.echo(table(["DIGEST", "SIZE", "MEDIA TYPE"], rows))


@registry.command("rm")
@click.option("-y", "--yes", is_flag=True, help="Do not ask when other tags share the manifest.")
@click.option("--insecure", is_flag=True, help="Allow plain HTTP / unverified TLS for this registry.")
@click.argument("reference")
def rm(yes: bool, insecure: bool, reference: str) -> None:
    """Delete a manifest from a registry (by digest; every tag pointing at it goes too)."""
    service = _service(_registry_of(reference) if insecure else None)

    async def work() -> list[str]:
        if not yes and sys.stdin.isatty():
            others = await service.sibling_tags(reference)
            if others and not click.confirm(f"{', '.join(others)} point at the same manifest and will be "
                                            "deleted too. Continue?", default=False, err=True):
                raise click.Abort()
        return list(await service.delete(reference))

    siblings = run(_closing(service, work))
    click.echo(f"Deleted: {reference}")
    if siblings:
        click.echo(f"warning: these tags pointed at the same manifest and were deleted too: {', '.join(siblings)}",
                   err=True)
