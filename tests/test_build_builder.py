"""The builder end to end with real runc over overlay snapshots: steps, layers, config, cache, errors.

Skips only when runc is missing or not running as root.
"""

from __future__ import annotations

import gzip
import http.server
import io
import json
import os
import subprocess
import sys
import tarfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from engine import events as ev
from engine.errors import BuildStepError
from tests.buildfixtures import BuilderEnv, BuildFailed

pytest_plugins = ("tests.buildfixtures",)


def layer_members(env: BuilderEnv, image: Any, index: int = -1) -> list[tarfile.TarInfo]:
    desc = image.manifest.layers[index]
    with env.store.open_blob(desc.digest) as fh, tarfile.open(fileobj=fh, mode="r:*") as tar:
        return tar.getmembers()


# ---- RUN -------------------------------------------------------------------------------------------


def test_small_image_config_history_and_filesystem(builder_env: BuilderEnv) -> None:
    result = builder_env.build({
        "Dockerfile": "FROM busybox\nWORKDIR /app\nENV GREETING=hello\nARG WHO=world\n"
                      "RUN echo \"$GREETING $WHO\" > msg && id -u > uid\nCOPY app.sh ./\nEXPOSE 8080\n"
                      'CMD ["sh", "app.sh"]\n',
        "app.sh": "echo hi\n",
    }, tags=("example/app:1",))
    cfg = result.config
    assert cfg["Env"] == ["GREETING=hello"]
    assert cfg["WorkingDir"] == "/app" and cfg["ExposedPorts"] == {"8080/tcp": {}}
    assert cfg["Cmd"] == ["sh", "app.sh"]
    history = [h.to_json() for h in result.image.config.history]
    assert history[-1]["created_by"] == 'CMD ["sh", "app.sh"] # buildkit' and history[-1]["empty_layer"]
    run = next(h for h in history if str(h["created_by"]).startswith("RUN"))
    assert run["created_by"].startswith("RUN |1 WHO=world /bin/sh -c echo") and not run.get("empty_layer")
    assert sum(1 for h in history if not h.get("empty_layer")) == len(result.image.manifest.layers)
    tree = builder_env.filesystem("example/app:1")
    assert tree["app"][0] == "dir" and tree["app/app.sh"][:4] == ("file", 0o644, 0, 0)
    assert _file(builder_env, "example/app:1", "app/msg") == b"hello world\n"
    assert _file(builder_env, "example/app:1", "app/uid") == b"0\n"
    started = [e for e in result.events if isinstance(e, ev.StepStarted)]
    assert [e.step for e in started] == list(range(1, 9)) and started[0].total == 8
    assert isinstance(result.events[0], ev.BuildStarted) and isinstance(result.events[-1], ev.BuildFinished)


def _file(env: BuilderEnv, name: str, path: str) -> bytes:
    from engine.store.archives import export_image

    buf = io.BytesIO()
    export_image(env.store, name, buf)
    buf.seek(0)
    with tarfile.open(fileobj=buf) as tar:
        member = tar.extractfile(path)
        assert member is not None
        return member.read()


def test_run_deletions_become_whiteouts_and_opaque_dirs(builder_env: BuilderEnv) -> None:
    builder_env.build({"Dockerfile": "FROM busybox\nRUN mkdir -p /data/old && echo x > /data/old/f && "
                                     "echo y > /data/keep\n"}, tags=("base:1",))
    result = builder_env.build({"Dockerfile": "FROM base:1\nRUN rm /etc/group && rm -rf /data && mkdir /data && "
                                              "echo new > /data/new\n"}, name="child", tags=("child:1",))
    names = {m.name for m in layer_members(builder_env, result.image)}
    assert "etc/.wh.group" in names
    assert "data/.wh..wh..opq" in names and "data/new" in names
    tree = builder_env.filesystem("child:1")
    assert "etc/group" not in tree and "etc/passwd" in tree
    assert "data/keep" not in tree and "data/old" not in tree and tree["data/new"][0] == "file"


