"""The `cloud` section: every bad input of issue 10 is a ConfigError naming its key, before any resource exists.

Where each check happens: everything here is config parsing (no network). Whether a size, image or zone
exists only the cloud knows: that is the node provider's `check` (tests/unit/test_cloud_providers.py)."""

from __future__ import annotations

from typing import Any

import pytest

from components.cloud.config import supported_drivers
from components.shared.validation import ConfigError
from components.stack import parse_stack_config
from tests.harness.program import load_stack_config

PUBLIC_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIARldgzXBSQOjNeWmwe4DjlDqQyj8dKGhbfHKX2bOwm+ operator@example.com"
SECRETS = {"cloud_api_key": "k", "cloud_api_secret": "s", "ssh_private_key": "x"}
CLOUD: dict[str, Any] = {
    "endpoint": "https://cloud.example.com/client/api", "zone": "zone1", "image": "Flatcar stable",
    "size": "Medium", "os": "flatcar", "operator_cidr": "198.51.100.0/24", "ssh_public_key": PUBLIC_KEY,
    "nodes": [{"name": "etcd-1", "roles": ["etcd"]}, {"name": "k8s-1", "roles": ["control-plane"]}],
}


def parse(raw: dict[str, Any], secret_keys: set[str] | None = None) -> Any:
    return parse_stack_config(raw, set(SECRETS) if secret_keys is None else secret_keys, {})


