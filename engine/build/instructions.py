"""Typed Dockerfile instructions, stages, and BuildKit's per-instruction expansion rule (pure).

:func:`build_dockerfile` turns a :class:`~engine.build.dockerfile.DockerfileAST` into a
:class:`Dockerfile`: ``.meta_args`` (the ARGs before the first FROM), ``.stages`` (each a FROM and the
instructions up to the next FROM), ``.directives`` and ``.escape``. Each instruction is a frozen
dataclass (``CopyInstruction``, ``RunInstruction``, ...) whose fields hold the *unexpanded* words,
with flags parsed and checked the way BuildKit checks them (unknown or repeated flags, booleans,
HEALTHCHECK durations to nanoseconds, stage names, ONBUILD triggers, argument counts).
``engine.build.dockerfile.parse_dockerfile(text)`` is parse_ast + build_dockerfile.

Variables are expanded by the builder, instruction by instruction, with the environment of that
moment (build args + ENV so far; for FROM the meta args). :func:`expand_instruction` applies BuildKit's
rule of which fields expand, returning a copy with those fields expanded (quotes removed) and the
variable names it looked up:

=============  ===================================================================================
FROM           base image and ``--platform``
ARG            names and defaults
ENV, LABEL     keys and values (all pairs see the environment from *before* the instruction)
COPY, ADD      sources, destination, ``--from``, ``--chown``, ``--chmod``, ``--exclude``,
               ``--checksum``; heredoc bodies whose delimiter was not quoted (quotes stay literal)
WORKDIR, USER, STOPSIGNAL, VOLUME (each path)
EXPOSE         each word, then split on whitespace (one word may give several ports)
RUN            only the ``--mount`` specs
not expanded   RUN command, CMD, ENTRYPOINT, SHELL, HEALTHCHECK, ONBUILD, MAINTAINER,
               RUN ``--network`` / ``--security``
=============  ===================================================================================

Public API::

    build_dockerfile(ast: DockerfileAST) -> Dockerfile
    instruction_from_node(node: Node, *, filename: str = "Dockerfile") -> Instruction
    expand_instruction(instruction: I, env: Mapping[str, str], *, escape: str = "\\\\",
                       filename: str = "Dockerfile") -> Expansion[I]
    parse_go_duration(text: str) -> int                     # "1m30s" -> 90_000_000_000 (ns)
    parse_expose_port(spec: str) -> tuple[str, ...]         # "8000-8001/udp" -> ("8000/udp", "8001/udp")
    Dockerfile, Stage, Instruction and its subclasses, KeyValue, ArgDef, SourceContent, Expansion

Errors are :class:`engine.errors.DockerfileError` ("Dockerfile:7: COPY requires at least two
arguments, ..."), except parse_go_duration (ValueError) and parse_expose_port (InvalidPortSpecError).
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Generic, TypeVar, cast

from engine.build.dockerfile import DockerfileAST, Heredoc, Node, parse_heredoc_word
from engine.build.shell import process_word
from engine.errors import DockerfileError, InvalidPortSpecError, ShellExpansionError

__all__ = [
    "EXPANDED_FIELDS",
    "AddInstruction",
    "ArgDef",
    "ArgInstruction",
    "CmdInstruction",
    "CopyInstruction",
    "Dockerfile",
    "EntrypointInstruction",
    "EnvInstruction",
    "Expansion",
    "ExposeInstruction",
    "FromInstruction",
    "HealthcheckInstruction",
    "Instruction",
    "KeyValue",
    "LabelInstruction",
    "MaintainerInstruction",
    "OnbuildInstruction",
    "RunInstruction",
    "ShellInstruction",
    "SourceContent",
    "Stage",
    "StopsignalInstruction",
    "UserInstruction",
    "VolumeInstruction",
    "WorkdirInstruction",
    "build_dockerfile",
    "expand_instruction",
    "instruction_from_node",
    "parse_expose_port",
    "parse_go_duration",
]

Command = str | tuple[str, ...]  # shell form: one string for the shell; exec (JSON) form: argv


# -- values -------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class KeyValue:
    key: str
    value: str
    legacy: bool = False  # written "ENV key value" (no "=")


@dataclass(frozen=True)
class ArgDef:
    name: str
    default: str | None = None  # None: "ARG name" without a default


@dataclass(frozen=True)
class SourceContent:
    """A COPY/ADD source given inline as a heredoc: the file ``path`` gets ``data``."""

    path: str
    data: str  # tab-stripped already for <<-
    expand: bool  # expand variables in data (the delimiter was not quoted)


# -- instructions -------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Instruction:
    node: Node

    @property
    def keyword(self) -> str:
        return self.node.keyword

    @property
    def line(self) -> int:
        return self.node.start_line

    @property
    def end_line(self) -> int:
        return self.node.end_line

    @property
    def original(self) -> str:
        return self.node.original


@dataclass(frozen=True)
class FromInstruction(Instruction):
    base_name: str
    stage_name: str | None = None  # the "AS name", lower-cased
    platform: str | None = None


@dataclass(frozen=True)
class ArgInstruction(Instruction):
    args: tuple[ArgDef, ...]


@dataclass(frozen=True)
class EnvInstruction(Instruction):
    pairs: tuple[KeyValue, ...]


@dataclass(frozen=True)
class LabelInstruction(Instruction):
    pairs: tuple[KeyValue, ...]


@dataclass(frozen=True)
class MaintainerInstruction(Instruction):
    maintainer: str


@dataclass(frozen=True)
class RunInstruction(Instruction):
    command: Command
    json_form: bool = False
    heredocs: tuple[Heredoc, ...] = ()
    mounts: tuple[str, ...] = ()  # raw --mount specs, "type=cache,target=/root/.cache"
    network: str | None = None  # "default" | "none" | "host"
    security: str | None = None  # "sandbox" | "insecure"


@dataclass(frozen=True)
class CmdInstruction(Instruction):
    command: Command
    json_form: bool = False


@dataclass(frozen=True)
class EntrypointInstruction(Instruction):
    command: Command
    json_form: bool = False


@dataclass(frozen=True)
class ShellInstruction(Instruction):
    shell: tuple[str, ...]


@dataclass(frozen=True)
class WorkdirInstruction(Instruction):
    path: str


@dataclass(frozen=True)
class UserInstruction(Instruction):
    user: str


@dataclass(frozen=True)
class ExposeInstruction(Instruction):
    ports: tuple[str, ...]  # as written: "80", "53/udp", "8000-8010/tcp", "$PORT"

    def port_keys(self, filename: str = "Dockerfile") -> tuple[str, ...]:
        """The image-config ExposedPorts keys ("80/tcp", ...) of these (already expanded) ports."""
        keys: set[str] = set()
        for spec in self.ports:
            try:
                keys.update(parse_expose_port(spec))
            except InvalidPortSpecError as exc:
                raise DockerfileError(f"EXPOSE: {exc}", file=filename, line=self.line) from None
        return tuple(sorted(keys, key=_port_sort_key))


@dataclass(frozen=True)
class VolumeInstruction(Instruction):
    paths: tuple[str, ...]
    json_form: bool = False


@dataclass(frozen=True)
class CopyInstruction(Instruction):
    sources: tuple[str, ...]  # context (or --from stage/image) paths; heredoc sources are in contents
    dest: str
    contents: tuple[SourceContent, ...] = ()
    from_: str | None = None
    chown: str | None = None
    chmod: str | None = None
    link: bool = False
    parents: bool = False
    excludes: tuple[str, ...] = ()
    json_form: bool = False

    @property
    def heredocs(self) -> tuple[Heredoc, ...]:
        return self.node.heredocs


@dataclass(frozen=True)
class AddInstruction(Instruction):
    sources: tuple[str, ...]  # paths or URLs (http(s)://, git)
    dest: str
    contents: tuple[SourceContent, ...] = ()
    chown: str | None = None
    chmod: str | None = None
    link: bool = False
    keep_git_dir: bool = False
    checksum: str | None = None
    excludes: tuple[str, ...] = ()
    unpack: bool | None = None
    json_form: bool = False

    @property
    def heredocs(self) -> tuple[Heredoc, ...]:
        return self.node.heredocs


@dataclass(frozen=True)
class OnbuildInstruction(Instruction):
    expression: str  # what goes into the image config's OnBuild list
    trigger: Instruction


@dataclass(frozen=True)
class HealthcheckInstruction(Instruction):
    test: tuple[str, ...]  # ("NONE",) | ("CMD", argv...) | ("CMD-SHELL", command)
    interval: int = 0  # nanoseconds; 0 = inherit / default
    timeout: int = 0
    start_period: int = 0
    start_interval: int = 0
    retries: int = 0

    @property
    def disabled(self) -> bool:
        return self.test == ("NONE",)


@dataclass(frozen=True)
class StopsignalInstruction(Instruction):
    signal: str


# -- stages -------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Stage:
    index: int
    from_: FromInstruction
    instructions: tuple[Instruction, ...] = ()

    @property
    def base_name(self) -> str:
        return self.from_.base_name

    @property
    def name(self) -> str | None:
        return self.from_.stage_name

    alias = name

    @property
    def platform(self) -> str | None:
        return self.from_.platform


@dataclass(frozen=True)
class Dockerfile:
    stages: tuple[Stage, ...]
    meta_args: tuple[ArgInstruction, ...]
    directives: Mapping[str, str]
    escape: str
    ast: DockerfileAST
    warnings: tuple[str, ...] = ()

    @property
    def filename(self) -> str:
        return self.ast.filename

    def stage(self, key: str | int) -> Stage:
        """A stage by index or by name (case-insensitive); raise DockerfileError when there is none."""
        if isinstance(key, int):
            if 0 <= key < len(self.stages):
                return self.stages[key]
        else:
            for stage in self.stages:
                if stage.name is not None and stage.name == key.lower():
                    return stage
        raise DockerfileError(f"no build stage {key!r}", file=self.filename)


# -- flags --------------------------------------------------------------------------------------------

_STRING, _BOOL, _STRINGS = "string", "bool", "strings"
_FLAGS: dict[str, dict[str, str]] = {
    "from": {"platform": _STRING},
    "run": {"mount": _STRINGS, "network": _STRING, "security": _STRING},
    "copy": {
        "from": _STRING, "chown": _STRING, "chmod": _STRING, "link": _BOOL, "parents": _BOOL,
        "exclude": _STRINGS,
    },
    "add": {
        "chown": _STRING, "chmod": _STRING, "link": _BOOL, "keep-git-dir": _BOOL, "checksum": _STRING,
        "exclude": _STRINGS, "unpack": _BOOL,
    },
    "healthcheck": {
        "interval": _STRING, "timeout": _STRING, "start-period": _STRING, "start-interval": _STRING,
        "retries": _STRING,
    },
}


class _Problem(Exception):
    """Internal: what is wrong with one instruction; turned into DockerfileError with file and line."""


@dataclass
class _Flags:
    strings: dict[str, str] = field(default_factory=dict)
    bools: dict[str, bool] = field(default_factory=dict)
    lists: dict[str, list[str]] = field(default_factory=dict)


def _parse_flags(node: Node) -> _Flags:
    known = _FLAGS.get(node.keyword, {})
    out = _Flags()
    seen: set[str] = set()
    for flag in node.flags:
        if flag == "--":
            break
        if not flag.startswith("--"):
            raise _Problem(f"arg should start with -- : {flag}")
        name, has_value, value = flag[2:].partition("=")
        kind = known.get(name)
        if kind is None:
            hint = difflib.get_close_matches(name, sorted(known), n=1)
            suggestion = f" (did you mean {hint[0]}?)" if hint else ""
            raise _Problem(f"unknown flag: {name}{suggestion}")
        if name in seen and kind != _STRINGS:
            raise _Problem(f"duplicate flag specified: {name}")
        seen.add(name)
        if kind == _BOOL:
            if has_value and not value:
                raise _Problem(f"missing a value on flag: {name}")
            if value.lower() not in ("", "true", "false"):
                raise _Problem(f"expecting boolean value for flag {name}, not: {value}")
            out.bools[name] = value.lower() != "false"
        elif not has_value:
            raise _Problem(f"missing a value on flag: {name}")
        elif kind == _STRINGS:
            out.lists.setdefault(name, []).append(value)
        else:
            out.strings[name] = value
    return out


# -- durations and ports ------------------------------------------------------------------------------

_UNITS = {
    "ns": 1, "us": 1_000, "\u00b5s": 1_000, "\u03bcs": 1_000, "ms": 1_000_000, "s": 1_000_000_000,
    "m": 60_000_000_000, "h": 3_600_000_000_000,
}
_DURATION_PART = re.compile(r"(\d*)(?:\.(\d*))?([^\d.]*)")


def parse_go_duration(text: str) -> int:
    """Go's time.ParseDuration in nanoseconds ("30s" -> 30_000_000_000, "1h2m0.5s", "-3ms")."""
    rest = text
    sign = 1
    if rest[:1] in ("+", "-"):
        sign = -1 if rest[0] == "-" else 1
        rest = rest[1:]
    if rest == "0":
        return 0
    if not rest:
        raise ValueError(f"invalid duration {text!r}")
    total_num, total_den = 0, 1
    while rest:
        match = _DURATION_PART.match(rest)
        assert match is not None  # the pattern matches the empty string
        whole, frac, unit = match.group(1), match.group(2), match.group(3)
        if not whole and not frac:
            raise ValueError(f"invalid duration {text!r}")
        if not unit:
            raise ValueError(f"missing unit in duration {text!r}")
        if unit not in _UNITS:
            raise ValueError(f"unknown unit {unit!r} in duration {text!r}")
        scale = 10 ** len(frac or "")
        num = (int(whole or "0") * scale + int(frac or "0")) * _UNITS[unit]
        total_num, total_den = total_num * scale + num * total_den, total_den * scale
        rest = rest[match.end():]
    nanos = total_num // total_den
    if nanos > 2**63 - 1:
        raise ValueError(f"invalid duration {text!r}")
    return sign * nanos


