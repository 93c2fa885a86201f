"""cluster-cookbook: composes the stack's clusters from its config.

This is the only module that reads Pulumi config. It validates all of it into one typed model
(`components.stack_config`) before any resource is created, then builds the components.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Mapping
from typing import Any

import pulumi

from components.cloud import CloudFleet, CloudFleetArgs
from components.cloud.config import CREDENTIAL_KEYS, CloudConfig
from components.cloud.fleet import SSH_PORT
from components.etcd.cluster import EtcdCluster
from components.etcd.config import EtcdConfig
from components.etcd.gate import etcd_gate
from components.kubernetes import Datastore, KubernetesCluster, KubernetesNode
from components.kubernetes.config import KubernetesConfig
from components.kubernetes.gate import control_plane_gate, worker_gate
from components.local.cluster import LocalCluster, LocalClusterArgs, store_transformations
from components.local.engine import require_amd64, require_engine
from components.local.etcd import LocalEtcd
from components.mesos.cluster import DockerHost, MesosCluster
from components.mesos.config import AGENT_ROLE, MASTER_ROLE, MesosConfig
from components.nodes.config import SERIAL_REBOOT_ROLES
from components.nodes.gates import HealthGate
from components.nodes.host import PI_CGROUP_FLAGS, Host, HostArgs, RaspberryPi, RaspberryPiArgs, SshConnection
from components.shared.connection import SECONDS_PER_DIAL
from components.shared.kubernetes import KubernetesTarget, KubernetesTargetArgs
from components.shared.validation import ConfigError
from components.stack import NAMESPACE, NodeConfig, StackConfig, parse_stack_config
from components.store.cassandra import CassandraCluster
from components.store.config import StoreConfig
from components.store.pithos import ObjectStore
from components.zookeeper.config import ZooKeeperConfig
from components.zookeeper.ensemble import ZooKeeperEnsemble
from components.zookeeper.gate import zookeeper_gate


def read_raw_config() -> tuple[dict[str, Any], set[str]]:
    """Every value of this project's namespace (JSON decoded where it is JSON) and which keys are secret."""
    prefix = f"{NAMESPACE}:"
    merged = {**pulumi.runtime.get_config_env(), **pulumi.runtime.config.CONFIG.get()}
    raw: dict[str, Any] = {}
    for full_key, text in sorted(merged.items()):
        if not full_key.startswith(prefix):
            continue
        try:
            raw[full_key[len(prefix):]] = json.loads(text)
        except (TypeError, ValueError):
            raw[full_key[len(prefix):]] = text
    secret = {key[len(prefix):] for key in merged if pulumi.runtime.is_config_secret(key)}
    return raw, secret


def node_connection(config: StackConfig, node: NodeConfig) -> SshConnection:
    secrets = config.secrets
    return SshConnection(
        host=node.address,
        port=node.port,
        user=node.user,
        private_key=pulumi.Output.secret(secrets.private_key) if secrets.private_key else None,
        private_key_passphrase=(pulumi.Output.secret(secrets.private_key_passphrase)
                                if secrets.private_key_passphrase else None),
        host_key=node.host_key,
        proxy=node.proxy,
        dial_error_limit=config.ssh.dial_error_limit,
        per_dial_timeout=config.ssh.per_dial_timeout,
    )


def node_gates(config: StackConfig, node: NodeConfig) -> tuple[HealthGate, ...]:
    """The health gates of what runs on `node`: its reboot waits for them, before and after."""
    gates: list[HealthGate] = []
    if config.etcd is not None and node.name in config.etcd.members:
        gates.append(etcd_gate(config.etcd.cluster))
    if config.zookeeper is not None and node.name in config.zookeeper.servers:
        gates.append(zookeeper_gate(config.zookeeper.ensemble, node.name))
    kubernetes = config.kubernetes
    if kubernetes is not None and node.name in kubernetes.servers:
        addresses = {other.name: other.address for other in config.nodes}  # (a cloud node's is not known here)
        others = {name: addresses[name] for name in kubernetes.servers if name != node.name and name in addresses}
        gates.append(control_plane_gate(node.name, others, kubernetes.cluster.api_port,
                                        kubernetes.cluster.ready_timeout))
    elif kubernetes is not None and node.name in kubernetes.agents:
        gates.append(worker_gate(node.name, kubernetes.cluster.ready_timeout))
    return tuple(gates)


