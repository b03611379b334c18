"""Runtime-spec generation: docker's rules for args, env, workdir, rlimits, mounts, namespaces, resources."""

from __future__ import annotations

from typing import Any

import pytest

from engine.errors import InvalidInputError
from engine.runtime.options import (
    DEFAULT_PATH,
    HealthOptions,
    RunOptions,
    VolumeSpec,
    parse_duration,
    parse_env_file,
    parse_memory,
    parse_ulimit,
    parse_volume,
)
from engine.runtime.spec import (
    DEFAULT_CAPABILITIES,
    MASKED_PATHS,
    READONLY_PATHS,
    SpecContext,
    build_spec,
    compute_args,
    compute_env,
    compute_rlimits,
    compute_workdir,
    exec_process,
)
from engine.runtime.userdb import ExecUser


@pytest.mark.parametrize(
    ("entrypoint", "cmd", "options", "expected"),
    [
        (None, ["sh"], RunOptions(), ["sh"]),
        (None, ["sh"], RunOptions(command=("echo", "hi")), ["echo", "hi"]),
        (["/init"], ["--serve"], RunOptions(), ["/init", "--serve"]),
        (["/init"], ["--serve"], RunOptions(command=("--debug",)), ["/init", "--debug"]),
        # --entrypoint drops the image's CMD
        (["/init"], ["--serve"], RunOptions(entrypoint="/bin/sh"), ["/bin/sh"]),
        (["/init"], ["--serve"], RunOptions(entrypoint="/bin/sh", command=("-c", "id")), ["/bin/sh", "-c", "id"]),
        # --entrypoint '' clears the entrypoint (and CMD); arguments become the command
        (["/init"], ["--serve"], RunOptions(entrypoint="", command=("ls", "/")), ["ls", "/"]),
        (["/init"], None, RunOptions(), ["/init"]),
    ],
)
def test_args_follow_docker_rules(entrypoint: Any, cmd: Any, options: RunOptions, expected: list[str]) -> None:
    assert compute_args(entrypoint, cmd, options) == expected


@pytest.mark.parametrize(
    ("entrypoint", "cmd", "options"),
    [(None, None, RunOptions()), (["/init"], ["x"], RunOptions(entrypoint="")), (None, [], RunOptions())],
)
def test_no_command_is_a_one_line_error(entrypoint: Any, cmd: Any, options: RunOptions) -> None:
    with pytest.raises(InvalidInputError, match="no command specified"):
        compute_args(entrypoint, cmd, options)


def test_env_order_defaults_image_then_user() -> None:
    options = RunOptions(env=("FOO=user", "NEW=1", "FROMHOST", "MISSING"), tty=True)
    env = compute_env(["FOO=image", "PATH=/custom", "KEEP=yes"], options, "abc123", "/root",
                      {"FROMHOST": "hostval"})
    assert env == ["PATH=/custom", "HOSTNAME=abc123", "TERM=xterm", "FOO=user", "KEEP=yes", "NEW=1",
                   "FROMHOST=hostval", "HOME=/root"]


def test_env_default_path_and_no_term_without_tty() -> None:
    env = compute_env([], RunOptions(), "h", "/home/u")
    assert env == [f"PATH={DEFAULT_PATH}", "HOSTNAME=h", "HOME=/home/u"]


def test_env_file_then_flags_later_wins() -> None:
    lines = parse_env_file("# comment\n\nA=file\nB=file\n  C=with spaces  \n")
    assert lines == ("A=file", "B=file", "C=with spaces  ")
    env = compute_env([], RunOptions(env_file_lines=lines, env=("B=flag",)), "h", "/")
    assert "A=file" in env and "B=flag" in env and "B=file" not in env


def test_env_file_rejects_key_with_spaces() -> None:
    with pytest.raises(InvalidInputError, match="line 1"):
        parse_env_file("BAD KEY=1\n")


def test_image_home_is_kept() -> None:
    env = compute_env(["HOME=/data"], RunOptions(), "h", "/root")
    assert env.count("HOME=/data") == 1 and "HOME=/root" not in env


@pytest.mark.parametrize(
    ("image", "flag", "expected"),
    [("", None, "/"), ("/app", None, "/app"), ("/app", "/srv", "/srv"), ("rel", None, "/rel")],
)
def test_workdir(image: str, flag: str | None, expected: str) -> None:
    assert compute_workdir(image, RunOptions(workdir=flag)) == expected


def test_relative_workdir_flag_is_refused() -> None:
    with pytest.raises(InvalidInputError, match="absolute path"):
        RunOptions(workdir="rel")