_MIN_HEALTH_DURATION = 1_000_000  # 1ms, docker's container.MinimumDuration


def _health_duration(flags: _Flags, name: str) -> int:
    value = flags.strings.get(name, "")
    if not value:
        return 0
    try:
        nanos = parse_go_duration(value)
    except ValueError as exc:
        raise _Problem(f"--{name}: {exc}") from None
    if nanos == 0:
        return 0
    if nanos < _MIN_HEALTH_DURATION:
        raise _Problem(f'Interval "{name}" cannot be less than 1ms')
    return nanos


_PORT = re.compile(r"(\d+)(?:-(\d+))?(?:/([A-Za-z]+))?\Z")


def parse_expose_port(spec: str) -> tuple[str, ...]:
    """ExposedPorts keys for one EXPOSE word: "80" -> ("80/tcp",); "53-54/udp" -> two keys."""
    match = _PORT.match(spec)
    if match is None:
        raise InvalidPortSpecError(f"invalid port {spec!r}: want PORT[-PORT][/tcp|udp|sctp]")
    start, end = int(match.group(1)), int(match.group(2) or match.group(1))
    proto = (match.group(3) or "tcp").lower()
    if proto not in ("tcp", "udp", "sctp"):
        raise InvalidPortSpecError(f"invalid protocol {match.group(3)!r} in port {spec!r}")
    if start > 65535 or end > 65535:
        raise InvalidPortSpecError(f"invalid port {spec!r}: ports go up to 65535")
    if end < start:
        raise InvalidPortSpecError(f"invalid range specified for port {spec!r}")
    return tuple(f"{port}/{proto}" for port in range(start, end + 1))


