"""Container commands: run, create, start, stop, restart, kill, rm, ps, logs, exec, stats, port, wait.

Kept lean: only click at import time; the engine is imported when a command runs (``run`` is
latency-sensitive: it includes Python's start-up).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import click

from cli.main import get_engine, run

if TYPE_CHECKING:
    from engine.runtime.options import RunOptions
    from engine.summaries import ContainerSummary


def register(group: click.Group) -> None:
    for command in (run_, create, start, stop, restart, kill, rm, ps, logs, exec_, stats, port, wait):
        group.add_command(command)


_INTERSPERSE = {"allow_interspersed_args": False}


def _run_options(func: Any) -> Any:
    options = [
        click.option("--name", default=None, help="Assign a name to the container."),
        click.option("-e", "--env", "env", multiple=True, help="Set environment variables (KEY=VALUE or KEY)."),
        click.option("--env-file", "env_files", multiple=True, type=click.Path(), help="Read a file of env vars."),
        click.option("-p", "--publish", "publish", multiple=True, help="Publish a port: [ip:]host:ctr[/udp]."),
        click.option("-P", "--publish-all", "publish_all", is_flag=True, help="Publish every exposed port."),
        click.option("-v", "--volume", "volumes", multiple=True, help="Bind mount: /host:/ctr[:ro], or /ctr."),
        click.option("-w", "--workdir", default=None, help="Working directory inside the container."),
        click.option("-u", "--user", default=None, help="user, uid, user:group or uid:gid."),
        click.option("--group-add", multiple=True, help="Additional groups to join."),
        click.option("--entrypoint", default=None, help="Override the image's ENTRYPOINT ('' clears it)."),
        click.option("--hostname", default=None, help="Container host name."),
        click.option("--network", "--net", "network", default="bridge", help="bridge (default), host or none."),
        click.option("-m", "--memory", default=None, help="Memory limit (e.g. 512m)."),
        click.option("--cpus", type=float, default=None, help="Number of CPUs."),
        click.option("--pids-limit", type=int, default=None, help="Limit the number of processes."),
        click.option("--ulimit", "ulimits", multiple=True, help="Ulimit, e.g. nofile=1024:1024."),
        click.option("--read-only", is_flag=True, help="Mount the root filesystem read-only."),
        click.option("-l", "--label", "labels", multiple=True, help="Set metadata (KEY=VALUE)."),
        click.option("--health-cmd", default=None, help="Command to run to check health."),
        click.option("--health-interval", default=None, help="Time between checks (e.g. 30s)."),
        click.option("--health-timeout", default=None, help="Maximum time for one check."),
        click.option("--health-retries", type=int, default=None, help="Failures needed to report unhealthy."),
        click.option("--health-start-period", default=None, help="Start period before failures count."),
        click.option("--no-healthcheck", is_flag=True, help="Disable any HEALTHCHECK."),
        click.option("--stop-signal", default=None, help="Signal to stop the container."),
        click.option("--stop-timeout", type=int, default=None, help="Seconds to wait before killing."),
        click.option("-i", "--interactive", is_flag=True, help="Keep STDIN open."),
        click.option("-t", "--tty", is_flag=True, help="Allocate a pseudo-TTY."),
        click.option("--rm", "remove", is_flag=True, help="Remove the container when it exits."),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def build_options(params: dict[str, Any], command: Sequence[str], detach: bool) -> RunOptions:
    from engine.runtime.options import (
        HealthOptions,
        RunOptions,
        parse_duration,
        parse_memory,
        parse_ulimit,
        parse_volume,
    )
    from engine.runtime.service import parse_env_files

    def seconds(value: str | None) -> float | None:
        return parse_duration(value) if value is not None else None

    labels: dict[str, str] = {}
    for item in params["labels"]:
        key, _, value = item.partition("=")
        labels[key] = value
    return RunOptions(
        command=tuple(command), entrypoint=params["entrypoint"], env=tuple(params["env"]),
        env_file_lines=parse_env_files(params["env_files"]), workdir=params["workdir"], user=params["user"],
        group_add=tuple(params["group_add"]), name=params["name"], hostname=params["hostname"],
        publish=tuple(params["publish"]), publish_all=params["publish_all"],
        volumes=tuple(parse_volume(v) for v in params["volumes"]), network=params["network"],
        memory=parse_memory(params["memory"]) if params["memory"] else None, cpus=params["cpus"],
        pids_limit=params["pids_limit"], ulimits=tuple(parse_ulimit(u) for u in params["ulimits"]),
        tty=params["tty"], interactive=params["interactive"], detach=detach, remove=params["remove"],
        read_only=params["read_only"],
        health=HealthOptions(
            cmd=params["health_cmd"], interval=seconds(params["health_interval"]),
            timeout=seconds(params["health_timeout"]), retries=params["health_retries"],
            start_period=seconds(params["health_start_period"]), disabled=params["no_healthcheck"],
        ),
        stop_signal=params["stop_signal"], stop_timeout=params["stop_timeout"], labels=labels,
    )


@click.command("run", context_settings=_INTERSPERSE)
@_run_options
@click.option("-d", "--detach", is_flag=True, help="Run in the background and print the container ID.")
@click.argument("image")
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
def run_(image: str, command: tuple[str, ...], detach: bool, **params: Any) -> None:
    """Create and start a container from IMAGE (output streams until it exits, unless -d)."""
    options = build_options(params, command, detach)
    engine = get_engine()
    container_id = engine.containers.run_blocking(image, options).record.id  # no event loop: start-up cost
    if detach:
        click.echo(container_id)
        _exit_now(0)
    _exit_now(attach_and_wait(engine, container_id, options.tty, options.interactive))


def _exit_now(code: int) -> None:
    """Leave without the interpreter's teardown (~10 ms of freeing modules: ``run`` is latency).

    Nothing in this process needs it: output is flushed here, and the container's state lives in its
    monitor and on disk.
    """
    import os

    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except BrokenPipeError:
            code = code or 141
        except (OSError, ValueError):
            code = code or 1
    os._exit(code)


def attach_and_wait(engine: Any, container_id: str, tty: bool, interactive: bool) -> int:
    """Bridge this terminal to the container until it exits; returns its exit code."""
    import os
    import signal

    from engine.runtime.attach import pump

    client = engine.containers.attach(container_id)
    stdin_fd = 0 if interactive else None
    raw_state = None
    wake_r = wake_w = -1
    if tty and stdin_fd is not None and os.isatty(0):
        import termios
        import tty as ttymod

        raw_state = termios.tcgetattr(0)
        ttymod.setraw(0)
    old_handlers: dict[int, Any] = {}
    manager = engine.containers.manager

    def forward(signum: int, _frame: Any) -> None:
        try:
            manager.kill(container_id, signum)
        except Exception:  # the container may be gone already
            return

    if not tty:
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            old_handlers[sig] = signal.signal(sig, forward)
    on_winch = None
    if tty and os.isatty(1):
        wake_r, wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        signal.set_wakeup_fd(wake_w)
        old_handlers[signal.SIGWINCH] = signal.signal(signal.SIGWINCH, lambda *_: None)

        def on_winch() -> tuple[int, int] | None:
            size = os.get_terminal_size(1)
            return size.lines, size.columns

        size = on_winch()
        if size:
            client.resize(*size)
    try:
        return pump(client, stdin_fd=stdin_fd, on_winch=on_winch, wake_fd=wake_r if wake_r >= 0 else None)
    finally:
        client.close()
        if raw_state is not None:
            import termios

            termios.tcsetattr(0, termios.TCSADRAIN, raw_state)
        for signum, handler in old_handlers.items():
            signal.signal(signum, handler)
        if wake_r >= 0:
            signal.set_wakeup_fd(-1)
            os.close(wake_r)
            os.close(wake_w)


@click.command("create", context_settings=_INTERSPERSE)
@_run_options
@click.argument("image")
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
def create(image: str, command: tuple[str, ...], **params: Any) -> None:
    """Create a container without starting it; prints its ID."""
    options = build_options(params, command, detach=True)
    summary = run(get_engine().containers.create(image, options))
    click.echo(summary.id)


@click.command("start")
@click.option("-a", "--attach", is_flag=True, help="Attach stdout/stderr and wait for the exit.")
@click.option("-i", "--interactive", is_flag=True, help="Attach stdin.")
@click.argument("containers", nargs=-1, required=True)
def start(attach: bool, interactive: bool, containers: tuple[str, ...]) -> None:
    """Start one or more stopped containers."""
    engine = get_engine()
    if attach:
        if len(containers) != 1:
            raise click.UsageError("you cannot start and attach multiple containers at once")
        summary = run(engine.containers.start(containers[0], attach=True))
        _, record = engine.containers.manager.load(summary.id)
        sys.exit(attach_and_wait(engine, summary.id, record.options.tty, interactive))
    for name in containers:
        run(engine.containers.start(name))
        click.echo(name)


@click.command("stop")
@click.option("-t", "--time", "timeout", type=int, default=None, help="Seconds to wait before killing.")
@click.argument("containers", nargs=-1, required=True)
def stop(timeout: int | None, containers: tuple[str, ...]) -> None:
    """Stop running containers (STOPSIGNAL, then SIGKILL after the timeout)."""
    engine = get_engine()
    for name in containers:
        run(engine.containers.stop(name, timeout))
        click.echo(name)


@click.command("restart")
@click.option("-t", "--time", "timeout", type=int, default=None, help="Seconds to wait before killing.")
@click.argument("containers", nargs=-1, required=True)
def restart(timeout: int | None, containers: tuple[str, ...]) -> None:
    """Restart containers."""
    engine = get_engine()
    for name in containers:
        run(engine.containers.restart(name, timeout))
        click.echo(name)


@click.command("kill")
@click.option("-s", "--signal", "sig", default="KILL", help="Signal to send (default KILL).")
@click.argument("containers", nargs=-1, required=True)
def kill(sig: str, containers: tuple[str, ...]) -> None:
    """Send a signal to running containers."""
    engine = get_engine()
    for name in containers:
        run(engine.containers.kill(name, sig))
        click.echo(name)


@click.command("rm")
@click.option("-f", "--force", is_flag=True, help="Kill and remove a running container.")
@click.option("-v", "--volumes", is_flag=True, help="Remove anonymous volumes (always done).")
@click.argument("containers", nargs=-1, required=True)
def rm(force: bool, volumes: bool, containers: tuple[str, ...]) -> None:
    """Remove containers (their mounts, network namespace, address and state)."""
    engine = get_engine()
    for name in containers:
        run(engine.containers.remove(name, force=force))
        click.echo(name)


def _command_text(command: str, no_trunc: bool) -> str:
    if not no_trunc and len(command) > 20:
        command = command[:19] + "…"
    return f'"{command}"'


def _ports_text(summary: ContainerSummary) -> str:
    return ", ".join(str(p) for p in summary.ports)


@click.command("ps")
@click.option("-a", "--all", "all_", is_flag=True, help="Show all containers (default: running only).")
@click.option("-q", "--quiet", is_flag=True, help="Only show IDs.")
@click.option("--no-trunc", is_flag=True, help="Don't truncate output.")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table")
def ps(all_: bool, quiet: bool, no_trunc: bool, fmt: str) -> None:
    """List containers."""
    from cli.format import table, time_ago

    summaries = run(get_engine().containers.list(all=all_))
    if quiet:
        for s in summaries:
            click.echo(s.id if no_trunc else s.id[:12])
        return
    if fmt == "json":
        for s in summaries:
            click.echo(json.dumps({
                "ID": s.id if no_trunc else s.id[:12], "Image": s.image, "Command": _command_text(s.command, True),
                "CreatedAt": s.created, "RunningFor": time_ago(s.created), "State": s.state, "Status": s.status,
                "Ports": _ports_text(s), "Names": s.name, "Health": s.health or "",
                "ExitCode": s.exit_code, "IPAddress": s.ip_address or "",
            }))
        return
    rows = [[s.id if no_trunc else s.id[:12], s.image, _command_text(s.command, no_trunc), time_ago(s.created),
             s.status, _ports_text(s), s.name] for s in summaries]
    click.echo(table(["CONTAINER ID", "IMAGE", "COMMAND", "CREATED", "STATUS", "PORTS", "NAMES"], rows))


@click.command("logs")
@click.option("-f", "--follow", is_flag=True, help="Follow log output.")
@click.option("-n", "--tail", default="all", help="Number of lines to show from the end (default all).")
@click.option("-t", "--timestamps", is_flag=True, help="Show timestamps.")
@click.argument("container")
def logs(follow: bool, tail: str, timestamps: bool, container: str) -> None:
    """Fetch a container's logs (stdout to stdout, stderr to stderr)."""
    if tail != "all" and not tail.isdigit():
        raise click.BadParameter(f"invalid --tail {tail!r}: a number or 'all'", param_hint="--tail")
    engine = get_engine()

    async def show() -> None:
        out, err = sys.stdout.buffer, sys.stderr.buffer
        async for line in engine.containers.logs(container, follow=follow,
                                                 tail=None if tail == "all" else int(tail)):
            text = (f"{line.time} " if timestamps else "") + line.text
            target = err if line.stream == "stderr" else out
            target.write(text.encode("utf-8", "replace"))
            target.flush()

    run(show())


