"""The `local` config section (components/local/config.py), its place in the stack model, the pure renderers
(components/local/render.py) and the README's table of its keys."""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from components.etcd import render as etcd_render
from components.kubernetes.render import admin_kubeconfig
from components.local import render
from components.local.cluster import LocalClusterArgs, LocalRegistryArgs, validate
from components.local.config import check_image, parse_local_config
from components.local.containers import Limits
from components.local.etcd import LocalEtcdArgs, cluster_args
from components.local.kubernetes import LocalKubernetesArgs
from components.shared.validation import ConfigError, Problems
from components.stack import parse_stack_config
from tests.harness.fixtures import FAKE_SECRETS
from tests.harness.program import load_stack_config

ROOT = Path(__file__).resolve().parents[2]


def parse(raw: Any, present: tuple[str, ...] = ()) -> tuple[LocalClusterArgs | None, list[str]]:
    problems = Problems()
    args = parse_local_config(raw, present, problems)
    return args, problems.items


def stack_problems(raw: dict[str, Any]) -> list[str]:
    with pytest.raises(ConfigError) as raised:
        parse_stack_config(raw, set(FAKE_SECRETS))
    return raised.value.problems


def shipped() -> dict[str, Any]:
    return {key.split(":", 1)[1]: value for key, value in load_stack_config("local").items()}


# --- the section -----------------------------------------------------------------------------------------------
def test_an_empty_section_is_the_documented_default() -> None:
    args, problems = parse({})
    assert problems == [] and args == LocalClusterArgs()
    assert args.etcd == LocalEtcdArgs() and args.kubernetes == LocalKubernetesArgs()
    assert args.registry == LocalRegistryArgs()
    assert parse(None) == (None, [])


def test_the_shipped_stack_spells_out_the_defaults() -> None:
    args, problems = parse(shipped()["local"])
    assert problems == [] and args == LocalClusterArgs()


def test_parts_can_be_left_out() -> None:
    args, problems = parse({"kubernetes": {"enabled": False}, "registry": {"enabled": False}})
    assert problems == [] and args is not None and args.kubernetes is None and args.registry is None


@pytest.mark.parametrize(("raw", "expected"), [
    ({"prefix": "Cookbook"}, "local.prefix: must be a DNS label"),
    ({"subnet": "10.213.0.0/28"}, "local.subnet: must be a /26 or larger"),
    ({"subnet": "10.213.0.1/24"}, "local.subnet: must be an IPv4 network such as '10.213.0.0/24'"),
    ({"subnet": "fd00::/64"}, "local.subnet: must be an IPv4 network (Docker's bridge networks here are IPv4)"),
    ({"etcd": {"members": 2}}, "local.etcd.members: etcd needs an odd number of members up to 7 (1, 3, 5), got 2"),
    ({"etcd": {"client_ports": [2379]}}, "local.etcd.client_ports: one port per member (3), got [2379]"),
    ({"etcd": {"client_ports": [2379, 0, 3]}}, "local.etcd.client_ports: must be a list of TCP ports"),
    ({"etcd": {"image": "gcr.io/etcd-development/etcd"}}, "local.etcd.image: must be an image pinned by a tag"),
    ({"etcd": {"image": "quay.io/coreos/etcd:latest"}}, "local.etcd.image: must be an image pinned by a tag"),
    ({"etcd": {"memory_mb": 16}}, "local.etcd.memory_mb: must be at least 64 (MiB), got 16"),
    ({"etcd": {"cpus": "half"}}, "local.etcd.cpus: must be a number of CPUs such as '0.5' or '2', got 'half'"),
    ({"kubernetes": {"agents": 9}}, "local.kubernetes.agents: must be between 0 and 8, got 9"),
    ({"kubernetes": {"server": {"memory_mb": 256}}}, "local.kubernetes.server.memory_mb: must be at least 512"),
    ({"kubernetes": {"agent": {"memroy_mb": 4096}}}, "local.kubernetes.agent.memroy_mb: unknown key"),
    ({"kubernetes": {"api_port": 2379}},
     "local: port 2379 on 127.0.0.1 is published by etcd member 1 and the Kubernetes API"),
    ({"registry": {"port": 30080}},
     "local: port 30080 on 127.0.0.1 is published by a Kubernetes NodePort and the registry"),
    ({"registy": {}}, "local.registy: unknown key (did you mean 'registry'?)"),
    ({"kubernetes": {"disable": ["traefik", "ingress"]}}, "local.kubernetes.disable[1]: must be one of coredns, "
                                                          "servicelb, traefik, local-storage, metrics-server"),
])
def test_every_problem_names_its_key(raw: dict[str, Any], expected: str) -> None:
    _, problems = parse(raw)
    assert any(problem.startswith(expected) for problem in problems), problems