def _port_sort_key(key: str) -> tuple[int, str]:
    port, _, proto = key.partition("/")
    return int(port), proto


# -- node -> instruction ------------------------------------------------------------------------------

_STAGE_NAME = re.compile(r"[a-z][a-z0-9\-_.]*\Z")


def _kvps(node: Node, what: str) -> tuple[KeyValue, ...]:
    args = node.args
    if not args:
        raise _Problem(f"{what} requires at least one argument")
    if len(args) % 3:
        raise _Problem(f"Bad input to {what}, too many arguments")
    pairs = []
    for i in range(0, len(args), 3):
        if not args[i]:
            raise _Problem(f"{what} names can not be blank")
        pairs.append(KeyValue(args[i], args[i + 1], legacy=args[i + 2] == ""))
    return tuple(pairs)


def _exactly_one(node: Node, what: str) -> str:
    if len(node.args) != 1:
        raise _Problem(f"{what} requires exactly one argument")
    return node.args[0]


def _command(node: Node) -> Command:
    if node.json_form:
        return tuple(node.args)
    return " ".join(node.args)


def _sources_and_dest(node: Node, what: str) -> tuple[tuple[str, ...], str, tuple[SourceContent, ...]]:
    if len(node.args) < 2:
        raise _Problem(
            f"{what} requires at least two arguments, but only one was provided. "
            "Destination could not be determined"
        )
    *sources, dest = node.args
    if _heredoc_word(dest) is not None:
        raise _Problem(f"{what} cannot accept a heredoc as a destination")
    bodies = {doc.name: doc for doc in node.heredocs}
    paths: list[str] = []
    contents: list[SourceContent] = []
    for src in sources:
        doc = _heredoc_word(src) if not node.json_form else None
        if doc is None:
            paths.append(src)
            continue
        body = bodies.get(doc.name)
        text = "" if body is None else body.content
        if doc.strip_tabs:
            text = Heredoc(doc.name, text, strip_tabs=True).text
        contents.append(SourceContent(path=doc.name, data=text, expand=doc.expand))
    return tuple(paths), dest, tuple(contents)


