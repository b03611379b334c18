"""Short, column-friendly renderings of sizes, times and digests for the tables."""

from __future__ import annotations

import datetime as _dt

from cli.format import human_size, parse_time

__all__ = ["ago", "human_size", "seconds", "short_id", "uptime"]


def short_id(digest: str) -> str:
    """``sha256:abcdef…`` -> the 12 hex characters docker shows."""
    return digest.split(":", 1)[-1][:12]


def ago(text: str | None, now: _dt.datetime) -> str:
    """Compact relative time: 5s, 3m, 2h, 4d, 3w, 2y (tables need narrow columns)."""
    when = parse_time(text)
    if when is None:
        return "-"
    return _compact((now - when).total_seconds()) + " ago"


def uptime(started: str | None, now: _dt.datetime) -> str:
    when = parse_time(started)
    if when is None:
        return "-"
    return _compact((now - when).total_seconds())


def seconds(value: float | None) -> str:
    if value is None:
        return ""
    return f"{value:.1f}s" if value < 60 else f"{int(value // 60)}m{int(value % 60):02d}s"


def _compact(total: float) -> str:
    s = max(0, int(total))
    for unit, size in (("y", 365 * 86400), ("w", 7 * 86400), ("d", 86400), ("h", 3600), ("m", 60)):
        if s >= size:
            return f"{s // size}{unit}"
    return f"{s}s"
