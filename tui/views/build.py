"""2 Build: context, Dockerfile, tags and build args; the log streams live, grouped by step."""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.widgets import Button, Input, Label, Static

from engine.events import BuildFinished, BuildStarted, StepFailed, StepFinished, StepLog, StepStarted
from tui.bridge import pump_operation
from tui.engine_protocols import service
from tui.formatting import human_size, seconds
from tui.messages import BuildUpdate
from tui.views.base import View
from tui.widgets.logview import LogEntry, LogView
from tui.widgets.table import Column, Row, VirtualTable

STEP_COLUMNS = (
    Column("step", "#", 5, "right"), Column("instruction", "DOCKERFILE LINE", None), Column("cache", "CACHE", 5),
    Column("time", "TIME", 6, "right"), Column("size", "LAYER", 8, "right"),
)


@dataclass
class StepState:
    step: int
    total: int
    instruction: str
    log_index: int
    status: str = "running"  # running | done | failed
    cached: bool | None = None
    seconds: float | None = None
    size: int | None = None

    def row(self) -> Row:
        cache = {None: "", True: "HIT", False: "miss"}[self.cached]
        if self.status == "failed":
            cache = "FAIL"
        style = {"running": "bold", "failed": "bold red", "done": "green" if self.cached else ""}[self.status]
        return Row.make(str(self.step), [f"{self.step}/{self.total}", self.instruction, cache,
                                         seconds(self.seconds), "" if self.size is None else human_size(self.size)],
                        style)


def parse_build_args(text: str) -> dict[str, str]:
    args: dict[str, str] = {}
    for word in shlex.split(text):
        key, _, value = word.partition("=")
        if key:
            args[key] = value
    return args


def build_command(context: str, dockerfile: str, tag: str, build_args: dict[str, str]) -> str:
    parts = ["dockyard build"]
    if tag:
        parts.append(f"-t {shlex.quote(tag)}")
    if dockerfile and dockerfile != "Dockerfile":
        parts.append(f"-f {shlex.quote(dockerfile)}")
    parts.extend(f"--build-arg {shlex.quote(k + '=' + v)}" for k, v in build_args.items())
    parts.append(shlex.quote(context))
    return " ".join(parts)