def _heredoc_word(word: str) -> Heredoc | None:
    try:
        return parse_heredoc_word(word)
    except ShellExpansionError:
        return None  # BuildKit: MustParseHeredoc, a word that does not lex is a plain path


def _from(node: Node, flags: _Flags) -> FromInstruction:
    args = node.args
    name: str | None = None
    if len(args) == 3 and args[1].lower() == "as":
        name = args[2].lower()
        if not _STAGE_NAME.match(name):
            raise _Problem(
                f'invalid name for build stage: "{args[2]}", name can\'t start with a number or '
                "contain symbols"
            )
    elif len(args) != 1:
        raise _Problem("FROM requires either one or three arguments")
    return FromInstruction(node, args[0], name, flags.strings.get("platform"))


def _arg(node: Node) -> ArgInstruction:
    if not node.args:
        raise _Problem("ARG requires at least one argument")
    defs = []
    for word in node.args:
        name, has_value, value = word.partition("=")
        if has_value and not name:
            raise _Problem("ARG names can not be blank")
        defs.append(ArgDef(name, value if has_value else None))
    return ArgInstruction(node, tuple(defs))


def _run(node: Node, flags: _Flags) -> RunInstruction:
    if not node.args:
        raise _Problem("RUN requires at least one argument")
    network = flags.strings.get("network")
    if network is not None and network not in ("default", "none", "host"):
        raise _Problem(f'unsupported network mode "{network}"')
    security = flags.strings.get("security")
    if security is not None and security not in ("sandbox", "insecure"):
        raise _Problem(f'unsupported security mode "{security}"')
    return RunInstruction(
        node, _command(node), node.json_form, node.heredocs, tuple(flags.lists.get("mount", [])),
        network, security,
    )


