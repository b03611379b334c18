"""The builder: runs the planned stages step by step, with the cache, and stores the final image.

Events (engine.events) tell what happens: BuildStarted, then per step StepStarted, StepLog lines,
StepFinished (cached or not, seconds, layer size) or StepFailed, and BuildFinished. A failed step
leaves no image behind (nothing is tagged until the last step succeeded).
"""

from __future__ import annotations

import datetime as _dt
import errno
import json
import os
import posixpath
import shutil
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from engine import events as ev
from engine.build import instructions as ins
from engine.build.cache import BuildCache, CacheEntry, step_key
from engine.build.context import BuildContext, is_url, read_ignore_patterns
from engine.build.dockerfile import parse_ast, parse_dockerfile
from engine.build.plan import StagePlan, plan_build, predefined_args, resolve_meta_args
from engine.build.state import (
    BUILDKIT_SUFFIX,
    CONFIG_INSTRUCTIONS,
    StageState,
    apply_config_instruction,
    command_form,
    final_config_document,
)
from engine.errors import (
    BuildError,
    BuildStepError,
    DockerfileError,
    EngineError,
    InvalidInputError,
    NoSpaceError,
    os_error_message,
)
from engine.oci import mediatypes as mt
from engine.oci.models import Descriptor, ImageConfig, Manifest
from engine.oci.platform import Platform
from engine.oci.reference import Reference

if TYPE_CHECKING:  # what only a step that misses the cache needs is imported there (CLI start-up time)
    from engine.build.copy_step import Stager
    from engine.build.rootfs import BuildFilesystems
    from engine.build.run_step import RunRequest
    from engine.runtime.runc import OciRuntime
    from engine.store.layout import ImageStore, ResolvedImage

Emit = Callable[[ev.Event], None]
ResolveImage = Callable[[str, Platform], Awaitable["ResolvedImage"]]
LAST_LINES = 20


@dataclass(frozen=True)
class BuildOptions:
    context: Path | None
    dockerfile: Path | None = None
    dockerfile_text: str | None = None
    tags: tuple[str, ...] = ()
    build_args: Mapping[str, str] = field(default_factory=dict)
    target: str | None = None
    no_cache: bool = False
    network: str = "host"
    labels: Mapping[str, str] = field(default_factory=dict)
    platform: str | None = None
    compression: str = "gzip"
    source_date_epoch: int | None = None

    def __post_init__(self) -> None:
        if self.network not in ("host", "none", "default"):
            raise InvalidInputError(f"--network {self.network!r}: use host or none")


@dataclass
class _StageResult:
    state: StageState
    key: str


def rfc3339(epoch: float) -> str:
    return _dt.datetime.fromtimestamp(epoch, _dt.UTC).isoformat().replace("+00:00", "Z")


