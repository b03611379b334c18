"""The persisted IPAM: allocation order, persistence, release, gc and two processes at once."""

from __future__ import annotations

import json
import multiprocessing
from pathlib import Path

import pytest

from engine.errors import NetworkSetupError
from engine.net.ipam import DEFAULT_SUBNET, Ipam, parse_subnet


def test_default_subnet_avoids_podman_cni_and_docker() -> None:
    ours = parse_subnet(DEFAULT_SUBNET)
    for other in ("10.88.0.0/16", "172.17.0.0/16", "172.16.0.0/12", "192.168.0.0/16", "10.89.0.0/16"):
        assert not ours.overlaps(parse_subnet(other)), other


def test_allocate_is_sequential_idempotent_and_persisted(tmp_path: Path) -> None:
    ipam = Ipam(tmp_path, "br", "10.214.1.0/24")
    assert str(ipam.gateway) == "10.214.1.1"
    a = ipam.allocate("a", name="web")
    b = ipam.allocate("b")
    assert (a.ip, b.ip) == ("10.214.1.2", "10.214.1.3")
    assert ipam.allocate("a").ip == "10.214.1.2"
    again = Ipam(tmp_path, "br", "10.214.1.0/24")
    assert {cid: x.ip for cid, x in again.allocations().items()} == {"a": "10.214.1.2", "b": "10.214.1.3"}
    assert again.lookup("a") is not None and again.lookup("a").name == "web"  # type: ignore[union-attr]
    data = json.loads((tmp_path / "br.ipam.json").read_text())
    assert data["subnet"] == "10.214.1.0/24" and set(data["allocations"]) == {"a", "b"}


def test_release_frees_and_reuse_is_round_robin(tmp_path: Path) -> None:
    ipam = Ipam(tmp_path, "br", "10.214.1.0/29")  # hosts .2 .. .6
    ips = [ipam.allocate(f"c{i}").ip for i in range(5)]
    assert ips == [f"10.214.1.{i}" for i in range(2, 7)]
    with pytest.raises(NetworkSetupError, match=r"no free address left in 10\.214\.1\.0/29"):
        ipam.allocate("c5")
    assert ipam.release("c1") is not None and ipam.release("c1") is None
    assert ipam.allocate("c5").ip == "10.214.1.3"
    ipam.release("c0")
    ipam.release("c2")
    assert ipam.allocate("c6").ip == "10.214.1.4"  # after the last one handed out, not the lowest


def test_release_all_except(tmp_path: Path) -> None:
    ipam = Ipam(tmp_path, "br", "10.214.1.0/24")
    for cid in ("a", "b", "c"):
        ipam.allocate(cid)
    freed = ipam.release_all_except(["b"])
    assert sorted(a.container_id for a in freed) == ["a", "c"]
    assert list(ipam.allocations()) == ["b"]


def test_subnet_change_and_corruption(tmp_path: Path) -> None:
    Ipam(tmp_path, "br", "10.214.1.0/24").allocate("a")
    with pytest.raises(NetworkSetupError, match="remove its containers before changing the subnet"):
        Ipam(tmp_path, "br", "10.214.2.0/24").allocate("b")
    Ipam(tmp_path, "br", "10.214.1.0/24").release("a")
    assert Ipam(tmp_path, "br", "10.214.2.0/24").allocate("b").ip == "10.214.2.2"
    (tmp_path / "br.ipam.json").write_text("{not json")
    with pytest.raises(NetworkSetupError, match="corrupt"):
        Ipam(tmp_path, "br", "10.214.2.0/24").allocations()


@pytest.mark.parametrize("subnet", ["10.214.1.1/24", "fd00::/64", "10.0.0.0/31", "127.0.0.0/8", "bogus"])
def test_bad_subnets(tmp_path: Path, subnet: str) -> None:
    with pytest.raises(NetworkSetupError):
        Ipam(tmp_path, "br", subnet)


def _allocate_many(state_dir: str, prefix: str, count: int, barrier: multiprocessing.synchronize.Barrier) -> None:
    ipam = Ipam(Path(state_dir), "br", "10.214.0.0/22")
    barrier.wait()
    for i in range(count):
        ipam.allocate(f"{prefix}{i}")


def test_two_processes_never_share_an_address(tmp_path: Path) -> None:
    ctx = multiprocessing.get_context("fork")
    barrier = ctx.Barrier(2)
    procs = [ctx.Process(target=_allocate_many, args=(str(tmp_path), p, 120, barrier)) for p in ("x", "y")]
    for p in procs:
        p.start()
    for p in procs:
        p.join(30)
        assert p.exitcode == 0
    allocs = Ipam(tmp_path, "br", "10.214.0.0/22").allocations()
    assert len(allocs) == 240
    assert len({a.ip for a in allocs.values()}) == 240
