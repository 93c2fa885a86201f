"""A stack's cloud nodes: the deploy key pair, one security group, and per cloud node its SSH host key and
one started VM booted with it."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import ClassVar

import pulumi
import pulumi_tls as tls

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
from components.cloud.userdata import COREOS, LOGIN_USERS, FirstBoot, HostKey, render_user_data

SSH_PORT = 22
ETCD_PORTS = (2379, 2380)  # client, peer
KUBERNETES_API_PORT = 6443  # on control-plane nodes
KUBELET_PORT = 10250  # on every Kubernetes node
FLANNEL_VXLAN_PORT = 8472  # UDP, flannel's vxlan backend
WIREGUARD_PORT = 51820  # UDP, flannel's wireguard-native backend


def security_rules(operator_cidr: str, roles: Iterable[str], api_from_operator: bool = False) -> tuple[Rule, ...]:
    """Ingress rules from what runs on the nodes: SSH from the operator, the cluster ports within the group; the
    Kubernetes API from the operator too when the program itself deploys onto the cluster (`api_from_operator`:
    its Kubernetes provider runs where Pulumi runs)."""
    present = set(roles)
    rules = [Rule("tcp", SSH_PORT, SSH_PORT, operator_cidr)]
    if "etcd" in present:
        rules.append(Rule("tcp", ETCD_PORTS[0], ETCD_PORTS[1], "group"))
    if "control-plane" in present:
        rules.append(Rule("tcp", KUBERNETES_API_PORT, KUBERNETES_API_PORT, "group"))
        if api_from_operator:
            rules.append(Rule("tcp", KUBERNETES_API_PORT, KUBERNETES_API_PORT, operator_cidr))
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
    api_from_operator: bool = False  # the program deploys onto the cluster (the store): 6443 from operator_cidr


@dataclass(frozen=True)
class CloudHost:
    """What the node layer needs to reach one cloud node over SSH: its VM's address, the image's login user,
    and the host key the node was booted with (pin it: the first connection is then checked too)."""

    name: str
    roles: tuple[str, ...]
    address: pulumi.Output[str]
    user: str
    os: str
    node: CloudNode
    host_key: pulumi.Output[str]  # "ssh-ed25519 AAAA..."

    @property
    def coreos(self) -> bool:
        return self.os in COREOS


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
            security_rules(cloud.operator_cidr, (role for node in cloud.nodes for role in node.roles),
                           args.api_from_operator)),
            SecurityGroupProvider(args.credential_keys, args.poll_interval), child)
        node_provider = NodeProvider(args.credential_keys, args.poll_interval)
        self.hosts = {}
        for node in cloud.nodes:
            # The node's SSH host key, generated here and written by the first boot: the host layer pins it.
            host_key = tls.PrivateKey(f"{name}-{node.name}-host-key", algorithm="ED25519", opts=child)
            public = host_key.public_key_openssh.apply(lambda line: " ".join(line.split()[:2]))

            def user_data(keys: list[str], node_name: str = node.name) -> str:
                return render_user_data(FirstBoot(cloud.os, node_name, cloud.ssh_public_key,
                                                  args.kubernetes_networking, HostKey(keys[0], keys[1])))

            vm = CloudNode(f"{name}-{node.name}", CloudNodeArgs(
                cloud=target, name=node.name, display_name=f"{args.prefix}-{node.name}", zone=cloud.zone,
                image=cloud.image, size=node.size or cloud.size,
                key_pair=self.key_pair.name,  # its registered name; referencing it orders the VM after it
                security_groups=[self.security_group.name],  # by name, as deployVirtualMachine takes it
                # Holds the host's private key: secret in the inputs and in the state.
                user_data=pulumi.Output.secret(
                    pulumi.Output.all(host_key.private_key_openssh, public).apply(user_data)),
                start_timeout=cloud.start_timeout, expunge=cloud.expunge,
            ), node_provider, pulumi.ResourceOptions(parent=self, additional_secret_outputs=["user_data"]))
            self.hosts[node.name] = CloudHost(node.name, node.roles, vm.address, LOGIN_USERS[cloud.os], cloud.os, vm,
                                              public)
        self.register_outputs({
            "key_pair": self.key_pair.id,
            "security_group": self.security_group.group_id,
            "addresses": {name: host.address for name, host in sorted(self.hosts.items())},
        })