def test_run_sees_env_user_workdir_shell_and_build_args(builder_env: BuilderEnv) -> None:
    result = builder_env.build({"Dockerfile": (
        "FROM busybox\nARG TOKEN\nENV MODE=prod\nUSER www-data\nWORKDIR /tmp/w\n"
        'SHELL ["/bin/sh", "-ec"]\nRUN echo "$TOKEN $MODE $(id -u) $(pwd) $-" > /tmp/w/out\n')},
        build_args={"TOKEN": "t0k"}, tags=("envtest:1",))
    out = _file(builder_env, "envtest:1", "tmp/w/out").decode().split()
    assert out[:4] == ["t0k", "prod", "33", "/tmp/w"] and "e" in out[4]
    assert "TOKEN" not in json.dumps(result.config["Env"])  # build args are not kept in the image
    tree = builder_env.filesystem("envtest:1")
    assert tree["tmp/w"][:4] == ("dir", 0o755, 33, 33)  # WORKDIR made it, owned by USER
    assert tree["tmp/w/out"][2:4] == (33, 33)


def test_run_network_host_by_default_or_none(builder_env: BuilderEnv) -> None:
    dockerfile = "FROM busybox\nRUN ls /sys/class/net > /nets\n"
    builder_env.build({"Dockerfile": dockerfile}, tags=("nethost:1",))
    builder_env.build({"Dockerfile": dockerfile}, name="none", tags=("netnone:1",), network="none")
    host = _file(builder_env, "nethost:1", "nets").split()
    none = _file(builder_env, "netnone:1", "nets").split()
    assert none == [b"lo"]
    assert set(host) == {name.encode() for name in os.listdir("/sys/class/net")}


def test_failed_run_reports_exit_code_and_output_and_leaves_nothing(builder_env: BuilderEnv) -> None:
    before = [str(i.id) for i in builder_env.store.images()]
    with pytest.raises(BuildFailed) as info:
        builder_env.build({"Dockerfile": "FROM busybox\nRUN echo one\nRUN echo first; echo second >&2; exit 3\n"},
                          tags=("broken:1",))
    error = info.value.error
    assert isinstance(error, BuildStepError) and error.exit_code == 3
    assert str(error).startswith("Dockerfile:3: ") and "exit code 3" in str(error)
    failed = [e for e in info.value.events if isinstance(e, ev.StepFailed)]
    assert failed and failed[0].exit_code == 3 and set(failed[0].last_lines[-2:]) == {"first", "second"}
    assert [str(i.id) for i in builder_env.store.images()] == before
    report = builder_env.store.fsck()
    assert report.clean and not report.temp_files
    snapshots = builder_env.root / "snapshots"
    leftovers = [p.name for p in snapshots.iterdir() if len(p.name) != 64]
    assert leftovers == []
    mounts = Path("/proc/self/mountinfo").read_text()
    assert str(snapshots) not in mounts


def test_errors_name_file_and_line(builder_env: BuilderEnv) -> None:
    with pytest.raises(BuildFailed) as info:
        builder_env.build({"Dockerfile": "FROM busybox\n\nCOPY missing.txt /x\n"})
    assert str(info.value.error).startswith("Dockerfile:3: ") and "missing.txt" in str(info.value.error)
    with pytest.raises(BuildFailed) as info:
        builder_env.build({"Dockerfile": "FROM busybox\nRUN true\nFROM nosuchimage-local:1\n"}, name="b")
    assert str(info.value.error).startswith("Dockerfile:3: ")
    with pytest.raises(BuildFailed) as info:
        builder_env.build({"Dockerfile": "FROM busybox\nFROBNICATE x\n"}, name="c")
    assert str(info.value.error).startswith("Dockerfile:2: ")


# ---- COPY / ADD ------------------------------------------------------------------------------------