def build_host(config: StackConfig, node: NodeConfig, reboot_after: pulumi.Resource | None = None) -> Host:
    args = HostArgs(
        connection=node_connection(config, node),
        hostname=node.name,
        packages=config.prepare.packages,
        time_servers=config.prepare.time_servers,
        kubernetes_networking=config.prepare.kubernetes_networking,
        docker=bool({MASTER_ROLE, AGENT_ROLE} & set(node.roles)),  # Mesos runs in containers
    )
    if node.kind == "pi":
        return RaspberryPi(node.name, RaspberryPiArgs(
            **vars(args), cmdline_flags=(*PI_CGROUP_FLAGS, *config.prepare.pi_cmdline_flags),
            reboot_timeout=config.ssh.reboot_timeout, gates=node_gates(config, node), reboot_after=reboot_after))
    return Host(node.name, args)


def build_hosts(config: StackConfig, gone: set[str]) -> dict[str, Host]:
    """Every node's Host, in node order. Hosts with a role in SERIAL_REBOOT_ROLES reboot one at a time: each
    after the previous one came back and passed its gates; the others whenever they are prepared."""
    hosts: dict[str, Host] = {}
    previous: pulumi.Resource | None = None
    for node in config.nodes:
        if node.name in gone:
            continue
        serial = bool(set(node.roles) & set(SERIAL_REBOOT_ROLES))
        host = hosts[node.name] = build_host(config, node, previous if serial else None)
        if serial and isinstance(host, RaspberryPi):
            previous = host.ready
    return hosts


def build_etcd(etcd: EtcdConfig, hosts: dict[str, Host],
               cloud_addresses: Mapping[str, pulumi.Input[str]] | None = None) -> EtcdCluster:
    """The etcd cluster on the nodes with role etcd (those in etcd.removed have no Host). A removed cloud
    member's address is its VM's (`cloud_addresses`): its cloud.nodes entry stays, as a removed node's does."""
    members = [hosts[name] for name in etcd.members]
    removed = {**etcd.cluster.removed, **{name: (cloud_addresses or {})[name] for name in etcd.removed_unaddressed}}
    return EtcdCluster("etcd", dataclasses.replace(etcd.cluster, members=members, removed=removed))


def build_zookeeper(zookeeper: ZooKeeperConfig, hosts: dict[str, Host]) -> ZooKeeperEnsemble:
    """The ZooKeeper ensemble on the nodes with role zookeeper."""
    servers = [hosts[name] for name in zookeeper.servers]
    return ZooKeeperEnsemble("zookeeper", dataclasses.replace(zookeeper.ensemble, servers=servers))


def build_mesos(config: StackConfig, mesos: MesosConfig, hosts: dict[str, Host],
                zookeeper: ZooKeeperEnsemble | None) -> MesosCluster:
    """Mesos masters (with Marathon) and agents in Docker containers, each host through its own Docker provider;
    ZooKeeper is the stack's ensemble when it has one."""
    nodes = {node.name: node for node in config.nodes}

    def target(name: str) -> DockerHost:
        node = nodes[name]
        return DockerHost(host=hosts[name], user=node.user, port=node.port, host_key=node.host_key,
                          jump=f"{node.proxy.user}@{node.proxy.host}:{node.proxy.port}" if node.proxy else None,
                          identity_file=mesos.identity_file, connect_timeout=config.ssh.per_dial_timeout)

    return MesosCluster("mesos", dataclasses.replace(
        mesos.cluster, masters=[target(name) for name in mesos.masters],
        agents=[target(name) for name in mesos.agents],
        zookeeper=zookeeper.connect_string if zookeeper is not None else None))


def build_kubernetes(kubernetes: KubernetesConfig, hosts: dict[str, Host], etcd: EtcdCluster) -> KubernetesCluster:
    """k3s on the nodes with role control-plane (servers) or worker (agents), keeping its state in the etcd
    cluster through the kube-apiserver client certificate the etcd component issued."""
    nodes = [KubernetesNode(hosts[name], kubernetes.roles[name]) for name in kubernetes.nodes]
    datastore = Datastore(endpoints=etcd.client_endpoints, ca_cert_pem=etcd.ca_cert_pem,
                          client_cert_pem=etcd.apiserver_client_cert_pem,
                          client_key_pem=etcd.apiserver_client_key_pem)
    return KubernetesCluster("kubernetes", dataclasses.replace(
        kubernetes.cluster, nodes=nodes, datastore=datastore, context=pulumi.get_stack()))


