"""Container lifecycle on disk (synchronous): create, start, stop, kill, remove, list, inspect.

``ContainerService`` (service.py) is the async face of this class; the CLI's hot path (``run``) can
use it directly.  State lives under ``$DOCKYARD_ROOT/containers/<id>/`` (see record.py); runc's own
state under ``$DOCKYARD_ROOT/runtime/<runtime>``.
"""

from __future__ import annotations

import contextlib
import json
import os
import resource
import shutil
import time
from collections.abc import Mapping
from dataclasses import dataclass, replace
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from engine.config import EngineConfig
from engine.errors import (
    ConflictError,
    ContainerNotFoundError,
    ContainerRuntimeError,
    EngineError,
    InvalidInputError,
    NetworkSetupError,
    PortInUseError,
)
from engine.runtime import cgroups
from engine.runtime.options import RunOptions
from engine.runtime.record import (
    ContainerDir,
    ContainerRecord,
    ContainerState,
    format_rfc3339,
    now_rfc3339,
    parse_rfc3339,
)
from engine.runtime.runc import OciRuntime, find_runtime
from engine.runtime.status import parse_signal, status_text

if TYPE_CHECKING:  # engine.summaries is imported where used: ``dockyard run`` does not pay for it
    from engine.net.network import BridgeNetwork
    from engine.summaries import ContainerSummary, PortSummary

_RLIMIT_NAMES = ("NOFILE", "NPROC", "CORE", "STACK", "MEMLOCK", "AS", "CPU", "DATA", "FSIZE", "MSGQUEUE",
                 "NICE", "RSS", "RTPRIO", "RTTIME", "SIGPENDING")
_RLIMITS = {f"RLIMIT_{n}": getattr(resource, f"RLIMIT_{n}") for n in _RLIMIT_NAMES if hasattr(resource, f"RLIMIT_{n}")}


def hard_limits() -> dict[str, int | None]:
    out: dict[str, int | None] = {}
    for name, kind in _RLIMITS.items():
        hard = resource.getrlimit(kind)[1]
        out[name] = None if hard == resource.RLIM_INFINITY else hard
    return out


@dataclass(frozen=True, slots=True)
class Started:
    """What ``start`` reports: the record (state running, or created when waiting for attach) and ports."""

    record: ContainerRecord
    ports: tuple[PortSummary, ...]


def _single_threaded() -> bool:
    """Forking the monitor is only safe with no other thread (that could hold a lock) alive."""
    import threading

    return threading.active_count() == 1


def _monitor_alive(pid: int, cdir: ContainerDir) -> bool:
    return pid > 0 and cdir.monitor_running()


def _port_summaries(ports: list[dict[str, Any]]) -> tuple[PortSummary, ...]:
    if not ports:
        return ()
    from engine.summaries import PortSummary

    return tuple(PortSummary(p["host_ip"], int(p["host_port"]), int(p["container_port"]), p.get("protocol", "tcp"))
                 for p in ports)


