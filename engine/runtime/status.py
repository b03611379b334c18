"""docker's human status strings ("Up 3 seconds (healthy)", "Exited (0) 5 seconds ago") and signals."""

from __future__ import annotations

import signal as _signal

from engine.errors import InvalidInputError


def human_duration(seconds: float) -> str:
    """docker's go-units HumanDuration."""
    if seconds < 1:
        return "Less than a second"
    if seconds < 2:
        return "1 second"
    if seconds < 60:
        return f"{int(seconds)} seconds"
    minutes = int(seconds / 60)
    if minutes == 1:
        return "About a minute"
    if minutes < 60:
        return f"{minutes} minutes"
    hours = int(seconds / 3600 + 0.5)
    if hours == 1:
        return "About an hour"
    if hours < 48:
        return f"{hours} hours"
    if hours < 24 * 7 * 2:
        return f"{hours // 24} days"
    if hours < 24 * 30 * 2:
        return f"{hours // 24 // 7} weeks"
    if hours < 24 * 365 * 2:
        return f"{hours // 24 // 30} months"
    return f"{hours // 24 // 365} years"


def status_text(state: str, *, since: float | None, exit_code: int = 0, health: str | None = None) -> str:
    """The STATUS column of ``ps``; ``since`` is the seconds since start (running) or finish (exited)."""
    if state == "running":
        text = f"Up {human_duration(since or 0.0)}"
        if health == "starting":
            text += " (health: starting)"
        elif health in ("healthy", "unhealthy"):
            text += f" ({health})"
        return text
    if state == "exited":
        if since is None:
            return f"Exited ({exit_code})"
        return f"Exited ({exit_code}) {human_duration(since)} ago"
    if state == "removing":
        return "Removal In Progress"
    if state == "dead":
        return "Dead"
    return "Created"


def parse_signal(text: str | int) -> int:
    """``SIGTERM``, ``TERM``, ``term`` or ``15`` -> 15."""
    if isinstance(text, int):
        value = text
    else:
        raw = text.strip()
        if raw.isdigit():
            value = int(raw)
        else:
            name = raw.upper()
            if not name.startswith("SIG"):
                name = "SIG" + name
            try:
                return int(_signal.Signals[name])
            except KeyError:
                raise InvalidInputError(f"invalid signal: {text}") from None
    if not 1 <= value <= 64:
        raise InvalidInputError(f"invalid signal: {text}")
    return value


def signal_name(number: int) -> str:
    try:
        return _signal.Signals(number).name
    except ValueError:
        return str(number)
