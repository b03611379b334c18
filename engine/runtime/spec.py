"""OCI runtime-spec generation (pure): image config + ``RunOptions`` + resolved facts -> config.json.

Nothing here touches the disk: what needs I/O (the user's ids from the image's /etc/passwd, the hard
rlimits of this process, the cgroup layout, the netns path) arrives already resolved in ``SpecContext``.
The defaults are docker's: capability set, masked and read-only paths, mounts, no-new-privileges.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from engine.errors import InvalidInputError
from engine.runtime.options import DEFAULT_PATH, RunOptions, VolumeSpec, rlimit_type
from engine.runtime.userdb import ExecUser

OCI_VERSION = "1.0.2"

DEFAULT_CAPABILITIES = (
    "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD", "CAP_NET_RAW",
    "CAP_SETGID", "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP", "CAP_NET_BIND_SERVICE", "CAP_SYS_CHROOT",
    "CAP_KILL", "CAP_AUDIT_WRITE",
)

MASKED_PATHS = (
    "/proc/asound", "/proc/acpi", "/proc/kcore", "/proc/keys", "/proc/latency_stats", "/proc/timer_list",
    "/proc/timer_stats", "/proc/sched_debug", "/proc/scsi", "/sys/firmware", "/sys/devices/virtual/powercap",
)

READONLY_PATHS = ("/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger")

CPU_PERIOD = 100_000


@dataclass(frozen=True, slots=True)
class SpecContext:
    """Facts the spec needs that come from I/O, resolved by the caller.

    ``netns``: None shares the host's network namespace, "" asks for a new empty one (loopback only),
    a path joins an existing one.  ``cgroup_mode``: "v1", "v2" or "hybrid".  ``hard_limits`` maps
    RLIMIT names to this process's hard limits (None: unlimited).
    """

    container_id: str
    rootfs: str
    user: ExecUser
    hostname: str
    netns: str | None = ""
    hosts_file: str | None = None
    hostname_file: str | None = None
    resolv_conf_file: str | None = None
    volume_dirs: Mapping[str, str] = field(default_factory=dict)  # container path -> host dir
    cgroup_mode: str = "v1"
    cgroups_path: str | None = None
    hard_limits: Mapping[str, int | None] = field(default_factory=dict)
    console_size: tuple[int, int] | None = None  # (rows, cols)


# ---- process --------------------------------------------------------------------------------------------


def compute_args(
    image_entrypoint: Sequence[str] | None, image_cmd: Sequence[str] | None, options: RunOptions
) -> list[str]:
    """docker's rules: ``--entrypoint`` (even ``''``) drops the image's CMD; arguments replace CMD."""
    if options.entrypoint is not None:
        entrypoint = [options.entrypoint] if options.entrypoint else []
        cmd = list(options.command)
    else:
        entrypoint = list(image_entrypoint or [])
        cmd = list(options.command) if options.command else list(image_cmd or [])
    args = entrypoint + cmd
    if not args:
        raise InvalidInputError("no command specified (the image has no CMD or ENTRYPOINT; give one)")
    return args


def _env_key(entry: str) -> str:
    return entry.split("=", 1)[0]


def replace_or_append(base: Iterable[str], overrides: Iterable[str]) -> list[str]:
    out = list(base)
    index = {_env_key(e): i for i, e in enumerate(out)}
    for entry in overrides:
        key = _env_key(entry)
        if key in index:
            out[index[key]] = entry
        else:
            index[key] = len(out)
            out.append(entry)
    return out


def user_env(options: RunOptions, caller_env: Mapping[str, str]) -> list[str]:
    """--env-file then -e (later wins); a bare ``KEY`` takes the caller's value or is dropped."""
    out: list[str] = []
    for entry in (*options.env_file_lines, *options.env):
        if "=" in entry:
            key = _env_key(entry)
            if not key:
                raise InvalidInputError(f"invalid environment variable: {entry!r}")
            out = replace_or_append(out, [entry])
        elif entry in caller_env:
            out = replace_or_append(out, [f"{entry}={caller_env[entry]}"])
    return out