def test_rlimits_never_exceed_hard_limits() -> None:
    limits = compute_rlimits(RunOptions(ulimits=(("nproc", 4096, 999999),)),
                             {"RLIMIT_NOFILE": 20000, "RLIMIT_NPROC": 5000})
    assert {"type": "RLIMIT_NOFILE", "hard": 20000, "soft": 1024} in limits
    assert {"type": "RLIMIT_NPROC", "hard": 5000, "soft": 4096} in limits


def test_rlimits_soft_clamped_below_low_hard_limit() -> None:
    limits = compute_rlimits(RunOptions(), {"RLIMIT_NOFILE": 512})
    assert limits == [{"type": "RLIMIT_NOFILE", "hard": 512, "soft": 512}]


def _ctx(**changes: Any) -> SpecContext:
    base: dict[str, Any] = dict(
        container_id="c" * 64, rootfs="/state/rootfs", user=ExecUser(0, 0, (), "/root"), hostname="cccccccccccc",
        netns="/run/netns/x", hosts_file="/state/etc/hosts", hostname_file="/state/etc/hostname",
        resolv_conf_file="/state/etc/resolv.conf", cgroup_mode="v1", cgroups_path="/dockyard/" + "c" * 64,
        hard_limits={"RLIMIT_NOFILE": 20000},
    )
    base.update(changes)
    return SpecContext(**base)


IMAGE = {"Cmd": ["sh"], "Env": ["PATH=/usr/bin:/bin"], "WorkingDir": "/w"}


def test_full_spec_defaults() -> None:
    spec = build_spec(IMAGE, (), RunOptions(), _ctx())
    process = spec["process"]
    assert process["args"] == ["sh"]
    assert process["cwd"] == "/w"
    assert process["noNewPrivileges"] is True
    assert process["terminal"] is False
    assert process["user"] == {"uid": 0, "gid": 0}
    assert process["capabilities"]["bounding"] == list(DEFAULT_CAPABILITIES)
    assert "CAP_SYS_ADMIN" not in process["capabilities"]["effective"]
    assert spec["root"] == {"path": "/state/rootfs", "readonly": False}
    assert spec["hostname"] == "cccccccccccc"
    linux = spec["linux"]
    assert linux["maskedPaths"] == list(MASKED_PATHS)
    assert linux["readonlyPaths"] == list(READONLY_PATHS)
    assert {"type": "network", "path": "/run/netns/x"} in linux["namespaces"]
    assert {"type": "cgroup"} not in linux["namespaces"]
    assert linux["cgroupsPath"] == "/dockyard/" + "c" * 64
    destinations = [m["destination"] for m in spec["mounts"]]
    assert destinations == ["/proc", "/dev", "/dev/pts", "/sys", "/sys/fs/cgroup", "/dev/mqueue", "/dev/shm",
                            "/etc/hosts", "/etc/hostname", "/etc/resolv.conf"]
    cgroup = spec["mounts"][4]
    assert cgroup["type"] == "cgroup" and "ro" in cgroup["options"]


def test_cgroup_v2_uses_cgroup2_and_a_cgroup_namespace() -> None:
    spec = build_spec(IMAGE, (), RunOptions(), _ctx(cgroup_mode="v2"))
    assert spec["mounts"][4]["type"] == "cgroup2"
    assert {"type": "cgroup"} in spec["linux"]["namespaces"]


@pytest.mark.parametrize(
    ("netns", "expected"),
    [(None, None), ("", {"type": "network"}), ("/run/netns/a", {"type": "network", "path": "/run/netns/a"})],
)
def test_network_namespace_modes(netns: str | None, expected: dict[str, str] | None) -> None:
    namespaces = build_spec(IMAGE, (), RunOptions(), _ctx(netns=netns))["linux"]["namespaces"]
    network = [n for n in namespaces if n["type"] == "network"]
    assert network == ([expected] if expected else [])
    assert [n["type"] for n in namespaces if n["type"] != "network"] == ["pid", "ipc", "uts", "mount"]


def test_resources_memory_and_cpus() -> None:
    spec = build_spec(IMAGE, (), RunOptions(memory=512 * 1024 * 1024, cpus=1.5, pids_limit=100), _ctx())
    resources = spec["linux"]["resources"]
    assert resources["memory"] == {"limit": 536870912}
    assert resources["cpu"] == {"quota": 150000, "period": 100000}
    assert resources["pids"] == {"limit": 100}
    assert resources["devices"] == [{"allow": False, "access": "rwm"}]


