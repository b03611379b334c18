"""Users and groups from the image's files, read as data, symlinks resolved inside the rootfs."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from engine.errors import InvalidInputError
from engine.runtime.userdb import (
    ExecUser,
    lookup_user_in_rootfs,
    parse_group,
    parse_passwd,
    read_in_root,
    resolve_in_root,
    resolve_user,
)

PASSWD = parse_passwd(
    "root:x:0:0:root:/root:/bin/sh\n"
    "# comment\n"
    "daemon:x:1:1::/usr/sbin:/bin/false\n"
    "www:x:33:33:www:/var/www:/bin/false\n"
    "broken line\n"
    "nohome:x:70:71::\n"
)
GROUPS = parse_group("root:x:0:\nwww:x:33:\nstaff:x:50:www,daemon\nweb:x:60:www\nbad:x:notanumber:\n")


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("", ExecUser(0, 0, (), "/root")),
        ("root", ExecUser(0, 0, (), "/root")),
        ("www", ExecUser(33, 33, (50, 60), "/var/www")),
        ("33", ExecUser(33, 33, (50, 60), "/var/www")),
        ("www:staff", ExecUser(33, 50, (), "/var/www")),
        ("www:60", ExecUser(33, 60, (), "/var/www")),
        ("1234", ExecUser(1234, 0, (), "/")),
        ("1234:5678", ExecUser(1234, 5678, (), "/")),
        ("nohome", ExecUser(70, 71, (), "/")),
    ],
)
def test_resolve_user(spec: str, expected: ExecUser) -> None:
    assert resolve_user(spec, PASSWD, GROUPS) == expected


def test_group_add() -> None:
    assert resolve_user("www", PASSWD, GROUPS, ("root", "999")).additional_gids == (50, 60, 0, 999)


@pytest.mark.parametrize(("spec", "message"), [("nobody", "unable to find user nobody"),
                                               ("www:nogroup", "unable to find group nogroup")])
def test_unknown_names_are_errors(spec: str, message: str) -> None:
    with pytest.raises(InvalidInputError, match=message):
        resolve_user(spec, PASSWD, GROUPS)


def _rootfs(tmp_path: Path) -> Path:
    root = tmp_path / "rootfs"
    (root / "etc").mkdir(parents=True)
    (root / "etc" / "passwd").write_text("root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000::/app:/bin/sh\n")
    (root / "etc" / "group").write_text("app:x:1000:\n")
    return root


def test_lookup_reads_image_files(tmp_path: Path) -> None:
    assert lookup_user_in_rootfs(_rootfs(tmp_path), "app") == ExecUser(1000, 1000, (), "/app")


def test_symlinked_passwd_stays_inside_rootfs(tmp_path: Path) -> None:
    root = _rootfs(tmp_path)
    outside = tmp_path / "host-passwd"
    outside.write_text("evil:x:0:0::/:/bin/sh\n")
    (root / "etc" / "passwd").unlink()
    os.symlink(str(outside), root / "etc" / "passwd")  # absolute: resolved against the rootfs
    assert read_in_root(root, "/etc/passwd") is None
    with pytest.raises(InvalidInputError, match="unable to find user evil"):
        lookup_user_in_rootfs(root, "evil")


def test_dotdot_symlink_is_clamped_at_root(tmp_path: Path) -> None:
    root = _rootfs(tmp_path)
    (tmp_path / "secret").write_text("host secret")
    os.symlink("../../../secret", root / "etc" / "link")
    assert resolve_in_root(root, "/etc/link") == root / "secret"
    assert read_in_root(root, "/etc/link") is None


def test_symlink_inside_rootfs_is_followed(tmp_path: Path) -> None:
    root = _rootfs(tmp_path)
    (root / "data").mkdir()
    (root / "data" / "passwd").write_text("svc:x:5:5::/srv:/bin/sh\n")
    (root / "etc" / "passwd").unlink()
    os.symlink("/data/passwd", root / "etc" / "passwd")
    assert lookup_user_in_rootfs(root, "svc") == ExecUser(5, 5, (), "/srv")


def test_symlink_loop_is_not_followed_forever(tmp_path: Path) -> None:
    root = _rootfs(tmp_path)
    os.symlink("/etc/b", root / "etc" / "a")
    os.symlink("/etc/a", root / "etc" / "b")
    with pytest.raises(OSError):
        resolve_in_root(root, "/etc/a")
    assert read_in_root(root, "/etc/a") is None


def test_missing_files_mean_root_defaults(tmp_path: Path) -> None:
    root = tmp_path / "empty"
    root.mkdir()
    assert lookup_user_in_rootfs(root, "") == ExecUser(0, 0, (), "/")
    assert lookup_user_in_rootfs(root, "1000:1000") == ExecUser(1000, 1000, (), "/")


def test_fifo_is_not_read(tmp_path: Path) -> None:
    root = _rootfs(tmp_path)
    (root / "etc" / "passwd").unlink()
    os.mkfifo(root / "etc" / "passwd")
    assert read_in_root(root, "/etc/passwd") is None
