"""The `kubernetes` config section: every problem named with its key path, all at once, before any resource."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pulumi
import pytest

from components.kubernetes.render import K3S_VERSION
from components.shared.validation import ConfigError
from components.stack import parse_stack_config
from tests.harness.fixtures import FAKE_PRIVATE_KEY
from tests.harness.program import run_program
from tests.harness.recording import RecordingMocks

ADDRESSES = {"cp-a": "10.9.0.1", "cp-b": "10.9.0.2", "cp-c": "10.9.0.3", "w-a": "10.9.0.4", "w-b": "10.9.0.5"}
ROLES = {"cp-a": ["etcd", "control-plane"], "cp-b": ["etcd", "control-plane"], "cp-c": ["etcd", "control-plane"],
         "w-a": ["worker"], "w-b": ["worker"]}


def stack_config(roles: dict[str, list[str]] | None = None, **kubernetes: Any) -> dict[str, Any]:
    roles = ROLES if roles is None else roles
    raw: dict[str, Any] = {
        "nodes": [{"name": name, "address": ADDRESSES[name], "roles": node_roles}
                  for name, node_roles in roles.items()],
        "ssh_private_key": FAKE_PRIVATE_KEY,
        "kubernetes": kubernetes,
    }
    if any("etcd" in node_roles for node_roles in roles.values()):
        raw["etcd"] = {"bootstrap": [name for name, node_roles in roles.items() if "etcd" in node_roles]}
    return raw


def problems_of(raw: dict[str, Any]) -> list[str]:
    with pytest.raises(ConfigError) as failure:
        parse_stack_config(raw, {"ssh_private_key"})
    return failure.value.problems


def artifact(tmp_path: Path, name: str) -> dict[str, str]:
    path = tmp_path / name
    path.write_bytes(b"x")
    return {"path": str(path), "sha256": "0" * 64}


@pytest.mark.parametrize(("settings", "expected"), [
    ({"flannel": {"backend": "udp"}},
     "kubernetes.flannel.backend: must be one of vxlan, host-gw, wireguard-native, none, got 'udp'"),
    ({"flannel": {"iface": "eth 0"}}, "kubernetes.flannel.iface: must be a network interface name"),
    ({"install": "airgap"}, "kubernetes.airgap: kubernetes.install is airgap: give {binary: {path, sha256}"),
    ({"install": "snap"}, "kubernetes.install: must be one of online, airgap, preinstalled, got 'snap'"),
    ({"airgap": {"arm": {}}}, "kubernetes.airgap.arm: unknown architecture; k3s ships amd64, arm64, armhf"),
    ({"airgap": {"arm64": {"binary": {"path": "/nonexistent/k3s", "sha256": "0" * 64}}}},
     "kubernetes.airgap.arm64.binary.path: no such file on this machine: /nonexistent/k3s"),
    ({"airgap": {"arm64": {"binary": {"path": "/nonexistent/k3s", "sha256": "0" * 64}}}},
     "kubernetes.airgap.arm64.images.path: is required"),
    ({"airgap": {"arm64": {"binary": {"path": "/etc/hostname", "sha256": "ABC"}}}},
     "kubernetes.airgap.arm64.binary.sha256: must be 64 lowercase hex digits"),
    ({"version": "1.34.7"}, "kubernetes.version: must be a k3s release such as 'v1.34.7+k3s1', got '1.34.7'"),
    ({"version": "v1.35.0+k3s1"}, "kubernetes.install_script_sha256: required for version v1.35.0+k3s1 in online"),
    ({"cluster_cidr": "10.9.0.0/16"},
     "kubernetes.cluster_cidr: 10.9.0.0/16 contains the address of node cp-a (10.9.0.1); choose a range outside"),
    ({"service_cidr": "10.9.0.0/24", "cluster_dns": "10.9.0.10"},
     "kubernetes.service_cidr: 10.9.0.0/24 contains the address of node w-b (10.9.0.5)"),
    ({"cluster_cidr": "10.42.0.0/16", "service_cidr": "10.42.128.0/17"},
     "kubernetes.service_cidr: 10.42.128.0/17 overlaps kubernetes.cluster_cidr 10.42.0.0/16"),
    ({"cluster_cidr": "10.42.0.1/16"}, "kubernetes.cluster_cidr: must be a network in CIDR notation"),
    ({"cluster_dns": "10.42.0.10"}, "kubernetes.cluster_dns: 10.42.0.10 is not inside kubernetes.service_cidr"),
    ({"cluster_domain": "Cluster_Local"}, "kubernetes.cluster_domain: must be a DNS domain"),
    ({"disable": ["traefik", "ingress"]},
     "kubernetes.disable[1]: must be one of coredns, servicelb, traefik, local-storage, metrics-server, runtimes"),
    ({"api": {"name": "bad name"}}, "kubernetes.api.name: must be an IPv4/IPv6 address or a DNS name"),
    ({"api": {"port": 0}}, "kubernetes.api.port: must be a TCP port"),
    ({"drain_timeout": 0}, "kubernetes.drain_timeout: must be greater than 0"),
    ({"secrets_encryption": "yes"}, "kubernetes.secrets_encryption: must be a boolean"),
    ({"flanel": {}}, "kubernetes.flanel: unknown key (did you mean 'flannel'?)"),
])
def test_settings_are_validated_naming_the_key(settings: dict[str, Any], expected: str) -> None:
    found = problems_of(stack_config(**settings))
    assert any(problem.startswith(expected) for problem in found), found


def test_kubernetes_needs_a_control_plane_node() -> None:
    roles = {"cp-a": ["etcd"], "w-a": ["worker"]}
    assert "nodes: no node has role control-plane; Kubernetes needs at least one (k3s servers run on " \
           "control-plane nodes, agents on worker nodes)" in problems_of(stack_config(roles))


def test_kubernetes_needs_etcd() -> None:
    roles = {"cp-a": ["control-plane"], "w-a": ["worker"]}
    assert "kubernetes: k3s keeps its state in the project's etcd: give 1, 3 or 5 nodes role etcd" \
        in problems_of(stack_config(roles))


def test_a_node_nothing_runs_on_cannot_have_a_kubernetes_role() -> None:
    """Nodes in etcd.removed get no Host: a Kubernetes role there names a node the cluster cannot have."""
    raw = stack_config({**ROLES, "w-b": ["etcd", "worker"]})
    raw["etcd"] = {"bootstrap": ["cp-a", "cp-b", "w-b"], "removed": ["w-b"]}
    found = problems_of(raw)
    assert any(p.startswith("nodes[4].roles: w-b is in etcd.removed (nothing runs on it), so it cannot have role "
                            "worker") for p in found), found


def test_every_problem_is_reported_at_once() -> None:
    found = problems_of(stack_config({"cp-a": ["control-plane"]}, flannel={"backend": "udp"},
                                     cluster_cidr="10.9.0.0/16", install="airgap"))
    assert {problem.split(":")[0] for problem in found} == {
        "kubernetes", "kubernetes.flannel.backend", "kubernetes.cluster_cidr", "kubernetes.airgap"}


def test_store_replicas_must_fit_the_schedulable_nodes() -> None:
    raw = stack_config()
    raw["store"] = {"cassandra": {"replicas": 3, "anti_affinity": True, "seeds": [0, 1]},
                    "pithos": {"image": "registry.lan/pithos:0.7.5"}, "context": "other"}
    found = problems_of(raw)
    assert any(p.startswith("store.cassandra.replicas: 3 replicas with anti_affinity need 3 schedulable nodes; the "
                            "cluster has 2 (role worker: w-a, w-b)") for p in found), found
    assert any(p.startswith("store.context: this stack builds its own Kubernetes cluster") for p in found), found


def test_defaults_and_the_split_into_servers_and_agents() -> None:
    config = parse_stack_config(stack_config({**ROLES, "cp-c": ["etcd", "control-plane", "worker"]}),
                                {"ssh_private_key"})
    kubernetes = config.kubernetes
    assert kubernetes is not None
    assert kubernetes.servers == ("cp-a", "cp-b", "cp-c") and kubernetes.agents == ("w-a", "w-b")
    assert kubernetes.schedulable == ("cp-c", "w-a", "w-b")
    cluster = kubernetes.cluster
    assert (cluster.version, cluster.install, cluster.api_port) == (K3S_VERSION, "online", 6443)
    settings = cluster.settings
    assert (settings.cluster_cidr, settings.service_cidr, settings.cluster_dns, settings.flannel_backend,
            settings.secrets_encryption, settings.prefer_bundled_bin) == (
        "10.42.0.0/16", "10.43.0.0/16", "10.43.0.10", "vxlan", True, True)


def test_cluster_dns_follows_a_custom_service_network() -> None:
    config = parse_stack_config(stack_config(service_cidr="172.20.0.0/16"), {"ssh_private_key"})
    assert config.kubernetes is not None and config.kubernetes.cluster.settings.cluster_dns == "172.20.0.10"


def test_airgap_artifacts_per_architecture(tmp_path: Path) -> None:
    raw = stack_config(install="airgap", airgap={
        arch: {"binary": artifact(tmp_path, f"k3s-{arch}"), "images": artifact(tmp_path, f"images-{arch}")}
        for arch in ("arm64", "armhf")})
    config = parse_stack_config(raw, {"ssh_private_key"})
    assert config.kubernetes is not None
    assert sorted(config.kubernetes.cluster.airgap) == ["arm64", "armhf"]
    assert config.kubernetes.cluster.airgap["armhf"].binary.path == str(tmp_path / "k3s-armhf")


def test_a_stack_without_kubernetes_roles_has_no_cluster() -> None:
    raw = stack_config({"cp-a": ["etcd"]})
    del raw["kubernetes"]
    assert parse_stack_config(raw, {"ssh_private_key"}).kubernetes is None


def test_the_program_fails_before_creating_anything() -> None:
    mocks = RecordingMocks()
    with pytest.raises(pulumi.RunError, match=r"kubernetes\.flannel\.backend"):
        run_program(mocks, stack_config(flannel={"backend": "udp"}), secret_keys=["ssh_private_key"])
    assert mocks.resources == []