def compute_env(
    image_env: Sequence[str], options: RunOptions, hostname: str, home: str,
    caller_env: Mapping[str, str] | None = None,
) -> list[str]:
    """PATH, HOSTNAME, TERM (with -t) first, replaced by the image's env, replaced by the user's; HOME last."""
    env = [f"PATH={DEFAULT_PATH}", f"HOSTNAME={hostname}"]
    if options.tty:
        env.append("TERM=xterm")
    config_env = replace_or_append(image_env, user_env(options, caller_env or {}))
    env = replace_or_append(env, config_env)
    if not any(_env_key(e) == "HOME" for e in env):
        env.append(f"HOME={home}")
    return env


def compute_workdir(image_workdir: str, options: RunOptions) -> str:
    workdir = options.workdir or image_workdir or "/"
    if not workdir.startswith("/"):
        workdir = "/" + workdir
    return workdir


def compute_rlimits(
    options: RunOptions, hard_limits: Mapping[str, int | None]
) -> list[dict[str, Any]]:
    """RLIMIT_NOFILE by default, plus ``--ulimit``s; never above this process's hard limits.

    (Raising a hard limit needs CAP_SYS_RESOURCE, which dockyard may not have; runc would fail with
    "error setting rlimit".)
    """
    wanted: dict[str, tuple[int, int]] = {"RLIMIT_NOFILE": (1024, 1024 * 1024)}
    for name, soft, hard in options.ulimits:
        wanted[rlimit_type(name)] = (soft, hard)
    out: list[dict[str, Any]] = []
    for kind, (soft, hard) in wanted.items():
        cap = hard_limits.get(kind)
        if cap is not None:
            hard = min(hard, cap)
            soft = min(soft, hard)
        out.append({"type": kind, "hard": hard, "soft": soft})
    return out


def build_process(image_config: Mapping[str, Any], options: RunOptions, ctx: SpecContext,
                  caller_env: Mapping[str, str] | None = None) -> dict[str, Any]:
    args = compute_args(image_config.get("Entrypoint"), image_config.get("Cmd"), options)
    process: dict[str, Any] = {
        "terminal": options.tty,
        "user": {"uid": ctx.user.uid, "gid": ctx.user.gid},
        "args": args,
        "env": compute_env(image_config.get("Env") or (), options, ctx.hostname, ctx.user.home, caller_env),
        "cwd": compute_workdir(str(image_config.get("WorkingDir") or ""), options),
        "capabilities": {k: list(DEFAULT_CAPABILITIES) for k in ("bounding", "effective", "permitted")},
        "rlimits": compute_rlimits(options, ctx.hard_limits),
        "noNewPrivileges": True,
    }
    if ctx.user.additional_gids:
        process["user"]["additionalGids"] = list(ctx.user.additional_gids)
    if options.tty and ctx.console_size:
        process["consoleSize"] = {"height": ctx.console_size[0], "width": ctx.console_size[1]}
    return process


# ---- mounts ---------------------------------------------------------------------------------------------


