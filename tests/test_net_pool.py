"""The pool of ready attachments (root): fill, claim + attach without netlink, stale entries, gc, destroy."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from engine.net import pool
from engine.net.network import BridgeNetwork
from tests.net_helpers import new_id, run_in_netns, session_network

pytestmark = pytest.mark.root


@pytest.fixture()
def net(tmp_path: Path) -> Iterator[Any]:
    yield from session_network(tmp_path / "netstate")


def _sysfs_master(veth: str) -> str:
    return os.path.basename(os.readlink(f"/sys/class/net/{veth}/master"))


def test_fill_claim_attach_and_detach(net: BridgeNetwork, tmp_path: Path) -> None:
    peer = net.attach(new_id(), name="peer", etc_dir=tmp_path / "peer")
    assert net.fill(2) == 2 and net.fill(2) == 0
    entries = {cid: a for cid, a in net.ipam.allocations().items() if pool.pool_state(a) == pool.READY}
    assert len(entries) == 2
    assert set(net.allocations()) == {peer.container_id}  # pool entries are not containers
    for cid in entries:
        assert Path(net.netns_path(cid)).exists() and _sysfs_master(net.veth_name(cid)) == net.bridge
    assert "peer" in (tmp_path / "peer" / "hosts").read_text()
    assert all(cid[:12] not in (tmp_path / "peer" / "hosts").read_text() for cid in entries)

    claimed = net.claim()
    assert claimed is not None
    cid, left = claimed
    assert cid in entries and left == 1
    att = net.attach(cid, name="web", etc_dir=tmp_path / "web")
    assert att.ip == entries[cid].ip and att.netns_path == net.netns_path(cid)
    assert net.allocations()[cid].name == "web" and pool.pool_state(net.allocations()[cid]) is None
    assert "peer" in (tmp_path / "web" / "hosts").read_text()
    assert "web" in (tmp_path / "peer" / "hosts").read_text()
    out = run_in_netns(att.netns_name, f"import socket; socket.create_connection(('{net.gateway}', 9), 1)")
    assert "No route" not in out.stderr and "unreachable" not in out.stderr  # refused: the gateway answers

    assert net.detach(cid)
    assert not Path(net.netns_path(cid)).exists() and cid not in net.ipam.allocations()
    assert "web" not in (tmp_path / "peer" / "hosts").read_text()
    net.detach(peer.container_id)


def test_stale_entries_gc_and_destroy(net: BridgeNetwork) -> None:
    assert net.fill(2) == 2
    first, second = sorted(net.ipam.allocations())
    os.system(f"ip netns delete {net.netns_name(first)}")  # gone behind the pool's back
    claimed = net.claim()
    assert claimed is not None and claimed[0] == second
    assert pool.pool_state(net.ipam.allocations()[first]) == pool.STALE
    assert net.claim() is None

    report = net.gc([])  # the claim never became a container; the stale entry goes too
    assert set(report.released) == {first, second}
    assert net.fill(1) == 1
    ready = next(iter(net.ipam.allocations()))
    assert net.gc([]).empty  # ready entries survive gc
    net.destroy()
    assert not Path(net.netns_path(ready)).exists()
    assert not os.path.exists(f"/sys/class/net/{net.bridge}")
    assert net.fill(1) == 0  # a filler never brings a destroyed bridge back
    assert not os.path.exists(f"/sys/class/net/{net.bridge}")


def test_a_full_subnet_takes_addresses_back_from_the_pool(net: BridgeNetwork) -> None:
    assert net.fill(2) == 2
    with net.ipam.transaction() as state:  # every other host address of the /24 goes to (fake) containers
        for i in range(253 - 2):
            net.ipam._allocate(state, f"other{i}", name=None, hostname=None, etc_dir=None)
    cid = new_id()
    att = net.attach(cid)
    assert att.ip and cid in net.allocations()
    assert not any(pool.pool_state(a) for a in net.ipam.allocations().values())
    net.detach(cid)
