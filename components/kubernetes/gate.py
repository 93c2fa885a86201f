"""The Kubernetes control-plane health gate for the node layer: a control-plane node goes down (a reboot)
only while its k3s API and node are ready, and the next one only once they are ready again after the boot
(`kubernetes/gate.sh`)."""

from __future__ import annotations

from components.kubernetes.render import gate_params
from components.nodes.gates import HealthGate

GATE_FUNCTION = "kubernetes_control_plane_gate"


def control_plane_gate(node: str, timeout: int = 300) -> HealthGate:
    """The gate of a node with role control-plane; `timeout` is kubernetes.ready_timeout."""
    return HealthGate(name="kubernetes", function=GATE_FUNCTION, fragment="kubernetes/gate.sh",
                      params=gate_params(node), timeout=timeout)