def _healthcheck(node: Node) -> HealthcheckInstruction:
    if not node.args:
        raise _Problem("HEALTHCHECK requires at least one argument")
    kind = node.args[0].upper()
    rest = node.args[1:]
    if kind == "NONE":
        if rest:
            raise _Problem("HEALTHCHECK NONE takes no arguments")
        return HealthcheckInstruction(node, ("NONE",))  # BuildKit ignores flags here
    flags = _parse_flags(node)
    if kind != "CMD":
        raise _Problem(f'Unknown type "{kind}" in HEALTHCHECK (try CMD)')
    if not rest:
        raise _Problem("Missing command after HEALTHCHECK CMD")
    test = ("CMD", *rest) if node.json_form else ("CMD-SHELL", " ".join(rest))
    retries_text = flags.strings.get("retries", "")
    retries = 0
    if retries_text:
        try:
            retries = int(retries_text, 10)
        except ValueError:
            raise _Problem(f'--retries: invalid number "{retries_text}"') from None
        if retries < 0:
            raise _Problem(f"--retries cannot be negative ({retries})")
        if retries > 2**31 - 1:
            raise _Problem(f'--retries: value out of range "{retries_text}"')
    return HealthcheckInstruction(
        node, test,
        interval=_health_duration(flags, "interval"),
        timeout=_health_duration(flags, "timeout"),
        start_period=_health_duration(flags, "start-period"),
        start_interval=_health_duration(flags, "start-interval"),
        retries=retries,
    )