def test_copy_globs_dirs_chown_chmod_and_dockerignore(builder_env: BuilderEnv) -> None:
    ctx = builder_env.context({
        "Dockerfile": "FROM busybox\nCOPY *.txt /dst/\nCOPY --chown=www-data:nogroup src /srcdir\n"
                      "COPY --chmod=700 run.sh /bin/\nCOPY --chown=nobody conf/ /etc/app\n",
        "a.txt": "a", "b.txt": "b", "skip.txt": "no", "src/x/y.py": "y", "src/z.pyc": "compiled",
        "run.sh": "#!/bin/sh\n", "conf/app.conf": "k=v",
        ".dockerignore": "skip.txt\n**/*.pyc\n",
    })
    os.symlink("x/y.py", ctx / "src/link")
    builder_env.build(ctx, tags=("copies:1",))
    tree = builder_env.filesystem("copies:1")
    assert "dst/a.txt" in tree and "dst/b.txt" in tree and "dst/skip.txt" not in tree
    assert tree["srcdir"][:4] == ("dir", 0o755, 33, 65534)
    assert tree["srcdir/x/y.py"][:4] == ("file", 0o644, 33, 65534)
    assert tree["srcdir/link"] == ("symlink", 0o777, 33, 65534, "x/y.py")
    assert "srcdir/z.pyc" not in tree
    assert tree["bin/run.sh"][:4] == ("file", 0o700, 0, 0)
    assert tree["etc/app/app.conf"][2:4] == (65534, 65534)  # a user alone: gid = uid, as docker
    assert tree["bin/busybox"][0] == "file"  # parents from the image are kept intact


def test_copy_from_stage_index_and_image_and_target(builder_env: BuilderEnv) -> None:
    dockerfile = (
        "FROM busybox AS build\nRUN echo built > /out\n"
        "FROM busybox AS unused\nRUN exit 1\n"
        "FROM scratch AS final\nCOPY --from=build /out /a\nCOPY --from=0 /out /b\n"
        "COPY --from=busybox /etc/passwd /passwd\n"
        "FROM final AS extra\nRUN exit 2\n"
    )
    result = builder_env.build({"Dockerfile": dockerfile}, target="final", tags=("multi:1",))
    stages = {e.stage for e in result.events if isinstance(e, ev.StepStarted)}
    assert stages == {"build", "final"}
    tree = builder_env.filesystem("multi:1")
    assert set(tree) == {"a", "b", "passwd"}
    assert result.config["Env"] == ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]


def test_add_local_tar_is_extracted_and_hostile_tar_refused(builder_env: BuilderEnv) -> None:
    good = io.BytesIO()
    with tarfile.open(fileobj=good, mode="w:gz") as tar:
        data = b"payload"
        info = tarfile.TarInfo("pkg/file.txt")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    builder_env.build({"Dockerfile": "FROM busybox\nADD pkg.tar.gz /opt/\nADD plain.txt /opt/plain\n",
                       "pkg.tar.gz": good.getvalue(), "plain.txt": "p"}, tags=("addtar:1",))
    tree = builder_env.filesystem("addtar:1")
    assert tree["opt/pkg/file.txt"][0] == "file" and tree["opt/plain"][0] == "file"
    bad = io.BytesIO()
    with tarfile.open(fileobj=bad, mode="w") as tar:
        info = tarfile.TarInfo("../../escape")
        info.size = 1
        tar.addfile(info, io.BytesIO(b"x"))
    with pytest.raises(BuildFailed) as failure:
        builder_env.build({"Dockerfile": "FROM busybox\nADD bad.tar /opt/\n", "bad.tar": bad.getvalue()},
                          name="bad")
    assert str(failure.value.error).startswith("Dockerfile:2: ")
    assert not (builder_env.workspace / "escape").exists()


@pytest.fixture
def http_server(tmp_path: Path) -> Iterator[str]:
    root = tmp_path / "www"
    root.mkdir()
    (root / "hello.txt").write_text("from the web\n")

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, directory=str(root), **kwargs)

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_add_url(builder_env: BuilderEnv, http_server: str) -> None:
    builder_env.build({"Dockerfile": f"FROM busybox\nADD {http_server}/hello.txt /web/\n"
                                     f"ADD {http_server}/hello.txt /web/renamed\n"}, tags=("addurl:1",))
    assert _file(builder_env, "addurl:1", "web/hello.txt") == b"from the web\n"
    assert _file(builder_env, "addurl:1", "web/renamed") == b"from the web\n"
    with pytest.raises(BuildFailed) as failure:
        builder_env.build({"Dockerfile": f"FROM busybox\nADD {http_server}/missing /x\n"}, name="m")
    assert "404" in str(failure.value.error) and str(failure.value.error).startswith("Dockerfile:2: ")


