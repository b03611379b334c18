"""A stage's image state while it is built, and how each config instruction changes it (pure).

The rules are docker's, as its builder records them in the image config: ENV replaces or appends,
ENTRYPOINT clears a CMD inherited from the base, shell forms become ``SHELL + [command]``, HEALTHCHECK
keeps only the durations given, ONBUILD appends its expression, and so on.
"""

from __future__ import annotations

import copy
import json
import posixpath
from dataclasses import dataclass, field
from typing import Any

from engine.build import instructions as ins
from engine.oci.digest import Digest
from engine.oci.models import Descriptor, ImageConfig
from engine.oci.platform import Platform

DEFAULT_SHELL = ("/bin/sh", "-c")
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
BUILDKIT_SUFFIX = " # buildkit"


@dataclass
class StageState:
    """What a stage has built so far."""

    config: dict[str, Any]  # the image config's "config" object (Env, Cmd, ...)
    layers: list[tuple[Descriptor, Digest]]  # (blob descriptor, diff id), bottom first
    history: list[dict[str, Any]]
    platform: Platform
    base: str  # the base image's id, or "scratch"
    author: str | None = None
    cmd_set: bool = False  # CMD given in this stage (ENTRYPOINT keeps it)
    build_args: dict[str, str] = field(default_factory=dict)  # ARGs declared in this stage, with values

    @classmethod
    def scratch(cls, platform: Platform) -> StageState:
        # BuildKit's empty image: a default PATH and "/" as the working directory
        return cls(config={"Env": [f"PATH={DEFAULT_PATH}"], "WorkingDir": "/"}, layers=[], history=[],
                   platform=platform, base="scratch")

    @classmethod
    def from_image(cls, manifest_layers: tuple[Descriptor, ...], config: ImageConfig) -> StageState:
        run_config = copy.deepcopy(dict(config.config))
        return cls(
            config=run_config,
            layers=list(zip(manifest_layers, config.diff_ids, strict=True)),
            history=[h.to_json() for h in config.history],
            platform=config.platform,
            base=str(config.digest),
            author=config.author,
        )

    def clone(self) -> StageState:
        return StageState(copy.deepcopy(self.config), list(self.layers), copy.deepcopy(self.history),
                          self.platform, self.base, self.author, self.cmd_set, dict(self.build_args))

    @property
    def diff_ids(self) -> list[Digest]:
        return [diff for _, diff in self.layers]

    @property
    def env(self) -> list[str]:
        return list(self.config.get("Env") or [])

    def env_map(self) -> dict[str, str]:
        out = {}
        for entry in self.env:
            key, _, value = entry.partition("=")
            out[key] = value
        return out

    @property
    def shell(self) -> tuple[str, ...]:
        return tuple(self.config.get("Shell") or DEFAULT_SHELL)

    @property
    def workdir(self) -> str:
        return str(self.config.get("WorkingDir") or "/")

    @property
    def user(self) -> str:
        return str(self.config.get("User") or "")

    def fingerprint(self) -> str:
        """What of the state a cached step depends on besides its parent chain (config as JSON)."""
        return json.dumps([self.config, self.author, sorted(self.build_args.items())], sort_keys=True)


def set_env(env: list[str], key: str, value: str) -> list[str]:
    """docker replaces a variable in place when it is set, else appends it."""
    for i, entry in enumerate(env):
        if entry.partition("=")[0] == key:
            new = list(env)
            new[i] = f"{key}={value}"
            return new
    return [*env, f"{key}={value}"]


def command_form(command: ins.Command, shell: tuple[str, ...]) -> list[str]:
    if isinstance(command, tuple):
        return list(command)
    return [*shell, command]


def resolve_workdir(current: str, path: str) -> str:
    if not path.startswith("/"):
        path = posixpath.join(current or "/", path)
    cleaned = posixpath.normpath(path)
    return "/" if cleaned in ("", ".") else cleaned


