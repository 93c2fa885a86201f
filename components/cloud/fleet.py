"""A stack's cloud nodes: the deploy key pair, one security group, and one started VM per cloud node."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import ClassVar

import pulumi

from components.cloud.api import Rule
from components.cloud.config import CloudConfig
from components.cloud.providers import (
    CloudKeyPair,
    CloudKeyPairArgs,
    CloudNode,
    CloudNodeArgs,
    CloudSecurityGroup,
    CloudSecurityGroupArgs,
    CloudTarget,
    KeyPairProvider,
    NodeProvider,
    SecurityGroupProvider,
)
from components.cloud.userdata import FirstBoot, render_user_data

SSH_PORT = 22
ETCD_PORTS = (2379, 2380)  # client, peer
KUBERNETES_API_PORT = 6443  # on control-plane nodes
KUBELET_PORT = 10250  # on every Kubernetes node
FLANNEL_VXLAN_PORT = 8472  # UDP, flannel's vxlan backend
WIREGUARD_PORT = 51820  # UDP, flannel's wireguard-native backend


def security_rules(operator_cidr: str, roles: Iterable[str]) -> tuple[Rule, ...]:
    """Ingress rules from what runs on the nodes: SSH from the operator, the cluster ports within the group."""
    present = set(roles)
    rules = [Rule("tcp", SSH_PORT, SSH_PORT, operator_cidr)]
    if "etcd" in present:
        rules.append(Rule("tcp", ETCD_PORTS[0], ETCD_PORTS[1], "group"))
    if "control-plane" in present:
        rules.append(Rule("tcp", KUBERNETES_API_PORT, KUBERNETES_API_PORT, "group"))
    if present & {"control-plane", "worker"}:
        rules += [Rule("tcp", KUBELET_PORT, KUBELET_PORT, "group"),
                  Rule("udp", FLANNEL_VXLAN_PORT, FLANNEL_VXLAN_PORT, "group"),
                  Rule("udp", WIREGUARD_PORT, WIREGUARD_PORT, "group")]
    return tuple(rules)


@dataclass(frozen=True)
class CloudFleetArgs:
    cloud: CloudConfig
    prefix: str  # names the key pair, the group and the VMs' display names: one stack, one prefix
    credential_keys: Sequence[str]  # the secret config keys the providers read in `configure`
    kubernetes_networking: bool = True
    poll_interval: float = 5.0


@dataclass(frozen=True)
class CloudHost:
    """What the node layer needs to reach one cloud node over SSH (phase 2 hands these to Host)."""

    name: str
    roles: tuple[str, ...]
    address: pulumi.Output[str]
    user: str
    os: str
    node: CloudNode


class CloudFleet(pulumi.ComponentResource):
    TYPE: ClassVar[str] = "cookbook:cloud:Fleet"
    key_pair: CloudKeyPair
    security_group: CloudSecurityGroup
    hosts: dict[str, CloudHost]

    def __init__(self, name: str, args: CloudFleetArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__(self.TYPE, name, None, opts)
        cloud = args.cloud
        if not cloud.nodes:
            raise ValueError("cloud.nodes: a fleet needs at least one node")
        target = CloudTarget(cloud.driver, cloud.endpoint)
        child = pulumi.ResourceOptions(parent=self)
        self.key_pair = CloudKeyPair(f"{name}-key", CloudKeyPairArgs(
            target, f"{args.prefix}-deploy", cloud.ssh_public_key.strip()),
            KeyPairProvider(args.credential_keys, args.poll_interval), child)
        self.security_group = CloudSecurityGroup(f"{name}-group", CloudSecurityGroupArgs(
            target, f"{args.prefix}-nodes", f"cluster-cookbook nodes of {args.prefix}",
            security_rules(cloud.operator_cidr, (role for node in cloud.nodes for role in node.roles))),
            SecurityGroupProvider(args.credential_keys, args.poll_interval), child)
        node_provider = NodeProvider(args.credential_keys, args.poll_interval)
        self.hosts = {}
        for node in cloud.nodes:
            boot = FirstBoot(cloud.os, node.name, cloud.ssh_public_key, args.kubernetes_networking)
            vm = CloudNode(f"{name}-{node.name}", CloudNodeArgs(
                cloud=target, name=node.name, display_name=f"{args.prefix}-{node.name}", zone=cloud.zone,
                image=cloud.image, size=node.size or cloud.size,
                key_pair=self.key_pair.id,  # the key pair's id is its name; referencing it orders the VM after it
                security_groups=[self.security_group.name],  # by name, as deployVirtualMachine takes it
                user_data=render_user_data(boot), start_timeout=cloud.start_timeout, expunge=cloud.expunge,
            ), node_provider, child)
            self.hosts[node.name] = CloudHost(node.name, node.roles, vm.address, boot.login_user, cloud.os, vm)
        self.register_outputs({
            "key_pair": self.key_pair.id,
            "security_group": self.security_group.group_id,
            "addresses": {name: host.address for name, host in sorted(self.hosts.items())},
        })
