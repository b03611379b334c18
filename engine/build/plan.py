"""Which stages a build needs and in what order (pure): the target, the stages its FROMs and
COPY --from name, transitively; meta ARGs resolved for FROM lines."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from engine.build import instructions as ins
from engine.errors import DockerfileError
from engine.oci.platform import Platform


def predefined_args(target: Platform, build: Platform) -> dict[str, str]:
    return {
        "TARGETPLATFORM": str(target), "TARGETOS": target.os, "TARGETARCH": target.architecture,
        "TARGETVARIANT": target.variant or "", "BUILDPLATFORM": str(build), "BUILDOS": build.os,
        "BUILDARCH": build.architecture, "BUILDVARIANT": build.variant or "",
    }


def resolve_meta_args(dockerfile: ins.Dockerfile, build_args: Mapping[str, str],
                      predefined: Mapping[str, str]) -> dict[str, str]:
    """The global ARGs (before the first FROM) with --build-arg values applied, in order."""
    env: dict[str, str] = dict(predefined)
    for arg in dockerfile.meta_args:
        expanded = ins.expand_instruction(arg, env, escape=dockerfile.escape, filename=dockerfile.filename)
        for definition in expanded.instruction.args:
            if definition.name in build_args:
                env[definition.name] = build_args[definition.name]
            elif definition.default is not None:
                env[definition.name] = definition.default
    return env


@dataclass(frozen=True, slots=True)
class StagePlan:
    stage: ins.Stage
    base: str  # the FROM name with meta args expanded
    base_stage: int | None  # index of the stage it builds on, if it names one
    copy_from_stages: frozenset[int]


def stage_index(dockerfile: ins.Dockerfile, name: str, before: int) -> int | None:
    """A stage named ``name`` (or numbered) defined before stage ``before``."""
    lowered = name.lower()
    for stage in dockerfile.stages[:before]:
        if stage.name == lowered:
            return stage.index
    if lowered.isdigit() and int(lowered) < before:
        return int(lowered)
    return None


def plan_build(dockerfile: ins.Dockerfile, target: str | None, meta_env: Mapping[str, str]) -> list[StagePlan]:
    """The stages to build, dependencies first, ending with the target stage."""
    wanted = dockerfile.stage(target).index if target else len(dockerfile.stages) - 1
    plans: dict[int, StagePlan] = {}
    for stage in dockerfile.stages:
        expanded = ins.expand_instruction(stage.from_, meta_env, escape=dockerfile.escape,
                                          filename=dockerfile.filename)
        base = expanded.instruction.base_name
        if not base:
            raise DockerfileError("FROM names no image (an ARG expanded to nothing?)",
                                  file=dockerfile.filename, line=stage.from_.line)
        base_stage = stage_index(dockerfile, base, stage.index)
        copies: set[int] = set()
        for instruction in stage.instructions:
            if isinstance(instruction, ins.CopyInstruction) and instruction.from_:
                source = instruction.from_
                if "$" in source:
                    source = ins.expand_instruction(instruction, meta_env, escape=dockerfile.escape).instruction.from_ \
                        or source
                index = stage_index(dockerfile, source, stage.index)
                if index is not None:
                    copies.add(index)
                elif stage_index(dockerfile, source, len(dockerfile.stages)) is not None:
                    raise DockerfileError(f"COPY --from={source} refers to a later stage",
                                          file=dockerfile.filename, line=instruction.line)
        plans[stage.index] = StagePlan(stage, base, base_stage, frozenset(copies))
    order: list[int] = []
    visiting: set[int] = set()

    def visit(index: int) -> None:
        if index in order:
            return
        if index in visiting:
            raise DockerfileError("stages depend on each other in a cycle", file=dockerfile.filename)
        visiting.add(index)
        plan = plans[index]
        if plan.base_stage is not None:
            visit(plan.base_stage)
        for dep in sorted(plan.copy_from_stages):
            visit(dep)
        order.append(index)

    visit(wanted)
    return [plans[i] for i in order]
