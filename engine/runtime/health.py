"""Health checks: docker's HEALTHCHECK semantics, run by the monitor with ``runc exec``.

``effective_healthcheck`` (pure) merges the image's ``Healthcheck`` with ``--health-*`` flags;
``HealthTracker`` (pure) turns probe results into starting/healthy/unhealthy the way docker does:
a success makes the container healthy; ``retries`` consecutive failures make it unhealthy, but
failures during the start period do not count; the first probe runs one interval after start.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from engine.runtime.options import HealthOptions

NS = 1_000_000_000
DEFAULT_INTERVAL = 30.0
DEFAULT_TIMEOUT = 30.0
DEFAULT_RETRIES = 3
MAX_OUTPUT = 4096
LOG_ENTRIES = 5


@dataclass(frozen=True, slots=True)
class HealthConfig:
    """A health check: command and timings (seconds)."""

    test: tuple[str, ...]  # the probe's argv (inside the container)
    interval: float = DEFAULT_INTERVAL
    timeout: float = DEFAULT_TIMEOUT
    retries: int = DEFAULT_RETRIES
    start_period: float = 0.0

    def to_docker(self) -> dict[str, Any]:
        return {"Test": ["CMD", *self.test], "Interval": int(self.interval * NS),
                "Timeout": int(self.timeout * NS), "Retries": self.retries,
                "StartPeriod": int(self.start_period * NS)}

    @classmethod
    def from_docker(cls, data: Mapping[str, Any]) -> HealthConfig | None:
        return effective_healthcheck(data, HealthOptions())


def _seconds(ns: Any, default: float) -> float:
    if isinstance(ns, int | float) and ns > 0:
        return float(ns) / NS
    return default


def effective_healthcheck(image: Mapping[str, Any] | None, flags: HealthOptions) -> HealthConfig | None:
    """The check to run, or None (no HEALTHCHECK, ``NONE``, or ``--no-healthcheck``)."""
    if flags.disabled:
        return None
    image = image or {}
    test: list[str] = list(image.get("Test") or [])
    if flags.cmd is not None:
        test = ["CMD-SHELL", flags.cmd]
    if not test or test[0] == "NONE":
        return None
    if test[0] == "CMD":
        argv = tuple(test[1:])
    elif test[0] == "CMD-SHELL":
        argv = ("/bin/sh", "-c", " ".join(test[1:]))
    else:  # an old-style bare command list
        argv = tuple(test)
    if not argv:
        return None
    retries = flags.retries if flags.retries is not None else image.get("Retries")
    return HealthConfig(
        test=argv,
        interval=flags.interval or _seconds(image.get("Interval"), DEFAULT_INTERVAL),
        timeout=flags.timeout or _seconds(image.get("Timeout"), DEFAULT_TIMEOUT),
        retries=int(retries) if isinstance(retries, int) and retries > 0 else DEFAULT_RETRIES,
        start_period=(flags.start_period if flags.start_period is not None
                      else _seconds(image.get("StartPeriod"), 0.0)),
    )


@dataclass(frozen=True, slots=True)
class ProbeResult:
    """One health probe: start, end, exit code and output."""

    start: str
    end: str
    exit_code: int
    output: str

    def to_json(self) -> dict[str, Any]:
        return {"Start": self.start, "End": self.end, "ExitCode": self.exit_code, "Output": self.output}


class HealthTracker:
    """docker's state machine for one container's health."""

    def __init__(self, config: HealthConfig) -> None:
        self.config = config
        self.status = "starting"
        self.failing_streak = 0
        self.log: list[ProbeResult] = []

    def record(self, result: ProbeResult, since_start: float) -> bool:
        """Account one probe; True when the status changed."""
        before = self.status
        self.log = [*self.log, result][-LOG_ENTRIES:]
        if result.exit_code == 0:
            self.failing_streak = 0
            self.status = "healthy"
        elif since_start < self.config.start_period and self.status == "starting":
            pass  # failures in the start period don't count
        else:
            self.failing_streak += 1
            if self.failing_streak >= self.config.retries:
                self.status = "unhealthy"
        return self.status != before
