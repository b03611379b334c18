"""Plain-text output helpers shared by the CLI commands (docker's units and relative times)."""

from __future__ import annotations

import datetime as _dt
from collections.abc import Sequence


def human_size(size: int | float) -> str:
    """docker's decimal units: 4.26MB, 512B, 1.2GB."""
    value = float(size)
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if value < 1000 or unit == "TB":
            if unit == "B":
                return f"{int(value)}B"
            return f"{value:.3g}{unit}"
        value /= 1000
    return f"{value:.3g}TB"


def parse_time(text: str | None) -> _dt.datetime | None:
    if not text:
        return None
    try:
        cleaned = text.replace("Z", "+00:00")
        if "." in cleaned:  # Go writes nanoseconds; Python takes microseconds
            head, _, rest = cleaned.partition(".")
            digits = "".join(c for c in rest if c.isdigit())
            zone = rest[len(digits):]
            cleaned = f"{head}.{digits[:6]}{zone}"
        value = _dt.datetime.fromisoformat(cleaned)
    except ValueError:
        return None
    return value if value.tzinfo else value.replace(tzinfo=_dt.UTC)


def time_ago(text: str | None, now: _dt.datetime | None = None) -> str:
    when = parse_time(text)
    if when is None:
        return "N/A"
    seconds = int(((now or _dt.datetime.now(_dt.UTC)) - when).total_seconds())
    return f"{duration(seconds)} ago"


def duration(seconds: float) -> str:
    """docker's go-units HumanDuration (the engine's, so CLI and `ps` status agree)."""
    from engine.runtime.status import human_duration

    return human_duration(seconds)


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [len(h) for h in headers]
    for row in rows:
        for i, cell in enumerate(row):
            widths[i] = max(widths[i], len(cell))
    lines = []
    for row in [headers, *rows]:
        cells = [cell.ljust(widths[i]) for i, cell in enumerate(row)]
        lines.append("   ".join(cells).rstrip())
    return "\n".join(lines)
