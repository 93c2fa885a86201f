"""Nodes: SSH-reachable Linux hosts and Raspberry Pis, prepared idempotently for the other recipes."""

from components.nodes.host import Host, HostArgs, RaspberryPi, RaspberryPiArgs

__all__ = ["Host", "HostArgs", "RaspberryPi", "RaspberryPiArgs"]