def problems_of(raw: dict[str, Any], secret_keys: set[str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        parse(raw, secret_keys)
    return caught.value.problems


def cloud(**overrides: Any) -> dict[str, Any]:
    """A cloud stack: etcd from release downloads (CoreOS has no package manager)."""
    return {**SECRETS, "cloud": {**CLOUD, **overrides}, "etcd": {"install": "download"}}


def test_a_valid_section_parses() -> None:
    config = parse(cloud(nodes=[{"name": "etcd-1", "roles": ["etcd"], "size": "Small"}]))
    assert config.cloud is not None
    assert (config.cloud.driver, config.cloud.login_user, config.cloud.coreos) == ("cloudstack", "core", True)
    assert config.cloud.nodes[0].size == "Small" and config.cloud.start_timeout == 600


def test_the_shipped_stack_parses() -> None:
    raw = {key.split(":", 1)[1]: value for key, value in load_stack_config("cloudstack").items()}
    config = parse({**raw, **SECRETS})
    assert config.cloud is not None and len(config.cloud.nodes) == 8
    assert [n.name for n in config.cloud.nodes if "etcd" in n.roles] == ["etcd-1", "etcd-2", "etcd-3"]


@pytest.mark.parametrize(("raw", "expected"), [
    (cloud(driver="openstak"), "cloud.driver: unknown libcloud compute driver 'openstak'; drivers with the calls "
                               "used: aurora_compute, cloudstack, ikoula"),
    (cloud(driver="ec2"), "cloud.driver: libcloud driver 'ec2' lacks the CloudStack API calls this recipe uses"),
    (cloud(driver="exoscale"), "cloud.driver: Exoscale shut down its CloudStack-compatible API"),
    (cloud(endpoint="cloud.example.com"), "cloud.endpoint: must be the API URL such as"),
    ({**SECRETS, "cloud": {k: v for k, v in CLOUD.items() if k != "endpoint"}},
     "cloud.endpoint: is required for the cloudstack driver"),
    (cloud(operator_cidr="198.51.100.7"), "cloud.operator_cidr: must be a CIDR such as 203.0.113.0/24 "
                                          "(a single address is 198.51.100.7/32)"),
    (cloud(operator_cidr="198.51.100.7/24"), "cloud.operator_cidr: has host bits set; did you mean 198.51.100.0/24?"),
    (cloud(operator_cidr="office"), "cloud.operator_cidr: must be a CIDR such as 203.0.113.0/24, got 'office'"),
    (cloud(os="coreos"), "cloud.os: must be one of fedora-coreos, flatcar, debian, ubuntu, got 'coreos'"),
    (cloud(ssh_public_key="-----BEGIN OPENSSH PRIVATE KEY-----\nx"), "cloud.ssh_public_key: is a private key"),
    (cloud(ssh_public_key="AAAA"), "cloud.ssh_public_key: must be an OpenSSH public key line"),
    (cloud(size=""), "cloud.size: must not be empty"),
    (cloud(start_timeout=0), "cloud.start_timeout: must be greater than 0"),
    (cloud(nodes=[]), "cloud.nodes: must be a non-empty list"),
    (cloud(nodes=[{"name": "etcd-1", "roles": ["db"]}]), "cloud.nodes[0].roles[0]: must be one of etcd, "
                                                          "control-plane, worker"),  # the node roles
    (cloud(nodes=[{"name": "zk-1", "roles": ["zookeeper"]}]), "cloud.nodes[0].roles[0]: must be one of etcd, "
                                                             "control-plane, worker, got 'zookeeper'"),
    (cloud(nodes=[{"name": "a"}, {"name": "a"}]), "cloud.nodes[1].name: duplicate node name 'a'"),
    (cloud(nodes=[{"name": f"e{i}", "roles": ["etcd"]} for i in range(4)]),
     "cloud.nodes: 4 nodes have role etcd; etcd needs an odd number between 1 and 7"),
    ({**cloud(), "etcd": {}}, "etcd.install: cloud.os flatcar has no package manager (read-only /usr): install "
                              "etcd from release tarballs"),
    ({**cloud(os="fedora-coreos"), "prepare": {"time_servers": ["ntp.example.com"]}},
     "prepare.time_servers: cloud.os fedora-coreos runs chronyd with the image's /etc/chrony.conf"),
    ({**cloud(nodes=[{"name": "k8s-1", "roles": ["control-plane"]}]),
      "nodes": [{"name": "e", "address": "192.0.2.1", "roles": ["etcd"]}]},
     "cloud.nodes: etcd and Kubernetes run either on cloud nodes or on `nodes`, not on both: the security group "
     "opens their ports between cloud nodes only; nodes e in `nodes` have role etcd or control-plane or worker"),
    ({"cloud_api_key": "k", "cloud_api_secret": "s", "cloud": CLOUD, "etcd": {"install": "download"}},
     "ssh_private_key: no SSH credentials"),  # cloud nodes are reached over SSH like any other
    ({**cloud(), "prepare": {"packages": ["jq"]}}, "prepare.packages: cloud.os is flatcar, which has no package "
                                                   "manager (read-only /usr)"),
    (cloud(zones="x"), "cloud.zones: unknown key (did you mean 'zone'?)"),
    ({"cloud": CLOUD}, "cloud_api_key: is required for the cloud section: `pulumi config set --secret cloud_api_key"),
    ({"cloud": CLOUD, "cloud_api_key": "k"}, "cloud_api_secret: is required for the cloud section"),
])
def test_bad_input_names_the_key(raw: dict[str, Any], expected: str) -> None:
    assert any(problem.startswith(expected) for problem in problems_of(raw)), (expected, problems_of(raw))


def test_plain_credentials_are_refused() -> None:
    problems = problems_of(cloud(), secret_keys={"cloud_api_secret", "ssh_private_key"})
    assert problems == ["cloud_api_key: must be stored as a secret: `pulumi config set --secret cloud_api_key "
                        "API_KEY` (plain values would be written to the stack file)"]


def test_packages_on_debian_cloud_nodes_are_fine_and_an_empty_list_on_coreos_too() -> None:
    assert parse({**cloud(os="debian"), "prepare": {"packages": ["jq"]}}).cloud is not None
    assert parse({**cloud(), "prepare": {"packages": []}}).cloud is not None


def test_a_cloud_node_may_not_share_a_name_with_an_ssh_node() -> None:
    raw = {**cloud(), "ssh_private_key": "x", "nodes": [{"name": "etcd-1", "address": "192.0.2.1"}]}
    assert "cloud.nodes[0].name: 'etcd-1' is also a node in `nodes`: names must be unique" in problems_of(
        raw, {*SECRETS, "ssh_private_key"})


def test_every_problem_at_once() -> None:
    problems = problems_of({"cloud": {**CLOUD, "driver": "nope", "operator_cidr": "x", "os": "x"}})
    assert len(problems) == 6, problems  # driver, cidr, os, both credentials, and no SSH key


def test_a_removed_cloud_member_keeps_its_node_and_gets_its_address_from_its_vm() -> None:
    nodes = [{"name": f"etcd-{i}", "roles": ["etcd"]} for i in (1, 2, 3, 4)]
    config = parse({**cloud(nodes=nodes), "etcd": {"install": "download", "bootstrap": ["etcd-1", "etcd-2", "etcd-3"],
                                                  "removed": ["etcd-2"]}})
    assert config.etcd is not None
    assert config.etcd.members == ("etcd-1", "etcd-3", "etcd-4") and config.etcd.removed == ("etcd-2",)
    assert config.etcd.removed_unaddressed == ("etcd-2",) and dict(config.etcd.cluster.removed) == {}
    gone = problems_of({**cloud(nodes=[n for n in nodes if n["name"] != "etcd-2"]),
                        "etcd": {"install": "download", "bootstrap": ["etcd-1", "etcd-2", "etcd-3"],
                                 "removed": ["etcd-2"]}})
    assert any(p.startswith("etcd.removed[0]: 'etcd-2' is not in cloud.nodes: keep a removed member's node entry")
               for p in gone), gone


def test_supported_drivers_are_the_cloudstack_family() -> None:
    assert supported_drivers() == ("aurora_compute", "cloudstack", "ikoula")