def test_five_members_get_five_ports_by_default() -> None:
    args, problems = parse({"etcd": {"members": 5}})
    assert problems == [] and args is not None
    assert args.etcd.client_ports == (2379, 12379, 22379, 32379, 42379)


def test_the_local_stack_runs_alone() -> None:
    _, problems = parse({}, present=("nodes", "store", "ssh", "etcd"))
    assert problems == [
        "etcd: the local stack runs its own etcd and Kubernetes in Docker: remove this section, or remove `local` "
        "to run the recipes on nodes",
        "nodes: the local stack runs its own etcd and Kubernetes in Docker: remove this section, or remove `local` "
        "to run the recipes on nodes"]


@pytest.mark.parametrize(("value", "pinned"), [
    ("gcr.io/etcd-development/etcd:v3.6.14", True), ("rancher/k3s:v1.34.7-k3s1", True), ("registry:3.0.0", True),
    ("127.0.0.1:5001/pithos:0.7.5", True), ("etcd@sha256:" + "a" * 64, True), ("etcd", False),
    ("etcd:latest", False), ("127.0.0.1:5001/pithos", False), ("Etcd:3", False), ("etcd@sha256:abc", False),
])
def test_images_must_be_pinned(value: str, pinned: bool) -> None:
    assert (check_image(value) is None) is pinned


# --- in the stack model ---------------------------------------------------------------------------------------
def test_the_shipped_stack_parses_with_its_store_and_needs_no_kubeconfig() -> None:
    config = parse_stack_config(shipped(), set())
    assert config.local == LocalClusterArgs() and config.store is not None
    assert config.nodes == () and config.etcd is None and config.kubernetes is None


@pytest.mark.parametrize(("change", "expected"), [
    (lambda raw: raw["store"]["pithos"]["build"].update(registry="registry.lan:5000"),
     "store.pithos.build.registry: must be the local registry '127.0.0.1:5001' (the cluster pulls from it), got "
     "'registry.lan:5000'"),
    (lambda raw: raw["local"].update(registry={"enabled": False}),
     "store.pithos.build.registry: the local stack builds Pithos into its registry: set local.registry.enabled true"),
    (lambda raw: raw["store"]["pithos"].update(node_port=30081, endpoint="http://127.0.0.1:30081"),
     "store.pithos.node_port: must be one of local.kubernetes.node_ports [30080] (published on 127.0.0.1), got "
     "30081"),
    (lambda raw: raw["store"]["pithos"].update(endpoint="http://192.168.1.20:30080"),
     "store.pithos.endpoint: clients reach Pithos at http://127.0.0.1:30080 (the published NodePort), got "
     "'http://192.168.1.20:30080'"),
    (lambda raw: raw["store"]["cassandra"].update(replicas=2, replication_factor=2, anti_affinity=True),
     "store.cassandra.replicas: 2 replicas with anti_affinity need 2 schedulable nodes; the local cluster has 1"),
    (lambda raw: raw["local"].update(kubernetes={"enabled": False}),
     "store: the store needs the local Kubernetes cluster: set local.kubernetes.enabled true"),
    (lambda raw: raw.update(nodes=[{"name": "pi-a", "address": "192.0.2.1"}]),
     "nodes: the local stack runs its own etcd and Kubernetes in Docker"),
])
def test_the_store_must_fit_the_local_cluster(change: Any, expected: str) -> None:
    raw = yaml.safe_load(yaml.safe_dump(shipped()))
    change(raw)
    problems = stack_problems(raw)
    assert any(problem.startswith(expected) for problem in problems), problems


def test_without_kubernetes_the_store_still_needs_a_cluster() -> None:
    raw = {"local": {"kubernetes": {"enabled": False}}, "store": shipped()["store"]}
    assert "kubeconfig: the store needs a cluster" in "\n".join(stack_problems(raw))