class BuildView(View):
    TITLE = "Build"
    MUTATING = frozenset({"build"})
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("b", "build", "Build", id="build.start"),
        Binding("c", "edit", "Edit context", id="build.edit"),
        Binding("F", "jump_failure", "Failed step", id="build.failure"),
    ]

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.steps: dict[int, StepState] = {}
        self.running = False
        self.failed_step: int | None = None

    def compose(self) -> ComposeResult:
        with Horizontal(id="build-form"):
            yield Input(".", placeholder="context", id="build-context", tooltip="Build context directory")
            yield Input("Dockerfile", placeholder="Dockerfile", id="build-dockerfile")
            yield Input("", placeholder="tag, e.g. hello:dev", id="build-tag")
            yield Input("", placeholder="build args: KEY=value …", id="build-args")
            yield Button("Build (b)", id="build-button", variant="primary")
        yield Label("", id="build-status")
        with Horizontal():
            yield VirtualTable(STEP_COLUMNS, markable=False, empty="no build yet — press b", id="build-steps")
            with Vertical(id="build-right"):
                yield LogView(id="build-log")
                yield Static("", id="build-failure", markup=False)

    def on_mount(self) -> None:
        self.query_one("#build-failure").display = False

    def focus_main(self) -> None:
        self.query_one("#build-steps", VirtualTable).focus()

    def action_edit(self) -> None:
        self.query_one("#build-context", Input).focus()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        if event.input.id and event.input.id.startswith("build-"):
            event.stop()
            self.action_build()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "build-button":
            self.action_build()

    def form(self) -> tuple[str, str, str, dict[str, str]]:
        def value(name: str) -> str:
            return self.query_one(f"#build-{name}", Input).value.strip()

        return value("context") or ".", value("dockerfile") or "Dockerfile", value("tag"), \
            parse_build_args(value("args"))

    def action_build(self) -> None:
        if not self.allowed("build"):
            return
        builds = service(self.engine, "builds")
        if builds is None:
            self.notify("the build service is not available in this engine", severity="warning")
            return
        if self.running:
            self.notify("a build is already running", severity="warning")
            return
        context, dockerfile, tag, build_args = self.form()
        self.command(build_command(context, dockerfile, tag, build_args))
        op = f"build {tag or context}"
        context_path = Path(context)
        dockerfile_path = context_path / dockerfile if not Path(dockerfile).is_absolute() else Path(dockerfile)

        async def job() -> None:
            self.running = True
            try:
                from engine.build.builder import BuildOptions

                options = BuildOptions(context=context_path, dockerfile=dockerfile_path, tags=(tag,) if tag else (),
                                       build_args=build_args)
                await pump_operation(op, builds.build(options), self)
            finally:
                self.running = False

        self.reset()
        self.work(job, "build", exclusive=True)

    def reset(self) -> None:
        self.steps.clear()
        self.failed_step = None
        self.query_one("#build-log", LogView).clear()
        self.query_one("#build-steps", VirtualTable).set_rows([])
        self.query_one("#build-failure").display = False
        self.query_one("#build-status", Label).update("")

    # ---- events --------------------------------------------------------------------------------------
    def on_build_update(self, message: BuildUpdate) -> None:
        event = message.event
        log = self.query_one("#build-log", LogView)
        table = self.query_one("#build-steps", VirtualTable)
        status = self.query_one("#build-status", Label)
        if isinstance(event, BuildStarted):
            status.update(f"building {event.context} ({event.dockerfile}), {event.steps} steps")
        elif isinstance(event, StepStarted):
            self.steps[event.step] = StepState(event.step, event.total, event.instruction, len(log.entries))
            where = f"  (line {event.line})" if event.line else ""
            log.write(LogEntry(f"── step {event.step}/{event.total} [{event.stage}] {event.instruction}{where}",
                               style="bold"))
        elif isinstance(event, StepLog):
            log.write(LogEntry(f"   {event.line}", style="red" if event.stream == "stderr" else ""))
        elif isinstance(event, StepFinished) and event.step in self.steps:
            state = self.steps[event.step]
            state.status, state.cached, state.seconds, state.size = "done", event.cached, event.seconds, \
                event.layer_size
            if event.cached:
                log.write(LogEntry("   CACHED", style="green"))
        elif isinstance(event, StepFailed):
            self.show_failure(event)
        elif isinstance(event, BuildFinished):
            tags = ", ".join(event.tags) or event.image_id[:19]
            status.update(f"built {tags} in {seconds(event.seconds)}")
            log.write(LogEntry(f"── built {tags} ({event.image_id[:19]}) in {seconds(event.seconds)}",
                               style="bold green"))
        table.set_rows([s.row() for s in sorted(self.steps.values(), key=lambda s: s.step)])
        if isinstance(event, StepFailed):
            self.action_jump_failure()

    def show_failure(self, event: StepFailed) -> None:
        self.failed_step = event.step
        state = self.steps.get(event.step)
        if state is not None:
            state.status = "failed"
        panel = self.query_one("#build-failure", Static)
        code = f" (exit code {event.exit_code})" if event.exit_code is not None else ""
        lines = [f"step {event.step} failed{code}: {event.message}", *event.last_lines[-10:]]
        panel.update("\n".join(lines))
        panel.display = True
        self.query_one("#build-status", Label).update(f"FAILED at step {event.step}")

    def action_jump_failure(self) -> None:
        if self.failed_step is None:
            return
        table = self.query_one("#build-steps", VirtualTable)
        table.move_to(str(self.failed_step))
        table.focus()

    def on_virtual_table_highlighted(self, message: VirtualTable.Highlighted) -> None:
        if message.key is None or message.table.id != "build-steps":
            return
        state = self.steps.get(int(message.key))
        if state is not None and not self.running:
            self.query_one("#build-log", LogView).scroll_to_entry(state.log_index)