def test_tty_sets_terminal_and_console_size() -> None:
    spec = build_spec(IMAGE, (), RunOptions(tty=True, interactive=True), _ctx(console_size=(40, 120)))
    assert spec["process"]["terminal"] is True
    assert spec["process"]["consoleSize"] == {"height": 40, "width": 120}
    assert "TERM=xterm" in spec["process"]["env"]


def test_user_and_additional_groups() -> None:
    spec = build_spec(IMAGE, (), RunOptions(user="www"), _ctx(user=ExecUser(33, 33, (50, 60), "/var/www")))
    assert spec["process"]["user"] == {"uid": 33, "gid": 33, "additionalGids": [50, 60]}
    assert "HOME=/var/www" in spec["process"]["env"]


def test_volumes_binds_and_anonymous() -> None:
    options = RunOptions(volumes=(VolumeSpec("/data", "/host/data", read_only=True), VolumeSpec("/cache")))
    ctx = _ctx(volume_dirs={"/var/lib/db": "/state/volumes/0", "/cache": "/state/volumes/1"})
    mounts = build_spec(IMAGE, ("/var/lib/db", "/data"), options, ctx)["mounts"][10:]
    assert mounts == [
        {"destination": "/var/lib/db", "type": "bind", "source": "/state/volumes/0", "options": ["rbind", "rprivate"]},
        {"destination": "/data", "type": "bind", "source": "/host/data", "options": ["rbind", "rprivate", "ro"]},
        {"destination": "/cache", "type": "bind", "source": "/state/volumes/1", "options": ["rbind", "rprivate"]},
    ]


def test_read_only_rootfs() -> None:
    spec = build_spec(IMAGE, (), RunOptions(read_only=True), _ctx())
    assert spec["root"]["readonly"] is True


def test_exec_process_inherits_container_settings() -> None:
    base = build_spec(IMAGE, (), RunOptions(), _ctx())["process"]
    process = exec_process(base, ["ls", "-l"], tty=True, env=["X=1"], workdir="/tmp")
    assert process["args"] == ["ls", "-l"]
    assert process["terminal"] is True
    assert process["cwd"] == "/tmp"
    assert "X=1" in process["env"] and "TERM=xterm" in process["env"]
    assert process["capabilities"] == base["capabilities"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("/h:/c", VolumeSpec("/c", "/h")),
        ("/h:/c:ro", VolumeSpec("/c", "/h", True)),
        ("/h:/c:rw", VolumeSpec("/c", "/h", False)),
        ("/c", VolumeSpec("/c")),
        ("data:/c", VolumeSpec("/c", "data")),
        ("data:/c:ro,z", VolumeSpec("/c", "data", True)),
    ],
)
def test_parse_volume(text: str, expected: VolumeSpec) -> None:
    assert parse_volume(text) == expected


@pytest.mark.parametrize("text", ["/h:rel", "/h:/", "/h:/c:bogus", ":/c", "a:b:c:d", "bad name!:/c"])
def test_parse_volume_refuses(text: str) -> None:
    with pytest.raises(InvalidInputError, match="invalid volume specification"):
        parse_volume(text)


@pytest.mark.parametrize(
    ("text", "expected"),
    [("512m", 512 * 1024**2), ("1g", 1024**3), ("64k", 65536), ("1048576", 1048576), ("1.5g", int(1.5 * 1024**3)),
     ("100MB", 100 * 1024**2)],
)
def test_parse_memory(text: str, expected: int) -> None:
    assert parse_memory(text) == expected


def test_memory_minimum() -> None:
    with pytest.raises(InvalidInputError, match="6MB"):
        RunOptions(memory=1024)


@pytest.mark.parametrize(("text", "seconds"), [("30s", 30.0), ("1m30s", 90.0), ("500ms", 0.5), ("2h", 7200.0),
                                               ("0", 0.0)])
def test_parse_duration(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["30", "abc", "5x", "1s2"])
def test_parse_duration_refuses(text: str) -> None:
    with pytest.raises(InvalidInputError):
        parse_duration(text)


def test_parse_ulimit() -> None:
    assert parse_ulimit("nofile=1024:2048") == ("nofile", 1024, 2048)
    assert parse_ulimit("nproc=512") == ("nproc", 512, 512)
    with pytest.raises(InvalidInputError):
        parse_ulimit("nofile=10:5")
    with pytest.raises(InvalidInputError):
        parse_ulimit("bogus=1")


def test_run_options_validate_name_and_network() -> None:
    with pytest.raises(InvalidInputError, match="invalid container name"):
        RunOptions(name="bad/name")
    with pytest.raises(InvalidInputError, match="unknown network"):
        RunOptions(network="overlay")
    assert RunOptions(health=HealthOptions(cmd="true")).health.cmd == "true"
