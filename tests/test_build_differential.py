"""Differential builds: the same Dockerfiles and contexts built by dockyard, buildah and docker's BuildKit
from the same busybox base; the image configs agree field by field and the file systems file by file
(content, mode, owner; mtimes excluded).

buildah runs with a private root (``--root/--runroot``) and ``--format docker`` (OCI configs cannot hold
HEALTHCHECK, ONBUILD or SHELL); heredocs are left out (buildah 1.28 and docker 20.10's built-in frontend
lack them, tests/test_build_builder.py covers them); docker runs as a private dockerd (tests/dockerd.py).
Skips only when runc or buildah/skopeo are absent; without dockerd only buildah is compared.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from engine.api import Engine
from engine.config import EngineConfig
from engine.oci.reference import Reference
from engine.store.archives import save_images
from engine.store.importer import import_rootfs
from tests.buildfixtures import BuilderEnv, directory_tree, need_runc, tar_tree
from tests.dockerd import Dockerd, _unmount_below, dockerd_unavailable, running_dockerd

FIELDS = ("Env", "Cmd", "Entrypoint", "WorkingDir", "User", "ExposedPorts", "Volumes", "Labels", "StopSignal",
          "Healthcheck", "OnBuild", "Shell")
# mount points buildah's RUN leaves behind in its images (empty files, /run); dockyard and BuildKit do not
BUILDAH_STUBS = frozenset({"etc/hostname", "etc/hosts", "etc/resolv.conf", "run"})
PATH_ENV = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

CASES: dict[str, dict[str, str]] = {
    "multistage": {
        "Dockerfile": (
            "ARG BASE=busybox\n"
            "FROM ${BASE} AS build\nARG VERSION=1.2\nENV APP_VERSION=$VERSION APP_HOME=/opt/app\n"
            "WORKDIR $APP_HOME\nCOPY src/ ./src/\n"
            "RUN mkdir -p out && cat src/*.txt > out/all.txt && echo $APP_VERSION > out/version\n"
            "FROM busybox\nARG VERSION\nENV V=${VERSION:-none} HOME_DIR=/srv\n"
            "COPY --from=build --chown=www-data:www-data /opt/app/out /srv/out\n"
            "COPY --chown=nobody:nogroup --chmod=640 conf.ini /etc/app/conf.ini\n"
            "RUN set -e; \\\n    mkdir -p /var/lib/app; \\\n    echo ready > /var/lib/app/state\n"
            "USER www-data\nWORKDIR /srv\nEXPOSE 8080 53/udp\n"
            'CMD ["sh", "-c", "cat /srv/out/all.txt"]\n'
        ),
        "src/a.txt": "alpha\n", "src/b.txt": "beta\n", "conf.ini": "[main]\nkey=value\n",
    },
    "config": {
        "Dockerfile": (
            "FROM busybox\nLABEL org.example.name=demo version=2\n"
            "ENV A=1\nENV B=$A-2 C=\"three words\"\n"
            "RUN rm /etc/group && rm -rf /var/www && mkdir /var/www && echo idx > /var/www/index.html\n"
            "VOLUME /data /logs\nHEALTHCHECK --interval=10s --timeout=3s --retries=2 CMD wget -q -O- localhost\n"
            "STOPSIGNAL SIGQUIT\nSHELL [\"/bin/sh\", \"-ec\"]\nRUN echo $B > /b\n"
            "ENTRYPOINT [\"/bin/sh\"]\n"
        ),
    },
    "onbuild-base": {
        "Dockerfile": "FROM busybox\nONBUILD COPY . /app/\nONBUILD RUN ls /app > /listing\nCMD [\"sh\"]\n",
    },
}
CHILD = {"Dockerfile": "FROM localhost/onbase\nLABEL child=yes\n", "main.py": "print('hi')\n"}


def normalise(config: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name in FIELDS:
        value = config.get(name)
        if name == "Labels" and value:
            value = {k: v for k, v in value.items() if k != "io.buildah.version"}
        out[name] = value or None  # buildah writes [] / {} / "" where docker omits the field
    return out


@dataclass
class Referees:
    dockyard: BuilderEnv
    buildah_root: Path
    docker: Dockerd | None

    def buildah(self, *args: str, timeout: float = 120.0) -> str:
        root = self.buildah_root
        result = subprocess.run(["buildah", "--root", str(root / "root"), "--runroot", str(root / "run"),
                                 "--storage-driver", "overlay", *args], capture_output=True, text=True,
                                timeout=timeout, env=_without("DOCKER_CONFIG"))
        if result.returncode != 0:
            raise AssertionError(f"buildah {' '.join(args)}: {result.stderr.strip()[-2000:]}")
        return result.stdout

    def buildah_build(self, ctx: Path, tag: str) -> dict[str, Any]:
        self.buildah("bud", "--runtime", "/usr/sbin/runc", "--isolation", "chroot", "--layers", "--pull-never",
                     "--format", "docker", "-t", tag, str(ctx))
        data = json.loads(self.buildah("inspect", "--type", "image", tag))
        return dict(data["Docker"]["config"])

    def buildah_tree(self, tag: str) -> dict[str, tuple[Any, ...]]:
        container = self.buildah("from", "--pull-never", tag).strip()
        try:
            mountpoint = Path(self.buildah("mount", container).strip())
            return directory_tree(mountpoint)
        finally:
            self.buildah("rm", container)

    def docker_build(self, ctx: Path, tag: str) -> dict[str, Any]:
        assert self.docker is not None
        env = dict(self.docker.env, DOCKER_BUILDKIT="1")
        result = subprocess.run(["/usr/bin/docker", "build", "--network", "none", "-q", "-t", tag, str(ctx)],
                                env=env, capture_output=True, text=True, timeout=120)
        if result.returncode != 0:
            raise AssertionError(f"docker build: {result.stderr.strip()[-2000:]}")
        data = json.loads(self.docker.docker("image", "inspect", tag).stdout)
        return dict(data[0]["Config"])

    def docker_tree(self, tag: str) -> dict[str, tuple[Any, ...]]:
        assert self.docker is not None
        container = self.docker.docker("create", "--network", "none", tag).stdout.strip()
        try:
            exported = subprocess.run(["docker", "export", container], env=self.docker.env, capture_output=True,
                                      timeout=60, check=True).stdout
        finally:
            self.docker.docker("rm", container)
        tree = tar_tree(io.BytesIO(exported))
        return {k: v for k, v in tree.items() if not _docker_runtime_file(k)}


def _without(name: str) -> dict[str, str]:
    """The environment minus ``name`` (buildah checks that an auth file named by DOCKER_CONFIG exists)."""
    return {k: v for k, v in os.environ.items() if k != name}


def _docker_runtime_file(path: str) -> bool:
    return path in (".dockerenv", "etc/hostname", "etc/hosts", "etc/resolv.conf", "etc/mtab") or \
        path.startswith(("dev/", "proc/", "sys/"))


@pytest.fixture(scope="module")
def dockerd_or_none(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dockerd | None]:
    if dockerd_unavailable() is not None:
        yield None
        return
    with running_dockerd(tmp_path_factory.mktemp("dockerd")) as daemon:
        yield daemon


@pytest.fixture
def referees(busybox_tar: Path, tmp_path: Path, dockerd_or_none: Dockerd | None) -> Iterator[Referees]:
    need_runc()
    for tool in ("buildah", "skopeo"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not installed")
    engine = Engine(EngineConfig.from_env())
    store = engine.images.store
    # PATH in the base config: buildah adds one to images that lack it, docker does not.
    import_rootfs(store, busybox_tar, Reference.parse("busybox"), changes=[f"ENV {PATH_ENV}", 'CMD ["sh"]'])
    workspace = tmp_path / "work"
    workspace.mkdir()
    buildah_root = tmp_path / "bh"
    layout = f"oci:{store.root}:docker.io/library/busybox:latest"
    storage = f"containers-storage:[overlay@{buildah_root}/root+{buildah_root}/run]docker.io/library/busybox:latest"
    subprocess.run(["skopeo", "copy", "-q", layout, storage], check=True, capture_output=True, timeout=60)
    refs = Referees(BuilderEnv(engine, engine.config.root, workspace), buildah_root, dockerd_or_none)
    if dockerd_or_none is not None:
        archive = io.BytesIO()
        save_images(store, ["busybox"], archive)
        dockerd_or_none.docker("load", stdin=archive.getvalue(), timeout=60)
    try:
        yield refs
    finally:
        with contextlib.suppress(AssertionError, subprocess.SubprocessError):
            refs.buildah("rm", "--all")
        _unmount_below(buildah_root)  # containers/storage keeps its overlay dir bind-mounted


def compare_trees(ours: dict[str, tuple[Any, ...]], theirs: dict[str, tuple[Any, ...]], who: str) -> None:
    only_ours = sorted(set(ours) - set(theirs))
    only_theirs = sorted(set(theirs) - set(ours))
    assert not only_ours and not only_theirs, f"{who}: only dockyard {only_ours[:10]}, only {who} {only_theirs[:10]}"
    differ = {k: (ours[k], theirs[k]) for k in ours if ours[k] != theirs[k]}
    assert not differ, f"{who}: entries differ: {dict(list(differ.items())[:10])}"


def build_all(refs: Referees, files: dict[str, str], name: str) -> None:
    ctx = refs.dockyard.context(files, name)
    ours = refs.dockyard.build(ctx, tags=(f"localhost/{name}",))
    ours_cfg = normalise(ours.config)
    buildah_cfg = normalise(refs.buildah_build(ctx, f"localhost/{name}"))
    assert ours_cfg == buildah_cfg, f"config differs from buildah: {ours_cfg} != {buildah_cfg}"
    our_tree = refs.dockyard.filesystem(f"localhost/{name}")
    volumes = ours_cfg["Volumes"] or {}  # buildah creates VOLUME directories; BuildKit leaves them to run time
    if not ours_cfg["OnBuild"]:  # `buildah from` would run the triggers into the tree it mounts
        theirs = {k: v for k, v in refs.buildah_tree(f"localhost/{name}").items()
                  if k in our_tree or (k not in BUILDAH_STUBS and "/" + k not in volumes)}
        compare_trees(our_tree, theirs, "buildah")
    if refs.docker is not None:
        docker_cfg = normalise(refs.docker_build(ctx, f"localhost/{name}"))
        assert ours_cfg == docker_cfg, f"config differs from docker: {ours_cfg} != {docker_cfg}"
        ours_cmp = {k: v for k, v in our_tree.items() if not _docker_runtime_file(k)}
        compare_trees(ours_cmp, refs.docker_tree(f"localhost/{name}"), "docker")


pytest_plugins = ("tests.buildfixtures",)


@pytest.mark.parametrize("case", ["multistage", "config"])
def test_same_image_as_referees(referees: Referees, case: str) -> None:
    build_all(referees, CASES[case], case)


def test_onbuild_base_and_child(referees: Referees) -> None:
    build_all(referees, CASES["onbuild-base"], "onbase")
    build_all(referees, CHILD, "onchild")
