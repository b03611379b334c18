"""Hand-written Dockerfile parser cases the BuildKit peer files do not cover."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.build.dockerfile import Heredoc, parse_ast, parse_dockerfile, parse_heredoc_word
from engine.build.instructions import (
    EXPANDED_FIELDS,
    AddInstruction,
    ArgInstruction,
    CmdInstruction,
    CopyInstruction,
    EntrypointInstruction,
    EnvInstruction,
    ExposeInstruction,
    FromInstruction,
    HealthcheckInstruction,
    Instruction,
    KeyValue,
    LabelInstruction,
    OnbuildInstruction,
    RunInstruction,
    ShellInstruction,
    StopsignalInstruction,
    UserInstruction,
    VolumeInstruction,
    WorkdirInstruction,
    expand_instruction,
    parse_expose_port,
    parse_go_duration,
)
from engine.errors import DockerfileError, EngineError, InvalidPortSpecError


def only(text: str) -> Instruction:
    """The single instruction after a leading FROM."""
    df = parse_dockerfile("FROM scratch\n" + text)
    (instruction,) = df.stages[0].instructions
    return instruction


def error_of(text: str) -> str:
    with pytest.raises(DockerfileError) as caught:
        parse_dockerfile(text)
    return str(caught.value)


# -- heredocs -----------------------------------------------------------------------------------------

def test_run_heredoc() -> None:
    run = only("RUN <<EOF\necho $HOME\n  indented\nEOF\n")
    assert isinstance(run, RunInstruction)
    assert run.command == "<<EOF"
    assert run.heredocs == (Heredoc("EOF", "echo $HOME\n  indented\n", expand=True),)
    assert (run.line, run.end_line) == (2, 5)


def test_several_heredocs_on_one_line() -> None:
    text = "FROM scratch\nRUN <<A cat - /dev/fd/3 3<<B > out\nfirst\nA\nsecond\nB\nRUN true\n"
    ast = parse_ast(text)
    run = ast.nodes[1]
    assert [(d.name, d.content, d.fd) for d in run.heredocs] == [("A", "first\n", 0), ("B", "second\n", 3)]
    assert (run.start_line, run.end_line) == (2, 6)
    assert (ast.nodes[2].keyword, ast.nodes[2].start_line) == ("run", 7)


def test_dash_heredoc_strips_tabs_and_allows_indented_terminator() -> None:
    run = only("RUN <<-EOT\n\tline one\n\t\tline two\n\tEOT\n")
    assert isinstance(run, RunInstruction)
    (doc,) = run.heredocs
    assert doc.strip_tabs
    assert doc.content == "\tline one\n\t\tline two\n"
    assert doc.text == "line one\nline two\n"


@pytest.mark.parametrize(
    ("word", "name", "expand"),
    [
        ("<<EOF", "EOF", True),
        ('<<"EOF"', "EOF", False),
        ("<<'EOF'", "EOF", False),
        ("<<E'O'F", "EOF", False),
        ("<<-'EOT'", "EOT", False),
        ("3<<EOF", "EOF", True),
    ],
)
def test_heredoc_word(word: str, name: str, expand: bool) -> None:
    doc = parse_heredoc_word(word)
    assert doc is not None
    assert (doc.name, doc.expand) == (name, expand)


@pytest.mark.parametrize("word", ["<<", "echo", "<<a b", "x<<EOF", '"<<EOF"'])
def test_not_a_heredoc_word(word: str) -> None:
    assert parse_heredoc_word(word) is None


def test_copy_heredoc_sources() -> None:
    copy = only('COPY <<-"CONF" <<plain dir/ /etc/app/\n\tkey=$VALUE\n\tCONF\nx=$Y\nplain\n')
    assert isinstance(copy, CopyInstruction)
    assert copy.sources == ("dir/",)
    assert copy.dest == "/etc/app/"
    assert [(c.path, c.data, c.expand) for c in copy.contents] == [
        ("CONF", "key=$VALUE\n", False), ("plain", "x=$Y\n", True),
    ]
    expanded = expand_instruction(copy, {"VALUE": "v", "Y": "'y'"}).instruction
    assert [c.data for c in expanded.contents] == ["key=$VALUE\n", "x='y'\n"]


def test_heredoc_not_read_for_json_or_other_instructions() -> None:
    ast = parse_ast('FROM scratch\nRUN ["cat", "<<EOF"]\nCMD cat <<EOF\n')
    assert [n.heredocs for n in ast.nodes] == [(), (), ()]


def test_unterminated_heredoc() -> None:
    assert error_of("FROM scratch\nRUN <<EOF\nnever ends\n") == "Dockerfile:2: unterminated heredoc EOF"


def test_heredoc_destination_refused() -> None:
    assert "COPY cannot accept a heredoc as a destination" in error_of("FROM a\nCOPY x <<EOF\nEOF\n")


def test_onbuild_heredoc_expression() -> None:
    onbuild = only("ONBUILD RUN <<EOF\necho hi\nEOF\n")
    assert isinstance(onbuild, OnbuildInstruction)
    assert onbuild.expression == "RUN <<EOF\necho hi\nEOF"
    assert isinstance(onbuild.trigger, RunInstruction)
    assert onbuild.trigger.heredocs[0].content == "echo hi\n"


# -- directives, escapes, continuations ---------------------------------------------------------------

def test_backtick_escape_directive() -> None:
    df = parse_dockerfile("# escape=`\nFROM scratch\nRUN dir C:\\ `\n    && echo done\nCOPY a\\b c:\\dest\\\n")
    assert df.escape == "`"
    assert df.directives == {"escape": "`"}
    run, copy = df.stages[0].instructions
    assert isinstance(run, RunInstruction)
    assert run.command == "dir C:\\     && echo done"
    assert isinstance(copy, CopyInstruction)
    assert copy.dest == "c:\\dest\\"


def test_directives_syntax_and_check() -> None:
    df = parse_dockerfile("# syntax=docker/dockerfile:1.7\n#check=skip=all\n\nFROM scratch\n")
    assert df.directives == {"syntax": "docker/dockerfile:1.7", "check": "skip=all"}
    assert [(d.name, d.line) for d in df.ast.directives] == [("syntax", 1), ("check", 2)]


def test_directive_only_at_top() -> None:
    assert parse_dockerfile("FROM scratch\n# escape=`\n").escape == "\\"
    assert parse_dockerfile("# hello\n# escape=`\nFROM scratch\n").escape == "\\"


def test_directive_errors() -> None:
    assert error_of("# escape=x\nFROM a\n") == "Dockerfile:1: invalid escape token 'x' does not match ` or \\"
    assert error_of("# syntax=a\n# syntax=b\nFROM a\n") == (
        "Dockerfile:2: only one syntax parser directive can be used"
    )


def test_comments_and_blank_lines_inside_continuation() -> None:
    ast = parse_ast("FROM a\nRUN one \\\n# a comment\n\n    two\n")
    assert ast.nodes[1].original == "RUN one     two"
    assert (ast.nodes[1].start_line, ast.nodes[1].end_line) == (2, 5)
    assert len(ast.warnings) == 1 and "empty continuation line" in ast.warnings[0]


def test_crlf_and_bom() -> None:
    ast = parse_ast("\ufeffFROM a\r\nRUN x \\\r\n  y\r\n")
    assert [n.original for n in ast.nodes] == ["FROM a", "RUN x   y"]


def test_keywords_are_case_insensitive() -> None:
    ast = parse_ast("from a AS b\nrUn echo\n")
    assert [(n.keyword, n.written_keyword) for n in ast.nodes] == [("from", "from"), ("run", "rUn")]


def test_comments_attached_to_node() -> None:
    ast = parse_ast("FROM a\n# the version\n# to use\nARG V=1\n")
    assert ast.nodes[1].comments == ("the version", "to use")


# -- instructions -------------------------------------------------------------------------------------

def test_from_forms() -> None:
    df = parse_dockerfile("ARG V=3.19\nFROM --platform=linux/arm64 alpine:$V AS Base\nFROM base\nFROM scratch\n")
    first, second, third = df.stages
    assert (first.index, first.base_name, first.name, first.platform) == (0, "alpine:$V", "base", "linux/arm64")
    assert (second.base_name, second.name) == ("base", None)
    assert third.index == 2
    assert df.stage("BASE") is first and df.stage(1) is second
    (meta,) = df.meta_args
    assert [(a.name, a.default) for a in meta.args] == [("V", "3.19")]


def test_args_before_and_after_from() -> None:
    df = parse_dockerfile('ARG A B=2\nFROM x\nARG C="quoted value" D\n')
    arg = df.stages[0].instructions[0]
    assert isinstance(arg, ArgInstruction)
    assert [(a.name, a.default) for a in arg.args] == [("C", '"quoted value"'), ("D", None)]
    assert expand_instruction(arg, {}).instruction.args[0].default == "quoted value"


def test_env_and_label_forms() -> None:
    env = only("ENV A=1 B=\"x y\" C=${A}\n")
    assert isinstance(env, EnvInstruction)
    assert env.pairs == (KeyValue("A", "1"), KeyValue("B", '"x y"'), KeyValue("C", "${A}"))
    expanded = expand_instruction(env, {"A": "old"})
    assert [p.value for p in expanded.instruction.pairs] == ["1", "x y", "old"]
    assert expanded.matched == {"A"}
    legacy = only("ENV PATH /usr/bin:$PATH more words\n")
    assert isinstance(legacy, EnvInstruction)
    assert legacy.pairs == (KeyValue("PATH", "/usr/bin:$PATH more words", legacy=True),)
    label = only('LABEL org.opencontainers.image.title="My App" version=1\n')
    assert isinstance(label, LabelInstruction)
    assert [p.key for p in label.pairs] == ["org.opencontainers.image.title", "version"]


def test_run_cmd_entrypoint_forms() -> None:
    df = parse_dockerfile('FROM a\nRUN ["/bin/sh", "-c", "echo"]\nRUN echo $HOME\nCMD []\nENTRYPOINT ./run --x\n')
    run_exec, run_shell, cmd, entrypoint = df.stages[0].instructions
    assert isinstance(run_exec, RunInstruction) and run_exec.command == ("/bin/sh", "-c", "echo")
    assert isinstance(run_shell, RunInstruction) and run_shell.command == "echo $HOME"
    assert not run_shell.json_form
    assert isinstance(cmd, CmdInstruction) and cmd.command == () and cmd.json_form
    assert isinstance(entrypoint, EntrypointInstruction) and entrypoint.command == "./run --x"
    assert expand_instruction(run_shell, {"HOME": "/x"}).instruction.command == "echo $HOME"


def test_run_flags() -> None:
    run = only("RUN --mount=type=cache,target=/root/.cache --mount=type=secret,id=t --network=host "
               "--security=insecure make\n")
    assert isinstance(run, RunInstruction)
    assert run.mounts == ("type=cache,target=/root/.cache", "type=secret,id=t")
    assert (run.network, run.security, run.command) == ("host", "insecure", "make")


def test_copy_and_add_flags() -> None:
    copy = only("COPY --from=build --chown=app:app --chmod=0755 --link --parents --exclude=*.md "
                "--exclude=.git a b /dst/\n")
    assert isinstance(copy, CopyInstruction)
    assert (copy.from_, copy.chown, copy.chmod, copy.link, copy.parents) == ("build", "app:app", "0755", True, True)
    assert copy.excludes == ("*.md", ".git")
    assert copy.sources == ("a", "b") and copy.dest == "/dst/"
    add = only("ADD --keep-git-dir=true --checksum=sha256:abc --link=false https://x/y.tgz /opt/\n")
    assert isinstance(add, AddInstruction)
    assert (add.keep_git_dir, add.checksum, add.link, add.sources) == (True, "sha256:abc", False, ("https://x/y.tgz",))
    json_copy = only('COPY ["with space", "/dst dir/"]\n')
    assert isinstance(json_copy, CopyInstruction)
    assert json_copy.sources == ("with space",) and json_copy.dest == "/dst dir/" and json_copy.json_form


def test_copy_expansion() -> None:
    copy = only('COPY --from=$STAGE --chown=$U "$SRC" ${DEST:-/d}\n')
    expanded = expand_instruction(copy, {"STAGE": "s1", "U": "1000", "SRC": "a b"})
    assert isinstance(expanded.instruction, CopyInstruction)
    assert (expanded.instruction.from_, expanded.instruction.chown) == ("s1", "1000")
    assert expanded.instruction.sources == ("a b",) and expanded.instruction.dest == "/d"
    assert expanded.unmatched == {"DEST"}


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("COPY --nope=1 a b", "unknown flag: nope"),
        ("COPY --form=x a b", "unknown flag: form (did you mean from?)"),
        ("COPY --from=a --from=b a b", "duplicate flag specified: from"),
        ("COPY --from a b", "missing a value on flag: from"),
        ("COPY --link= a b", "missing a value on flag: link"),
        ("COPY --link=maybe a b", "expecting boolean value for flag link, not: maybe"),
        ("RUN --network=bridge x", 'unsupported network mode "bridge"'),
        ("WORKDIR --x=1 /a", "unknown flag: x"),
        ("COPY onlyone", "COPY requires at least two arguments"),
        ("ADD onlyone", "ADD requires at least two arguments"),
        ("WORKDIR", "WORKDIR requires exactly one argument"),
        ("EXPOSE", "EXPOSE requires at least one argument"),
        ("VOLUME", "VOLUME requires at least one argument"),
        ('VOLUME [""]', "VOLUME specified can not be an empty string"),
        ("SHELL /bin/bash -c", "SHELL requires the arguments to be in JSON form"),
        ("SHELL []", "SHELL requires at least one argument"),
        ("ENV", "ENV requires at least one argument"),
        ("ENV =x", "ENV names can not be blank"),
        ("ENV a=1 b", "can't find = in \"b\""),
        ("ARG =x", "ARG names can not be blank"),
        ("MAINTAINER", "MAINTAINER requires exactly one argument"),
        ('CMD ["a", 1]', "arrays must be comprised of strings only"),
    ],
)
def test_instruction_errors(line: str, message: str) -> None:
    error = error_of(f"FROM scratch\n\n{line}\n")
    assert error.startswith("Dockerfile:3: ")
    assert message in error


def test_unknown_instruction_names_file_and_line() -> None:
    text = "FROM scratch\nRUN a\n\n\n\n\nCOPPY a b\n"
    with pytest.raises(DockerfileError) as caught:
        parse_dockerfile(text, filename="app/Dockerfile.dev")
    assert str(caught.value) == "app/Dockerfile.dev:7: unknown instruction: COPPY (did you mean COPY?)"
    assert (caught.value.file, caught.value.line) == ("app/Dockerfile.dev", 7)


def test_stage_errors() -> None:
    assert error_of("RUN x\nFROM a\n").startswith("Dockerfile:1: RUN before the first FROM")
    assert error_of("ARG x\n") == "Dockerfile: the Dockerfile has no FROM, so no stage to build"
    assert "FROM requires either one or three arguments" in error_of("FROM a b\n")
    assert "invalid name for build stage" in error_of("FROM a AS 1st\n")
    assert error_of("FROM a AS x\nFROM b AS X\n") == 'Dockerfile:2: duplicate stage name "x"'


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("ONBUILD ONBUILD RUN x", "Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed"),
        ("ONBUILD FROM alpine", "FROM isn't allowed as an ONBUILD trigger"),
        ("ONBUILD MAINTAINER me", "MAINTAINER isn't allowed as an ONBUILD trigger"),
        ("ONBUILD", "ONBUILD requires at least one argument"),
        ("ONBUILD COPPY a b", "unknown instruction: COPPY"),
    ],
)
def test_onbuild_forbidden_triggers(line: str, message: str) -> None:
    assert error_of(f"FROM a\n{line}\n").startswith(f"Dockerfile:2: {message}")


def test_onbuild_trigger_is_typed() -> None:
    onbuild = only("ONBUILD COPY --chown=1 . /app\n")
    assert isinstance(onbuild, OnbuildInstruction)
    assert onbuild.expression == "COPY --chown=1 . /app"
    assert isinstance(onbuild.trigger, CopyInstruction) and onbuild.trigger.chown == "1"


# -- HEALTHCHECK --------------------------------------------------------------------------------------

def test_healthcheck_none() -> None:
    health = only("HEALTHCHECK NONE\n")
    assert isinstance(health, HealthcheckInstruction)
    assert health.test == ("NONE",) and health.disabled
    assert "HEALTHCHECK NONE takes no arguments" in error_of("FROM a\nHEALTHCHECK NONE x\n")


def test_healthcheck_durations_and_forms() -> None:
    health = only("HEALTHCHECK --interval=30s --timeout=1m30s --start-period=500ms --start-interval=2s "
                  "--retries=5 CMD curl -f http://localhost/ || exit 1\n")
    assert isinstance(health, HealthcheckInstruction)
    assert health.test == ("CMD-SHELL", "curl -f http://localhost/ || exit 1")
    assert (health.interval, health.timeout, health.start_period, health.start_interval, health.retries) == (
        30_000_000_000, 90_000_000_000, 500_000_000, 2_000_000_000, 5,
    )
    exec_form = only('HEALTHCHECK --timeout=0s CMD ["/check", "-q"]\n')
    assert isinstance(exec_form, HealthcheckInstruction)
    assert exec_form.test == ("CMD", "/check", "-q") and exec_form.timeout == 0


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("HEALTHCHECK", "HEALTHCHECK requires at least one argument"),
        ("HEALTHCHECK CMD", "Missing command after HEALTHCHECK CMD"),
        ("HEALTHCHECK CONNECT TCP 7000", 'Unknown type "CONNECT" in HEALTHCHECK (try CMD)'),
        ("HEALTHCHECK --interval=10 CMD x", "missing unit"),
        ("HEALTHCHECK --interval=1us CMD x", 'Interval "interval" cannot be less than 1ms'),
        ("HEALTHCHECK --retries=-1 CMD x", "--retries cannot be negative"),
        ("HEALTHCHECK --retries=many CMD x", "--retries: invalid number"),
        ("HEALTHCHECK --period=1s CMD x", "unknown flag: period"),
    ],
)
def test_healthcheck_errors(line: str, message: str) -> None:
    assert message in error_of(f"FROM a\n{line}\n")


@pytest.mark.parametrize(
    ("text", "nanos"),
    [
        ("0", 0), ("30s", 30_000_000_000), ("1h2m3s", 3_723_000_000_000), ("1.5s", 1_500_000_000),
        (".5ms", 500_000), ("-3ms", -3_000_000), ("10us", 10_000), ("10\u00b5s", 10_000), ("7ns", 7),
        ("2m0.25s", 120_250_000_000),
    ],
)
def test_go_duration(text: str, nanos: int) -> None:
    assert parse_go_duration(text) == nanos


@pytest.mark.parametrize("text", ["", "s", "10", "1x", "1.2.3s", "--1s", "."])
def test_go_duration_errors(text: str) -> None:
    with pytest.raises(ValueError):
        parse_go_duration(text)


# -- EXPOSE, VOLUME, USER, WORKDIR, STOPSIGNAL --------------------------------------------------------

def test_expose_keeps_raw_strings_and_expands_then_splits() -> None:
    expose = only("EXPOSE 80 53/udp 8000-8002/tcp $EXTRA\n")
    assert isinstance(expose, ExposeInstruction)
    assert expose.ports == ("80", "53/udp", "8000-8002/tcp", "$EXTRA")
    expanded = expand_instruction(expose, {"EXTRA": "443 9000/sctp"}).instruction
    assert expanded.ports == ("80", "53/udp", "8000-8002/tcp", "443", "9000/sctp")
    assert expanded.port_keys() == (
        "53/udp", "80/tcp", "443/tcp", "8000/tcp", "8001/tcp", "8002/tcp", "9000/sctp",
    )


@pytest.mark.parametrize(
    ("spec", "keys"),
    [("80", ("80/tcp",)), ("80/UDP", ("80/udp",)), ("1-3/udp", ("1/udp", "2/udp", "3/udp"))],
)
def test_parse_expose_port(spec: str, keys: tuple[str, ...]) -> None:
    assert parse_expose_port(spec) == keys


@pytest.mark.parametrize("spec", ["http", "80/icmp", "70000", "90-80", "", "8080:80"])
def test_parse_expose_port_errors(spec: str) -> None:
    with pytest.raises(InvalidPortSpecError):
        parse_expose_port(spec)


def test_expose_port_keys_error_names_line() -> None:
    expose = only("EXPOSE 80/icmp\n")
    assert isinstance(expose, ExposeInstruction)
    with pytest.raises(DockerfileError, match=r"^Dockerfile:2: EXPOSE: invalid protocol"):
        expose.port_keys()


def test_simple_string_instructions() -> None:
    df = parse_dockerfile('FROM a\nVOLUME ["/data", "/logs"]\nVOLUME /a /b\nUSER app:app\nWORKDIR /srv/$APP\n'
                          "STOPSIGNAL SIGTERM\nSHELL [\"/bin/bash\", \"-c\"]\n")
    vol_json, vol_plain, user, workdir, stop, shell = df.stages[0].instructions
    assert isinstance(vol_json, VolumeInstruction) and vol_json.paths == ("/data", "/logs") and vol_json.json_form
    assert isinstance(vol_plain, VolumeInstruction) and vol_plain.paths == ("/a", "/b")
    assert isinstance(user, UserInstruction) and user.user == "app:app"
    assert isinstance(workdir, WorkdirInstruction)
    assert expand_instruction(workdir, {"APP": "web"}).instruction.path == "/srv/web"
    assert isinstance(stop, StopsignalInstruction) and stop.signal == "SIGTERM"
    assert isinstance(shell, ShellInstruction) and shell.shell == ("/bin/bash", "-c")


def test_expansion_error_names_line() -> None:
    workdir = only("WORKDIR ${X:?X must be set}\n")
    with pytest.raises(DockerfileError, match=r'^Dockerfile:2: failed to process "\$\{X:\?X must be set\}": X: X must'):
        expand_instruction(workdir, {})


def test_from_expansion_uses_given_env() -> None:
    frm = parse_dockerfile("FROM --platform=$TARGETPLATFORM ${IMG:-alpine}:${TAG}\n").stages[0].from_
    assert isinstance(frm, FromInstruction)
    expansion = expand_instruction(frm, {"TAG": "3", "TARGETPLATFORM": "linux/amd64"})
    assert (expansion.instruction.base_name, expansion.instruction.platform) == ("alpine:3", "linux/amd64")
    assert expansion.matched == {"TAG", "TARGETPLATFORM"} and expansion.unmatched == {"IMG"}


def test_expanded_fields_table_names_real_fields() -> None:
    import dataclasses

    for cls, names in EXPANDED_FIELDS.items():
        assert names <= {f.name for f in dataclasses.fields(cls)}, cls


# -- robustness ---------------------------------------------------------------------------------------

_PIECES = ["FROM a\n", "RUN ", "COPY ", "ADD ", "ONBUILD ", "HEALTHCHECK ", "ENV ", "ARG ", "EXPOSE ", "\\\n",
           "`", "<<", "EOF", "<<-", "\n", "\t", '"', "'", "$", "{", "}", ":", "-", "?", "#", "%", "/", "[",
           "]", "=", "--", "x", " ", "# escape=`\n", "\r", "*", "\u00e9", "\\"]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(_PIECES), max_size=30).map("".join))
def test_any_text_parses_or_fails_cleanly(text: str) -> None:
    """Whatever the text, the parser and the expansion raise only engine errors (never a traceback)."""
    try:
        df = parse_dockerfile(text)
    except EngineError:
        return
    for stage in df.stages:
        for instruction in (stage.from_, *stage.instructions):
            with contextlib.suppress(DockerfileError):
                expand_instruction(instruction, {"x": "1"}, escape=df.escape)
