"""Sync: copy changed context files into a running container's mounted root filesystem."""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Sequence
from pathlib import Path

from engine.errors import WatchError, os_error_message
from engine.watch.rules import WatchRule


def _copy_tree(context: Path, rootfs: Path, rule: WatchRule, rel: str) -> int:
    from engine.watch.rules import is_noise

    files = []
    for path in sorted((context / rel).rglob("*")):
        inner = path.relative_to(context).as_posix()
        if not is_noise(inner) and rule.owns(inner) and (path.is_file() or path.is_symlink()):
            files.append(inner)
    from engine.runtime.userdb import resolve_in_root

    resolve_in_root(rootfs, rule.container_path(rel)).mkdir(parents=True, exist_ok=True)
    return copy_into(context, rootfs, rule, files) if files else 0


def copy_into(context: Path, rootfs: Path, rule: WatchRule, files: Sequence[str]) -> int:
    """Mirror ``files`` (context-relative) to ``rule``'s target inside ``rootfs``; returns files written.

    Each file is written to a temp name beside its target and renamed over it, so a server never
    reads half a file. A file gone from the context is removed from the container.
    """
    from engine.runtime.userdb import resolve_in_root

    written = 0
    for rel in files:
        source = context / rel
        target = resolve_in_root(rootfs, rule.container_path(rel))
        if not target.is_relative_to(rootfs):
            raise WatchError(f"cannot sync {rel}: {rule.container_path(rel)} leaves the container")
        try:
            if not os.path.lexists(source):
                with contextlib.suppress(FileNotFoundError):
                    if target.is_dir() and not target.is_symlink():
                        shutil.rmtree(target)
                    else:
                        target.unlink()
                continue
            if source.is_dir() and not source.is_symlink():
                # A new directory's files may have landed before the watcher saw the directory: copy it all.
                written += _copy_tree(context, rootfs, rule, rel)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            temp = target.with_name(f".{target.name}.dockyard-sync")
            with contextlib.suppress(FileNotFoundError):
                temp.unlink()
            shutil.copy2(source, temp, follow_symlinks=False)
            os.replace(temp, target)
            written += 1
        except OSError as exc:
            raise WatchError(os_error_message(exc, f"cannot sync {rel}")) from None
    return written
