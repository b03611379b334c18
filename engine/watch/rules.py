"""What a change means (pure): which files count, and which action a changed path asks for.

Rules come from ``dockyard.toml`` (``[[watch]] path = "site", action = "sync", target = "/srv/www"``)
or from a compose file's ``develop.watch`` section (the same keys compose uses). A path no rule names
rebuilds. Editor temp files, ``.git`` and what ``.dockerignore`` excludes never trigger anything.
"""

from __future__ import annotations

import fnmatch
import posixpath
import re
import tomllib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.errors import InvalidInputError

ACTIONS = ("rebuild", "sync", "sync+restart", "sync+exec")

_EDITOR_TEMP = (
    re.compile(r"\.sw[a-p]$"), re.compile(r"~$"), re.compile(r"^\.#"), re.compile(r"^#.*#$"),
    re.compile(r"^4913$"), re.compile(r"^\.DS_Store$"), re.compile(r"\.tmp$"), re.compile(r"^\.goutputstream-"),
    re.compile(r"\.py[cod]$"), re.compile(r"\.___jb_...___$"), re.compile(r"^flycheck_"),
)
_IGNORED_DIRS = frozenset({".git", ".hg", ".svn", "__pycache__", ".mypy_cache", ".pytest_cache", "node_modules"})


@dataclass(frozen=True, slots=True)
class WatchRule:
    path: str  # relative to the context; a file or a directory
    action: str = "rebuild"
    target: str | None = None  # container path for sync actions
    exec_command: tuple[str, ...] = ()
    ignore: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.action not in ACTIONS:
            raise InvalidInputError(f"watch rule {self.path!r}: unknown action {self.action!r} "
                                    f"(use one of {', '.join(ACTIONS)})")
        if self.action.startswith("sync") and not (self.target and self.target.startswith("/")):
            raise InvalidInputError(f"watch rule {self.path!r}: action {self.action} needs an absolute target")
        if self.action == "sync+exec" and not self.exec_command:
            raise InvalidInputError(f"watch rule {self.path!r}: sync+exec needs exec = [...]")

    def owns(self, rel: str) -> bool:
        base = self.path.strip("/")
        if base in ("", "."):
            inside = rel
        elif rel == base or rel.startswith(base + "/"):
            inside = rel[len(base):].lstrip("/")
        else:
            return False
        return not any(fnmatch.fnmatchcase(inside, pattern) or fnmatch.fnmatchcase(posixpath.basename(rel), pattern)
                       for pattern in self.ignore)

    def container_path(self, rel: str) -> str:
        assert self.target is not None
        base = self.path.strip("/")
        inside = rel[len(base):].lstrip("/") if base not in ("", ".") else rel
        return posixpath.join(self.target, inside) if inside else self.target


@dataclass(frozen=True, slots=True)
class WatchPlan:
    rules: tuple[WatchRule, ...] = field(default=())

    def action_for(self, rel: str) -> WatchRule | None:
        """The most specific rule owning ``rel`` (longest path), or None: rebuild."""
        owning = [r for r in self.rules if r.owns(rel)]
        return max(owning, key=lambda r: len(r.path.strip("/"))) if owning else None

    def classify(self, changed: Iterable[str]) -> tuple[bool, dict[WatchRule, list[str]]]:
        """(needs a rebuild, the sync rules with their files). One rebuild path wins over syncs."""
        syncs: dict[WatchRule, list[str]] = {}
        rebuild = False
        for rel in sorted(set(changed)):
            rule = self.action_for(rel)
            if rule is None or rule.action == "rebuild":
                rebuild = True
            else:
                syncs.setdefault(rule, []).append(rel)
        return rebuild, syncs


def is_noise(rel: str) -> bool:
    """Editor swap/backup files and VCS or cache directories."""
    parts = rel.split("/")
    if any(part in _IGNORED_DIRS for part in parts[:-1]) or parts[-1] in _IGNORED_DIRS:
        return True
    return any(pattern.search(parts[-1]) for pattern in _EDITOR_TEMP)


def _rule(data: Mapping[str, Any], source: str) -> WatchRule:
    path = data.get("path")
    if not isinstance(path, str) or not path:
        raise InvalidInputError(f"{source}: every watch rule needs a path")
    command = data.get("exec") or data.get("command") or ()
    if isinstance(command, Mapping):
        command = command.get("command") or ()
    if isinstance(command, str):
        command = ("/bin/sh", "-c", command)
    ignore = data.get("ignore") or ()
    return WatchRule(
        path=path.removeprefix("./"), action=str(data.get("action", "rebuild")),
        target=data.get("target"), exec_command=tuple(str(c) for c in command),
        ignore=tuple(str(i) for i in ([ignore] if isinstance(ignore, str) else ignore)),
    )


def parse_dockyard_toml(text: str, source: str = "dockyard.toml") -> WatchPlan:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise InvalidInputError(f"{source}: {exc}") from None
    rules = data.get("watch") or []
    if not isinstance(rules, list):
        raise InvalidInputError(f"{source}: [[watch]] must be a list of tables")
    return WatchPlan(tuple(_rule(r, source) for r in rules))


def parse_compose_watch(data: Mapping[str, Any], source: str = "compose.yaml") -> WatchPlan:
    """Rules from the first service with a ``develop.watch`` section of a parsed compose file."""
    services = data.get("services") or {}
    for service in services.values() if isinstance(services, Mapping) else []:
        develop = (service or {}).get("develop") or {}
        watch = develop.get("watch") if isinstance(develop, Mapping) else None
        if isinstance(watch, list):
            return WatchPlan(tuple(_rule(r, source) for r in watch))
    return WatchPlan()


def load_plan(context: Path, explicit: Path | None = None) -> WatchPlan:
    """dockyard.toml in the context (or the file given); else a compose file's develop.watch."""
    candidates: Sequence[Path] = [explicit] if explicit else [context / "dockyard.toml"]
    for path in candidates:
        if path.is_file():
            return parse_dockyard_toml(path.read_text(), str(path))
    for name in ("compose.yaml", "compose.yml", "docker-compose.yaml", "docker-compose.yml"):
        path = context / name
        if path.is_file():
            try:
                import yaml
            except ImportError:
                raise InvalidInputError(f"{path}: reading compose files needs PyYAML; use dockyard.toml") from None
            loaded = yaml.safe_load(path.read_text()) or {}
            return parse_compose_watch(loaded if isinstance(loaded, dict) else {}, str(path))
    return WatchPlan()