class Builder:
    def __init__(self, store: ImageStore, fs: BuildFilesystems, cache: BuildCache, runtime: Callable[[], OciRuntime],
                 resolve_image: ResolveImage, hash_cache: Path | None = None) -> None:
        self.store = store
        self.fs = fs
        self.cache = cache
        self._runtime_factory = runtime
        self._runtime: OciRuntime | None = None
        self.resolve_image = resolve_image
        self.hash_cache = hash_cache

    @property
    def runtime(self) -> OciRuntime:
        if self._runtime is None:
            self._runtime = self._runtime_factory()
        return self._runtime

    async def build(self, options: BuildOptions, emit: Emit) -> ResolvedImage:
        started = time.monotonic()
        text, filename = self._dockerfile_text(options)
        dockerfile = parse_dockerfile(text, filename=filename)
        host = Platform.host()
        if options.platform and not host.matches(Platform.parse(options.platform)):
            raise BuildError(f"cannot build for {options.platform} on this {host} host (no emulation)")
        build_args = dict(options.build_args)
        epoch = options.source_date_epoch
        if epoch is None and "SOURCE_DATE_EPOCH" in build_args:
            try:
                epoch = int(build_args["SOURCE_DATE_EPOCH"])
            except ValueError:
                raise InvalidInputError("SOURCE_DATE_EPOCH must be a number of seconds") from None
        meta = resolve_meta_args(dockerfile, build_args, predefined_args(host, host))
        plans = plan_build(dockerfile, options.target, meta)
        context = None
        if options.context is not None:
            patterns = read_ignore_patterns(options.context, options.dockerfile)
            context = BuildContext(options.context, patterns, hash_cache=self.hash_cache)
        run = _Run(self, options, dockerfile, context, meta, build_args, epoch, emit, plans)
        total = sum(1 + len(p.stage.instructions) for p in plans)
        emit(ev.BuildStarted(str(options.context or "-"), filename, total))
        results: dict[int, _StageResult] = {}
        for plan in plans:
            results[plan.stage.index] = await run.stage(plan, results)
        final = results[plans[-1].stage.index]
        image = self._store_image(final.state, options, epoch, run.histories[plans[-1].stage.index])
        emit(ev.BuildFinished(str(image.id), str(image.manifest_digest), tuple(
            Reference.parse(t).familiar for t in options.tags), time.monotonic() - started))
        return image

    def _dockerfile_text(self, options: BuildOptions) -> tuple[str, str]:
        if options.dockerfile_text is not None:
            return options.dockerfile_text, "Dockerfile"
        path = options.dockerfile or (options.context / "Dockerfile" if options.context else None)
        if path is None:
            raise InvalidInputError("no Dockerfile given")
        if not path.exists() and options.context is not None and not options.dockerfile:
            lower = options.context / "dockerfile"
            path = lower if lower.exists() else path
        try:
            return path.read_text(), path.name
        except FileNotFoundError:
            raise InvalidInputError(f"cannot read Dockerfile {path}: no such file") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise InvalidInputError(f"cannot read Dockerfile {path}: {exc}") from None

    def _store_image(self, state: StageState, options: BuildOptions, epoch: int | None,
                     history: list[dict[str, object]]) -> ResolvedImage:
        if options.labels:
            state.config["Labels"] = {**(state.config.get("Labels") or {}), **options.labels}
        # A fully cached build gives the same image id: "created" is the newest step's, not now.
        stamps = [str(h["created"]) for h in history if h.get("created")]
        created = rfc3339(epoch) if epoch is not None else (max(stamps) if stamps else rfc3339(time.time()))
        doc = final_config_document(state, created, history=history)
        config = ImageConfig.build(doc)
        with self.store.writing():
            self.store.put_blob(config.raw)
            layers = [desc for desc, _ in state.layers]
            manifest = Manifest.build(Descriptor(mt.OCI_CONFIG, config.digest, len(config.raw)), layers)
            self.store.put_blob(manifest.raw)
            names = [Reference.parse(t) for t in options.tags]
            self.store.add_image(manifest.descriptor(), names, image_id=config.digest)
        return self.store.resolve(str(names[0]) if names else config.digest.hex)


