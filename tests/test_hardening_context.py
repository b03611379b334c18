"""A hostile build context: symlinks pointing outside it, FIFOs and sockets.  COPY never reads through a
link to a file outside the context (the link itself is copied), and never blocks on or copies a FIFO or
a socket.  Runs the real CLI (no RUN step, so no runtime is needed)."""

from __future__ import annotations

import os
import socket
import tarfile
from pathlib import Path

from tests.test_hardening_chaos import run_cli


def test_copy_from_a_hostile_context(tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    secret.write_text("do not copy me\n")
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "leak").symlink_to(secret)
    (ctx / "up").symlink_to("../")
    os.mkfifo(ctx / "fifo")
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(ctx / "sock"))
    root = tmp_path / "root"
    for n, dockerfile in enumerate(["FROM scratch\nCOPY . /ctx/\n", "FROM scratch\nCOPY leak /x\n",
                                    "FROM scratch\nCOPY up/secret /y\n"]):
        (ctx / "Dockerfile").write_text(dockerfile)
        code, _, out = run_cli(root, "build", "-q", "-t", f"localhost/hostile:{n}", str(ctx), timeout=60)
        if code != 0:  # refusing is fine, as long as it is one line and names the cause
            assert "error" in out and "Traceback" not in out, out
            continue
        exported = tmp_path / f"fs{n}.tar"
        code, _, out = run_cli(root, "export", f"localhost/hostile:{n}", "-o", str(exported))
        assert code == 0, out
        with tarfile.open(exported) as tar:
            for member in tar.getmembers():
                assert not member.isfifo() and member.type != b"s", f"{member.name} copied"
                if member.isreg():
                    data = tar.extractfile(member).read()  # type: ignore[union-attr]
                    assert b"do not copy me" not in data, f"{member.name} holds a file from outside the context"
    sock.close()
