"""k3s in containers on the local Docker network, as k3d runs it: `rancher/k3s` privileged, tmpfs on /run and
/var/run, k3s as PID 1 (its own cgroup v2 evacuation then applies), its state on a volume; the servers keep their
state in the local etcd (mutual TLS), flannel (vxlan) between the nodes, the API published on 127.0.0.1.

k3s's config.yaml is the Kubernetes recipe's (`server_config`, `agent_config`); tokens and key material are
uploaded as secret files, never environment variables. The cluster's serving and client CAs are this stack's
(pulumi-tls): k3s uses CA files it finds in its TLS directory at its first start instead of generating its own
(docs.k3s.io "k3s certificate": custom CA certificates), so the admin kubeconfig is built here, as data, from an
admin certificate signed by the client CA: nothing has to be read back out of a container.

Resources (for `local-kubernetes`, one server and agents 1..n):

    local-kubernetes-token, -agent-token          random: the server token and the agent-only join token
    local-kubernetes-node-password-key            random: the secret each node's password is derived from
    local-kubernetes-server-ca-*, -client-ca-*    tls: k3s's server (serving) and client CAs (not protected: the
                                                  local stack is removed whole by `make destroy`)
    local-kubernetes-admin-*                      tls: the kubeconfig's client certificate (system:masters)
    local-kubernetes-state-<node>                 docker volume: /var/lib/rancher/k3s of each node
    local-kubernetes-server                       docker container: `k3s server`, created once healthy: its API
                                                  answers and every node is Ready (the store deploys after it)
    local-kubernetes-agent-<n>                    docker container: `k3s agent`, created once it joined (its
                                                  containerd runs) and its node is Ready; the first one publishes
                                                  the node ports
                                                  (a NodePort Service answers on every node)

Node passwords. The server admits a node's kubelet only with the password it saw first for that node name: it keeps
its hash as the secret `<node>.node-password.k3s` in kube-system (docs.k3s.io/architecture, "How Agent Node
Registration Works"; k3s pkg/nodepassword), here in the local etcd, so it outlives every container. A node reads
its password from /etc/rancher/node/password and generates one only when the file is missing (pkg/agent/config/
config.go ensureNodePassword); that file is in the container's own filesystem, not in the state volume, so a
replaced container would present a new one and be refused ("Node password rejected") forever. Every node (the
server's own agent too) therefore gets its password uploaded before its first start: derived from one random
secret of the cluster and the node's name (render.node_password), it is the same after any replacement, and for an
agent removed and added back under its old name. An agent container counts as created only when it joined (k3s
starts containerd only after the server signed its certificates) and its node is Ready
(render.k3s_agent_healthcheck), so a rejected agent fails the run instead of passing silently.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import ClassVar

import pulumi
import pulumi_docker as docker
import pulumi_random as random

from components.kubernetes.cluster import TOKEN_LENGTH, Datastore
from components.kubernetes.render import (
    CONFIG_FILE,
    K3S_VERSION,
    SECRETS_DIR,
    ApiAddress,
    ClusterSettings,
    NodePlan,
    admin_kubeconfig,
    agent_config,
    config_yaml,
    server_config,
)
from components.local import render
from components.local.containers import Limits, Published, Upload, container, volume
from components.shared import pki

K3S_IMAGE = f"rancher/k3s:{render.image_tag_of_k3s(K3S_VERSION)}"
API_PORT = 6443  # inside the server container
# As k3d runs its nodes (pkg/types/defaults.go DefaultTmpfsMounts) and k3s's docker-compose.yml.
TMPFS = {"/run": "", "/var/run": ""}
ULIMITS = {"nofile": 65535, "nproc": 65535}  # k3s's docker-compose.yml
# A laptop cluster: no Traefik ingress, no ServiceLB (klipper) for LoadBalancer Services; NodePorts serve instead.
DISABLED_COMPONENTS = ("servicelb", "traefik")
SERVER_LIMITS = Limits(memory_mb=2048, cpus="2")  # k3s server: API server, scheduler, controllers
AGENT_LIMITS = Limits(memory_mb=3072, cpus="2")  # kubelet, containerd and the workloads (Cassandra, Pithos)
NODE_PASSWORD_KEY_LENGTH = 64
READY_TIMEOUT = 600  # seconds the server may take to be Ready with every node (first start unpacks k3s's images)


@dataclass(frozen=True)
class LocalKubernetesArgs:
    """One k3s server and `agents` agents. `node_ports` are published on 127.0.0.1 from the first agent (from
    the server when there is none, which then also runs workloads)."""

    image: str = K3S_IMAGE
    agents: int = 1
    api_port: int = 6443  # on 127.0.0.1
    node_ports: tuple[int, ...] = (30080,)
    server_limits: Limits = SERVER_LIMITS
    agent_limits: Limits = AGENT_LIMITS
    settings: ClusterSettings = field(default_factory=lambda: ClusterSettings(disable=DISABLED_COMPONENTS))
    ready_timeout: int = READY_TIMEOUT


@dataclass(frozen=True)
class LocalKubernetesTarget:
    """Where the nodes run and what they use: network, addresses, pulled image, name prefix, the etcd datastore,
    the etcd containers (the server starts once they are healthy), a registry mirror and the kubeconfig's name."""

    prefix: str
    network: docker.Network
    server_address: str
    agent_addresses: Sequence[str]
    image: docker.RemoteImage
    datastore: Datastore
    etcd_containers: Sequence[docker.Container]
    registries_yaml: str | None = None
    context: str = "cookbook-local"


