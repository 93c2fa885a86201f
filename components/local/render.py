"""Pure renderers of the local (Docker) recipe: settings in, container settings and files out.

Nothing here talks to Docker. The etcd members' settings come from the etcd recipe's own renderers
(`components/etcd/render.py`: the env file and the bootstrap membership, read here as `KEY=VALUE` lines for
the container's environment); k3s's config.yaml comes from the Kubernetes recipe's (`server_config`,
`agent_config`, `config_yaml`). Structured files (k3s's registries.yaml, the kubeconfig) are built as data and
serialised with `yaml.safe_dump(sort_keys=True)`.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import shlex
from collections.abc import Sequence
from dataclasses import dataclass

import yaml

from components.etcd import render as etcd_render
from components.etcd.cluster import EtcdClusterArgs

# Where the etcd recipe's env file puts the member's PKI (`ETCD_*_FILE`) and data (`ETCD_DATA_DIR`).
ETCD_PKI_DIR = etcd_render.PKI_DIR
ETCD_DATA_ROOT = etcd_render.DATA_ROOT
K3S_STATE_DIR = "/var/lib/rancher/k3s"  # a named volume on every k3s container (the image declares it a VOLUME)
K3S_TLS_DIR = f"{K3S_STATE_DIR}/server/tls"  # k3s uses CA files found here at its first start instead of its own
K3S_REGISTRIES_FILE = "/etc/rancher/k3s/registries.yaml"
# A k3s node's password (the container's own filesystem, not the state volume): read when present, generated only
# when missing (k3s pkg/agent/config/config.go ensureNodePassword); uploaded here so it outlives the container.
K3S_NODE_PASSWORD_FILE = "/etc/rancher/node/password"
K3S_KUBELET_KUBECONFIG = f"{K3S_STATE_DIR}/agent/kubelet.kubeconfig"  # the node's own credentials (config.go)
K3S_CONTAINERD_SOCKET = "/run/k3s/containerd/containerd.sock"  # on the container's tmpfs /run: this start's only
# Asks this container's containerd (k3s's `ctr`, pkg/ctr/main.go) for its version: it answers only once k3s got past
# fetching the node's certificates with its password.
CONTAINERD_CHECK = ["k3s", "ctr", f"--address={K3S_CONTAINERD_SOCKET}", "--timeout=5s", "version"]
REGISTRY_DATA_DIR = "/var/lib/registry"  # the registry image's storage (its config.yml's rootdirectory)
REGISTRY_PORT = 5000  # inside the registry container
LOOPBACK = "127.0.0.1"
# Offsets of the fixed addresses in the network's subnet: the gateway is the first address (Docker's default).
REGISTRY_OFFSET, ETCD_OFFSET, SERVER_OFFSET, AGENT_OFFSET = 5, 11, 21, 31
MAX_ETCD_MEMBERS = SERVER_OFFSET - ETCD_OFFSET - 1  # 9: more than etcd's 7 anyway
MAX_AGENTS = 8
# Mesos (local.mesos): a master node's ZooKeeper, master and Marathon each have an address, then the agents'.
MESOS_ZOOKEEPER_OFFSET, MESOS_MASTER_OFFSET, MARATHON_OFFSET, MESOS_AGENT_OFFSET = 41, 44, 47, 51
MAX_MESOS_MASTERS = MESOS_MASTER_OFFSET - MESOS_ZOOKEEPER_OFFSET  # 3
MAX_MESOS_AGENTS = 8
HIGHEST_OFFSET = MESOS_AGENT_OFFSET + MAX_MESOS_AGENTS - 1  # 58
SMALLEST_PREFIX = 26  # a /26 holds every fixed address (HIGHEST_OFFSET < 63, its broadcast address)


@dataclass(frozen=True)
class Addresses:
    """The fixed addresses of every container on the local network."""

    gateway: str
    registry: str
    etcd: tuple[str, ...]
    server: str
    agents: tuple[str, ...]
    mesos_zookeepers: tuple[str, ...] = ()
    mesos_masters: tuple[str, ...] = ()
    marathons: tuple[str, ...] = ()
    mesos_agents: tuple[str, ...] = ()


def subnet_problem(subnet: str) -> str | None:
    """Why `subnet` cannot hold the local network's fixed addresses (None when it can)."""
    try:
        network = ipaddress.ip_network(subnet, strict=True)
    except ValueError as error:
        return f"must be an IPv4 network such as '10.213.0.0/24', got {subnet!r} ({error})"
    if network.version != 4:
        return f"must be an IPv4 network (Docker's bridge networks here are IPv4), got {subnet!r}"
    if network.prefixlen > SMALLEST_PREFIX:
        return f"must be a /{SMALLEST_PREFIX} or larger (its fixed addresses go up to .{HIGHEST_OFFSET}), " \
               f"got {subnet!r}"
    if network.is_loopback or network.is_link_local or network.is_multicast:
        return f"must be a private network range, got {subnet!r}"
    return None


