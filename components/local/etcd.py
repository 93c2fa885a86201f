"""etcd in containers on the local Docker network: the etcd recipe's PKI (mutual TLS for peers and clients, an
operator and a kube-apiserver client certificate) and its member settings, run by the official image.

Resources (for `local-etcd` with members cookbook-local-etcd-1..3):

    local-etcd-ca-key, local-etcd-ca              tls: the cluster CA (not protected: `make destroy` removes the
                                                  local stack entirely; a host cluster's CA is)
    local-etcd-operator-*, local-etcd-apiserver-* tls: client certificates (etcdctl, k3s's datastore client)
    local-etcd-member-<member>-key/-csr/-cert     tls: each member's server+peer certificate (its name, address,
                                                  localhost and 127.0.0.1: clients come through published ports)
    local-etcd-membership                         dynamic (MembershipGuard): the member count the cluster was
                                                  created with; refuses a different one (see below)
    local-etcd-data-<member>                      docker volume: the member's data directory
    local-etcd-container-<member>                 docker container: etcd with the recipe's env file as its
                                                  environment, certificates uploaded (secret), client port
                                                  published on 127.0.0.1; created once the cluster answers
                                                  through it (`endpoint health`, a quorum read)

Members start together: each one's health needs a quorum, so none could wait for another to be created first.

The member count is fixed for the cluster's life. Every member starts from the etcd recipe's bootstrap membership
(ETCD_INITIAL_CLUSTER listing all of them, ETCD_INITIAL_CLUSTER_STATE=new): members added later would bootstrap a
cluster of their own (etcd's runtime reconfiguration, `member add` before the new member starts with
INITIAL_CLUSTER_STATE=existing, is not implemented here), and the members left after a shrink keep the old
membership and lose their quorum. So `local-etcd-membership` records the count in its inputs, and its `check` (which
the engine runs with the previous inputs, at preview and before any step of `up`) refuses another one, naming
`local.etcd.members` and saying to `make destroy` first; every member's volume and container waits for it. A new
`prefix` is a new cluster (other names everywhere): any count goes. A stack created before the guard existed gets
its record on its first run with it (a count changed in that same run is not caught).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import pulumi
import pulumi_docker as docker
from pulumi import dynamic

from components.etcd import render as etcd_render
from components.etcd.cluster import EtcdClusterArgs, ca_resource_name
from components.local import render
from components.local.containers import Limits, Published, Upload, container, volume
from components.shared import pki

ETCD_IMAGE = "gcr.io/etcd-development/etcd:v3.6.14"  # multi-arch (amd64, arm64, ppc64le, s390x), distroless
CLIENT_PORT, PEER_PORT = 2379, 2380  # inside the containers
DEFAULT_CLIENT_PORTS = (2379, 22379, 32379)  # published on 127.0.0.1, one per member (etcd's own Procfile's ports)
ETCD_LIMITS = Limits(memory_mb=256, cpus="0.5")
HEALTH_TIMEOUT = 180  # seconds a member may take to become healthy (a first start pulls nothing: images are pulled)
MEMBERS_KEY = "local.etcd.members"


@dataclass(frozen=True)
class LocalEtcdArgs:
    """etcd members in containers. `client_ports[i]` publishes member i's client port on 127.0.0.1."""

    image: str = ETCD_IMAGE
    members: int = 3
    client_ports: tuple[int, ...] = DEFAULT_CLIENT_PORTS
    limits: Limits = ETCD_LIMITS
    heartbeat_interval: int = 100
    election_timeout: int = 1000


@dataclass(frozen=True)
class LocalEtcdTarget:
    """Where the members run: the network, their addresses on it, the pulled image and the name prefix."""

    prefix: str
    network: docker.Network
    addresses: Sequence[str]
    image: docker.RemoteImage


def member_names(prefix: str, count: int) -> list[str]:
    """Member names, also their container names and hostnames: one name everywhere (`member list`, `docker ps`)."""
    return [f"{prefix}-etcd-{index}" for index in range(1, count + 1)]


