"""The host's cgroup layout (v1, v2 or hybrid) and a container's cpu/memory/pids counters."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")
CGROUP_PARENT = "dockyard"


def _mount_types(mountinfo: str) -> dict[str, str]:
    types: dict[str, str] = {}
    for line in mountinfo.splitlines():
        left, _, right = line.partition(" - ")
        fields = left.split()
        if len(fields) > 4 and right:
            types[fields[4]] = right.split()[0]
    return types


def detect_mode_from_mountinfo(mountinfo: str, root: str = str(CGROUP_ROOT)) -> str:
    """"v2" (unified), "hybrid" (v1 controllers + a cgroup2 at <root>/unified) or "v1"."""
    types = _mount_types(mountinfo)
    if types.get(root) == "cgroup2":
        return "v2"
    if types.get(root + "/unified") == "cgroup2":
        return "hybrid"
    return "v1"


_mode: str | None = None


def detect_mode() -> str:
    global _mode
    if _mode is None:
        try:
            with open("/proc/self/mountinfo", encoding="utf-8", errors="replace") as fh:
                _mode = detect_mode_from_mountinfo(fh.read())
        except OSError:
            _mode = "v1"
    return _mode


def cgroups_path(container_id: str) -> str:
    """The runtime spec's ``linux.cgroupsPath`` (cgroupfs driver)."""
    return f"/{CGROUP_PARENT}/{container_id}"


@dataclass(frozen=True, slots=True)
class CgroupSample:
    cpu_ns: int
    memory_bytes: int
    memory_limit: int | None
    pids: int


def _read_int(path: Path) -> int | None:
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    if text == "max":
        return None
    try:
        return int(text)
    except ValueError:
        return None


def _memory_v1_usage(directory: Path) -> int:
    usage = _read_int(directory / "memory.usage_in_bytes") or 0
    cache = 0
    try:
        for line in (directory / "memory.stat").read_text().splitlines():
            key, _, value = line.partition(" ")
            if key == "total_inactive_file":
                cache = int(value)
    except (OSError, ValueError):
        pass
    return max(0, usage - cache)


def sample(container_id: str, mode: str | None = None) -> CgroupSample | None:
    """Read the container's counters; None when its cgroup is gone."""
    mode = mode or detect_mode()
    rel = cgroups_path(container_id).lstrip("/")
    if mode == "v2":
        base = CGROUP_ROOT / rel
        if not base.is_dir():
            return None
        cpu_us = 0
        try:
            for line in (base / "cpu.stat").read_text().splitlines():
                key, _, value = line.partition(" ")
                if key == "usage_usec":
                    cpu_us = int(value)
        except (OSError, ValueError):
            pass
        memory = _read_int(base / "memory.current") or 0
        try:
            for line in (base / "memory.stat").read_text().splitlines():
                key, _, value = line.partition(" ")
                if key == "inactive_file":
                    memory = max(0, memory - int(value))
        except (OSError, ValueError):
            pass
        return CgroupSample(cpu_us * 1000, memory, _read_int(base / "memory.max"),
                            _read_int(base / "pids.current") or 0)
    memory_dir = CGROUP_ROOT / "memory" / rel
    if not memory_dir.is_dir():
        return None
    limit = _read_int(memory_dir / "memory.limit_in_bytes")
    if limit is not None and limit >= 2**62:
        limit = None
    cpuacct = CGROUP_ROOT / "cpuacct" / rel
    if not cpuacct.is_dir():
        cpuacct = CGROUP_ROOT / "cpu,cpuacct" / rel
    return CgroupSample(
        cpu_ns=_read_int(cpuacct / "cpuacct.usage") or 0,
        memory_bytes=_memory_v1_usage(memory_dir),
        memory_limit=limit,
        pids=_read_int(CGROUP_ROOT / "pids" / rel / "pids.current") or 0,
    )


def cpu_percent(before: CgroupSample, after: CgroupSample, seconds: float) -> float:
    """docker's figure: share of one CPU times the number of CPUs (100% = one core busy)."""
    if seconds <= 0:
        return 0.0
    return max(0.0, (after.cpu_ns - before.cpu_ns) / (seconds * 1e9) * 100.0)


def host_cpus() -> int:
    return os.cpu_count() or 1