def _onbuild(node: Node, filename: str) -> OnbuildInstruction:
    if node.sub is None:
        raise _Problem("ONBUILD requires at least one argument")
    trigger = node.sub.keyword.upper()
    if trigger == "ONBUILD":
        raise _Problem("Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed")
    if trigger in ("MAINTAINER", "FROM"):
        raise _Problem(f"{trigger} isn't allowed as an ONBUILD trigger")
    expression = node.sub.original + "".join(f"\n{doc.content}{doc.name}" for doc in node.heredocs)
    return OnbuildInstruction(node, expression, instruction_from_node(node.sub, filename=filename))


def _volume(node: Node) -> VolumeInstruction:
    if not node.args:
        raise _Problem("VOLUME requires at least one argument")
    paths = tuple(arg.strip() for arg in node.args)
    if any(not path for path in paths):
        raise _Problem("VOLUME specified can not be an empty string")
    return VolumeInstruction(node, paths, node.json_form)


def _copy(node: Node, flags: _Flags) -> CopyInstruction:
    sources, dest, contents = _sources_and_dest(node, "COPY")
    return CopyInstruction(
        node, sources, dest, contents, from_=flags.strings.get("from"), chown=flags.strings.get("chown"),
        chmod=flags.strings.get("chmod"), link=flags.bools.get("link", False),
        parents=flags.bools.get("parents", False), excludes=tuple(flags.lists.get("exclude", [])),
        json_form=node.json_form,
    )


def _add(node: Node, flags: _Flags) -> AddInstruction:
    sources, dest, contents = _sources_and_dest(node, "ADD")
    return AddInstruction(
        node, sources, dest, contents, chown=flags.strings.get("chown"), chmod=flags.strings.get("chmod"),
        link=flags.bools.get("link", False), keep_git_dir=flags.bools.get("keep-git-dir", False),
        checksum=flags.strings.get("checksum"), excludes=tuple(flags.lists.get("exclude", [])),
        unpack=flags.bools.get("unpack"), json_form=node.json_form,
    )


def _shell(node: Node) -> ShellInstruction:
    if not node.args:
        raise _Problem("SHELL requires at least one argument")
    if not node.json_form:
        raise _Problem(f"SHELL requires the arguments to be in JSON form: {node.original}")
    return ShellInstruction(node, tuple(node.args))