def cluster_args(prefix: str, args: LocalEtcdArgs) -> EtcdClusterArgs:
    """The etcd recipe's settings for the members' env files (no hosts: the members are containers)."""
    return EtcdClusterArgs(members=(), client_port=CLIENT_PORT, peer_port=PEER_PORT, cluster_token=f"{prefix}-etcd",
                           heartbeat_interval=args.heartbeat_interval, election_timeout=args.election_timeout)


def membership_change_problem(previous: int | None, wanted: int) -> str | None:
    """Why a cluster created with `previous` members cannot be run with `wanted` (None when it can)."""
    if previous is None or previous == wanted:
        return None
    return (f"{MEMBERS_KEY}: the local etcd cluster was created with {previous} members and cannot change to "
            f"{wanted}: every member starts from the membership of the first `up` (ETCD_INITIAL_CLUSTER lists all "
            "of them, ETCD_INITIAL_CLUSTER_STATE=new), so added members would form a cluster of their own and the "
            f"members left after a shrink would lose their quorum. Set {MEMBERS_KEY} back to {previous}, or run "
            "`make destroy` first (it removes the cluster with its data, and Kubernetes on it), then `make up` with "
            f"{wanted} members.")


class _MembershipGuardProvider(dynamic.ResourceProvider):
    """Compares the wanted member count with the recorded one: the engine passes the previous inputs to `check`
    (pulumi/dynamic/__main__.py Check), at preview and before any step of an update."""

    KEYS = ("members", "cluster")

    def check(self, _olds: dict[str, Any], news: dict[str, Any]) -> dynamic.CheckResult:
        failures = []
        previous = _olds.get("members")
        if previous is not None and _olds.get("cluster") == news.get("cluster"):
            problem = membership_change_problem(int(previous), int(news["members"]))
            if problem is not None:
                failures.append(dynamic.CheckFailure("members", problem))
        return dynamic.CheckResult(news, failures)

    def diff(self, _id: str, _olds: dict[str, Any], _news: dict[str, Any]) -> dynamic.DiffResult:
        replaces = ["cluster"] if _olds.get("cluster") != _news.get("cluster") else []
        return dynamic.DiffResult(changes=any(_olds.get(key) != _news.get(key) for key in self.KEYS),
                                  replaces=replaces, delete_before_replace=False)

    def create(self, props: dict[str, Any]) -> dynamic.CreateResult:
        return dynamic.CreateResult(id_=str(props["cluster"]), outs=props)

    def update(self, _id: str, _olds: dict[str, Any], _news: dict[str, Any]) -> dynamic.UpdateResult:
        return dynamic.UpdateResult(outs=_news)


class MembershipGuard(dynamic.Resource):
    """Records the member count of the etcd cluster `cluster` (its token) and refuses to change it."""

    def __init__(self, name: str, members: int, cluster: str, opts: pulumi.ResourceOptions | None = None):
        super().__init__(_MembershipGuardProvider(), name, {"members": members, "cluster": cluster}, opts)