def build_store(store: StoreConfig, cluster_kubeconfig: pulumi.Output[str] | None = None,
                transformations: list[pulumi.ResourceTransformation] | None = None) -> ObjectStore:
    """Cassandra and Pithos on the cluster the kubeconfig reaches (or rendered to YAML files): the cluster
    this stack built (`cluster_kubeconfig`, which resolves once every node is Ready), else the kubeconfig
    secret. `transformations` apply to every store resource (the local stack's, components/local/cluster.py)."""
    if cluster_kubeconfig is not None and store.kubeconfig is not None:
        pulumi.log.warn("the kubeconfig secret is not used: the store goes onto the cluster this stack builds")
    kubeconfig = cluster_kubeconfig if cluster_kubeconfig is not None else (
        None if store.kubeconfig is None else pulumi.Output.secret(store.kubeconfig))
    target = KubernetesTarget("store-target", KubernetesTargetArgs(
        kubeconfig=kubeconfig, context=store.context, render_directory=store.render_directory))
    on_target = pulumi.ResourceOptions(providers=[target.provider], transformations=transformations)
    cassandra = CassandraCluster("cassandra", store.cassandra, opts=on_target)
    pithos_args = dataclasses.replace(store.pithos, cassandra_host=cassandra.service_host,
                                      cassandra_client_label=cassandra.client_label)
    # Pithos's schema job talks to Cassandra: the whole Cassandra component (StatefulSet, Service) first.
    return ObjectStore("pithos", pithos_args,
                       opts=pulumi.ResourceOptions(providers=[target.provider], depends_on=[cassandra],
                                                   transformations=transformations))


def build_cloud(cloud: CloudConfig, config: StackConfig) -> CloudFleet:
    """The cloud nodes (key pair, security group, VMs booted with their host keys)."""
    return CloudFleet("cloud", CloudFleetArgs(
        cloud=cloud, prefix=f"cookbook-{pulumi.get_stack()}",
        credential_keys=tuple(f"{NAMESPACE}:{key}" for key in CREDENTIAL_KEYS),
        kubernetes_networking=config.prepare.kubernetes_networking,
        # The store's Kubernetes provider runs here, on the operator's machine: it needs the API.
        api_from_operator=config.store is not None))