class _Run:
    """The state of one build invocation."""

    def __init__(self, builder: Builder, options: BuildOptions, dockerfile: ins.Dockerfile,
                 context: BuildContext | None, meta: dict[str, str], build_args: dict[str, str],
                 epoch: int | None, emit: Emit, plans: list[StagePlan]) -> None:
        self.b = builder
        self.options = options
        self.dockerfile = dockerfile
        self.context = context
        self.meta = meta
        self.build_args = build_args
        self.epoch = epoch
        self.emit = emit
        self.step = 0
        self.step_line: int | None = None
        self.total = sum(1 + len(p.stage.instructions) for p in plans)
        self.histories: dict[int, list[dict[str, object]]] = {}
        self.results: dict[int, _StageResult] = {}

    # ---- stages ----------------------------------------------------------------------------------

    async def stage(self, plan: StagePlan, results: dict[int, _StageResult]) -> _StageResult:
        self.results = results
        stage = plan.stage
        name = stage.name or str(stage.index)
        self._start(stage.from_, name)
        t0 = time.monotonic()
        if plan.base_stage is not None:
            parent = results[plan.base_stage]
            state, key = parent.state.clone(), parent.key
            history = list(self.histories[plan.base_stage])
        elif plan.base.lower() == "scratch":
            state, key, history = StageState.scratch(Platform.host()), step_key("", "scratch"), []
        else:
            try:
                image = await self.b.resolve_image(plan.base, Platform.host())
            except EngineError as exc:
                raise self._located(exc, stage.from_.line) from exc
            state = StageState.from_image(image.manifest.layers, image.config)
            key = step_key("", "image", str(image.id))
            history = list(state.history)
        state.build_args = {}
        triggers = list(state.config.get("OnBuild") or [])
        state.config.pop("OnBuild", None)
        self.emit(ev.StepFinished(self.step, True, time.monotonic() - t0))
        self.histories[stage.index] = history
        for trigger in triggers:
            key = await self._trigger(trigger, state, key, history, name)
        for instruction in stage.instructions:
            key = await self._instruction(instruction, state, key, history, name)
        return _StageResult(state, key)

    async def _trigger(self, trigger: str, state: StageState, key: str, history: list[dict[str, object]],
                       stage_name: str) -> str:
        try:
            node = parse_ast(trigger, filename="ONBUILD").nodes[0]
            instruction = ins.instruction_from_node(node, filename="ONBUILD")
        except DockerfileError as exc:
            raise BuildError(f"base image ONBUILD trigger {trigger!r}: {exc.problem}") from None
        self.emit(ev.StepLog(self.step, f"running ONBUILD trigger: {trigger}"))
        return await self._guarded(instruction, state, key, history, stage_name, self.step_line)

    def _start(self, instruction: ins.Instruction, stage_name: str) -> None:
        self.step += 1
        self.step_line = instruction.line
        self.emit(ev.StepStarted(self.step, self.total, stage_name, instruction.original, instruction.line))

    async def _instruction(self, instruction: ins.Instruction, state: StageState, key: str,
                           history: list[dict[str, object]], stage_name: str) -> str:
        self._start(instruction, stage_name)
        return await self._guarded(instruction, state, key, history, stage_name, instruction.line)

    async def _guarded(self, instruction: ins.Instruction, state: StageState, key: str,
                       history: list[dict[str, object]], stage_name: str, line: int | None) -> str:
        """Run one instruction; a failure becomes a StepFailed event and an error naming file and line."""
        try:
            return await self._execute(instruction, state, key, history, stage_name)
        except BuildStepError:
            raise  # RUN failures already carry file, line, exit code and output
        except EngineError as exc:
            located = self._located(exc, line)
            self.emit(ev.StepFailed(self.step, str(located)))
            raise located from exc

    def _located(self, exc: EngineError, line: int | None) -> EngineError:
        """``exc`` with ``Dockerfile:LINE: `` in front unless it already names the file."""
        filename = self.dockerfile.filename
        message = str(exc)
        if isinstance(exc, DockerfileError) or message.startswith(f"{filename}:"):
            return exc
        where = f"{filename}:{line}" if line is not None else filename
        return BuildError(f"{where}: {message}")

    # ---- one instruction -------------------------------------------------------------------------

    def _env(self, state: StageState) -> dict[str, str]:
        env = dict(state.build_args)
        env.update(state.env_map())
        return env

    async def _execute(self, instruction: ins.Instruction, state: StageState, key: str,
                       history: list[dict[str, object]], stage_name: str) -> str:
        t0 = time.monotonic()
        step = self.step
        expanded = ins.expand_instruction(instruction, self._env(state), escape=self.dockerfile.escape,
                                          filename=self.dockerfile.filename).instruction
        if isinstance(expanded, ins.ArgInstruction):
            for definition in expanded.args:
                value = self.build_args.get(definition.name)
                if value is None:
                    value = definition.default if definition.default is not None else self.meta.get(definition.name)
                if value is not None:
                    state.build_args[definition.name] = value
            self.emit(ev.StepFinished(step, True, time.monotonic() - t0))
            return step_key(key, "ARG", sorted(state.build_args.items()))
        if isinstance(expanded, ins.WorkdirInstruction):
            return await self._workdir(expanded, state, key, history, t0)
        if isinstance(expanded, CONFIG_INSTRUCTIONS):
            created_by = apply_config_instruction(state, expanded)
            new_key = step_key(key, "CONFIG", created_by)
            entry = None if self.options.no_cache else self.b.cache.get(new_key)
            created = entry.created if entry else self._now()
            if entry is None:
                self.b.cache.put(new_key, CacheEntry(None, None, created, created_by))
            history.append({"created": self._created(created), "created_by": created_by + " # buildkit",
                            "empty_layer": True})
            self.emit(ev.StepFinished(step, entry is not None, time.monotonic() - t0))
            return new_key
        if isinstance(expanded, ins.RunInstruction):
            return await self._run(expanded, state, key, history, t0)
        if isinstance(expanded, ins.CopyInstruction | ins.AddInstruction):
            return await self._copy(expanded, state, key, history, t0)
        raise BuildError(f"{instruction.keyword.upper()} is not supported here")

    def _now(self) -> str:
        return rfc3339(time.time())

    def _created(self, created: str) -> str:
        return rfc3339(self.epoch) if self.epoch is not None else created

    def _lookup(self, key: str) -> CacheEntry | None:
        if self.options.no_cache:
            return None
        entry = self.b.cache.get(key)
        if entry is None or entry.layer is None:
            return None
        return entry if self.b.store.has_blob(entry.layer.digest) else None

    def _add_layer(self, state: StageState, history: list[dict[str, object]], entry: CacheEntry,
                   cached: bool, t0: float) -> None:
        assert entry.layer is not None and entry.diff_id is not None
        state.layers.append((entry.layer, entry.diff_id))
        history.append({"created": self._created(entry.created), "created_by": entry.created_by})
        self.emit(ev.StepFinished(self.step, cached, time.monotonic() - t0, entry.layer.size))

    # ---- WORKDIR -----------------------------------------------------------------------------------

    async def _workdir(self, workdir: ins.WorkdirInstruction, state: StageState, key: str,
                       history: list[dict[str, object]], t0: float) -> str:
        """WORKDIR sets the config and, as BuildKit does, creates the directory (owned by USER) when the
        image lacks it: a small layer then, else an empty-layer history entry."""
        created_by = apply_config_instruction(state, workdir) + BUILDKIT_SUFFIX
        new_key = step_key(key, "WORKDIR", created_by, state.user)
        entry = None if self.options.no_cache else self.b.cache.get(new_key)
        if entry is not None and entry.layer is not None and self.b.store.has_blob(entry.layer.digest):
            self._add_layer(state, history, entry, True, t0)
            return new_key
        if entry is not None and entry.layer is None:
            history.append({"created": self._created(entry.created), "created_by": created_by, "empty_layer": True})
            self.emit(ev.StepFinished(self.step, True, time.monotonic() - t0))
            return new_key
        from engine.archive.layer_writer import directory_items
        from engine.build.copy_step import CopyPlan, Stager
        from engine.runtime.userdb import lookup_user_in_rootfs, resolve_in_root

        path = state.workdir
        staging = self.b.fs.workdir("copy")
        try:
            with self.b.fs.merged(state.layers) as rootfs:
                if path == "/" or resolve_in_root(rootfs, path).is_dir():
                    entry = CacheEntry(None, None, self._now(), created_by)
                else:
                    owner = lookup_user_in_rootfs(rootfs, state.user) if state.user else None
                    uid, gid = (owner.uid, owner.gid) if owner else (0, 0)
                    stager = Stager(staging, rootfs, CopyPlan(path, True, uid, gid, None))
                    stager.add_directory(path)
                    layer, diff_id, _ = self.b.fs.commit(
                        directory_items(staging), staging, state.diff_ids, mtime_clamp=self.epoch,
                        compression=self.options.compression,
                    )
                    entry = CacheEntry(layer, diff_id, self._now(), created_by)
        finally:
            if staging.exists():
                shutil.rmtree(staging, ignore_errors=True)
        self.b.cache.put(new_key, entry)
        if entry.layer is None:
            history.append({"created": self._created(entry.created), "created_by": created_by, "empty_layer": True})
            self.emit(ev.StepFinished(self.step, False, time.monotonic() - t0))
        else:
            self._add_layer(state, history, entry, False, t0)
        return new_key

    # ---- RUN ---------------------------------------------------------------------------------------

    def _run_request(self, run: ins.RunInstruction, state: StageState) -> tuple[RunRequest, str]:
        from engine.build.run_step import RunRequest

        if run.mounts:
            raise BuildError(f"{self.dockerfile.filename}:{run.line}: RUN --mount is not supported yet")
        files: list[tuple[str, str, int]] = []
        if isinstance(run.command, tuple):
            argv = list(run.command)
        elif (run.heredocs and run.command.strip() == f"<<{'-' if run.heredocs[0].strip_tabs else ''}" \
                f"{run.heredocs[0].name}") or (run.heredocs and run.command.strip().startswith("<<")
                                              and len(run.command.split()) == 1):
            body = run.heredocs[0].text
            if body.startswith("#!"):
                path = f"/dev/pipes/{run.heredocs[0].name}"
                files.append((path, body, 0o755))
                argv = [path]
            else:
                argv = [*state.shell, body]
        else:
            script = run.command
            for doc in run.heredocs:
                script += "\n" + doc.content + doc.name
            argv = command_form(script, state.shell)
        network = run.network or self.options.network
        network = "host" if network in ("default", "host") else "none"
        args_env = {k: v for k, v in sorted(state.build_args.items()) if k not in state.env_map()}
        env = [*state.env, *(f"{k}={v}" for k, v in args_env.items())]
        prefix = f"|{len(args_env)} " + " ".join(f"{k}={v}" for k, v in args_env.items()) + " " if args_env else ""
        created_by = f"RUN {prefix}{' '.join(argv) if not isinstance(run.command, tuple) else json.dumps(argv)}"
        request = RunRequest(tuple(argv), tuple(env), state.workdir, state.user, network, tuple(files))
        return request, created_by + " # buildkit"

    async def _run(self, run: ins.RunInstruction, state: StageState, key: str,
                   history: list[dict[str, object]], t0: float) -> str:
        request, created_by = self._run_request(run, state)
        new_key = step_key(key, "RUN", request.argv, request.env, request.user, request.workdir, request.network,
                           request.files, state.fingerprint())
        entry = self._lookup(new_key)
        if entry is not None:
            self._add_layer(state, history, entry, True, t0)
            return new_key
        from engine.archive.layer_writer import overlay_upper_items
        from engine.build.rootfs import remove_tree
        from engine.build.run_step import run_step

        lowers = self.b.fs.lowerdirs(state.layers)
        base = self.b.fs.workdir("run")
        last: deque[str] = deque(maxlen=LAST_LINES)
        step = self.step

        def on_line(stream: str, line: str) -> None:
            last.append(line)
            self.emit(ev.StepLog(step, line, stream))

        unmount = None
        try:
            code, upper, unmount = await run_step(self.b.runtime, lowers, base, request, on_line)
            if code != 0:
                message = (f"{self.dockerfile.filename}:{run.line}: RUN {run.original[4:].strip()[:80]!s} "
                           f"failed with exit code {code}")
                self.emit(ev.StepFailed(step, message, code, tuple(last)))
                raise BuildStepError(message, step=step, exit_code=code, last_lines=tuple(last))
            # The layer is written from the upper dir while the overlay's unmount (and its sync) runs.
            layer, diff_id, _ = self.b.fs.commit(
                overlay_upper_items(upper), upper, state.diff_ids, mtime_clamp=self.epoch,
                compression=self.options.compression, before_adopt=unmount.wait,
            )
        finally:
            try:
                if unmount is not None:
                    unmount.wait()
            finally:
                remove_tree(base)
        entry = CacheEntry(layer, diff_id, self._now(), created_by)
        self.b.cache.put(new_key, entry)
        self._add_layer(state, history, entry, False, t0)
        return new_key

    # ---- COPY / ADD -------------------------------------------------------------------------------

    async def _copy_source_root(self, copy: ins.CopyInstruction | ins.AddInstruction
                                ) -> tuple[StageState | None, str]:
        """For COPY --from: the state whose files are copied and a key naming it."""
        if not isinstance(copy, ins.CopyInstruction) or not copy.from_:
            return None, "context"
        from engine.build.plan import stage_index

        index = stage_index(self.dockerfile, copy.from_, len(self.dockerfile.stages))
        if index is not None and index in self.results:
            return self.results[index].state, f"stage:{self.results[index].key}"
        image = await self.b.resolve_image(copy.from_, Platform.host())
        return StageState.from_image(image.manifest.layers, image.config), f"image:{image.id}"

    async def _copy(self, copy: ins.CopyInstruction | ins.AddInstruction, state: StageState, key: str,
                    history: list[dict[str, object]], t0: float) -> str:
        keyword = "COPY" if isinstance(copy, ins.CopyInstruction) else "ADD"
        if copy.excludes:
            raise BuildError(f"{self.dockerfile.filename}:{copy.line}: {keyword} --exclude is not supported yet")
        source_state, source_name = await self._copy_source_root(copy)
        sources = list(copy.sources)
        if source_state is None and sources and self.context is None:
            raise BuildError(f"{self.dockerfile.filename}:{copy.line}: {keyword} needs a build context "
                             "(the Dockerfile came from stdin)")
        urls = [s for s in sources if is_url(s)]
        if urls and keyword == "COPY":
            raise BuildError(f"{self.dockerfile.filename}:{copy.line}: COPY cannot fetch URLs; use ADD")
        local = [s for s in sources if not is_url(s)]
        content_hash = ""
        if source_state is None and self.context is not None and local:
            content_hash = self.context.content_hash(local)
        created_by = f"{keyword} " + " ".join([*sources, *(f"<<{c.path}" for c in copy.contents)]) + \
            f" {copy.dest} # buildkit"
        parts = [keyword, sources, [(c.path, c.data) for c in copy.contents], copy.dest, copy.chown, copy.chmod,
                 content_hash, source_name, state.workdir, state.fingerprint(), urls]
        new_key = step_key(key, *parts)
        entry = None if urls else self._lookup(new_key)
        if entry is not None:
            self._add_layer(state, history, entry, True, t0)
            return new_key
        from engine.archive.layer_writer import directory_items
        from engine.build.copy_step import Stager, download, is_archive, make_plan

        staging = self.b.fs.workdir("copy")
        try:
            with self.b.fs.merged(state.layers) as rootfs:
                n_sources = len(sources) + len(copy.contents)
                plan = make_plan(copy.dest, state.workdir, n_sources, rootfs, copy.chown, copy.chmod)
                stager = Stager(staging, rootfs, plan)
                if source_state is not None:
                    with self.b.fs.merged(source_state.layers) as source_root:
                        self._stage_from_root(stager, source_root, local)
                elif self.context is not None:
                    for source in local:
                        for top in self.context.select(source):
                            if keyword == "ADD" and not os.path.isdir(top.path) and is_archive(top.path):
                                stager.add_extracted_archive(top.path)
                            else:
                                stager.add_context_entries(self.context, top)
                for url in urls:
                    downloaded, name = await download(url, self.b.fs.snapshots.root)
                    try:
                        stager.add_file(downloaded, name)
                    finally:
                        downloaded.unlink(missing_ok=True)
                for content in copy.contents:
                    stager.add_content(content.path, content.data)
            layer, diff_id, _ = self.b.fs.commit(
                directory_items(staging), staging, state.diff_ids, mtime_clamp=self.epoch,
                compression=self.options.compression,
            )
        except EngineError:
            raise
        except OSError as exc:
            if exc.errno == errno.ENOSPC:  # a full disk is a NoSpaceError everywhere ("no space left on ...")
                raise NoSpaceError(os_error_message(exc, f"{self.dockerfile.filename}:{copy.line}: {keyword}")) \
                    from None
            raise BuildError(f"{self.dockerfile.filename}:{copy.line}: {keyword} failed: {exc}") from None
        finally:
            if staging.exists():
                shutil.rmtree(staging, ignore_errors=True)
        entry = CacheEntry(layer, diff_id, self._now(), created_by)
        if not urls:
            self.b.cache.put(new_key, entry)
        self._add_layer(state, history, entry, False, t0)
        return new_key

    def _stage_from_root(self, stager: Stager, root: Path, sources: list[str]) -> None:
        """COPY --from: sources are paths inside another stage's or image's file system."""
        from engine.runtime.userdb import resolve_in_root

        source_context = BuildContext(root)
        for source in sources:
            clean = posixpath.normpath("/" + source).lstrip("/")
            resolved = resolve_in_root(root, clean)
            rel = str(resolved.relative_to(root)) if resolved != root else ""
            for top in source_context.select(rel if not any(c in clean for c in "*?[") else clean):
                stager.add_context_entries(source_context, top)
