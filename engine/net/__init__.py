"""Container networking: port mappings, the bridge network (pyroute2), /etc files, port forwarding.

The runtime's whole surface (see each module for details)::

    from engine.net import (BridgeNetwork, Attachment, parse_network_mode, mappings_to_forward,
                            parse_publish, publish_all, bind_all, BoundPorts, Forwarder, write_etc_files)

    mode = parse_network_mode(opts.network)                       # bridge | host | none
    mappings = parse_publish_all(opts.publish) + (publish_all(exposed) if opts.publish_all else [])
    to_forward = mappings_to_forward(mode, mappings)              # none + -p -> InvalidPortSpecError
    ports = bind_all(to_forward)                                  # PortInUseError before the container
    if mode == "bridge":
        net = BridgeNetwork.from_config(config)
        att = net.attach(cid, name=name, hostname=hostname, etc_dir=cdir / "etc")
        # spec: linux.namespaces += att.runtime_namespace(); mounts += att.etc.mounts()
    else:
        etc = write_etc_files(cdir / "etc", hostname=hostname, mode=mode)
    # monitor process: Forwarder(BoundPorts.adopt(handoff), att.ip).start().serve_control(sock)
    # rm: net.detach(cid)           gc: net.gc(live_ids)

Nothing here imports pyroute2 until a namespace or bridge is actually touched (it costs ~0.1 s), and
the package itself imports no submodule: each name loads its module on first use.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from engine.net.etcfiles import EtcFiles, NetworkMode, write_etc_files
    from engine.net.forward import (
        BoundPorts,
        Forwarder,
        PortStats,
        bind_all,
        control,
        query_stats,
        retarget,
    )
    from engine.net.hosts import HostEntry
    from engine.net.ipam import DEFAULT_SUBNET, Allocation, Ipam
    from engine.net.network import (
        DEFAULT_BRIDGE,
        Attachment,
        BridgeNetwork,
        NetGcReport,
        mappings_to_forward,
        parse_network_mode,
    )
    from engine.net.ports import (
        ExposedPort,
        PortMapping,
        Protocol,
        parse_exposed,
        parse_publish,
        parse_publish_all,
        publish_all,
    )
    from engine.net.probe import port_answers, wait_for_port

# name -> submodule: importing a submodule (engine.net.etcfiles for --network none) must not load
# the forwarder, IPAM and netlink modules, so the names are resolved on first use (PEP 562).
_HOME = {
    **dict.fromkeys(("EtcFiles", "NetworkMode", "write_etc_files"), "etcfiles"),
    **dict.fromkeys(("BoundPorts", "Forwarder", "PortStats", "bind_all", "control", "query_stats", "retarget"),
                    "forward"),
    "HostEntry": "hosts",
    **dict.fromkeys(("DEFAULT_SUBNET", "Allocation", "Ipam"), "ipam"),
    **dict.fromkeys(("DEFAULT_BRIDGE", "Attachment", "BridgeNetwork", "NetGcReport", "mappings_to_forward",
                     "parse_network_mode"), "network"),
    **dict.fromkeys(("ExposedPort", "PortMapping", "Protocol", "parse_exposed", "parse_publish",
                     "parse_publish_all", "publish_all"), "ports"),
    **dict.fromkeys(("port_answers", "wait_for_port"), "probe"),
}


def __getattr__(name: str) -> Any:
    home = _HOME.get(name)
    if home is None:
        raise AttributeError(f"module 'engine.net' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"engine.net.{home}"), name)
    globals()[name] = value
    return value


__all__ = [
    "DEFAULT_BRIDGE",
    "DEFAULT_SUBNET",
    "Allocation",
    "Attachment",
    "BoundPorts",
    "BridgeNetwork",
    "EtcFiles",
    "ExposedPort",
    "Forwarder",
    "HostEntry",
    "Ipam",
    "NetGcReport",
    "NetworkMode",
    "PortMapping",
    "PortStats",
    "Protocol",
    "bind_all",
    "control",
    "mappings_to_forward",
    "parse_exposed",
    "parse_network_mode",
    "parse_publish",
    "parse_publish_all",
    "port_answers",
    "publish_all",
    "query_stats",
    "retarget",
    "wait_for_port",
    "write_etc_files",
]
