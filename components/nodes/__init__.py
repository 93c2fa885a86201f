"""Nodes: SSH-reachable Linux hosts and Raspberry Pis, prepared idempotently for the other recipes."""

from components.nodes.gates import HealthGate
from components.nodes.host import NODE_OUTPUTS, Host, HostArgs, RaspberryPi, RaspberryPiArgs

__all__ = ["NODE_OUTPUTS", "HealthGate", "Host", "HostArgs", "RaspberryPi", "RaspberryPiArgs"]