def node_names(prefix: str, agents: int) -> tuple[str, list[str]]:
    """(server, agents): node names, also their container names and hostnames."""
    return f"{prefix}-server", [f"{prefix}-agent-{index}" for index in range(1, agents + 1)]


class LocalKubernetes(pulumi.ComponentResource):
    """A k3s cluster in containers. Outputs resolve once the server reported every node Ready."""

    TYPE: ClassVar[str] = "cookbook:local:Kubernetes"
    api_endpoint: pulumi.Output[str]
    kubeconfig: pulumi.Output[str]
    node_names: pulumi.Output[list[str]]
    servers: pulumi.Output[list[str]]
    agents: pulumi.Output[list[str]]

    def __init__(self, name: str, args: LocalKubernetesArgs, target: LocalKubernetesTarget,
                 opts: pulumi.ResourceOptions | None = None):
        if len(target.agent_addresses) != args.agents:
            raise ValueError(f"LocalKubernetes {name!r}: {args.agents} agents need as many addresses")
        super().__init__(self.TYPE, name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        server_name, agent_names = node_names(target.prefix, args.agents)
        token = pulumi.Output.secret(
            random.RandomPassword(f"{name}-token", length=TOKEN_LENGTH, special=False, opts=child).result)
        agent_token = pulumi.Output.secret(
            random.RandomPassword(f"{name}-agent-token", length=TOKEN_LENGTH, special=False, opts=child).result)
        password_key = pulumi.Output.secret(random.RandomPassword(
            f"{name}-node-password-key", length=NODE_PASSWORD_KEY_LENGTH, special=False, opts=child).result)

        def node_password(node: str) -> Upload:
            return Upload(render.K3S_NODE_PASSWORD_FILE,
                          pulumi.Output.secret(password_key.apply(lambda key: render.node_password(key, node))),
                          "0600")
        server_ca = pki.certificate_authority(f"{name}-server-ca", f"{target.prefix} k3s server CA", self,
                                              protect=False)
        client_ca = pki.certificate_authority(f"{name}-client-ca", f"{target.prefix} k3s client CA", self,
                                              protect=False)
        admin = pki.issue_certificate(f"{name}-admin", client_ca, "cookbook-admin", organization="system:masters",
                                      uses=pki.CLIENT_USES, parent=self)

        server_roles = ("control-plane",) if args.agents else ("control-plane", "worker")
        server_plan = NodePlan(server_name, target.server_address, server_roles)
        api = ApiAddress(first_server=target.server_address, port=API_PORT)
        common = [Upload(render.K3S_REGISTRIES_FILE, target.registries_yaml)] if target.registries_yaml else []
        datastore = target.datastore
        server_config_text = pulumi.Output.from_input(datastore.endpoints).apply(
            lambda endpoints: config_yaml(server_config(server_plan, args.settings, api, list(endpoints))))
        state = {node: volume(f"{name}-state-{node}", f"{node}-state", self) for node in [server_name, *agent_names]}
        node_ports = [Published(port, port) for port in args.node_ports]
        server = container(
            f"{name}-server", parent=self, name=server_name, image=target.image, network=target.network,
            address=target.server_address, limits=args.server_limits, command=["server"],
            volumes={render.K3S_STATE_DIR: state[server_name]},
            uploads=[Upload(CONFIG_FILE, server_config_text), *common, node_password(server_name),
                     Upload(f"{SECRETS_DIR}/token", token, "0600"),
                     Upload(f"{SECRETS_DIR}/agent-token", agent_token, "0600"),
                     Upload(f"{SECRETS_DIR}/datastore-ca.crt", datastore.ca_cert_pem, "0600"),
                     Upload(f"{SECRETS_DIR}/datastore-client.crt", datastore.client_cert_pem, "0600"),
                     Upload(f"{SECRETS_DIR}/datastore-client.key",
                            pulumi.Output.secret(datastore.client_key_pem), "0600"),
                     Upload(f"{render.K3S_TLS_DIR}/server-ca.crt", server_ca.cert_pem),
                     Upload(f"{render.K3S_TLS_DIR}/server-ca.key", server_ca.key_pem, "0600"),
                     Upload(f"{render.K3S_TLS_DIR}/client-ca.crt", client_ca.cert_pem),
                     Upload(f"{render.K3S_TLS_DIR}/client-ca.key", client_ca.key_pem, "0600")],
            published=[Published(API_PORT, args.api_port), *([] if args.agents else node_ports)],
            healthcheck=render.k3s_healthcheck([server_name, *agent_names]), wait_timeout=args.ready_timeout,
            privileged=True, tmpfs=TMPFS, ulimits=ULIMITS,
            # The datastore answers first: each etcd container is created once the cluster is healthy.
            depends_on=list(target.etcd_containers))
        agents = []
        for index, (agent, address) in enumerate(zip(agent_names, target.agent_addresses, strict=True), start=1):
            plan = NodePlan(agent, address, ("worker",))
            agents.append(container(
                f"{name}-agent-{index}", parent=self, name=agent, image=target.image,
                network=target.network, address=address, limits=args.agent_limits, command=["agent"],
                volumes={render.K3S_STATE_DIR: state[agent]},
                uploads=[Upload(CONFIG_FILE, config_yaml(agent_config(plan, args.settings, api))), *common,
                         Upload(f"{SECRETS_DIR}/agent-token", agent_token, "0600"), node_password(agent)],
                published=node_ports if index == 1 else [],
                # Created means joined (the server accepted its password) and its node is Ready.
                healthcheck=render.k3s_agent_healthcheck(agent), wait_timeout=args.ready_timeout,
                privileged=True, tmpfs=TMPFS, ulimits=ULIMITS))

        self.api_endpoint = server.id.apply(lambda _: f"https://{render.LOOPBACK}:{args.api_port}")
        # After every node container too: what uses the cluster is deleted before any node on `make destroy`
        # (a pod on a removed agent would hold its namespace's deletion for minutes).
        nodes_created = pulumi.Output.all(*(agent.id for agent in agents))
        self.kubeconfig = pulumi.Output.secret(pulumi.Output.all(
            server.id, server_ca.cert_pem, admin.cert_pem, admin.key_pem, nodes_created).apply(
            # (Test mocks that answer no PEM give None: it renders empty, as `_pem_bundle` does for etcd.)
            lambda values: admin_kubeconfig(target.context, f"https://{render.LOOPBACK}:{args.api_port}",
                                             *(value or "" for value in values[1:4]))))
        self.node_names = server.id.apply(lambda _: [server_name, *agent_names])
        self.servers = server.id.apply(lambda _: [server_name])
        self.agents = server.id.apply(lambda _: list(agent_names))
        self.register_outputs({
            "api_endpoint": self.api_endpoint,
            "kubeconfig": self.kubeconfig,
            "node_names": self.node_names,
            "servers": self.servers,
            "agents": self.agents,
        })
