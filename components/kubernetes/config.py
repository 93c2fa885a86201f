"""The `kubernetes` section of a stack's config, and the rules that involve `nodes` and `etcd`.

Kubernetes runs when the section is present or a node has role `control-plane` or `worker`: k3s servers on
control-plane nodes, agents on worker-only nodes. Every problem names its key path, all at once, before any
resource exists. Checks that need a node's facts (memory cgroup, WireGuard, architecture) happen at that
node's step (`components.kubernetes.cluster.check_facts`).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from components.kubernetes.cluster import KubernetesClusterArgs
from components.kubernetes.render import (
    ARCHITECTURES,
    CA_MODES,
    FLANNEL_BACKENDS,
    INSTALL_MODES,
    INSTALL_SCRIPT_SHA256,
    K3S_VERSION,
    ROLES,
    AirgapArtifacts,
    Artifact,
    ClusterSettings,
)
from components.shared.validation import (
    NodeLike,
    Problems,
    Section,
    check_address,
    check_port,
    check_positive,
    one_of,
)

# `k3s server --disable` items of the pinned version (pkg/cli/cmds/stage.go DisableItems).
DISABLE_ITEMS = ("coredns", "servicelb", "traefik", "local-storage", "metrics-server", "runtimes")
_VERSION = re.compile(r"^v\d+\.\d+\.\d+\+k3s\d+$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_INTERFACE = re.compile(r"^[A-Za-z0-9_.:-]{1,15}$")
_DOMAIN = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)(\.(?!-)[a-z0-9-]{1,63}(?<!-))*$")


@dataclass(frozen=True)
class KubernetesConfig:
    """The `kubernetes` section: which nodes run k3s with which roles (in `nodes` order), and the cluster's
    settings, whose `nodes`, `datastore` and `context` the program fills in."""

    nodes: tuple[str, ...]
    roles: Mapping[str, tuple[str, ...]]
    cluster: KubernetesClusterArgs

    @property
    def servers(self) -> tuple[str, ...]:
        return tuple(name for name in self.nodes if "control-plane" in self.roles[name])

    @property
    def agents(self) -> tuple[str, ...]:
        return tuple(name for name in self.nodes if "control-plane" not in self.roles[name])

    @property
    def schedulable(self) -> tuple[str, ...]:
        """Nodes that run workloads: role worker (a control-plane-only node is tainted NoSchedule)."""
        return tuple(name for name in self.nodes if "worker" in self.roles[name])


def wants_kubernetes(raw: Any, nodes: Sequence[NodeLike]) -> bool:
    return raw is not None or any(set(node.roles) & set(ROLES) for node in nodes)


def _check_version(value: str) -> str | None:
    return None if _VERSION.match(value) else f"must be a k3s release such as {K3S_VERSION!r}, got {value!r}"


def _check_sha256(value: str) -> str | None:
    return None if _SHA256.match(value) else "must be 64 lowercase hex digits (`sha256sum FILE`)"


def _check_network(value: str) -> str | None:
    try:
        ipaddress.ip_network(value, strict=True)
        return None
    except ValueError:
        return f"must be a network in CIDR notation such as 10.42.0.0/16, got {value!r}"


def _check_ip(value: str) -> str | None:
    try:
        ipaddress.ip_address(value)
        return None
    except ValueError:
        return f"must be an IP address, got {value!r}"


def _check_domain(value: str) -> str | None:
    return None if _DOMAIN.match(value) else f"must be a DNS domain such as cluster.local, got {value!r}"


def _check_interface(value: str) -> str | None:
    return None if _INTERFACE.match(value) else f"must be a network interface name such as eth0, got {value!r}"


def _artifact(raw: Any, path: str, problems: Problems) -> Artifact:
    section = Section(raw, path, problems)
    file = section.required("path", str, "")
    sha256 = section.required("sha256", str, "", _check_sha256)
    section.finish()
    if file and not Path(file).expanduser().is_file():
        problems.add(f"{path}.path", f"no such file on this machine: {file}")
    return Artifact(str(Path(file).expanduser()) if file else "", sha256)


def _parse_airgap(raw: Any, problems: Problems) -> dict[str, AirgapArtifacts]:
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        problems.add("kubernetes.airgap", "must map an architecture (amd64, arm64, armhf) to {binary, images}")
        return {}
    assets = {}
    for arch in sorted(raw):
        path = f"kubernetes.airgap.{arch}"
        if arch not in ARCHITECTURES:
            problems.add(path, f"unknown architecture; k3s ships {', '.join(ARCHITECTURES)}")
            continue
        section = Section(raw[arch], path, problems)
        binary = _artifact(section.raw("binary"), f"{path}.binary", problems)
        images = _artifact(section.raw("images"), f"{path}.images", problems)
        section.finish()
        assets[arch] = AirgapArtifacts(binary, images)
    return assets


def _parse_settings(section: Section, problems: Problems) -> ClusterSettings:
    base = ClusterSettings()
    service_cidr = section.value("service_cidr", str, base.service_cidr, _check_network)
    default_dns = base.cluster_dns
    if service_cidr != base.service_cidr:  # the tenth address of the service network, as k3s's default
        default_dns = str(ipaddress.ip_network(service_cidr)[10])
    flannel = Section(section.raw("flannel"), "kubernetes.flannel", problems)
    settings = ClusterSettings(
        cluster_cidr=section.value("cluster_cidr", str, base.cluster_cidr, _check_network),
        service_cidr=service_cidr,
        cluster_dns=section.value("cluster_dns", str, default_dns, _check_ip),
        cluster_domain=section.value("cluster_domain", str, base.cluster_domain, _check_domain),
        flannel_backend=flannel.value("backend", str, base.flannel_backend, one_of(FLANNEL_BACKENDS)),
        flannel_iface=flannel.value("iface", str, None, _check_interface),
        secrets_encryption=section.value("secrets_encryption", bool, base.secrets_encryption),
        disable=tuple(sorted(set(section.strings("disable", (), one_of(DISABLE_ITEMS))))),
        prefer_bundled_bin=section.value("prefer_bundled_bin", bool, base.prefer_bundled_bin),
    )
    flannel.finish()
    return settings


def _check_networks(settings: ClusterSettings, nodes: Sequence[NodeLike], problems: Problems) -> None:
    try:
        cluster = ipaddress.ip_network(settings.cluster_cidr)
        service = ipaddress.ip_network(settings.service_cidr)
    except ValueError:
        return  # reported where it was read
    if cluster.overlaps(service):
        problems.add("kubernetes.service_cidr",
                     f"{service} overlaps kubernetes.cluster_cidr {cluster}; pods and services need separate ranges")
    for key, network in (("cluster_cidr", cluster), ("service_cidr", service)):
        for node in nodes:
            try:
                address = ipaddress.ip_address(node.address)
            except ValueError:
                continue  # a DNS name: its address is not known here
            if address.version == network.version and address in network:
                problems.add(f"kubernetes.{key}",
                             f"{network} contains the address of node {node.name} ({address}); "
                             "choose a range outside the node network")
    try:
        dns = ipaddress.ip_address(settings.cluster_dns)
    except ValueError:
        return
    if dns.version != service.version or dns not in service:
        problems.add("kubernetes.cluster_dns", f"{dns} is not inside kubernetes.service_cidr {service}")


def parse_kubernetes_config(raw: Any, nodes: Sequence[NodeLike], has_etcd: bool, etcd_removed: Collection[str],
                            problems: Problems) -> KubernetesConfig | None:
    """None when the stack has no Kubernetes: no `kubernetes` section and no node with role control-plane or
    worker. `has_etcd`: the stack has an etcd cluster (k3s's datastore); `etcd_removed`: nodes nothing runs on."""
    if not wants_kubernetes(raw, nodes):
        return None
    section = Section(raw, "kubernetes", problems)
    members: list[str] = []
    roles: dict[str, tuple[str, ...]] = {}
    for index, node in enumerate(nodes):
        kubernetes_roles = tuple(role for role in node.roles if role in ROLES)
        if not kubernetes_roles:
            continue
        if node.name in etcd_removed:
            problems.add(f"nodes[{index}].roles",
                         f"{node.name} is in etcd.removed (nothing runs on it), so it cannot have role "
                         f"{' or '.join(kubernetes_roles)}; give the role to a node that runs")
            continue
        members.append(node.name)
        roles[node.name] = kubernetes_roles
    if not any("control-plane" in node_roles for node_roles in roles.values()):
        problems.add("nodes", "no node has role control-plane; Kubernetes needs at least one (k3s servers run on "
                              "control-plane nodes, agents on worker nodes)")
    if not has_etcd:
        problems.add("kubernetes", "k3s keeps its state in the project's etcd: give 1, 3 or 5 nodes role etcd")

    version = section.value("version", str, K3S_VERSION, _check_version)
    install = section.value("install", str, "online", one_of(INSTALL_MODES))
    known_sha = INSTALL_SCRIPT_SHA256.get(version, "")
    script_sha = section.value("install_script_sha256", str, known_sha, _check_sha256)
    if install == "online" and not script_sha and not section.has("install_script_sha256"):
        problems.add("kubernetes.install_script_sha256",
                     f"required for version {version} in online mode (`curl -sfL https://raw.githubusercontent.com/"
                     f"k3s-io/k3s/{version.replace('+', '%2B')}/install.sh | sha256sum`); the recipe knows "
                     f"it for {', '.join(sorted(INSTALL_SCRIPT_SHA256))}")
    airgap = _parse_airgap(section.raw("airgap"), problems)
    if install == "airgap" and not airgap and section.raw("airgap") is None:
        problems.add("kubernetes.airgap", "kubernetes.install is airgap: give {binary: {path, sha256}, "
                                          "images: {path, sha256}} for each node architecture (amd64, arm64, armhf)")
    api = Section(section.raw("api"), "kubernetes.api", problems)
    api_name = api.value("name", str, None, check_address)
    api_port = api.value("port", int, 6443, check_port)
    api.finish()
    settings = _parse_settings(section, problems)
    cluster = KubernetesClusterArgs(
        version=version,
        install=install,
        airgap=airgap,
        install_script_sha256=script_sha,
        settings=settings,
        api_name=api_name,
        api_port=api_port,
        ready_timeout=section.value("ready_timeout", int, 300, check_positive),
        drain_timeout=section.value("drain_timeout", int, 300, check_positive),
        ca=section.value("ca", str, "cookbook", one_of(CA_MODES)),
    )
    section.finish()
    _check_networks(settings, nodes, problems)
    return KubernetesConfig(nodes=tuple(members), roles=roles, cluster=cluster)


def check_store_placement(kubernetes: KubernetesConfig, *, context: str | None, replicas: int,
                          anti_affinity: bool, problems: Problems) -> None:
    """The object store of a stack that builds its own cluster goes onto that cluster (a kubeconfig secret is
    then not used): no context of another kubeconfig, and (with anti-affinity, one Cassandra pod per node) no
    more Cassandra replicas than schedulable nodes."""
    if context is not None:
        problems.add("store.context", "this stack builds its own Kubernetes cluster and the store goes onto it: "
                                      "remove store.context")
    schedulable = kubernetes.schedulable
    if anti_affinity and replicas > len(schedulable):
        problems.add("store.cassandra.replicas",
                     f"{replicas} replicas with anti_affinity need {replicas} schedulable nodes; the cluster has "
                     f"{len(schedulable)} (role worker: {', '.join(schedulable) or 'none'})")
