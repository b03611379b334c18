"""Small pure pieces of the runtime: status strings, signals, health state machine, logs, records, cgroups."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from engine.errors import InvalidInputError
from engine.runtime.cgroups import CgroupSample, cpu_percent, detect_mode_from_mountinfo
from engine.runtime.health import HealthConfig, HealthTracker, ProbeResult, effective_healthcheck
from engine.runtime.logs import LogWriter, read_entries, read_from
from engine.runtime.names import random_name
from engine.runtime.options import HealthOptions, RunOptions, VolumeSpec
from engine.runtime.record import ContainerDir, ContainerRecord, HealthState, format_rfc3339, parse_rfc3339
from engine.runtime.runc import exit_code_from_status, find_runtime, last_error
from engine.runtime.status import human_duration, parse_signal, status_text


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0.2, "Less than a second"), (1, "1 second"), (3, "3 seconds"), (59, "59 seconds"), (60, "About a minute"),
     (150, "2 minutes"), (3600, "About an hour"), (7200, "2 hours"), (3 * 86400, "3 days"),
     (15 * 86400, "2 weeks"), (90 * 86400, "3 months"), (800 * 86400, "2 years")],
)
def test_human_duration(seconds: float, text: str) -> None:
    assert human_duration(seconds) == text


@pytest.mark.parametrize(
    ("state", "since", "code", "health", "text"),
    [("running", 3, 0, None, "Up 3 seconds"), ("running", 3, 0, "healthy", "Up 3 seconds (healthy)"),
     ("running", 0.1, 0, "starting", "Up Less than a second (health: starting)"),
     ("running", 5, 0, "unhealthy", "Up 5 seconds (unhealthy)"),
     ("exited", 5, 0, None, "Exited (0) 5 seconds ago"), ("exited", 120, 137, None, "Exited (137) 2 minutes ago"),
     ("created", None, 0, None, "Created")],
)
def test_status_text(state: str, since: float | None, code: int, health: str | None, text: str) -> None:
    assert status_text(state, since=since, exit_code=code, health=health) == text


@pytest.mark.parametrize(("text", "number"), [("SIGTERM", 15), ("TERM", 15), ("kill", 9), ("15", 15), ("SIGUSR1", 10),
                                              (2, 2)])
def test_parse_signal(text: str | int, number: int) -> None:
    assert parse_signal(text) == number


@pytest.mark.parametrize("text", ["SIGBOGUS", "0", "99", ""])
def test_parse_signal_refuses(text: str) -> None:
    with pytest.raises(InvalidInputError):
        parse_signal(text)


def test_exit_codes_from_wait_status() -> None:
    assert exit_code_from_status(3 << 8) == 3
    assert exit_code_from_status(9) == 137  # killed by SIGKILL
    assert exit_code_from_status(15) == 143


def test_runc_error_line() -> None:
    stderr = 'time="2024" level=error msg="exec: \\"nope\\": executable file not found in $PATH"\n'
    assert last_error(stderr) == 'exec: "nope": executable file not found in $PATH'
    assert last_error("") == "unknown error"


def test_crun_refused_on_hybrid(tmp_path: Path) -> None:
    from engine.errors import RuntimeUnavailableError

    with pytest.raises(RuntimeUnavailableError, match="hybrid"):
        find_runtime("/usr/bin/crun", tmp_path, "hybrid")
    with pytest.raises(RuntimeUnavailableError, match="unknown OCI runtime"):
        find_runtime("kata", tmp_path, "v2")


MOUNTINFO_HYBRID = """\
25 1 0:23 / /sys rw - sysfs sysfs rw
30 25 0:26 / /sys/fs/cgroup ro - tmpfs tmpfs ro,mode=755
31 30 0:27 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw
32 30 0:28 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory
"""


def test_cgroup_mode_detection() -> None:
    assert detect_mode_from_mountinfo(MOUNTINFO_HYBRID) == "hybrid"
    assert detect_mode_from_mountinfo("30 25 0:26 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n") == "v2"
    v1 = MOUNTINFO_HYBRID.replace("cgroup2 cgroup2", "tmpfs tmpfs")
    assert detect_mode_from_mountinfo(v1) == "v1"


def test_cpu_percent() -> None:
    before, after = CgroupSample(0, 0, None, 1), CgroupSample(500_000_000, 0, None, 1)
    assert cpu_percent(before, after, 1.0) == pytest.approx(50.0)
    assert cpu_percent(before, after, 0) == 0.0


def test_healthcheck_merge() -> None:
    image = {"Test": ["CMD-SHELL", "wget -q localhost"], "Interval": 5_000_000_000, "Retries": 2}
    config = effective_healthcheck(image, HealthOptions())
    assert config == HealthConfig(("/bin/sh", "-c", "wget -q localhost"), interval=5.0, timeout=30.0, retries=2)
    flags = HealthOptions(cmd="true", interval=1.0, retries=5, start_period=2.0)
    assert effective_healthcheck(image, flags) == HealthConfig(("/bin/sh", "-c", "true"), 1.0, 30.0, 5, 2.0)
    assert effective_healthcheck({"Test": ["NONE"]}, HealthOptions()) is None
    assert effective_healthcheck(image, HealthOptions(disabled=True)) is None
    assert effective_healthcheck(None, HealthOptions()) is None
    assert effective_healthcheck({"Test": ["CMD", "/check", "-v"]}, HealthOptions()).test == ("/check", "-v")  # type: ignore[union-attr]
    round_trip = HealthConfig.from_docker(config.to_docker())  # type: ignore[union-attr]
    assert round_trip == config


def _probe(code: int) -> ProbeResult:
    return ProbeResult("s", "e", code, "out")


def test_health_state_machine() -> None:
    tracker = HealthTracker(HealthConfig(("true",), retries=2, start_period=10))
    assert tracker.status == "starting"
    assert not tracker.record(_probe(1), since_start=1)  # in the start period: not counted
    assert tracker.failing_streak == 0
    assert tracker.record(_probe(0), since_start=2)
    assert tracker.status == "healthy"
    tracker.record(_probe(1), since_start=11)
    assert tracker.status == "healthy" and tracker.failing_streak == 1
    assert tracker.record(_probe(1), since_start=12)
    assert tracker.status == "unhealthy"
    assert tracker.record(_probe(0), since_start=13)
    assert tracker.status == "healthy" and tracker.failing_streak == 0
    for _ in range(10):
        tracker.record(_probe(0), since_start=20)
    assert len(tracker.log) == 5


def test_log_writer_splits_lines_and_streams(tmp_path: Path) -> None:
    path = tmp_path / "container.log"
    writer = LogWriter(path)
    writer.feed("stdout", b"one\ntw")
    writer.feed("stderr", b"err\n")
    writer.feed("stdout", b"o\nthree")
    writer.close()
    entries, offset = read_entries(path)
    assert [(e.stream, e.text) for e in entries] == [("stdout", "one\n"), ("stderr", "err\n"), ("stdout", "two\n"),
                                                     ("stdout", "three")]
    assert offset == path.stat().st_size
    line = json.loads(path.read_bytes().splitlines()[0])
    assert set(line) == {"log", "stream", "time"} and line["time"].endswith("Z")
    tail, _ = read_entries(path, tail=2)
    assert [e.text for e in tail] == ["two\n", "three"]
    assert read_entries(path, tail=0)[0] == []


def test_log_writer_splits_long_lines(tmp_path: Path) -> None:
    path = tmp_path / "container.log"
    writer = LogWriter(path)
    writer.feed("stdout", b"x" * 40000 + b"\n")
    writer.close()
    entries, _ = read_entries(path)
    assert [len(e.text) for e in entries] == [16384, 16384, 40000 - 32768 + 1]


def test_log_reader_ignores_a_partial_last_line(tmp_path: Path) -> None:
    path = tmp_path / "container.log"
    path.write_bytes(b'{"log":"a\\n","stream":"stdout","time":"t"}\n{"log":"b')
    entries, offset = read_entries(path)
    assert [e.text for e in entries] == ["a\n"]
    with open(path, "ab") as fh:
        fh.write(b'\\n","stream":"stderr","time":"t"}\n')
    more, _ = read_from(path, offset)
    assert [(e.stream, e.text) for e in more] == [("stderr", "b\n")]


def test_rfc3339_round_trip() -> None:
    text = format_rfc3339(1_700_000_000_123_456_789)
    assert text == "2023-11-14T22:13:20.123456789Z"
    assert parse_rfc3339(text) == pytest.approx(1_700_000_000.123456, abs=1e-5)


def test_record_round_trip(tmp_path: Path) -> None:
    options = RunOptions(command=("sh",), env=("A=1",), volumes=(VolumeSpec("/d", "/h", True),),
                         health=HealthOptions(cmd="true"), ulimits=(("nofile", 1, 2),), publish=("80",))
    record = ContainerRecord(id="a" * 64, name="n", image="busybox", image_id="sha256:" + "b" * 64,
                             created="t", args=("sh",), options=options, hostname="h")
    record = record.with_state(status="running", health=HealthState("healthy", 0, ({"ExitCode": 0},)))
    cdir = ContainerDir(tmp_path / record.id)
    cdir.path.mkdir()
    cdir.save(record)
    assert cdir.load() == record
    updated = cdir.update(lambda r: r.with_state(status="exited", exit_code=3))
    assert cdir.load().state.exit_code == 3 and updated.state.status == "exited"


def test_random_names_avoid_taken() -> None:
    name = random_name()
    assert "_" in name
    taken = {name}
    assert random_name(taken) not in taken
