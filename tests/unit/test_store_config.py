"""The `store` section of the stack config: defaults, key paths in errors, secret kubeconfig."""

from __future__ import annotations

from typing import Any

import pytest

from components.shared.validation import ConfigError
from components.stack import parse_stack_config
from components.store.cassandra import CASSANDRA_IMAGE
from components.store.pithos import PITHOS_IMAGE

KUBECONFIG = "apiVersion: v1\nkind: Config\n"


def parse(store: Any, secret: bool = True, **extra: Any) -> Any:
    raw = {"store": store, "kubeconfig": KUBECONFIG, **extra}
    return parse_stack_config(raw, {"kubeconfig"} if secret else set())


def problems(store: Any, **kwargs: Any) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        parse(store, **kwargs)
    return caught.value.problems


def test_no_store_section_means_no_store() -> None:
    assert parse_stack_config({}).store is None


def test_defaults_are_a_safe_three_node_ring() -> None:
    store = parse({}).store
    assert store.kubeconfig == KUBECONFIG
    cassandra, pithos = store.cassandra, store.pithos
    assert (cassandra.namespace, cassandra.replicas, cassandra.seeds, cassandra.image) == (
        "object-store", 3, 2, CASSANDRA_IMAGE)
    assert cassandra.anti_affinity is True
    assert (pithos.replicas, pithos.replication_factor, pithos.datacenter, pithos.image) == (
        2, 3, "dc1", PITHOS_IMAGE)
    assert pithos.namespace == cassandra.namespace
    assert pithos.cassandra_image == cassandra.image  # cqlsh of the schema job matches the ring's version


@pytest.mark.parametrize(("replicas", "replication"), [(1, 1), (2, 2), (3, 3), (5, 3)])
def test_replication_defaults_follow_the_ring_size(replicas: int, replication: int) -> None:
    store = parse({"cassandra": {"replicas": replicas, "anti_affinity": replicas > 1}}).store
    assert store.pithos.replication_factor == replication


def test_every_problem_is_reported_at_once_with_its_key_path() -> None:
    found = problems({
        "namespace": "Object_Store",
        "cassandra": {"replicas": 3, "replication_factor": 4, "seed_count": 3, "memory": "512Mi",
                      "cpu_limit": "lots", "decommissioned": [1], "replicsa": 2},
        "pithos": {"replicas": 1, "service_type": "Ingress", "tenants": ["operator", "ok"], "keyspace": "S-3",
                   "endpoint": "ftp://x"},
        "colour": "blue",
    })
    text = "\n".join(found)
    for path in ("store.namespace", "store.cassandra.replication_factor", "store.cassandra.seed_count",
                 "store.cassandra.memory", "store.cassandra.cpu_limit", "store.cassandra.decommissioned",
                 "store.cassandra.replicsa", "store.pithos.replicas", "store.pithos.service_type",
                 "store.pithos.tenants[0]", "store.pithos.keyspace", "store.pithos.endpoint", "store.colour"):
        assert f"{path}:" in text, path
    assert "did you mean 'replicas'" in text
    assert len(found) == 13, found


def test_node_port_needs_a_node_port_service() -> None:
    found = problems({"pithos": {"service_type": "ClusterIP", "node_port": 30080}})
    assert [p.split(":")[0] for p in found] == ["store.pithos.node_port"]
    store = parse({"pithos": {"service_type": "NodePort", "node_port": 30080}}).store
    assert (store.pithos.service_type, store.pithos.node_port) == ("NodePort", 30080)


def test_a_plain_kubeconfig_is_refused() -> None:
    found = problems({}, secret=False)
    assert len(found) == 1 and found[0].startswith("kubeconfig: must be stored as a secret")
    assert KUBECONFIG not in found[0]


def test_the_store_needs_a_kubeconfig_unless_it_only_renders() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_stack_config({"store": {}}, set())
    assert caught.value.problems[0].startswith("kubeconfig: the store needs a cluster")
    store = parse_stack_config({"store": {"render_directory": "build/manifests"}}, set()).store
    assert store is not None and store.kubeconfig is None and store.render_directory == "build/manifests"


def test_decommissioned_ordinals_must_be_removed_pods() -> None:
    assert parse({"cassandra": {"replicas": 3, "decommissioned": [3, 4]}}).store.cassandra.decommissioned == (3, 4)
    assert [p.split(":")[0] for p in problems({"cassandra": {"decommissioned": ["x"]}})] == [
        "store.cassandra.decommissioned"]