# --- renderers -----------------------------------------------------------------------------------------------
def test_fixed_addresses() -> None:
    fixed = render.addresses("10.213.0.0/24", 3, 2)
    assert fixed == render.Addresses(gateway="10.213.0.1", registry="10.213.0.5",
                                     etcd=("10.213.0.11", "10.213.0.12", "10.213.0.13"), server="10.213.0.21",
                                     agents=("10.213.0.31", "10.213.0.32"))
    widest = render.addresses("172.30.8.0/26", 7, render.MAX_AGENTS, render.MAX_MESOS_MASTERS,
                              render.MAX_MESOS_AGENTS)
    assert widest.agents[-1] == "172.30.8.38"
    assert (widest.mesos_zookeepers, widest.mesos_masters, widest.marathons) == (
        ("172.30.8.41", "172.30.8.42", "172.30.8.43"), ("172.30.8.44", "172.30.8.45", "172.30.8.46"),
        ("172.30.8.47", "172.30.8.48", "172.30.8.49"))
    assert widest.mesos_agents[-1] == "172.30.8.58"
    # Every fixed address of the widest stack is distinct and a host address of the smallest subnet.
    every = [widest.gateway, widest.registry, *widest.etcd, widest.server, *widest.agents, *widest.mesos_zookeepers,
             *widest.mesos_masters, *widest.marathons, *widest.mesos_agents]
    assert len(every) == len(set(every))
    assert set(every) <= {str(host) for host in ipaddress.ip_network("172.30.8.0/26").hosts()}


def test_the_member_environment_is_the_etcd_recipes_env_file() -> None:
    settings = cluster_args("p", LocalEtcdArgs())
    membership = etcd_render.bootstrap_membership(settings, ["p-etcd-1"], {"p-etcd-1": "10.0.0.11"})
    env = render.etcd_member_env(settings, "p-etcd-1", "10.0.0.11", membership)
    recipe = etcd_render.render_env_file(settings, "p-etcd-1", "10.0.0.11").splitlines()
    assert env[:-2] == [line for line in recipe if line and not line.startswith("#")]
    assert env[-2:] == ["ETCD_INITIAL_CLUSTER=p-etcd-1=https://10.0.0.11:2380", "ETCD_INITIAL_CLUSTER_STATE=new"]
    assert all(re.match(r"^ETCD_[A-Z_]+=\S+$", line) for line in env)
    assert "ETCD_INITIAL_CLUSTER_TOKEN=p-etcd" in env


def test_kubeconfig_and_registries_are_built_as_data() -> None:
    text = admin_kubeconfig("local", "https://127.0.0.1:6443", "CA\n", "CERT\n", "KEY\n")
    document = yaml.safe_load(text)
    assert document["current-context"] == "local"
    assert document["contexts"] == [{"name": "local", "context": {"cluster": "local", "user": "local"}}]
    assert document["clusters"][0]["cluster"] == {"server": "https://127.0.0.1:6443",
                                                  "certificate-authority-data": "Q0EK"}
    assert text == yaml.safe_dump(document, sort_keys=True, default_flow_style=False)
    assert yaml.safe_load(render.registries_yaml("127.0.0.1:5001", "10.0.0.5")) == {
        "mirrors": {"127.0.0.1:5001": {"endpoint": ["http://10.0.0.5:5000"]}}}


def test_the_components_refuse_what_the_parser_refuses() -> None:
    bad = LocalClusterArgs(subnet="10.0.0.0/30", etcd=LocalEtcdArgs(members=2, client_ports=(1,)),
                           registry=LocalRegistryArgs(port=1, limits=Limits(64, "1")))
    assert validate(bad) == [
        "subnet: must be a /26 or larger (its fixed addresses go up to .58), got '10.0.0.0/30'",
        "etcd.members: etcd needs an odd number of members up to 7, got 2",
        "etcd.client_ports: one port per member (2), got [1]",
        "port 1 on 127.0.0.1 is published by etcd member 1 and the registry"]


# --- the README tells the truth ---------------------------------------------------------------------------------
def documented_keys() -> set[str]:
    text = (ROOT / "README.md").read_text()
    body = text[text.index("### Config keys (`cluster-cookbook:local`)"):]
    rows = [line for line in body.split("\n\n", 2)[1].splitlines() if line.startswith("| `")]
    return {re.findall(r"`([^`]+)`", row.split("|")[1])[0] for row in rows}


def parsed_keys() -> set[str]:
    """Every key the parser reads, found by feeding it each documented key with a wrong type."""
    keys = set()
    for path in documented_keys():
        raw: dict[str, Any] = {}
        node = raw
        *parents, leaf = path.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = object()
        _, problems = parse(raw)
        if problems and not any("unknown key" in problem for problem in problems):
            keys.add(path)
    return keys


def test_every_config_key_is_documented_once_and_read() -> None:
    documented = documented_keys()
    assert documented == parsed_keys()
    shipped_keys = set()

    def walk(value: Any, prefix: str) -> None:
        for key, item in value.items():
            path = f"{prefix}{key}"
            if isinstance(item, dict) and path in {"etcd", "kubernetes", "registry", "kubernetes.server",
                                                    "kubernetes.agent", "mesos", "mesos.agent"}:
                walk(item, f"{path}.")
            else:
                shipped_keys.add(path)

    walk(shipped()["local"], "")
    assert shipped_keys <= documented
