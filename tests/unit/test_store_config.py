"""The `store` section of the stack config: defaults, key paths in errors, secret kubeconfig."""

from __future__ import annotations

from typing import Any

import pytest

from components.shared.validation import ConfigError
from components.stack import parse_stack_config
from components.store.cassandra import CASSANDRA_IMAGE
from components.store.pithos import DEFAULT_PLATFORMS, PITHOS_JAR

KUBECONFIG = "apiVersion: v1\nkind: Config\n"
IMAGE = "registry.test/pithos:0.7.5"


def with_image(store: Any) -> Any:
    """No public Pithos image exists, so every store section names one (or a build)."""
    if not isinstance(store, dict):
        return store
    pithos = store.get("pithos", {})
    if not isinstance(pithos, dict) or "image" in pithos or "build" in pithos:
        return store
    return {**store, "pithos": {**pithos, "image": IMAGE}}


def parse(store: Any, secret: bool = True, image: bool = True, **extra: Any) -> Any:
    raw = {"store": with_image(store) if image else store, "kubeconfig": KUBECONFIG, **extra}
    secrets = {"kubeconfig", *(key for key in extra if key == "registry_password")} if secret else set()
    return parse_stack_config(raw, secrets)


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
        "object-store", 3, (0,), CASSANDRA_IMAGE)
    assert (cassandra.anti_affinity, cassandra.startup_timeout) == (True, 1200)
    assert (pithos.replicas, pithos.replication_factor, pithos.datacenter, pithos.image, pithos.jar_path) == (
        2, 3, "dc1", IMAGE, PITHOS_JAR)
    assert pithos.namespace == cassandra.namespace
    assert pithos.cassandra_image == cassandra.image  # cqlsh of the schema job matches the ring's version


@pytest.mark.parametrize(("replicas", "replication"), [(1, 1), (2, 2), (3, 3), (5, 3)])
def test_replication_defaults_follow_the_ring_size(replicas: int, replication: int) -> None:
    store = parse({"cassandra": {"replicas": replicas, "anti_affinity": replicas > 1}}).store
    assert store.pithos.replication_factor == replication


def test_every_problem_is_reported_at_once_with_its_key_path() -> None:
    found = problems({
        "namespace": "Object_Store",
        "cassandra": {"replicas": 3, "replication_factor": 4, "seeds": [0, 1, 2], "memory": "512Mi",
                      "cpu_limit": "lots", "decommissioned": [1], "replicsa": 2},
        "pithos": {"replicas": 1, "service_type": "Ingress", "tenants": ["operator", "ok"], "keyspace": "S-3",
                   "endpoint": "ftp://x"},
        "colour": "blue",
    })
    text = "\n".join(found)
    for path in ("store.namespace", "store.cassandra.replication_factor", "store.cassandra.seeds",
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
        parse_stack_config({"store": with_image({})}, set())
    assert caught.value.problems[0].startswith("kubeconfig: the store needs a cluster")
    store = parse_stack_config({"store": with_image({"render_directory": "build/manifests"})}, set()).store
    assert store is not None and store.kubeconfig is None and store.render_directory == "build/manifests"


def test_decommissioned_ordinals_must_be_removed_pods() -> None:
    assert parse({"cassandra": {"replicas": 3, "decommissioned": [3, 4]}}).store.cassandra.decommissioned == (3, 4)
    assert [p.split(":")[0] for p in problems({"cassandra": {"decommissioned": ["x"]}})] == [
        "store.cassandra.decommissioned"]


def test_there_is_no_default_pithos_image() -> None:
    """Defect: the default `exoscale/pithos:0.7.5` was never a release image of Pithos. Now the config names
    an image built from components/store/docker, or asks the stack to build it."""
    found = problems({}, image=False)
    assert [p.split(":")[0] for p in found] == ["store.pithos.image"]
    assert "components/store/docker" in found[0]
    both = problems({"pithos": {"image": IMAGE, "build": {"registry": "r.test"}}}, image=False)
    assert [p.split(":")[0] for p in both] == ["store.pithos.image"]


def test_build_settings_and_the_secret_registry_password() -> None:
    build = parse({"pithos": {"build": {"registry": "registry.lan:5000", "username": "me"}}}, image=False,
                  registry_password="token").store.pithos.build
    assert (build.image_name, build.platforms, build.builder) == (
        "registry.lan:5000/pithos:0.7.5", DEFAULT_PLATFORMS, None)
    assert (build.username, build.password) == ("me", "token")
    plain = problems({"pithos": {"build": {"registry": "registry.lan:5000", "username": "me"}}}, image=False,
                     secret=False, registry_password="token")
    assert any(p.startswith("registry_password: must be stored as a secret") for p in plain)
    bad = problems({"pithos": {"build": {"registry": "Registry Lan", "platform": ["linux/arm64"],
                                         "platforms": ["linux/sparc"]}}}, image=False)
    paths = sorted(p.split(":")[0] for p in bad)
    assert paths == ["store.pithos.build.platform", "store.pithos.build.platforms[0]", "store.pithos.build.registry"]
    assert "did you mean 'platforms'" in "\n".join(bad)
    assert [p.split(":")[0] for p in problems({"pithos": {"build": {}}}, image=False)] == [
        "store.pithos.build.registry"]


@pytest.mark.parametrize(("cassandra", "message"), [
    ({"replicas": 3, "seeds": [0, 3]}, "ordinals [3] are not pods of a 3-pod ring"),
    ({"replicas": 3, "seeds": [0, 1, 2]}, "names all 3 pods"),
    ({"replicas": 3, "seeds": []}, "at least one pod ordinal"),
    ({"replicas": 3, "seeds": [1, 1]}, "names a pod twice"),
    ({"replicas": 3, "seeds": ["cassandra-0"]}, "must be a list of pod ordinals"),
    ({"replicas": 3, "seeds": [-1]}, "must be a list of pod ordinals"),
])
def test_seeds_must_be_pods_of_the_ring(cassandra: dict[str, Any], message: str) -> None:
    found = problems({"cassandra": cassandra})
    assert [p.split(":")[0] for p in found] == ["store.cassandra.seeds"] and message in found[0], found


def test_seed_count_is_replaced_by_the_seeds_record() -> None:
    found = problems({"cassandra": {"seed_count": 2}})
    assert [p.split(":")[0] for p in found] == ["store.cassandra.seed_count"]
    assert "seed_count: N was seeds: [0, ..., N-1]" in found[0]
    assert parse({"cassandra": {"seeds": [0, 1]}}).store.cassandra.seeds == (0, 1)
    assert parse({"cassandra": {"replicas": 1, "anti_affinity": False}}).store.cassandra.seeds == (0,)