def default_mounts(cgroup_mode: str) -> list[dict[str, Any]]:
    mounts: list[dict[str, Any]] = [
        {"destination": "/proc", "type": "proc", "source": "proc", "options": ["nosuid", "noexec", "nodev"]},
        {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
         "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
        {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
         "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]},
        {"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["nosuid", "noexec", "nodev", "ro"]},
        {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
         "options": ["ro", "nosuid", "noexec", "nodev"]},
        {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue", "options": ["nosuid", "noexec", "nodev"]},
        {"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
         "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]},
    ]
    if cgroup_mode == "v2":
        mounts[4] = {"destination": "/sys/fs/cgroup", "type": "cgroup2", "source": "cgroup2",
                     "options": ["ro", "nosuid", "noexec", "nodev"]}
    return mounts


def _bind(source: str, destination: str, read_only: bool = False) -> dict[str, Any]:
    options = ["rbind", "rprivate"]
    if read_only:
        options.append("ro")
    return {"destination": destination, "type": "bind", "source": source, "options": options}


def build_mounts(image_volumes: Iterable[str], options: RunOptions, ctx: SpecContext) -> list[dict[str, Any]]:
    mounts = default_mounts(ctx.cgroup_mode)
    for source, destination in ((ctx.hosts_file, "/etc/hosts"), (ctx.hostname_file, "/etc/hostname"),
                                (ctx.resolv_conf_file, "/etc/resolv.conf")):
        if source:
            mounts.append(_bind(source, destination, options.read_only))
    user_targets = {v.target.rstrip("/") for v in options.volumes}
    for target in image_volumes:
        target = "/" + target.strip("/")
        if target in user_targets:
            continue
        host_dir = ctx.volume_dirs.get(target)
        if host_dir is None:
            raise InvalidInputError(f"no directory prepared for the image's volume {target}")
        mounts.append(_bind(host_dir, target))
    for volume in options.volumes:
        mounts.append(_volume_mount(volume, ctx))
    return mounts


def _volume_mount(volume: VolumeSpec, ctx: SpecContext) -> dict[str, Any]:
    if volume.is_bind:
        assert volume.source is not None
        return _bind(volume.source, volume.target, volume.read_only)
    host_dir = ctx.volume_dirs.get(volume.target)
    if host_dir is None:
        raise InvalidInputError(f"no directory prepared for volume {volume}")
    return _bind(host_dir, volume.target, volume.read_only)


# ---- linux --------------------------------------------------------------------------------------------


def build_resources(options: RunOptions) -> dict[str, Any]:
    resources: dict[str, Any] = {"devices": [{"allow": False, "access": "rwm"}]}
    if options.memory is not None:
        resources["memory"] = {"limit": options.memory}
    if options.cpus is not None:
        resources["cpu"] = {"quota": int(options.cpus * CPU_PERIOD), "period": CPU_PERIOD}
    if options.pids_limit is not None:
        resources["pids"] = {"limit": options.pids_limit}
    return resources


def build_namespaces(ctx: SpecContext) -> list[dict[str, str]]:
    namespaces = [{"type": "pid"}, {"type": "ipc"}, {"type": "uts"}, {"type": "mount"}]
    if ctx.netns is not None:
        namespaces.append({"type": "network", "path": ctx.netns} if ctx.netns else {"type": "network"})
    if ctx.cgroup_mode == "v2":
        namespaces.append({"type": "cgroup"})
    return namespaces


def build_spec(
    image_config: Mapping[str, Any], image_volumes: Iterable[str], options: RunOptions, ctx: SpecContext,
    caller_env: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """The complete runtime spec (config.json) for one container."""
    linux: dict[str, Any] = {
        "resources": build_resources(options),
        "namespaces": build_namespaces(ctx),
        "maskedPaths": list(MASKED_PATHS),
        "readonlyPaths": list(READONLY_PATHS),
    }
    if ctx.cgroups_path:
        linux["cgroupsPath"] = ctx.cgroups_path
    return {
        "ociVersion": OCI_VERSION,
        "process": build_process(image_config, options, ctx, caller_env),
        "root": {"path": ctx.rootfs, "readonly": options.read_only},
        "hostname": ctx.hostname,
        "mounts": build_mounts(image_volumes, options, ctx),
        "linux": linux,
    }


def exec_process(
    base: Mapping[str, Any], args: Sequence[str], *, tty: bool, env: Sequence[str] = (),
    workdir: str | None = None, user: ExecUser | None = None,
) -> dict[str, Any]:
    """The process.json for ``runc exec``: the container's process settings with new args."""
    if not args:
        raise InvalidInputError("exec needs a command")
    process = dict(base)
    process["args"] = list(args)
    process["terminal"] = tty
    process.pop("consoleSize", None)
    env_list = list(process.get("env") or [])
    if tty and not any(_env_key(e) == "TERM" for e in env_list):
        env_list.append("TERM=xterm")
    process["env"] = replace_or_append(env_list, env)
    if workdir:
        process["cwd"] = workdir
    if user is not None:
        process["user"] = {"uid": user.uid, "gid": user.gid}
        if user.additional_gids:
            process["user"]["additionalGids"] = list(user.additional_gids)
    return process