def apply_config_instruction(state: StageState, instruction: ins.Instruction) -> str:
    """Apply an instruction that changes only the config; returns the history ``created_by`` text."""
    config = state.config
    if isinstance(instruction, ins.EnvInstruction):
        env = state.env
        for pair in instruction.pairs:
            env = set_env(env, pair.key, pair.value)
        config["Env"] = env
        return "ENV " + " ".join(f"{p.key}={p.value}" for p in instruction.pairs)
    if isinstance(instruction, ins.LabelInstruction):
        labels = dict(config.get("Labels") or {})
        for pair in instruction.pairs:
            labels[pair.key] = pair.value
        config["Labels"] = labels
        return "LABEL " + " ".join(f"{p.key}={p.value}" for p in instruction.pairs)
    if isinstance(instruction, ins.MaintainerInstruction):
        state.author = instruction.maintainer
        return f"MAINTAINER {instruction.maintainer}"
    if isinstance(instruction, ins.WorkdirInstruction):
        config["WorkingDir"] = resolve_workdir(state.workdir, instruction.path)
        return f"WORKDIR {config['WorkingDir']}"
    if isinstance(instruction, ins.UserInstruction):
        config["User"] = instruction.user
        return f"USER {instruction.user}"
    if isinstance(instruction, ins.StopsignalInstruction):
        config["StopSignal"] = instruction.signal
        return f"STOPSIGNAL {instruction.signal}"
    if isinstance(instruction, ins.ExposeInstruction):
        ports = dict(config.get("ExposedPorts") or {})
        keys = instruction.port_keys()
        for key in keys:
            ports[key] = {}
        config["ExposedPorts"] = ports
        return "EXPOSE " + " ".join(f"{k}" for k in keys)
    if isinstance(instruction, ins.VolumeInstruction):
        volumes = dict(config.get("Volumes") or {})
        for path in instruction.paths:
            if path:
                volumes[path] = {}
        config["Volumes"] = volumes
        return "VOLUME " + json.dumps(list(instruction.paths))
    if isinstance(instruction, ins.CmdInstruction):
        config["Cmd"] = command_form(instruction.command, state.shell)
        state.cmd_set = True
        return "CMD " + json.dumps(config["Cmd"])
    if isinstance(instruction, ins.EntrypointInstruction):
        config["Entrypoint"] = command_form(instruction.command, state.shell)
        if not state.cmd_set:
            config["Cmd"] = None
        return "ENTRYPOINT " + json.dumps(config["Entrypoint"])
    if isinstance(instruction, ins.ShellInstruction):
        config["Shell"] = list(instruction.shell)
        return "SHELL " + json.dumps(list(instruction.shell))
    if isinstance(instruction, ins.HealthcheckInstruction):
        check: dict[str, Any] = {"Test": list(instruction.test)}
        for name, value in (("Interval", instruction.interval), ("Timeout", instruction.timeout),
                            ("StartPeriod", instruction.start_period),
                            ("StartInterval", instruction.start_interval), ("Retries", instruction.retries)):
            if value:
                check[name] = value
        config["Healthcheck"] = check
        return "HEALTHCHECK " + ("NONE" if instruction.disabled else json.dumps(check))
    if isinstance(instruction, ins.OnbuildInstruction):
        config["OnBuild"] = [*(config.get("OnBuild") or []), instruction.expression]
        return f"ONBUILD {instruction.expression}"
    raise TypeError(f"{type(instruction).__name__} is not a config instruction")


CONFIG_INSTRUCTIONS = (
    ins.EnvInstruction, ins.LabelInstruction, ins.MaintainerInstruction, ins.WorkdirInstruction,
    ins.UserInstruction, ins.StopsignalInstruction, ins.ExposeInstruction, ins.VolumeInstruction,
    ins.CmdInstruction, ins.EntrypointInstruction, ins.ShellInstruction, ins.HealthcheckInstruction,
    ins.OnbuildInstruction,
)


def final_config_document(state: StageState, created: str, *, history: list[dict[str, Any]]) -> dict[str, Any]:
    """The image config JSON for a finished stage (fields in docker's order)."""
    run_config = {k: v for k, v in state.config.items() if v is not None or k == "Cmd"}
    if run_config.get("Cmd") is None:
        run_config.pop("Cmd", None)
    doc: dict[str, Any] = {"created": created}
    if state.author:
        doc["author"] = state.author
    doc.update(state.platform.to_json())
    doc["config"] = run_config
    doc["rootfs"] = {"type": "layers", "diff_ids": [str(d) for d in state.diff_ids]}
    doc["history"] = history
    return doc