def test_heredocs_run_and_copy(builder_env: BuilderEnv) -> None:
    builder_env.build({"Dockerfile": "FROM busybox\nRUN <<EOF\necho one > /one\necho two > /two\nEOF\n"
                                     "COPY <<EOT /etc/motd\nwelcome\nEOT\n"}, tags=("heredoc:1",))
    assert _file(builder_env, "heredoc:1", "one") == b"one\n"
    assert _file(builder_env, "heredoc:1", "etc/motd") == b"welcome\n"


# ---- ONBUILD and config ----------------------------------------------------------------------------


def test_onbuild_triggers_run_in_the_child(builder_env: BuilderEnv) -> None:
    base = builder_env.build({"Dockerfile": "FROM busybox\nONBUILD COPY . /src\nONBUILD RUN ls /src > /listing\n"},
                             tags=("onbase:1",))
    assert base.config["OnBuild"] == ["COPY . /src", "RUN ls /src > /listing"]
    child = builder_env.build({"Dockerfile": "FROM onbase:1\nCMD [\"true\"]\n", "code.py": "print()\n"},
                              name="child", tags=("onchild:1",))
    assert not child.config.get("OnBuild")
    assert b"code.py" in _file(builder_env, "onchild:1", "listing")


def test_config_fields_as_docker_records_them(builder_env: BuilderEnv) -> None:
    result = builder_env.build({"Dockerfile": (
        'FROM busybox\nLABEL a=1 b="two words"\nHEALTHCHECK --interval=5s --timeout=2s CMD true\n'
        "STOPSIGNAL SIGINT\nVOLUME /data\nUSER nobody\nENTRYPOINT [\"sh\"]\n")},
        labels={"from-cli": "yes"})
    cfg = result.config
    assert cfg["Labels"] == {"a": "1", "b": "two words", "from-cli": "yes"}
    assert cfg["Healthcheck"] == {"Test": ["CMD-SHELL", "true"], "Interval": 5_000_000_000, "Timeout": 2_000_000_000}
    assert cfg["StopSignal"] == "SIGINT" and cfg["Volumes"] == {"/data": {}} and cfg["User"] == "nobody"
    assert cfg["Entrypoint"] == ["sh"] and "Cmd" not in cfg  # ENTRYPOINT resets the base's CMD


# ---- cache -------------------------------------------------------------------------------------------


DOCKERFILE = "FROM busybox\nARG V=1\nRUN echo $V > /v\nCOPY files /files\nHEALTHCHECK CMD true\nRUN echo done\n"


def test_cache_hits_misses_and_same_image_id(builder_env: BuilderEnv) -> None:
    ctx = builder_env.context({"Dockerfile": DOCKERFILE, "files/a": "a", "files/b": "b"})
    first = builder_env.build(ctx)
    assert first.cached_steps() == [False, False, False]
    again = builder_env.build(ctx)
    assert again.cached_steps() == [True, True, True] and again.id == first.id
    os.utime(ctx / "files/a", (time.time() + 100, time.time() + 100))
    touched = builder_env.build(ctx)
    assert touched.cached_steps() == [True, True, True] and touched.id == first.id
    (ctx / "files/a").write_text("A")
    edited = builder_env.build(ctx)
    assert edited.cached_steps() == [True, False, False]
    os.chmod(ctx / "files/b", 0o600)
    assert builder_env.build(ctx).cached_steps() == [True, False, False]
    assert builder_env.build(ctx, build_args={"V": "2"}).cached_steps() == [False, False, False]
    (ctx / "Dockerfile").write_text(DOCKERFILE.replace("CMD true", "CMD false"))
    assert builder_env.build(ctx).cached_steps() == [True, True, False]  # a HEALTHCHECK change misses
    (ctx / "Dockerfile").write_text(DOCKERFILE.replace("HEALTHCHECK CMD true", "ONBUILD RUN x"))
    assert builder_env.build(ctx).cached_steps() == [True, True, False]  # so does an ONBUILD one
    assert builder_env.build(ctx, no_cache=True).cached_steps() == [False, False, False]


