"""Interop both ways with the referees: skopeo and docker (dockerd 20.10) against the real registry."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from engine.events import Event, TransferFinished
from engine.oci import mediatypes as mt
from engine.oci.reference import Reference
from engine.registry.client import RegistryClient
from engine.registry.pull import pull_image
from engine.registry.push import push_image
from engine.store.importer import import_rootfs
from engine.store.layout import ImageStore
from tests.images import have_busybox, make_busybox_tar

if TYPE_CHECKING:
    from tests.registryfixtures import RunningRegistry

pytest_plugins = ["tests.registryfixtures"]
pytestmark = [pytest.mark.registry,
              pytest.mark.skipif(not have_busybox(), reason="busybox-static is not installed")]

SKOPEO = shutil.which("skopeo")
DOCKERD = shutil.which("dockerd")
DOCKER = shutil.which("docker")


@pytest.fixture(scope="module")
def busybox_tar(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_busybox_tar(tmp_path_factory.mktemp("busybox") / "busybox.tar")


async def drain(stream: AsyncIterator[Event]) -> list[Event]:
    return [event async for event in stream]


def skopeo(*args: str) -> str:
    assert SKOPEO is not None
    done = subprocess.run([SKOPEO, *args], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.mark.skipif(SKOPEO is None, reason="skopeo is not installed")
async def test_skopeo_reads_what_dockyard_pushes(
    open_registry: RunningRegistry, busybox_tar: Path, tmp_path: Path,
) -> None:
    ref = Reference.parse(f"{open_registry.host}/interop-{secrets.token_hex(4)}/bb:1")
    store = ImageStore(tmp_path / "store")
    image = import_rootfs(store, busybox_tar, ref, changes=("LABEL via=dockyard",))
    async with RegistryClient(ref.registry) as client:
        events = await drain(push_image(client, store, image, ref))
    assert isinstance(events[-1], TransferFinished)
    info = json.loads(skopeo("inspect", "--tls-verify=false", f"docker://{ref}"))
    assert info["Digest"] == str(image.manifest_digest)
    assert info["Labels"] == {"via": "dockyard"}
    assert info["Layers"] == [str(layer.digest) for layer in image.manifest.layers]
    skopeo("copy", "-q", "--src-tls-verify=false", f"docker://{ref}", f"oci:{tmp_path / 'copy'}:x")
    index = json.loads((tmp_path / "copy" / "index.json").read_text())
    assert index["manifests"][0]["digest"] == str(image.manifest_digest)


@pytest.mark.skipif(SKOPEO is None, reason="skopeo is not installed")
async def test_dockyard_pulls_what_skopeo_pushes(
    open_registry: RunningRegistry, busybox_tar: Path, tmp_path: Path,
) -> None:
    local = Reference.parse("example.test/skopeo/source:1")
    source = ImageStore(tmp_path / "source")
    image = import_rootfs(source, busybox_tar, local)
    target = Reference.parse(f"{open_registry.host}/interop-{secrets.token_hex(4)}/fromskopeo:2")
    # skopeo reads our store as an OCI layout and pushes it.
    skopeo("copy", "-q", "--dest-tls-verify=false", f"oci:{source.root}:{local}", f"docker://{target}")
    pushed = json.loads(skopeo("inspect", "--raw", "--tls-verify=false", f"docker://{target}"))
    dest = ImageStore(tmp_path / "dest")
    async with RegistryClient(target.registry) as client:
        events = await drain(pull_image(client, dest, target))
    finished = events[-1]
    assert isinstance(finished, TransferFinished)
    got = dest.resolve(str(target))
    assert got.manifest.config.digest == image.manifest.config.digest
    assert [layer.digest for layer in got.manifest.layers] == [layer.digest for layer in image.manifest.layers]
    assert str(got.manifest.config.digest) == pushed["config"]["digest"]
    info = json.loads(skopeo("inspect", "--tls-verify=false", f"docker://{target}"))
    assert finished.manifest_digest == info["Digest"]
    assert dest.fsck().clean


# ---- docker -------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def dockerd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    if DOCKERD is None or DOCKER is None:
        pytest.skip("dockerd / docker are not installed")
    if os.geteuid() != 0:
        pytest.skip("dockerd needs root")
    base = tmp_path_factory.mktemp("dockerd")
    sock = base / "docker.sock"
    log = open(base / "dockerd.log", "wb")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(
        [DOCKERD, "--iptables=false", "--ip6tables=false", "--bridge=none", "--data-root", str(base / "data"),
         "--exec-root", str(base / "exec"), "--pidfile", str(base / "docker.pid"), "-H", f"unix://{sock}"],
        stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
    )
    env = {**os.environ, "DOCKER_HOST": f"unix://{sock}", "DOCKER_CONFIG": str(base / "cli")}
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                pytest.fail(f"dockerd exited: {(base / 'dockerd.log').read_text()[-1500:]}")
            if sock.exists() and subprocess.run([DOCKER, "version"], env=env, capture_output=True).returncode == 0:
                break
            time.sleep(0.1)
        else:
            pytest.fail("dockerd did not start")
        yield env
    finally:
        os.kill(proc.pid, signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(5)
        log.close()


def docker(env: dict[str, str], *args: str) -> str:
    assert DOCKER is not None
    done = subprocess.run([DOCKER, *args], env=env, capture_output=True, text=True, timeout=90)
    assert done.returncode == 0, f"docker {' '.join(args)}: {done.stderr}"
    return done.stdout


@pytest.mark.root
async def test_docker_pulls_and_runs_what_dockyard_pushes(
    dockerd: dict[str, str], open_registry: RunningRegistry, busybox_tar: Path, tmp_path: Path,
) -> None:
    ref = Reference.parse(f"{open_registry.host}/interop-{secrets.token_hex(4)}/runme:1")
    store = ImageStore(tmp_path / "store")
    image = import_rootfs(store, busybox_tar, ref, changes=('CMD ["/bin/echo", "hello from dockyard"]',))
    async with RegistryClient(ref.registry) as client:
        await drain(push_image(client, store, image, ref))
    docker(dockerd, "pull", "-q", str(ref))
    repo_digests = json.loads(docker(dockerd, "image", "inspect", "--format", "{{json .RepoDigests}}", str(ref)))
    assert repo_digests == [f"{ref.name}@{image.manifest_digest}"]
    out = docker(dockerd, "run", "--rm", "--network", "none", str(ref))
    assert out.strip() == "hello from dockyard"

    # And back: docker pushes (Docker schema2), dockyard pulls with the same digests.
    again = Reference.parse(f"{open_registry.host}/interop-{secrets.token_hex(4)}/fromdocker:3")
    docker(dockerd, "tag", str(ref), str(again))
    docker(dockerd, "push", "-q", str(again))
    pushed = json.loads(docker(dockerd, "image", "inspect", "--format", "{{json .RepoDigests}}", str(again)))
    digest = next(d.split("@", 1)[1] for d in pushed if d.startswith(again.name + "@"))
    dest = ImageStore(tmp_path / "dest")
    async with RegistryClient(again.registry) as client:
        events = await drain(pull_image(client, dest, again))
    finished = events[-1]
    assert isinstance(finished, TransferFinished) and finished.manifest_digest == digest
    got = dest.resolve(str(again))
    assert got.manifest.media_type == mt.DOCKER_MANIFEST
    assert got.config.cmd == ("/bin/echo", "hello from dockyard")
    assert dest.resolve(f"{again.name}@{digest}").id == got.id
    assert dest.fsck().clean