@click.command("exec", context_settings=_INTERSPERSE)
@click.option("-i", "--interactive", is_flag=True, help="Keep STDIN open.")
@click.option("-t", "--tty", is_flag=True, help="Allocate a pseudo-TTY.")
@click.option("-e", "--env", "env", multiple=True, help="Set environment variables.")
@click.option("-w", "--workdir", default=None, help="Working directory inside the container.")
@click.option("-u", "--user", default=None, help="user, uid, user:group or uid:gid.")
@click.argument("container")
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
def exec_(interactive: bool, tty: bool, env: tuple[str, ...], workdir: str | None, user: str | None,
          container: str, command: tuple[str, ...]) -> None:
    """Run a command in a running container; exits with its exit code."""
    code, _ = get_engine().containers.exec_sync(container, command, tty=tty, interactive=interactive, env=env,
                                                workdir=workdir, user=user)
    sys.exit(code)


def _stats_row(engine: Any, stat: Any, names: dict[str, str]) -> list[str]:
    from cli.format import human_size

    limit = stat.memory_limit
    mem_pct = f"{stat.memory_bytes / limit * 100:.2f}%" if limit else "--"
    return [stat.container_id[:12], names.get(stat.container_id, ""), f"{stat.cpu_percent:.2f}%",
            f"{human_size(stat.memory_bytes)} / {human_size(limit) if limit else '--'}", mem_pct, str(stat.pids)]