def test_chown_change_misses(builder_env: BuilderEnv) -> None:
    ctx = builder_env.context({"Dockerfile": "FROM busybox\nCOPY f /f\n", "f": "x"})
    builder_env.build(ctx)
    (ctx / "Dockerfile").write_text("FROM busybox\nCOPY --chown=www-data f /f\n")
    assert builder_env.build(ctx).cached_steps() == [False]


def test_scratch_never_matches_an_image_cache(builder_env: BuilderEnv) -> None:
    ctx = builder_env.context({"Dockerfile": "FROM busybox\nCOPY f /f\n", "f": "x"})
    builder_env.build(ctx)
    (ctx / "Dockerfile").write_text("FROM scratch\nCOPY f /f\n")
    result = builder_env.build(ctx)
    assert result.cached_steps() == [False] and len(result.image.manifest.layers) == 1


def test_source_date_epoch_gives_reproducible_digests(builder_env: BuilderEnv) -> None:
    files = {"Dockerfile": "FROM busybox\nRUN echo hi > /hi && mkdir /d\nCOPY . /ctx\nENV X=1\n", "a": "a"}
    one = builder_env.build(files, name="r1", no_cache=True, source_date_epoch=1700000000)
    time.sleep(1.1)
    two = builder_env.build(files, name="r2", no_cache=True, build_args={"SOURCE_DATE_EPOCH": "1700000000"})
    assert one.image.manifest_digest == two.image.manifest_digest
    assert one.image.config.created == "2023-11-14T22:13:20Z"
    for member in layer_members(builder_env, one.image):
        assert member.mtime <= 1700000000


def test_zstd_layers(builder_env: BuilderEnv) -> None:
    result = builder_env.build({"Dockerfile": "FROM busybox\nRUN echo z > /z\n"}, compression="zstd")
    assert result.image.manifest.layers[-1].media_type.endswith("+zstd")


def test_big_layer_is_hashed_while_streaming(builder_env: BuilderEnv) -> None:
    result = builder_env.build({"Dockerfile": "FROM busybox\nRUN head -c 20000000 /dev/urandom > /blob\n"})
    desc = result.image.manifest.layers[-1]
    with builder_env.store.open_blob(desc.digest) as fh:
        raw = fh.read()
    assert len(raw) == desc.size and gzip.decompress(raw)[:5]
    finished = [e for e in result.events if isinstance(e, ev.StepFinished) and e.layer_size]
    assert finished[-1].layer_size == desc.size


# ---- the CLI -----------------------------------------------------------------------------------------


def cli(*args: str, stdin: str | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", "from cli.main import main; main()", *args], input=stdin,
                          capture_output=True, text=True, cwd=cwd, timeout=120, env=dict(os.environ))


def test_cli_prints_steps_and_writes_iidfile(builder_env: BuilderEnv) -> None:
    ctx = builder_env.context({"Dockerfile": "FROM busybox\nRUN echo from-run\nCMD [\"sh\"]\n"})
    iid = builder_env.workspace / "iid"
    out = cli("build", "-t", "cli:1", "--iidfile", str(iid), str(ctx))
    assert out.returncode == 0, out.stderr
    assert "STEP 1/3: FROM busybox" in out.stdout and "STEP 2/3: RUN echo from-run" in out.stdout
    assert "from-run" in out.stdout and iid.read_text().startswith("sha256:")
    quiet = cli("build", "-q", str(ctx))
    assert quiet.stdout.strip() == iid.read_text()
    piped = cli("build", "-q", "-", stdin="FROM busybox\nRUN echo piped > /p\n")
    assert piped.returncode == 0 and piped.stdout.strip().startswith("sha256:")


def test_cli_error_is_one_line(builder_env: BuilderEnv) -> None:
    ctx = builder_env.context({"Dockerfile": "FROM busybox\nRUN echo bad-output; exit 7\n"})
    out = cli("build", str(ctx))
    assert out.returncode == 1
    assert "Traceback" not in out.stderr
    error_lines = [line for line in out.stderr.splitlines() if line.startswith("dockyard: error:")]
    assert len(error_lines) == 1 and "Dockerfile:2:" in error_lines[0] and "exit code 7" in error_lines[0]
    assert "bad-output" in out.stdout + out.stderr
