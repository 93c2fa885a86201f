"""The ZooKeeper health gate for the node layer: a host running a server goes down (a reboot) only while every
member of the ensemble serves, and the next one only once all serve again (`zookeeper/gate.sh`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from components.nodes.gates import HealthGate
from components.zookeeper.ensemble import SERVICE, runtime_dir

if TYPE_CHECKING:
    from components.zookeeper.ensemble import ZooKeeperEnsembleArgs


def zookeeper_gate(args: ZooKeeperEnsembleArgs, server: str) -> HealthGate:
    """The gate of `server`'s host: waits up to `health_timeout` for the whole membership to serve."""
    return HealthGate(
        name="zookeeper",
        function="zookeeper_gate",
        fragment="zookeeper/gate.sh",
        params={"ZOOKEEPER_GATE_SERVICE": SERVICE, "ZOOKEEPER_GATE_CONFIG": f"{runtime_dir(server)}/zoo.cfg"},
        timeout=args.health_timeout,
    )