def build_cloud_hosts(config: StackConfig, fleet: CloudFleet, gone: set[str]) -> dict[str, Host]:
    """A Host per cloud node (none for removed members): the node layer over SSH to the VM's address (so every
    step waits for the VM), as the image's login user through `sudo -n`, the host key its first boot wrote
    pinned. A VM just started is still booting: its steps dial as long as a Pi's reboot may take."""
    secrets, ssh = config.secrets, config.ssh
    hosts: dict[str, Host] = {}
    for name, node in fleet.hosts.items():
        if name in gone:
            continue
        connection = SshConnection(
            host=node.address, port=SSH_PORT, user=node.user,
            private_key=pulumi.Output.secret(secrets.private_key) if secrets.private_key else None,
            private_key_passphrase=(pulumi.Output.secret(secrets.private_key_passphrase)
                                    if secrets.private_key_passphrase else None),
            host_key=node.host_key, proxy=ssh.proxy,
            dial_error_limit=max(ssh.dial_error_limit, ssh.reboot_timeout // SECONDS_PER_DIAL),
            per_dial_timeout=ssh.per_dial_timeout)
        hosts[name] = Host(name, HostArgs(
            connection=connection, hostname=name,
            packages=() if node.coreos else config.prepare.packages,  # CoreOS: no package manager
            time_servers=config.prepare.time_servers, kubernetes_networking=config.prepare.kubernetes_networking))
    return hosts


def export_etcd(etcd: EtcdCluster | LocalEtcd) -> None:
    """The `etcd` output, the same keys whether the members run on hosts or in local containers."""
    pulumi.export("etcd", {
        "client_endpoints": etcd.client_endpoints, "ca_cert": etcd.ca_cert_pem,
        "client_cert": etcd.client_cert_pem, "client_key": etcd.client_key_pem,
        "apiserver_client_cert": etcd.apiserver_client_cert_pem,
        "apiserver_client_key": etcd.apiserver_client_key_pem, "etcdctl_env": etcd.etcdctl_env,
        "expires": etcd.expires,
    })


def build_local(args: LocalClusterArgs) -> LocalCluster:
    """The local stack on this machine's Docker engine, once the engine answered, and its outputs."""
    require_engine(os.environ)  # before anything is declared: a missing engine is one clear error
    if args.mesos is not None:
        try:
            require_amd64(os.environ)  # Mesos's images are amd64 only: the engine says what it is
        except ConfigError as error:
            raise pulumi.RunError(str(error)) from None
    local = LocalCluster("local", dataclasses.replace(args, context=pulumi.get_stack()))
    export_etcd(local.etcd)
    if local.kubernetes is not None:
        kubernetes = local.kubernetes
        pulumi.export("kubernetes", {
            "api_endpoint": kubernetes.api_endpoint, "kubeconfig": kubernetes.kubeconfig,
            "nodes": kubernetes.node_names, "servers": kubernetes.servers, "agents": kubernetes.agents,
        })
    if local.mesos is not None:
        pulumi.export("mesos", {"master_urls": local.mesos.master_urls, "marathon_urls": local.mesos.marathon_urls,
                                "zookeeper_url": local.mesos.zookeeper_url})
    pulumi.export("local", {"docker": local.docker_objects, "registry": local.registry})
    return local


def main() -> None:
    raw, secret_keys = read_raw_config()
    try:
        config = parse_stack_config(raw, secret_keys, os.environ)
    except ConfigError as error:
        raise pulumi.RunError(str(error)) from None  # the message says it all; no traceback
    local = build_local(config.local) if config.local is not None else None
    gone = set(config.etcd.removed) if config.etcd else set()  # removed etcd members: nothing runs on them
    gone |= set(config.zookeeper.removed) if config.zookeeper else set()  # removed ZooKeeper servers: likewise
    hosts = build_hosts(config, gone)
    cloud_addresses: dict[str, pulumi.Input[str]] = {}
    if config.cloud is not None:
        fleet = build_cloud(config.cloud, config)
        hosts |= build_cloud_hosts(config, fleet, gone)  # VMs -> hosts: the same node layer as `nodes`
        cloud_addresses = {name: host.address for name, host in fleet.hosts.items()}
        pulumi.export("cloud_nodes", {name: {"address": host.address, "user": host.user, "os": host.os,
                                             "roles": list(host.roles), "host_key": host.host_key}
                                      for name, host in fleet.hosts.items()})
    pulumi.export("nodes", {name: host.outputs() for name, host in hosts.items()})
    if config.etcd is not None:
        etcd = build_etcd(config.etcd, hosts, cloud_addresses)
        export_etcd(etcd)
    zookeeper = None
    if config.zookeeper is not None:
        zookeeper = build_zookeeper(config.zookeeper, hosts)
        pulumi.export("zookeeper", {"connect_string": zookeeper.connect_string, "servers": zookeeper.servers})
    if config.mesos is not None:
        mesos = build_mesos(config, config.mesos, hosts, zookeeper)
        pulumi.export("mesos", {"master_urls": mesos.master_urls, "marathon_urls": mesos.marathon_urls,
                                "zookeeper_url": mesos.zookeeper_url})
    kubernetes = None
    if config.kubernetes is not None and config.etcd is not None:
        kubernetes = build_kubernetes(config.kubernetes, hosts, etcd)
        pulumi.export("kubernetes", {
            "api_endpoint": kubernetes.api_endpoint, "kubeconfig": kubernetes.kubeconfig,
            "nodes": kubernetes.node_names, "servers": kubernetes.servers, "agents": kubernetes.agents,
            "expires": kubernetes.admin_expires,  # the admin certificate's end ("" with kubernetes.ca: k3s)
        })
    if config.store is not None:
        local_kubernetes = local.kubernetes if local is not None else None
        store = build_store(config.store, kubernetes.kubeconfig if kubernetes else (
            local_kubernetes.kubeconfig if local_kubernetes else None),
            transformations=store_transformations(local.registry_container) if local is not None else None)
        pulumi.export("store", {
            "endpoint": store.endpoint, "region": store.region,
            "access_key": store.access_key, "secret_key": store.secret_key, "tenant_keys": store.tenant_keys,
            "s3cfg": store.s3cfg, "boto3": store.boto3,
        })


main()
