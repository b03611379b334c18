"""A RUN layer is written from the upper dir while the container root's overlay unmounts (its sync runs
alongside); the upper dir becomes the layer's snapshot only after the unmount.  The layer, its blob
digest and the adopted snapshot must agree, and nothing stays mounted or half-made."""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

from engine.runtime.snapshots import chain_ids
from tests.buildfixtures import BuilderEnv, directory_tree, tar_tree

pytest_plugins = ("tests.buildfixtures",)

DOCKERFILE = """FROM busybox
RUN head -c 3500000 /dev/urandom > /big.bin && mkdir -p /srv/app && echo conf > /srv/app/conf && rm /bin/true
"""


def test_run_layer_blob_and_adopted_snapshot_agree(builder_env: BuilderEnv) -> None:
    result = builder_env.build({"Dockerfile": DOCKERFILE}, tags=("runlayer:1",))
    store = builder_env.store
    top = result.image.manifest.layers[-1]
    blob = store.blob_path(top.digest).read_bytes()
    assert hashlib.sha256(blob).hexdigest() == top.digest.hex and len(blob) == top.size
    layer = tar_tree(io.BytesIO(blob))
    assert layer["big.bin"][0] == "file" and layer["srv/app/conf"][0] == "file"
    assert "bin/.wh.true" in layer
    assert not {"proc", "sys", "dev", "etc/hosts", "etc/resolv.conf", "etc/hostname"} & set(layer)

    snapshots = builder_env.root / "snapshots"
    adopted = snapshots / chain_ids(list(result.image.config.diff_ids))[-1].hex
    on_disk = {k: v for k, v in directory_tree(adopted).items() if k != "bin/true"}  # the whiteout device
    assert on_disk == {k: v for k, v in layer.items() if k != "bin/.wh.true"}
    assert [p.name for p in snapshots.iterdir() if len(p.name) != 64 and not p.name.endswith(".lock")] == []
    assert str(snapshots) not in Path("/proc/self/mountinfo").read_text()
