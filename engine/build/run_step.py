"""RUN: the command runs in a real container — runc over an overlay of the stage's snapshots with a
fresh upper dir — and the upper dir becomes the step's layer (overlay whiteouts turned into OCI ones)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import threading
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from engine.errors import ContainerRuntimeError, from_os_error

if TYPE_CHECKING:  # the runtime modules load only when a RUN step misses the cache (CLI start-up time)
    from engine.runtime.runc import OciRuntime

# What runc creates in a root filesystem when it is missing: removed again from a RUN's changes.
MOUNT_STUBS = ("/proc", "/sys", "/dev", "/etc/hosts", "/etc/hostname", "/etc/resolv.conf", "/etc")

@dataclass(frozen=True, slots=True)
class RunRequest:
    argv: tuple[str, ...]
    env: tuple[str, ...]
    workdir: str
    user: str
    network: str  # "host" | "none"
    files: tuple[tuple[str, str, int], ...] = ()  # (path in container, content, mode) bound read-only


class Unmount:
    """``release_rootfs`` on a thread.  Unmounting an overlay syncs its whole upper file system (every
    dirty page on it, other processes' too), which can take a while after a big RUN; the builder reads
    the upper dir meanwhile and calls :meth:`wait` before it moves or deletes anything under ``base``."""

    def __init__(self, rootfs: Path) -> None:
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._release, args=(rootfs,), name="overlay-umount", daemon=True)
        self._thread.start()

    def _release(self, rootfs: Path) -> None:
        from engine.runtime.snapshots import release_rootfs

        try:
            release_rootfs(rootfs)
        except BaseException as exc:  # noqa: BLE001 - raised in the builder's thread by wait()
            self._error = exc

    def wait(self) -> None:
        """Block until unmounted; raises the unmount's error (once)."""
        self._thread.join()
        error, self._error = self._error, None
        if error is not None:
            raise error


async def run_step(
    runtime: OciRuntime, lowerdirs: Sequence[Path], base: Path, request: RunRequest,
    on_line: Callable[[str, str], None],
) -> tuple[int, Path, Unmount]:
    """Run ``request`` over ``lowerdirs``; returns (exit code, upper dir holding the changes, the
    unmount of the container's root, still in progress: ``wait()`` on it before touching ``base``)."""
    from engine.runtime.snapshots import prepare_rootfs, release_rootfs

    upper, work, rootfs = base / "upper", base / "work", base / "rootfs"
    prepare_rootfs(list(lowerdirs), upper, work, rootfs)
    try:
        missing = [stub for stub in MOUNT_STUBS if not os.path.lexists(rootfs / stub.lstrip("/"))]
        container_id = f"dockyard-build-{uuid.uuid4().hex[:12]}"
        spec = _spec(container_id, rootfs, base, request)
        (base / "config.json").write_text(json.dumps(spec))
        code = await _run_runc(runtime, container_id, base, on_line)
    except BaseException:
        release_rootfs(rootfs)
        raise
    # The container is gone and nothing looks through the overlay any more: its upper dir is final.
    for stub in missing:
        _remove_stub(upper / stub.lstrip("/"))
    return code, upper, Unmount(rootfs)


def _spec(container_id: str, rootfs: Path, base: Path, request: RunRequest) -> dict[str, object]:
    from engine.runtime.cgroups import detect_mode
    from engine.runtime.manager import hard_limits
    from engine.runtime.options import RunOptions
    from engine.runtime.spec import SpecContext, build_spec
    from engine.runtime.userdb import lookup_user_in_rootfs

    user = lookup_user_in_rootfs(rootfs, request.user)
    hosts = base / "hosts"
    resolv = base / "resolv.conf"
    if request.network == "host":
        hosts.write_bytes(_read_or(Path("/etc/hosts"), b"127.0.0.1 localhost\n"))
        resolv.write_bytes(_read_or(Path("/etc/resolv.conf"), b""))
    else:
        hosts.write_text("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n")
        resolv.write_text("")
    ctx = SpecContext(
        container_id=container_id, rootfs=str(rootfs), user=user, hostname="buildkitsandbox",
        netns=None if request.network == "host" else "", hosts_file=str(hosts), resolv_conf_file=str(resolv),
        cgroup_mode=detect_mode(), hard_limits=hard_limits(),
    )
    options = RunOptions(command=request.argv, entrypoint="", network=request.network)
    image_config = {"Env": list(request.env), "WorkingDir": request.workdir, "User": request.user}
    spec = build_spec(image_config, (), options, ctx)
    mounts = spec["mounts"]
    assert isinstance(mounts, list)
    for index, (path, content, mode) in enumerate(request.files):
        source = base / f"file-{index}"
        source.write_text(content)
        os.chmod(source, mode)
        mounts.append({"destination": path, "type": "bind", "source": str(source), "options": ["rbind", "ro"]})
    return spec


def _read_or(path: Path, default: bytes) -> bytes:
    try:
        return path.read_bytes()
    except OSError:
        return default


async def _run_runc(runtime: OciRuntime, container_id: str, bundle: Path,
                    on_line: Callable[[str, str], None]) -> int:
    from engine.runtime.runc import last_error

    args = [*runtime.base(), "run", "--bundle", str(bundle), container_id]
    try:
        process = await asyncio.create_subprocess_exec(
            *args, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE, cwd=bundle,
        )
    except OSError as exc:
        raise from_os_error(exc, f"cannot start {runtime.name}") from exc
    runtime_errors: list[str] = []

    async def pump(stream: asyncio.StreamReader | None, name: str) -> None:
        if stream is None:
            return
        while True:
            raw = await stream.readline()
            if not raw:
                return
            line = raw.decode("utf-8", "replace").rstrip("\r\n")
            if name == "stderr" and "level=error" in line and runtime.name in ("runc", "crun"):
                runtime_errors.append(line)
                continue
            on_line(name, line)

    try:
        await asyncio.gather(pump(process.stdout, "stdout"), pump(process.stderr, "stderr"))
        code = await process.wait()
    except asyncio.CancelledError:
        with contextlib.suppress(ProcessLookupError):
            process.kill()
        subprocess_args = [*runtime.base(), "delete", "--force", container_id]
        await (await asyncio.create_subprocess_exec(*subprocess_args)).wait()
        raise
    if runtime_errors and code != 0:
        raise ContainerRuntimeError(f"{runtime.name}: {last_error(runtime_errors[-1])}")
    return code


def _remove_stub(path: Path) -> None:
    """Drop a mount point runc created (an empty dir or file), never real content."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    import stat as _stat

    with contextlib.suppress(OSError):
        if _stat.S_ISDIR(st.st_mode):
            os.rmdir(path)  # only when empty
        elif _stat.S_ISREG(st.st_mode) and st.st_size == 0:
            os.unlink(path)