@click.command("stats")
@click.option("--no-stream", is_flag=True, help="Print one sample and exit.")
@click.argument("containers", nargs=-1)
def stats(no_stream: bool, containers: tuple[str, ...]) -> None:
    """Live cpu, memory and pids of running containers."""
    from cli.format import table

    engine = get_engine()
    summaries = run(engine.containers.list())
    if containers:
        wanted = [run(engine.containers.get(c)) for c in containers]
        summaries = wanted
    names = {s.id: s.name for s in summaries}
    headers = ["CONTAINER ID", "NAME", "CPU %", "MEM USAGE / LIMIT", "MEM %", "PIDS"]
    if no_stream:
        async def once() -> list[Any]:
            import asyncio

            return list(await asyncio.gather(*(engine.containers.stats(s.id) for s in summaries)))

        rows = [_stats_row(engine, s, names) for s in run(once())]
        click.echo(table(headers, rows))
        return

    async def stream() -> None:
        latest: dict[str, Any] = {}
        async for stat in engine.containers.stats_stream([s.id for s in summaries]):
            latest[stat.container_id] = stat
            if len(latest) == len(summaries):
                click.echo("\x1b[2J\x1b[H" + table(headers, [_stats_row(engine, s, names) for s in latest.values()]))

    run(stream())


@click.command("port")
@click.argument("container")
def port(container: str) -> None:
    """List the container's port mappings."""
    for p in run(get_engine().containers.port(container)):
        click.echo(f"{p.container_port}/{p.protocol} -> {p.host_ip}:{p.host_port}")


@click.command("wait")
@click.argument("containers", nargs=-1, required=True)
def wait(containers: tuple[str, ...]) -> None:
    """Block until containers stop, then print their exit codes."""
    engine = get_engine()
    for name in containers:
        click.echo(run(engine.containers.wait(name)))
