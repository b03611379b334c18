"""dockyard's config file, the TUI's part: saved registries ([registries] saved) and the keymap."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import Any

from engine.errors import InvalidInputError


def read(path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise InvalidInputError(f"cannot read config file {path}: {exc}") from None


def saved_registries(path: Path) -> list[str]:
    section = read(path).get("registries", {})
    return [str(r) for r in section.get("saved", [])] if isinstance(section, dict) else []


def save_registry(path: Path, registry: str) -> list[str]:
    """Add ``registry`` to [registries] saved (idempotent) and rewrite the file; returns the new list."""
    data = read(path)
    section = data.setdefault("registries", {})
    saved = [str(r) for r in section.get("saved", [])]
    if registry not in saved:
        saved.append(registry)
    section["saved"] = saved
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(dumps(data))
        tmp.replace(path)
    except OSError as exc:
        raise InvalidInputError(f"cannot write config file {path}: {exc.strerror}") from None
    return saved


def keymap(path: Path) -> dict[str, str]:
    """[keymap] binding-id = "key"; ids are dotted, so `images.remove = "x"` (a nested table) works too."""
    section = read(path).get("keymap", {})
    return flatten(section) if isinstance(section, dict) else {}


def flatten(table: dict[str, Any], prefix: str = "") -> dict[str, str]:
    out: dict[str, str] = {}
    for key, value in table.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flatten(value, name + "."))
        else:
            out[name] = str(value)
    return out


def dumps(data: dict[str, Any]) -> str:
    """TOML for what dockyard's config holds: tables of strings, numbers, booleans and lists of them."""
    lines: list[str] = []
    scalars = {k: v for k, v in data.items() if not isinstance(v, dict)}
    tables = {k: v for k, v in data.items() if isinstance(v, dict)}
    lines.extend(f"{_key(k)} = {_value(v)}" for k, v in scalars.items())
    for name, table in tables.items():
        if lines:
            lines.append("")
        lines.append(f"[{_key(name)}]")
        lines.extend(f"{key} = {_value(v)}" for key, v in _dotted(table))
    return "\n".join(lines) + "\n"


def _dotted(table: dict[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    """Nested tables inside a table as dotted keys (``containers.kill = "ctrl+k"``)."""
    out: list[tuple[str, Any]] = []
    for key, value in table.items():
        name = f"{prefix}{_key(key)}"
        if isinstance(value, dict):
            out.extend(_dotted(value, name + "."))
        else:
            out.append((name, value))
    return out


def _key(key: str) -> str:
    bare = key.replace("-", "").replace("_", "").isalnum()
    return key if bare else json.dumps(key)


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    return json.dumps(str(value))
