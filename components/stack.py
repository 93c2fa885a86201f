"""The typed model of one stack's configuration, built from raw config values and validated as a whole.

`__main__.py` is the only caller: it gathers the raw values (`pulumi.Config`), and `parse_stack_config`
turns them into frozen dataclasses or raises one `ConfigError` listing every problem with its key path.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from components.cloud.config import (
    CREDENTIAL_KEYS,
    CloudConfig,
    CloudNodeConfig,
    check_cloud_stack,
    parse_cloud_config,
)
from components.etcd.config import EtcdConfig, parse_etcd_config
from components.kubernetes.config import (
    KubernetesConfig,
    check_store_placement,
    parse_kubernetes_config,
    wants_kubernetes,
)
from components.local.cluster import LocalClusterArgs
from components.local.config import check_store_on_local, parse_local_config, wants_local_kubernetes
from components.mesos.config import MesosConfig, parse_mesos_config
from components.nodes.config import (
    NodeConfig,
    PrepareConfig,
    SshSettings,
    parse_nodes,
    parse_prepare,
    parse_ssh,
)
from components.shared.validation import Problems, describe_type, did_you_mean
from components.store.config import StoreConfig, parse_store_config
from components.zookeeper.config import ZooKeeperConfig, parse_zookeeper_config

NAMESPACE = "cluster-cookbook"
# Keys whose values must come from secret config, with how to set them.
SECRET_KEYS = {
    "ssh_private_key": "< ~/.ssh/id_ed25519",
    "ssh_private_key_passphrase": "",
    "kubeconfig": "< ~/.kube/config",
    CREDENTIAL_KEYS[0]: "API_KEY",  # the cloud section's API key and secret (read by the cloud providers)
    CREDENTIAL_KEYS[1]: "SECRET_KEY",
    "registry_password": "< REGISTRY_TOKEN_FILE",  # store.pithos.build.username's registry password
}
PRIVATE_KEY_ENV = "COOKBOOK_SSH_PRIVATE_KEY"


@dataclass(frozen=True)
class SshSecrets:
    """Credentials from secret config or the environment. Plain text only here; wrap before use."""

    private_key: str | None = None
    private_key_passphrase: str | None = None


@dataclass(frozen=True)
class StackConfig:
    nodes: tuple[NodeConfig, ...] = ()
    ssh: SshSettings = field(default_factory=SshSettings)
    prepare: PrepareConfig = field(default_factory=PrepareConfig)
    secrets: SshSecrets = field(default_factory=SshSecrets)
    store: StoreConfig | None = None
    etcd: EtcdConfig | None = None  # None: no node has role etcd
    cloud: CloudConfig | None = None  # None: no cloud section
    kubernetes: KubernetesConfig | None = None  # None: no kubernetes section and no control-plane/worker node
    zookeeper: ZooKeeperConfig | None = None  # None: no zookeeper section and no node with role zookeeper
    mesos: MesosConfig | None = None  # None: no mesos section and no node with a Mesos role
    local: LocalClusterArgs | None = None  # None: no local section (the cookbook on this machine's Docker engine)


def _secret_values(raw: Mapping[str, Any], secret_keys: set[str], problems: Problems) -> dict[str, str | None]:
    """Values of SECRET_KEYS; each must have been set with `--secret` (else it sits in the stack file in clear)."""
    values: dict[str, str | None] = {}
    for key, example in SECRET_KEYS.items():
        value = raw.get(key)
        values[key] = None
        if value is None:
            continue
        if key not in secret_keys:
            problems.add(key, f"must be stored as a secret: `pulumi config set --secret {key} {example}` "
                              "(plain values would be written to the stack file)")
        elif not isinstance(value, str):
            problems.add(key, f"must be a string, got {describe_type(value)}")
        else:
            values[key] = value
    return values


def _check_credentials(config: StackConfig, problems: Problems) -> None:
    if (config.nodes or config.cloud) and not config.ssh.use_agent and config.secrets.private_key is None:
        problems.add("ssh_private_key",
                     "no SSH credentials: set it with `pulumi config set --secret ssh_private_key < KEYFILE`, "
                     f"export {PRIVATE_KEY_ENV}, or run an ssh-agent (SSH_AUTH_SOCK) and keep ssh.agent true")


TOP_LEVEL_KEYS = ("nodes", "ssh", "prepare", "store", "etcd", "cloud", "kubernetes", "zookeeper", "mesos", "local",
                  *SECRET_KEYS)
KUBELET_PORT = 10250  # k3s's kubelet, on every Kubernetes node


def _ports_in_use(config: StackConfig, node: NodeConfig) -> list[tuple[int, str, str]]:
    """(port, recipe, what) for every TCP port the recipes listen on at `node` (host networking)."""
    used: list[tuple[int, str, str]] = []
    if config.etcd is not None and node.name in config.etcd.members:
        used += [(config.etcd.cluster.client_port, "etcd", "etcd client port"),
                 (config.etcd.cluster.peer_port, "etcd", "etcd peer port")]
    kubernetes = config.kubernetes
    if kubernetes is not None and node.name in kubernetes.nodes:
        if "control-plane" in kubernetes.roles[node.name]:
            used.append((kubernetes.cluster.api_port, "kubernetes", "Kubernetes API server (k3s)"))
        used.append((KUBELET_PORT, "kubernetes", "kubelet (k3s)"))
        pithos = config.store.pithos if config.store is not None else None
        if pithos is not None and pithos.node_port is not None and pithos.service_type != "ClusterIP":
            # kube-proxy opens a NodePort on every node of the cluster.
            used.append((pithos.node_port, "store", "Pithos NodePort (store.pithos.node_port)"))
    if config.zookeeper is not None and node.name in config.zookeeper.servers:
        used += [(port, "zookeeper", what) for port, what in config.zookeeper.ports.items()]
    if config.mesos is not None:
        used += [(port, "mesos", what) for port, what in config.mesos.ports(node.name).items()]
    return used


def _check_ports(config: StackConfig, problems: Problems) -> None:
    """Recipes sharing a node must not listen on one TCP port: every clash on every node, each named (clashes
    within one recipe are reported by its own section)."""
    for index, node in enumerate(config.nodes):
        used = _ports_in_use(config, node)
        for port in sorted({port for port, _, _ in used}):
            users = [(recipe, what) for p, recipe, what in used if p == port]
            if len({recipe for recipe, _ in users}) > 1:
                problems.add(f"nodes[{index}]", f"node {node.name}: port {port} is used by "
                                                f"{' and '.join(what for _, what in users)}")
        mesos = config.mesos
        if mesos is not None and node.name in mesos.agents:
            low, high = mesos.cluster.resources.ports
            for port, _, what in used:
                if low <= port <= high:
                    problems.add(f"nodes[{index}]", f"node {node.name}: {what} ({port}) is in the port range the "
                                                    f"Mesos agent offers to tasks (mesos.agent.ports {low}-{high})")


def _parse_local(raw: Mapping[str, Any], store: StoreConfig | None, problems: Problems) -> LocalClusterArgs | None:
    """The `local` section, and the store on its cluster when the stack has one."""
    local = parse_local_config(raw.get("local"), [key for key in raw if key != "local"], problems)
    if local is not None and store is not None:
        pithos = store.pithos
        check_store_on_local(local, context=store.context, replicas=store.cassandra.replicas,
                             anti_affinity=store.cassandra.anti_affinity,
                             build_registry=pithos.build.registry if pithos.build is not None else None,
                             node_port=pithos.node_port, endpoint=pithos.endpoint, problems=problems)
    return local


def parse_stack_config(raw: Mapping[str, Any], secret_keys: set[str] | None = None,
                       env: Mapping[str, str] | None = None) -> StackConfig:
    """Builds the typed model from raw values keyed without the namespace (e.g. `nodes`).

    Raises `ConfigError` listing every problem found, before anything is created.
    """
    problems = Problems()
    env = env or {}
    for unknown in sorted(set(raw) - set(TOP_LEVEL_KEYS)):
        problems.add(f"{NAMESPACE}:{unknown}", f"unknown key{did_you_mean(unknown, TOP_LEVEL_KEYS)}")
    ssh = parse_ssh(raw.get("ssh"), problems, env)
    nodes = parse_nodes(raw.get("nodes"), ssh, problems)
    secrets = _secret_values(raw, secret_keys or set(), problems)
    cloud = parse_cloud_config(raw.get("cloud"), problems, credentials_given=raw.keys(),
                               raw_prepare=raw.get("prepare"), other_nodes=[node.name for node in nodes])
    # Cloud nodes take roles like `nodes` entries; their address is their VM's, known only once it runs ("").
    every_node: tuple[NodeConfig | CloudNodeConfig, ...] = (*nodes, *(cloud.nodes if cloud is not None else ()))
    etcd_on_cloud = cloud is not None and any("etcd" in node.roles for node in cloud.nodes)
    config = StackConfig(
        nodes=nodes,
        ssh=ssh,
        prepare=parse_prepare(raw.get("prepare"), problems),
        secrets=SshSecrets(private_key=secrets["ssh_private_key"] or env.get(PRIVATE_KEY_ENV),
                           private_key_passphrase=secrets["ssh_private_key_passphrase"]),
        # A stack that builds its own Kubernetes cluster deploys the store onto it: no kubeconfig needed.
        store=parse_store_config(raw.get("store"), secrets["kubeconfig"],
                                 "kubeconfig" in raw or wants_kubernetes(raw.get("kubernetes"), every_node)
                                 or wants_local_kubernetes(raw.get("local")), problems,
                                 registry_password=secrets["registry_password"]),
        etcd=parse_etcd_config(raw.get("etcd"), every_node, problems,
                               nodes_key="cloud.nodes" if etcd_on_cloud else "nodes"),
        cloud=cloud,
    )
    etcd = config.etcd
    if cloud is not None:
        check_cloud_stack(cloud, ssh_nodes=[(node.name, node.roles) for node in nodes],
                          etcd_install=etcd.cluster.install if etcd else None, problems=problems)
    kubernetes = parse_kubernetes_config(raw.get("kubernetes"), every_node, etcd is not None,
                                         etcd.removed if etcd else (), problems)
    if kubernetes is not None and config.store is not None:
        check_store_placement(kubernetes, context=config.store.context,
                              replicas=config.store.cassandra.replicas,
                              anti_affinity=config.store.cassandra.anti_affinity, problems=problems)
    config = dataclasses.replace(config, kubernetes=kubernetes,
                                 zookeeper=parse_zookeeper_config(raw.get("zookeeper"), nodes, problems,
                                                                  etcd.removed if etcd else ()))
    config = dataclasses.replace(config, mesos=parse_mesos_config(
        raw.get("mesos"), nodes, problems, zookeeper_ensemble=config.zookeeper is not None))
    _check_ports(config, problems)
    config = dataclasses.replace(config, local=_parse_local(raw, config.store, problems))
    if "ssh_private_key" not in raw:  # a present but plain key was reported above
        _check_credentials(config, problems)
    problems.raise_if_any()
    return config