def _typed(node: Node, filename: str) -> Instruction:
    kw = node.keyword
    if kw == "healthcheck":
        return _healthcheck(node)
    flags = _parse_flags(node)
    simple: dict[str, Callable[[], Instruction]] = {
        "from": lambda: _from(node, flags),
        "arg": lambda: _arg(node),
        "env": lambda: EnvInstruction(node, _kvps(node, "ENV")),
        "label": lambda: LabelInstruction(node, _kvps(node, "LABEL")),
        "maintainer": lambda: MaintainerInstruction(node, _exactly_one(node, "MAINTAINER")),
        "run": lambda: _run(node, flags),
        "cmd": lambda: CmdInstruction(node, _command(node), node.json_form),
        "entrypoint": lambda: EntrypointInstruction(node, _command(node), node.json_form),
        "shell": lambda: _shell(node),
        "workdir": lambda: WorkdirInstruction(node, _exactly_one(node, "WORKDIR")),
        "user": lambda: UserInstruction(node, _exactly_one(node, "USER")),
        "expose": lambda: _expose(node),
        "volume": lambda: _volume(node),
        "copy": lambda: _copy(node, flags),
        "add": lambda: _add(node, flags),
        "onbuild": lambda: _onbuild(node, filename),
        "stopsignal": lambda: StopsignalInstruction(node, _exactly_one(node, "STOPSIGNAL")),
    }
    make = simple.get(kw)
    if make is None:
        raise _Problem(f"unknown instruction: {node.written_keyword or kw}")
    return make()


def _expose(node: Node) -> ExposeInstruction:
    if not node.args:
        raise _Problem("EXPOSE requires at least one argument")
    return ExposeInstruction(node, tuple(node.args))


def instruction_from_node(node: Node, *, filename: str = "Dockerfile") -> Instruction:
    """The typed instruction for one AST node; DockerfileError names the file and the node's line."""
    try:
        return _typed(node, filename)
    except _Problem as exc:
        raise DockerfileError(str(exc), file=filename, line=node.start_line) from None


def build_dockerfile(ast: DockerfileAST) -> Dockerfile:
    """Group typed instructions into stages; ARGs before the first FROM become meta args."""
    meta_args: list[ArgInstruction] = []
    stages: list[tuple[FromInstruction, list[Instruction]]] = []
    names: set[str] = set()
    for node in ast.nodes:
        instruction = instruction_from_node(node, filename=ast.filename)
        if isinstance(instruction, FromInstruction):
            name = instruction.stage_name
            if name is not None:
                if name in names:
                    raise DockerfileError(f'duplicate stage name "{name}"', file=ast.filename, line=node.start_line)
                names.add(name)
            stages.append((instruction, []))
        elif not stages:
            if not isinstance(instruction, ArgInstruction):
                raise DockerfileError(
                    f"{node.keyword.upper()} before the first FROM: no build stage in current context",
                    file=ast.filename, line=node.start_line,
                )
            meta_args.append(instruction)
        else:
            stages[-1][1].append(instruction)
    if not stages:
        raise DockerfileError("the Dockerfile has no FROM, so no stage to build", file=ast.filename)
    return Dockerfile(
        stages=tuple(Stage(i, frm, tuple(body)) for i, (frm, body) in enumerate(stages)),
        meta_args=tuple(meta_args),
        directives={d.name: d.value for d in ast.directives},
        escape=ast.escape,
        ast=ast,
        warnings=ast.warnings,
    )


# -- expansion ----------------------------------------------------------------------------------------

I = TypeVar("I", bound=Instruction)  # noqa: E741


@dataclass(frozen=True)
class Expansion(Generic[I]):
    instruction: I  # a copy with the expandable fields expanded
    matched: frozenset[str]  # variable names looked up and found in env
    unmatched: frozenset[str]  # looked up and not found (unset)


class _Expander:
    def __init__(self, env: Mapping[str, str], escape: str, filename: str, line: int) -> None:
        self.env = env
        self.escape = escape
        self.filename = filename
        self.line = line
        self.matched: set[str] = set()
        self.unmatched: set[str] = set()

    def _process(self, word: str, *, escape: str | None = None, skip_quotes: bool = False) -> tuple[str, ...]:
        try:
            result = process_word(word, self.env, escape=escape or self.escape, skip_quotes=skip_quotes)
        except ShellExpansionError as exc:
            raise DockerfileError(str(exc), file=self.filename, line=self.line) from None
        self.matched |= result.matched
        self.unmatched |= result.unmatched
        return (result.word, *result.words)

    def word(self, word: str) -> str:
        return self._process(word)[0]

    def opt(self, word: str | None) -> str | None:
        return None if word is None else self.word(word)

    def each(self, words: Iterable[str]) -> tuple[str, ...]:
        return tuple(self.word(w) for w in words)

    def split(self, words: Iterable[str]) -> tuple[str, ...]:
        return tuple(part for w in words for part in self._process(w)[1:])

    def contents(self, contents: tuple[SourceContent, ...]) -> tuple[SourceContent, ...]:
        # BuildKit expands heredoc bodies with a "\" lexer that leaves quotes alone.
        return tuple(
            replace(c, data=self._process(c.data, escape="\\", skip_quotes=True)[0]) if c.expand else c
            for c in contents
        )