class LocalEtcd(pulumi.ComponentResource):
    """An etcd cluster in containers. Outputs resolve once every member reported the cluster healthy."""

    TYPE: ClassVar[str] = "cookbook:local:Etcd"
    client_endpoints: pulumi.Output[list[str]]  # from this machine: https://127.0.0.1:<published port>
    network_endpoints: pulumi.Output[list[str]]  # from containers on the network: https://<address>:2379
    ca_cert_pem: pulumi.Output[str]
    client_cert_pem: pulumi.Output[str]
    client_key_pem: pulumi.Output[str]
    apiserver_client_cert_pem: pulumi.Output[str]
    apiserver_client_key_pem: pulumi.Output[str]
    etcdctl_env: pulumi.Output[str]
    expires: pulumi.Output[str]
    containers: list[docker.Container]

    def __init__(self, name: str, args: LocalEtcdArgs, target: LocalEtcdTarget,
                 opts: pulumi.ResourceOptions | None = None):
        if len(target.addresses) != args.members or len(args.client_ports) != args.members:
            raise ValueError(f"LocalEtcd {name!r}: {args.members} members need as many addresses and client_ports")
        super().__init__(self.TYPE, name, None, opts)
        settings = cluster_args(target.prefix, args)
        names = member_names(target.prefix, args.members)
        addresses = dict(zip(names, target.addresses, strict=True))
        membership = etcd_render.bootstrap_membership(settings, names, addresses)
        guard = MembershipGuard(f"{name}-membership", args.members, settings.cluster_token,
                                opts=pulumi.ResourceOptions(parent=self))

        ca = pki.certificate_authority(ca_resource_name(name, 1), f"{target.prefix} etcd CA", self, protect=False)
        operator = pki.issue_certificate(f"{name}-operator", ca, "etcd-operator", uses=pki.CLIENT_USES, parent=self)
        apiserver = pki.issue_certificate(f"{name}-apiserver", ca, "kube-apiserver-etcd-client",
                                          uses=pki.CLIENT_USES, parent=self)
        certificates = [ca, operator, apiserver]
        self.containers = []
        for member, address, host_port in zip(names, target.addresses, args.client_ports, strict=True):
            cert = pki.issue_certificate(
                f"{name}-member-{member}", ca, member, uses=pki.SERVER_AND_CLIENT_USES,
                alternative_names=sorted({member, address, "localhost", render.LOOPBACK, "::1"}), parent=self)
            certificates.append(cert)
            # The member count is the recorded one before anything of a member exists on the engine.
            data = volume(f"{name}-data-{member}", f"{member}-data", self, depends_on=[guard])
            self.containers.append(container(
                f"{name}-container-{member}", parent=self, name=member, image=target.image,
                network=target.network, address=address, limits=args.limits,
                command=["etcd"],
                envs=render.etcd_member_env(settings, member, address, membership),
                volumes={render.ETCD_DATA_ROOT: data},
                uploads=[Upload(f"{render.ETCD_PKI_DIR}/ca.crt", ca.cert_pem),
                         Upload(f"{render.ETCD_PKI_DIR}/member.crt", cert.cert_pem),
                         Upload(f"{render.ETCD_PKI_DIR}/member.key", pulumi.Output.secret(cert.key_pem), "0600")],
                published=[Published(CLIENT_PORT, host_port)],
                healthcheck=render.etcd_healthcheck(CLIENT_PORT), wait_timeout=HEALTH_TIMEOUT,
                # The member count is the recorded one (a member started with another list would split).
                depends_on=[guard]))

        healthy = pulumi.Output.all(*(member.id for member in self.containers))

        def after_health(value: pulumi.Input[Any]) -> pulumi.Output[Any]:
            return pulumi.Output.all(healthy, value).apply(lambda both: both[1])

        host_urls = render.host_endpoints(args.client_ports)
        self.client_endpoints = after_health(host_urls)
        self.network_endpoints = after_health(
            [etcd_render.url(address, CLIENT_PORT) for address in target.addresses])
        self.ca_cert_pem = after_health(ca.cert_pem)
        self.client_cert_pem = pulumi.Output.secret(after_health(operator.cert_pem))
        self.client_key_pem = pulumi.Output.secret(after_health(operator.key_pem))
        self.apiserver_client_cert_pem = pulumi.Output.secret(after_health(apiserver.cert_pem))
        self.apiserver_client_key_pem = pulumi.Output.secret(after_health(apiserver.key_pem))
        self.etcdctl_env = after_health(
            etcd_render.render_etcdctl_env(settings, list(target.addresses), client_urls=host_urls))
        self.expires = pki.earliest([pair.expires for pair in certificates])
        self.register_outputs({
            "client_endpoints": self.client_endpoints,
            "network_endpoints": self.network_endpoints,
            "ca_cert_pem": self.ca_cert_pem,
            "client_cert_pem": self.client_cert_pem,
            "client_key_pem": self.client_key_pem,
            "apiserver_client_cert_pem": self.apiserver_client_cert_pem,
            "apiserver_client_key_pem": self.apiserver_client_key_pem,
            "etcdctl_env": self.etcdctl_env,
            "expires": self.expires,
        })
