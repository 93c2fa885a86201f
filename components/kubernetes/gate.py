"""The Kubernetes health gates for the node layer's one-at-a-time reboots (components/nodes/gates.py).

- A control-plane node goes down only while the API answers (through this server or another), this node is
  Ready and every other registered server is Ready; the next node of the chain only once that holds again after
  the boot (`kubernetes/gate.sh`).
- A worker-only node (a k3s agent): the next node goes down only once this one is Ready again after its boot,
  asked with the node's own kubelet credentials (`kubernetes/worker-gate.sh`). No drain before the reboot: that
  needs a credential allowed to evict pods, which the program keeps off the nodes (README).
"""

from __future__ import annotations

from collections.abc import Mapping

from components.kubernetes.render import gate_params, worker_gate_params
from components.nodes.gates import HealthGate

GATE_FUNCTION = "kubernetes_control_plane_gate"
WORKER_GATE_FUNCTION = "kubernetes_worker_gate"


def control_plane_gate(node: str, other_servers: Mapping[str, str] | None = None, port: int = 6443,
                       timeout: int = 300) -> HealthGate:
    """The gate of a node with role control-plane; `other_servers` (name -> address) are the cluster's other
    servers, `port` the API port, `timeout` kubernetes.ready_timeout."""
    return HealthGate(name="kubernetes", function=GATE_FUNCTION, fragment="kubernetes/gate.sh",
                      params=gate_params(node, other_servers, port), timeout=timeout)


def worker_gate(node: str, timeout: int = 300) -> HealthGate:
    """The gate of a worker-only node (a k3s agent); `timeout` is kubernetes.ready_timeout."""
    return HealthGate(name="kubernetes-worker", function=WORKER_GATE_FUNCTION, fragment="kubernetes/worker-gate.sh",
                      params=worker_gate_params(node), timeout=timeout)
