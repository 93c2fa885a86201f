"""The etcd health gate for the node layer: a host running a member goes down (a reboot) only while every
member of the cluster is healthy, and the next one only once it is healthy again (`etcd/gate.sh`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from components.etcd.render import PKI_DIR, SERVICE, binaries
from components.nodes.gates import HealthGate

if TYPE_CHECKING:
    from components.etcd.cluster import EtcdClusterArgs


def etcd_gate(args: EtcdClusterArgs) -> HealthGate:
    """The gate of a host with role etcd: waits up to `health_timeout` for `endpoint health --cluster`."""
    return HealthGate(
        name="etcd",
        function="etcd_gate",
        fragment="etcd/gate.sh",
        params={
            "ETCD_GATE_ETCDCTL": binaries(args)[1],
            "ETCD_GATE_SERVICE": SERVICE,
            "ETCD_GATE_PKI_DIR": PKI_DIR,
            "ETCD_GATE_ENDPOINT": f"https://127.0.0.1:{args.client_port}",
        },
        timeout=args.health_timeout,
    )