def expand_instruction(
    instruction: I, env: Mapping[str, str], *, escape: str = "\\", filename: str = "Dockerfile",
) -> Expansion[I]:
    """Expand the fields BuildKit expands for this kind of instruction (see the module docstring)."""
    ex = _Expander(env, escape, filename, instruction.line)
    new: Instruction = instruction
    if isinstance(instruction, FromInstruction):
        new = replace(instruction, base_name=ex.word(instruction.base_name), platform=ex.opt(instruction.platform))
    elif isinstance(instruction, ArgInstruction):
        new = replace(instruction, args=tuple(ArgDef(ex.word(a.name), ex.opt(a.default)) for a in instruction.args))
    elif isinstance(instruction, EnvInstruction | LabelInstruction):
        pairs = tuple(KeyValue(ex.word(p.key), ex.word(p.value), p.legacy) for p in instruction.pairs)
        new = replace(instruction, pairs=pairs)
    elif isinstance(instruction, CopyInstruction):
        new = replace(
            instruction, sources=ex.each(instruction.sources), dest=ex.word(instruction.dest),
            contents=ex.contents(instruction.contents), from_=ex.opt(instruction.from_),
            chown=ex.opt(instruction.chown), chmod=ex.opt(instruction.chmod),
            excludes=ex.each(instruction.excludes),
        )
    elif isinstance(instruction, AddInstruction):
        new = replace(
            instruction, sources=ex.each(instruction.sources), dest=ex.word(instruction.dest),
            contents=ex.contents(instruction.contents), chown=ex.opt(instruction.chown),
            chmod=ex.opt(instruction.chmod), checksum=ex.opt(instruction.checksum),
            excludes=ex.each(instruction.excludes),
        )
    elif isinstance(instruction, WorkdirInstruction):
        new = replace(instruction, path=ex.word(instruction.path))
    elif isinstance(instruction, UserInstruction):
        new = replace(instruction, user=ex.word(instruction.user))
    elif isinstance(instruction, StopsignalInstruction):
        new = replace(instruction, signal=ex.word(instruction.signal))
    elif isinstance(instruction, VolumeInstruction):
        new = replace(instruction, paths=ex.each(instruction.paths))
    elif isinstance(instruction, ExposeInstruction):
        new = replace(instruction, ports=ex.split(instruction.ports))
    elif isinstance(instruction, RunInstruction):
        new = replace(instruction, mounts=ex.each(instruction.mounts))
    return Expansion(cast(I, new), frozenset(ex.matched), frozenset(ex.unmatched))


# The fields expand_instruction expands, per kind (every other field is left as written).
EXPANDED_FIELDS: dict[type[Instruction], frozenset[str]] = {
    FromInstruction: frozenset({"base_name", "platform"}),
    ArgInstruction: frozenset({"args"}),
    EnvInstruction: frozenset({"pairs"}),
    LabelInstruction: frozenset({"pairs"}),
    CopyInstruction: frozenset({"sources", "dest", "contents", "from_", "chown", "chmod", "excludes"}),
    AddInstruction: frozenset({"sources", "dest", "contents", "chown", "chmod", "checksum", "excludes"}),
    WorkdirInstruction: frozenset({"path"}),
    UserInstruction: frozenset({"user"}),
    StopsignalInstruction: frozenset({"signal"}),
    VolumeInstruction: frozenset({"paths"}),
    ExposeInstruction: frozenset({"ports"}),
    RunInstruction: frozenset({"mounts"}),
}