def addresses(subnet: str, etcd_members: int, agents: int, mesos_masters: int = 0,
              mesos_agents: int = 0) -> Addresses:
    network = ipaddress.ip_network(subnet, strict=True)

    def host(offset: int) -> str:
        return str(network.network_address + offset)

    def hosts(offset: int, count: int) -> tuple[str, ...]:
        return tuple(host(offset + index) for index in range(count))

    return Addresses(gateway=host(1), registry=host(REGISTRY_OFFSET), etcd=hosts(ETCD_OFFSET, etcd_members),
                     server=host(SERVER_OFFSET), agents=hosts(AGENT_OFFSET, agents),
                     mesos_zookeepers=hosts(MESOS_ZOOKEEPER_OFFSET, mesos_masters),
                     mesos_masters=hosts(MESOS_MASTER_OFFSET, mesos_masters),
                     marathons=hosts(MARATHON_OFFSET, mesos_masters),
                     mesos_agents=hosts(MESOS_AGENT_OFFSET, mesos_agents))


def image_tag_of_k3s(version: str) -> str:
    """k3s's release `v1.34.7+k3s1` is the image tag `v1.34.7-k3s1` (`+` is not allowed in a tag)."""
    return version.replace("+", "-")


def parse_env(text: str) -> list[str]:
    """`KEY=VALUE` lines of an env file (comments and blank lines dropped), in file order."""
    return [line for line in (raw.strip() for raw in text.splitlines()) if line and not line.startswith("#")]


def etcd_member_env(args: EtcdClusterArgs, member: str, address: str, membership: str) -> list[str]:
    """A member container's environment: the etcd recipe's env file and bootstrap membership, unchanged (the
    official image's etcd reads `ETCD_*` variables as its flags)."""
    return parse_env(etcd_render.render_env_file(args, member, address)) + parse_env(membership)


def etcd_healthcheck(client_port: int) -> list[str]:
    """A member is healthy when the cluster answers through it: `endpoint health` reads a key with quorum, using
    the member's own certificate (server and client use) on loopback. Exec form: the image has no shell."""
    return ["CMD", "etcdctl", f"--endpoints={etcd_render.url(LOOPBACK, client_port)}",
            f"--cacert={ETCD_PKI_DIR}/ca.crt", f"--cert={ETCD_PKI_DIR}/member.crt",
            f"--key={ETCD_PKI_DIR}/member.key", "--command-timeout=5s", "endpoint", "health"]


def k3s_healthcheck(nodes: Sequence[str]) -> list[str]:
    """The server is healthy when its API answers and every node of the cluster is Ready (`k3s kubectl` reads
    the admin kubeconfig k3s writes in the container). Exec form: no shell needed."""
    return ["CMD", "k3s", "kubectl", "wait", "--for=condition=Ready", "--timeout=5s",
            *(f"node/{node}" for node in nodes)]


def k3s_agent_healthcheck(node: str) -> list[str]:
    """An agent is healthy when this container's k3s got its node certificates and the API reports its node Ready.
    k3s starts containerd and the kubelet only after the server signed the node's kubelet certificates, which it
    does only for the node password it holds (k3s pkg/agent/run.go: config.Get first); a rejected agent keeps
    retrying with neither. Its Node object alone would not tell: the node of a replaced container stays Ready for a
    while (its state volume even keeps the old kubelet credentials), so this container's containerd, whose socket is
    on its own tmpfs /run, is asked first. Shell form: two commands (the k3s image has /bin/sh: its
    package/Dockerfile runs RUN steps in it)."""
    ready = ["k3s", "kubectl", f"--kubeconfig={K3S_KUBELET_KUBECONFIG}", "wait", "--for=condition=Ready",
             "--timeout=5s", f"node/{node}"]
    hint = (f"k3s on {node} has not received its node certificates yet (if 'docker logs {node}' says 'Node "
            f"password rejected', the server holds another password for {node}: README, the local stack)")
    script = "\n".join([
        f"if ! {shlex.join(CONTAINERD_CHECK)} >/dev/null 2>&1; then",
        f"  echo {shlex.quote(hint)}",
        "  exit 1",
        "fi",
        f"exec {shlex.join(ready)}",
    ])
    return ["CMD-SHELL", script]


def node_password(key: str, node: str) -> str:
    """A k3s node's password: HMAC-SHA256 of its name under the cluster's secret `key`, as 32 hex characters (the
    shape of the password k3s generates itself). The same for the node's life, whatever happens to its container,
    and the same again for a node added back under its old name (the server keeps a removed node's password secret
    while its Node object exists); knowing one node's password tells nothing of another's."""
    return hmac.new(key.encode(), node.encode(), hashlib.sha256).hexdigest()[:32]


def registry_reference(port: int) -> str:
    """How images pushed to the local registry are named, on the engine and in the cluster alike."""
    return f"{LOOPBACK}:{port}"


def registries_yaml(reference: str, registry_address: str) -> str:
    """k3s's registries.yaml: pulls of `reference/...` go to the registry container on the local network (plain
    http, like k3d's local registries; it never leaves the Docker network)."""
    data = {"mirrors": {reference: {"endpoint": [f"http://{registry_address}:{REGISTRY_PORT}"]}}}
    return "# Written by cluster-cookbook (the local recipe).\n" + yaml.safe_dump(data, sort_keys=True,
                                                                              default_flow_style=False)


def host_endpoints(ports: Sequence[int]) -> list[str]:
    """The members' client URLs as this machine reaches them: their published loopback ports."""
    return [etcd_render.url(LOOPBACK, port) for port in ports]
