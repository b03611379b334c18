"""Config instructions change a stage's state the way docker records them in the image config (pure)."""

from __future__ import annotations

from typing import Any

import pytest

from engine.build import instructions as ins
from engine.build.dockerfile import parse_dockerfile
from engine.build.state import (
    DEFAULT_PATH,
    StageState,
    apply_config_instruction,
    final_config_document,
    resolve_workdir,
    set_env,
)
from engine.oci.platform import Platform


def apply(text: str, base: dict[str, Any] | None = None) -> tuple[StageState, list[str]]:
    dockerfile = parse_dockerfile("FROM base\n" + text)
    state = StageState(config=dict(base or {}), layers=[], history=[], platform=Platform.parse("linux/amd64"),
                       base="x")
    created = []
    for instruction in dockerfile.stages[0].instructions:
        expanded = ins.expand_instruction(instruction, state.env_map()).instruction
        created.append(apply_config_instruction(state, expanded))
    return state, created


def test_env_replaces_in_place_and_appends() -> None:
    state, created = apply("ENV B=2 C=3\n", {"Env": ["A=1", "B=1"]})
    assert state.config["Env"] == ["A=1", "B=2", "C=3"]
    assert created == ["ENV B=2 C=3"]
    assert set_env(["X=1"], "X", "2") == ["X=2"]


def test_env_sees_earlier_env() -> None:
    state, _ = apply("ENV A=1\nENV B=${A}x\n")
    assert state.config["Env"] == ["A=1", "B=1x"]


def test_entrypoint_clears_inherited_cmd_but_keeps_cmd_of_this_stage() -> None:
    state, _ = apply('ENTRYPOINT ["run"]\n', {"Cmd": ["sh"]})
    assert state.config["Entrypoint"] == ["run"] and state.config["Cmd"] is None
    state, _ = apply('CMD ["a"]\nENTRYPOINT ["run"]\n', {"Cmd": ["sh"]})
    assert state.config["Cmd"] == ["a"] and state.config["Entrypoint"] == ["run"]
    state, _ = apply('ENTRYPOINT ["run"]\nCMD ["b"]\n', {"Cmd": ["sh"]})
    assert state.config["Cmd"] == ["b"]


def test_shell_forms_use_the_current_shell() -> None:
    state, created = apply('CMD echo hi\nSHELL ["/bin/bash", "-xc"]\nENTRYPOINT exec app\n')
    assert state.config["Cmd"] == ["/bin/sh", "-c", "echo hi"]
    assert state.config["Entrypoint"] == ["/bin/bash", "-xc", "exec app"]
    assert state.config["Shell"] == ["/bin/bash", "-xc"]
    assert created[0] == 'CMD ["/bin/sh", "-c", "echo hi"]'


def test_workdir_is_joined_and_cleaned() -> None:
    state, _ = apply("WORKDIR /a\nWORKDIR b/../c\nWORKDIR ./d/\n")
    assert state.config["WorkingDir"] == "/a/c/d"
    assert resolve_workdir("", "x") == "/x"
    assert resolve_workdir("/a", "/") == "/"


def test_expose_volume_label_user_stopsignal() -> None:
    state, created = apply('EXPOSE 80 53/udp 8000-8001\nVOLUME /data /logs\nVOLUME ["/x"]\n'
                           'LABEL a=1 "b c"=2\nLABEL a=3\nUSER www-data:www-data\nSTOPSIGNAL SIGQUIT\n')
    cfg = state.config
    assert cfg["ExposedPorts"] == {"80/tcp": {}, "53/udp": {}, "8000/tcp": {}, "8001/tcp": {}}
    assert cfg["Volumes"] == {"/data": {}, "/logs": {}, "/x": {}}
    assert cfg["Labels"] == {"a": "3", "b c": "2"}
    assert cfg["User"] == "www-data:www-data"
    assert cfg["StopSignal"] == "SIGQUIT"
    assert created[-1] == "STOPSIGNAL SIGQUIT"


def test_healthcheck_keeps_given_durations_and_none_disables() -> None:
    state, _ = apply("HEALTHCHECK --interval=5s --retries=3 CMD wget -q localhost || exit 1\n")
    assert state.config["Healthcheck"] == {"Test": ["CMD-SHELL", "wget -q localhost || exit 1"],
                                           "Interval": 5_000_000_000, "Retries": 3}
    state, created = apply("HEALTHCHECK NONE\n", {"Healthcheck": {"Test": ["CMD", "x"]}})
    assert state.config["Healthcheck"] == {"Test": ["NONE"]}
    assert created == ["HEALTHCHECK NONE"]


def test_onbuild_appends_expression() -> None:
    state, created = apply("ONBUILD RUN a\nONBUILD COPY . /src\n", {"OnBuild": ["RUN z"]})
    assert state.config["OnBuild"] == ["RUN z", "RUN a", "COPY . /src"]
    assert created == ["ONBUILD RUN a", "ONBUILD COPY . /src"]


def test_maintainer_sets_author() -> None:
    state, _ = apply("MAINTAINER someone <a@b>\n")
    doc = final_config_document(state, "2024-01-01T00:00:00Z", history=[])
    assert doc["author"] == "someone <a@b>"


def test_scratch_gets_default_path_and_root_workdir() -> None:
    state = StageState.scratch(Platform.parse("linux/amd64"))
    assert state.config["Env"] == [f"PATH={DEFAULT_PATH}"]
    assert state.workdir == "/"


def test_final_document_order_and_cmd_null_dropped() -> None:
    state, _ = apply('ENTRYPOINT ["x"]\n', {"Cmd": ["sh"]})
    doc = final_config_document(state, "2024-01-01T00:00:00Z", history=[{"created_by": "x"}])
    assert list(doc) == ["created", "architecture", "os", "config", "rootfs", "history"]
    assert "Cmd" not in doc["config"] and doc["config"]["Entrypoint"] == ["x"]
    assert doc["rootfs"] == {"type": "layers", "diff_ids": []}


def test_clone_is_independent() -> None:
    state, _ = apply("ENV A=1\nLABEL x=y\n")
    clone = state.clone()
    clone.config["Labels"]["x"] = "z"
    clone.config["Env"].append("B=2")
    assert state.config["Labels"] == {"x": "y"} and state.config["Env"] == ["A=1"]


@pytest.mark.parametrize("text", ["ENV A=1\n", "LABEL a=b\n", 'CMD ["x"]\n', "USER 1\n"])
def test_fingerprint_changes_with_config(text: str) -> None:
    before = StageState(config={}, layers=[], history=[], platform=Platform.parse("linux/amd64"), base="x")
    after, _ = apply(text)
    assert before.fingerprint() != after.fingerprint()