class ContainerManager:
    def __init__(self, config: EngineConfig) -> None:
        self.config = config
        self.containers_dir = config.containers_dir

    # ---- plumbing -----------------------------------------------------------------------------------

    @cached_property
    def runtime(self) -> OciRuntime:
        return find_runtime(self.config.runtime, self.config.root / "runtime", cgroups.detect_mode())

    def _runtime_for(self, record: ContainerRecord) -> OciRuntime:
        runtime = self.runtime
        if record.runtime != runtime.name:
            return find_runtime(record.runtime, self.config.root / "runtime", cgroups.detect_mode())
        return runtime

    def _network(self) -> BridgeNetwork:
        from engine.net.network import BridgeNetwork

        return BridgeNetwork(self.config.net_dir, bridge=self.config.bridge_name, subnet=self.config.subnet)

    def dirs(self) -> list[ContainerDir]:
        try:
            entries = list(os.scandir(self.containers_dir))
        except FileNotFoundError:
            return []
        return [ContainerDir(Path(e.path)) for e in entries
                if e.is_dir() and not e.name.startswith(".") and len(e.name) == 64]

    def records(self) -> list[ContainerRecord]:
        out: list[ContainerRecord] = []
        for cdir in self.dirs():
            with contextlib.suppress(ContainerNotFoundError, ContainerRuntimeError):
                out.append(self.refresh(cdir, cdir.load()))
        out.sort(key=lambda r: r.created, reverse=True)
        return out

    def find(self, name_or_id: str) -> ContainerDir:
        """By full id, name, or unique id prefix (docker's order)."""
        text = name_or_id.strip().lstrip("/")
        if not text:
            raise ContainerNotFoundError("no such container: ''")
        if len(text) == 64:
            cdir = ContainerDir(self.containers_dir / text)
            if cdir.exists():
                return cdir
        dirs = self.dirs()
        prefixed: list[ContainerDir] = []
        for cdir in dirs:
            with contextlib.suppress(EngineError):
                if cdir.load().name == text:
                    return cdir
            if cdir.id.startswith(text):
                prefixed.append(cdir)
        if len(prefixed) == 1 and all(c in "0123456789abcdef" for c in text):
            return prefixed[0]
        if len(prefixed) > 1:
            raise InvalidInputError(f"multiple containers match {text!r}; give more of the id")
        raise ContainerNotFoundError(f"no such container: {text}")

    def load(self, name_or_id: str) -> tuple[ContainerDir, ContainerRecord]:
        cdir = self.find(name_or_id)
        return cdir, self.refresh(cdir, cdir.load())

    def refresh(self, cdir: ContainerDir, record: ContainerRecord) -> ContainerRecord:
        """Reconcile a record whose monitor died (crash, reboot): the container is reported as exited."""
        state = record.state
        if state.status not in ("running",) or _monitor_alive(state.monitor_pid, cdir):
            return record
        runc_state = self._runtime_for(record).state(record.id)
        if runc_state is not None and runc_state.get("status") in ("running", "paused"):
            return record  # still running without its monitor: stop/rm still work through runc
        with contextlib.suppress(EngineError):
            self._runtime_for(record).delete(record.id, force=True)
        from engine.runtime.teardown import release_mounts

        with contextlib.suppress(EngineError, OSError):
            release_mounts(cdir)
        return cdir.update(lambda r: r.with_state(
            status="exited", exit_code=r.state.exit_code or 255, pid=0, monitor_pid=0,
            finished_at=r.state.finished_at or now_rfc3339(), error=r.state.error or "monitor died",
        ) if r.state.status == "running" else r)

    # ---- create ---------------------------------------------------------------------------------------

    def create(self, image: str, options: RunOptions, caller_env: Mapping[str, str] | None = None) -> ContainerRecord:
        from engine.store.layout import ImageStore

        store = ImageStore(self.config.store_dir)
        resolved = store.resolve(image)
        requested_ports = self._requested_ports(options, dict(resolved.config.config))
        container_id, pool_left = self._new_id(options)
        record = self._create(store, resolved, image, options, caller_env, requested_ports, container_id)
        self._after_claim(options, pool_left)
        return record

    def run(self, image: str, options: RunOptions, caller_env: Mapping[str, str] | None = None, *,
            wait_attach: bool = False) -> Started:
        """create + start, with the monitor booting while the container is prepared.

        Ports are bound before anything is created: a taken port fails with nothing left behind.
        """
        from engine.runtime.launcher import MonitorLauncher
        from engine.store.layout import ImageStore

        store = ImageStore(self.config.store_dir)
        resolved = store.resolve(image)
        requested_ports = self._requested_ports(options, dict(resolved.config.config))
        self.runtime  # noqa: B018 - fail on a missing runtime before anything is made
        bound = self._bind(requested_ports, options.name or "the container")
        container_id, pool_left = self._new_id(options)
        try:
            launcher = MonitorLauncher(self.containers_dir / container_id, bound.fds() if bound else (),
                                       fork=_single_threaded())
            try:
                record = self._create(store, resolved, image, options, caller_env, requested_ports, container_id)
            except BaseException:
                launcher.abort()
                raise
            cdir = ContainerDir(self.containers_dir / container_id)
            try:
                started = self._launch(cdir, record, launcher, bound, wait_attach)
            except BaseException:
                if options.remove:
                    with contextlib.suppress(Exception):
                        self.remove(container_id, force=True)
                raise
        finally:
            if bound is not None:
                bound.close()
        self._after_claim(options, pool_left)
        return started

    def _new_id(self, options: RunOptions) -> tuple[str, int | None]:
        """A new container id and, for a bridge container, how many ready pool attachments are left.

        A bridge container takes its id from a ready attachment of the network's pool when there is
        one (engine/net/pool.py: ``attach`` then needs no netlink); ``None`` when it did not.
        """
        if options.network == "bridge":
            with contextlib.suppress(NetworkSetupError):
                claimed = self._network().claim()
                if claimed is not None:
                    return claimed
        return os.urandom(32).hex(), None

    def _after_claim(self, options: RunOptions, pool_left: int | None) -> None:
        """Refill the pool in the background once this container is up, when this run drained it (or
        found it empty: then this process has loaded pyroute2 already and the forked filler is cheap)."""
        if options.network == "bridge" and not pool_left:
            self._network().fill_in_background()

    def _create(self, store: Any, resolved: Any, image: str, options: RunOptions,
                caller_env: Mapping[str, str] | None, requested_ports: list[dict[str, Any]],
                container_id: str) -> ContainerRecord:
        from engine.runtime import snapshots
        from engine.runtime.health import effective_healthcheck
        from engine.runtime.spec import SpecContext, build_spec
        from engine.runtime.userdb import lookup_user_in_rootfs

        runtime = self.runtime
        image_config = dict(resolved.config.config)
        self.containers_dir.mkdir(parents=True, exist_ok=True)
        with self._names_lock():
            taken = {r.name: r.id for r in self._raw_records()}
            if options.name is not None:
                if options.name in taken:
                    raise ConflictError(
                        f'the container name "/{options.name}" is already in use by container '
                        f'"{taken[options.name]}"; remove (or rename) that container to reuse the name'
                    )
                name = options.name
            else:
                from engine.runtime.names import random_name

                name = random_name(taken)
            cdir = ContainerDir(self.containers_dir / container_id)
            cdir.path.mkdir(mode=0o700)
            hostname = options.hostname or container_id[:12]
            health = effective_healthcheck(resolved.config.healthcheck, options.health)
            record = ContainerRecord(
                id=container_id, name=name, image=image, image_id=str(resolved.config.digest),
                created=now_rfc3339(), args=(), options=options, hostname=hostname, runtime=runtime.name,
                stop_signal=options.stop_signal or resolved.config.stop_signal or "SIGTERM",
                stop_timeout=options.stop_timeout if options.stop_timeout is not None else 10,
                healthcheck=health.to_docker() if health else None,
                network={"mode": options.network, "requested_ports": requested_ports},
                image_config=image_config, state=ContainerState(status="creating"),
            )
            cdir.save(record)  # claims the name
        network: dict[str, Any] = {"mode": options.network, "requested_ports": requested_ports}
        try:
            snaps = snapshots.SnapshotStore(self.config.snapshots_dir)
            layers = resolved.manifest.layers

            def open_layer(index: int) -> Any:
                return store.open_blob(layers[index].digest)

            lowers = snaps.ensure(resolved.config.diff_ids, open_layer)
            snapshots.prepare_rootfs(lowers, cdir.upper, cdir.work, cdir.rootfs)
            record = replace(record, lowerdirs=tuple(str(p) for p in lowers))
            user_spec = options.user if options.user is not None else resolved.config.user
            user = lookup_user_in_rootfs(cdir.rootfs, user_spec, options.group_add)
            netns: str | None
            if options.network == "bridge":
                net = self._network()
                attachment = net.attach(container_id, name=name, hostname=hostname, etc_dir=cdir.etc)
                network.update({"state_dir": str(self.config.net_dir), "bridge": self.config.bridge_name,
                                "subnet": self.config.subnet, "attachment": attachment.to_dict()})
                netns = attachment.netns_path
            else:
                from engine.net.etcfiles import write_etc_files

                write_etc_files(cdir.etc, hostname=hostname, mode=_mode(options.network), name=name)
                netns = None if options.network == "host" else ""
            record = replace(record, network=network)
            volume_dirs, mounts = self._prepare_volumes(cdir, resolved.config.volumes, options)
            mode = cgroups.detect_mode()
            ctx = SpecContext(
                container_id=container_id, rootfs=str(cdir.rootfs), user=user, hostname=hostname, netns=netns,
                hosts_file=str(cdir.etc / "hosts"), hostname_file=str(cdir.etc / "hostname"),
                resolv_conf_file=str(cdir.etc / "resolv.conf"), volume_dirs=volume_dirs, cgroup_mode=mode,
                cgroups_path=cgroups.cgroups_path(container_id), hard_limits=hard_limits(),
                console_size=_terminal_size() if options.tty else None,
            )
            spec = build_spec(image_config, resolved.config.volumes, options, ctx, caller_env or {})
            cdir.bundle.mkdir(exist_ok=True)
            cdir.spec.write_text(json.dumps(spec, indent=1))
            record = replace(record, args=tuple(spec["process"]["args"]), mounts=tuple(mounts),
                             state=ContainerState(status="created"))
            cdir.save(record)
        except BaseException:
            from engine.runtime.teardown import teardown

            with contextlib.suppress(Exception):
                teardown(runtime, cdir, network)
            raise
        return record

    def _requested_ports(self, options: RunOptions, image_config: Mapping[str, Any]) -> list[dict[str, Any]]:
        if not options.publish and not options.publish_all:
            return []
        from engine.net.network import mappings_to_forward
        from engine.net.ports import check_conflicts, parse_publish_all, publish_all

        mappings = parse_publish_all(options.publish)
        if options.publish_all:
            explicit = {(m.container_port, m.protocol) for m in mappings}
            extra = [m for m in publish_all(image_config.get("ExposedPorts") or {})
                     if (m.container_port, m.protocol) not in explicit]
            mappings += extra
            check_conflicts(mappings)
        # host: the container listens on the host itself; none: refused when ports are asked for
        mappings = mappings_to_forward(_mode(options.network), mappings) if options.network != "host" else []
        return [m.to_dict() for m in mappings]

    def _raw_records(self) -> list[ContainerRecord]:
        out = []
        for cdir in self.dirs():
            with contextlib.suppress(EngineError):
                out.append(cdir.load())
        return out

    @contextlib.contextmanager
    def _names_lock(self) -> Any:
        from engine.store.locking import file_lock

        with file_lock(self.containers_dir / ".names.lock"):
            yield

    def _prepare_volumes(self, cdir: ContainerDir, image_volumes: tuple[str, ...], options: RunOptions
                         ) -> tuple[dict[str, str], list[dict[str, Any]]]:
        from engine.runtime.userdb import resolve_in_root

        volume_dirs: dict[str, str] = {}
        mounts: list[dict[str, Any]] = []
        user_targets = {v.target.rstrip("/") for v in options.volumes}
        anonymous = ["/" + v.strip("/") for v in image_volumes if "/" + v.strip("/") not in user_targets]
        anonymous += [v.target for v in options.volumes if v.source is None]
        for index, target in enumerate(anonymous):
            host_dir = cdir.volumes / f"{index}-{os.urandom(4).hex()}"
            host_dir.mkdir(parents=True)
            source = resolve_in_root(cdir.rootfs, target)
            if source.is_dir():  # docker copies the image's content into a new volume
                shutil.copytree(source, host_dir, symlinks=True, dirs_exist_ok=True)
                shutil.copystat(source, host_dir)
            volume_dirs[target] = str(host_dir)
            mounts.append({"Type": "volume", "Name": host_dir.name, "Source": str(host_dir),
                           "Destination": target, "Mode": "", "RW": True, "Propagation": ""})
        for volume in options.volumes:
            if volume.source is None:
                continue
            if volume.is_named:
                host_dir = self.config.root / "volumes" / volume.source / "_data"
                host_dir.mkdir(parents=True, exist_ok=True)
                volume_dirs[volume.target] = str(host_dir)
                kind = "volume"
            else:
                host_dir = Path(volume.source)
                if not host_dir.exists():
                    host_dir.mkdir(parents=True)  # docker creates a missing bind source
                kind = "bind"
            mounts.append({"Type": kind, "Source": str(host_dir), "Destination": volume.target,
                           "Mode": "ro" if volume.read_only else "", "RW": not volume.read_only,
                           "Propagation": "rprivate" if kind == "bind" else "",
                           **({"Name": volume.source} if kind == "volume" else {})})
        return volume_dirs, mounts

    # ---- start ------------------------------------------------------------------------------------------

    def start(self, name_or_id: str, *, wait_attach: bool = False) -> Started:
        """Start the container under a new monitor; ports are bound first (PortInUseError: nothing runs).

        With ``wait_attach`` the process starts when the first client connects to its attach socket.
        """
        cdir, record = self.load(name_or_id)
        if record.state.status == "running":
            return Started(record, _port_summaries(record.network.get("ports") or []))
        if record.state.status in ("creating", "removing"):
            raise ConflictError(f"container {record.name} is being {record.state.status[:-3]}ed")
        self._wait_monitor_gone(cdir, record)
        from engine.runtime import snapshots

        if not snapshots.is_mountpoint(cdir.rootfs):
            snapshots.prepare_rootfs([Path(p) for p in record.lowerdirs], cdir.upper, cdir.work, cdir.rootfs)
        from engine.runtime.launcher import MonitorLauncher

        bound = self._bind(record.network.get("requested_ports") or [], record.name)
        try:
            launcher = MonitorLauncher(cdir.path, bound.fds() if bound else (), fork=_single_threaded())
            return self._launch(cdir, record, launcher, bound, wait_attach)
        finally:
            if bound is not None:
                bound.close()

    def _launch(self, cdir: ContainerDir, record: ContainerRecord, launcher: Any, bound: Any,
                wait_attach: bool) -> Started:
        runtime = self._runtime_for(record)
        try:
            if (runtime.root / record.id).exists():
                runtime.delete(record.id, force=True)
            ports = [m.to_dict() for m in bound.mappings] if bound is not None else []
            record = cdir.update(lambda r: replace(r, network={**r.network, "ports": ports}))
        except BaseException:
            launcher.abort()
            raise
        params: dict[str, Any] = {
            "runtime": {"name": runtime.name, "binary": runtime.binary, "root": str(runtime.root)},
            "wait_attach": wait_attach,
            "ports": bound.handoff() if bound is not None else [],
            "target_ip": (record.network.get("attachment") or {}).get("ip"),
            "health": self._health_params(record),
            # a single-threaded caller (the CLI) keeps the network's pool of attachments warm
            "refill_pool": _single_threaded(),
        }
        message = launcher.go(params)
        if not message.get("ok"):
            raise ContainerRuntimeError(str(message.get("error") or "the container monitor failed"))
        return Started(cdir.load(), _port_summaries(ports))

    def _bind(self, requested: list[dict[str, Any]], name: str) -> Any:
        if not requested:
            return None
        from engine.net.forward import bind_all
        from engine.net.ports import PortMapping

        try:
            return bind_all([PortMapping.from_dict(p) for p in requested])
        except PortInUseError as exc:
            raise PortInUseError(f"cannot start {name}: {exc.message}") from exc

    @staticmethod
    def _health_params(record: ContainerRecord) -> dict[str, Any] | None:
        if not record.healthcheck:
            return None
        from engine.runtime.health import HealthConfig

        config = HealthConfig.from_docker(record.healthcheck)
        if config is None:
            return None
        return {"test": list(config.test), "interval": config.interval, "timeout": config.timeout,
                "retries": config.retries, "start_period": config.start_period}

    def _wait_monitor_gone(self, cdir: ContainerDir, record: ContainerRecord, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while _monitor_alive(record.state.monitor_pid, cdir) and time.monotonic() < deadline:
            time.sleep(0.01)
            record = cdir.load()

    # ---- stop, kill, wait, remove ------------------------------------------------------------------------

    def kill(self, name_or_id: str, sig: str | int = "SIGKILL") -> ContainerRecord:
        _, record = self.load(name_or_id)
        number = parse_signal(sig)
        if record.state.status != "running":
            raise ConflictError(f"container {record.name} is not running")
        self._runtime_for(record).kill(record.id, str(number))
        return record

    def stop(self, name_or_id: str, timeout: float | None = None) -> ContainerRecord:
        """STOPSIGNAL, then SIGKILL after ``timeout`` seconds (the record's, default 10)."""
        cdir, record = self.load(name_or_id)
        if record.state.status != "running":
            return record
        runtime = self._runtime_for(record)
        grace = record.stop_timeout if timeout is None else timeout
        if grace > 0:
            runtime.kill(record.id, str(parse_signal(record.stop_signal)))
            record = self.wait_exit(cdir, grace)
        if record.state.status == "running":
            runtime.kill(record.id, "9", all_processes=True)
            record = self.wait_exit(cdir, 30.0)
        if record.state.status == "running":
            raise ContainerRuntimeError(f"container {record.name} did not stop after SIGKILL")
        return record

    def wait_exit(self, cdir: ContainerDir, timeout: float | None) -> ContainerRecord:
        """Poll the record until the container is no longer running (or ``timeout`` passes)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        delay = 0.005
        while True:
            record = self.refresh(cdir, cdir.load())
            if record.state.status != "running":
                return record
            if deadline is not None and time.monotonic() >= deadline:
                return record
            time.sleep(delay)
            delay = min(delay * 2, 0.05)

    def remove(self, name_or_id: str, *, force: bool = False, volumes: bool = False) -> str:
        from engine.runtime.teardown import teardown

        cdir, record = self.load(name_or_id)
        runtime = self._runtime_for(record)
        if record.state.status == "running":
            if not force:
                raise ConflictError(
                    f"you cannot remove a running container {record.id[:12]}; stop the container before "
                    "attempting removal or force remove"
                )
            with contextlib.suppress(EngineError):
                runtime.kill(record.id, "9", all_processes=True)
            self.wait_exit(cdir, 10.0)
        record = cdir.update(lambda r: r.with_state(status="removing"))
        self._wait_monitor_gone(cdir, record, 10.0)
        monitor = record.state.monitor_pid
        if _monitor_alive(monitor, cdir):
            with contextlib.suppress(OSError):
                os.kill(monitor, 9)
        problems = teardown(runtime, cdir, record.network, refill="background")
        if problems:
            raise ContainerRuntimeError(f"removing {record.name}: {'; '.join(problems)}")
        return record.id

    # ---- views ------------------------------------------------------------------------------------------------

    def summary(self, record: ContainerRecord) -> ContainerSummary:
        from engine.summaries import ContainerSummary

        state = record.state
        now = time.time()
        since: float | None = None
        if state.status == "running" and state.started_at:
            since = now - parse_rfc3339(state.started_at)
        elif state.status == "exited" and state.finished_at:
            since = now - parse_rfc3339(state.finished_at)
        health = state.health.status if state.health else None
        status = "exited" if state.status == "exited" else state.status
        attachment = record.network.get("attachment") or {}
        return ContainerSummary(
            id=record.id, name=record.name, image=record.image, image_id=record.image_id,
            command=" ".join(record.args), state=status if status != "creating" else "created",
            status=status_text(status, since=since, exit_code=state.exit_code, health=health),
            created=record.created, started_at=state.started_at, finished_at=state.finished_at,
            exit_code=state.exit_code if status == "exited" else None, health=health,
            ports=_port_summaries(record.network.get("ports") or []) if status == "running" else (),
            ip_address=attachment.get("ip"), pid=state.pid or None,
        )

    def inspect(self, name_or_id: str) -> dict[str, Any]:
        cdir, record = self.load(name_or_id)
        return inspect_document(record, cdir)


def inspect_document(record: ContainerRecord, cdir: ContainerDir) -> dict[str, Any]:
    """docker's ``container inspect`` shape (the fields tools read)."""
    state = record.state
    options = record.options
    attachment = record.network.get("attachment") or {}
    running = state.status == "running"
    ports: dict[str, Any] = {}
    bindings: dict[str, Any] = {}
    for p in record.network.get("requested_ports") or []:
        key = f"{p['container_port']}/{p.get('protocol', 'tcp')}"
        bindings.setdefault(key, []).append(
            {"HostIp": p["host_ip"], "HostPort": str(p["host_port"]) if p["host_port"] else ""})
    for key in (record.image_config.get("ExposedPorts") or {}):
        ports.setdefault(key if "/" in key else f"{key}/tcp", None)
    if running:
        for p in record.network.get("ports") or []:
            key = f"{p['container_port']}/{p.get('protocol', 'tcp')}"
            ports[key] = [*(ports.get(key) or []), {"HostIp": p["host_ip"], "HostPort": str(p["host_port"])}]
    health: dict[str, Any] | None = None
    if state.health is not None:
        health = {"Status": state.health.status, "FailingStreak": state.health.failing_streak,
                  "Log": list(state.health.log)}
    config: dict[str, Any] = {
        "Hostname": record.hostname, "User": options.user or record.image_config.get("User", ""),
        "Env": _spec_env(cdir), "Cmd": list(options.command) or record.image_config.get("Cmd"),
        "Entrypoint": ([options.entrypoint] if options.entrypoint else []) if options.entrypoint is not None
        else record.image_config.get("Entrypoint"),
        "Image": record.image, "WorkingDir": options.workdir or record.image_config.get("WorkingDir", ""),
        "Labels": {**(record.image_config.get("Labels") or {}), **dict(options.labels)},
        "Tty": options.tty, "OpenStdin": options.interactive, "AttachStdin": options.interactive,
        "ExposedPorts": record.image_config.get("ExposedPorts") or {},
        "Volumes": record.image_config.get("Volumes"), "StopSignal": record.stop_signal,
        "StopTimeout": record.stop_timeout,
    }
    if record.healthcheck:
        config["Healthcheck"] = record.healthcheck
    network_settings: dict[str, Any] = {
        "Ports": ports, "IPAddress": attachment.get("ip", ""), "Gateway": attachment.get("gateway", ""),
        "IPPrefixLen": attachment.get("prefixlen", 0), "MacAddress": attachment.get("mac", ""),
        "SandboxKey": attachment.get("netns_path", ""),
        "Networks": {record.network.get("mode", "bridge"): {
            "IPAddress": attachment.get("ip", ""), "Gateway": attachment.get("gateway", ""),
            "MacAddress": attachment.get("mac", ""), "IPPrefixLen": attachment.get("prefixlen", 0),
        }},
    }
    return {
        "Id": record.id,
        "Created": record.created,
        "Path": record.args[0] if record.args else "",
        "Args": list(record.args[1:]),
        "State": {
            "Status": "created" if state.status == "creating" else state.status, "Running": running,
            "Paused": False, "Restarting": False, "OOMKilled": state.oom_killed, "Dead": state.status == "dead",
            "Pid": state.pid if running else 0, "ExitCode": state.exit_code, "Error": state.error,
            "StartedAt": state.started_at or "0001-01-01T00:00:00Z",
            "FinishedAt": state.finished_at or "0001-01-01T00:00:00Z",
            **({"Health": health} if health is not None else {}),
        },
        "Image": record.image_id,
        "ResolvConfPath": str(cdir.etc / "resolv.conf"),
        "HostnamePath": str(cdir.etc / "hostname"),
        "HostsPath": str(cdir.etc / "hosts"),
        "LogPath": str(cdir.log),
        "Name": "/" + record.name,
        "RestartCount": state.restart_count,
        "Driver": "overlay",
        "Platform": "linux",
        "HostConfig": {
            "Binds": [str(v) for v in options.volumes if v.source is not None],
            "NetworkMode": options.network, "PortBindings": bindings, "AutoRemove": options.remove,
            "PublishAllPorts": options.publish_all, "ReadonlyRootfs": options.read_only,
            "Memory": options.memory or 0, "NanoCpus": int((options.cpus or 0) * 1e9),
            "Runtime": record.runtime, "LogConfig": {"Type": "json-file", "Config": {}},
        },
        "GraphDriver": {"Name": "overlay", "Data": {
            "LowerDir": ":".join(reversed(record.lowerdirs)), "UpperDir": str(cdir.upper),
            "WorkDir": str(cdir.work), "MergedDir": str(cdir.rootfs)}},
        "Mounts": list(record.mounts),
        "Config": config,
        "NetworkSettings": network_settings,
    }


def _spec_env(cdir: ContainerDir) -> list[str]:
    try:
        spec = json.loads(cdir.spec.read_bytes())
        return list(spec["process"]["env"])
    except (OSError, ValueError, KeyError):
        return []


def _mode(network: str) -> Literal["bridge", "host", "none"]:
    if network == "host":
        return "host"
    return "none" if network == "none" else "bridge"


def _terminal_size() -> tuple[int, int] | None:
    for fd in (0, 1, 2):
        with contextlib.suppress(OSError):
            size = os.get_terminal_size(fd)
            return size.lines, size.columns
    return None


__all__ = ["ContainerManager", "NetworkSetupError", "Started", "format_rfc3339", "hard_limits",
           "inspect_document"]
