"""The `cloudstack` stack evaluated under mocks: the graph, secrets (never in inputs or the pickled providers),
and the whole program with the dynamic providers really run against the fake CloudStack (libcloud MockHttp)."""

from __future__ import annotations

import base64
import time
from collections.abc import Iterator
from typing import Any

import pytest

from components.cloud.fleet import security_rules
from tests.harness.fixtures import FAKE_SECRETS, evaluate_stack
from tests.harness.program import load_stack_config, run_program
from tests.unit.cloud_support import (
    API_KEY,
    API_SECRET,
    ENDPOINT,
    IMAGE,
    SIZE,
    ZONE,
    DynamicProviderMocks,
    FakeCloudStack,
    installed,
)

NODE_TYPE = "pulumi-python:dynamic/cloud:Node"
CANARY = {"cloud_api_key": "CANARY-api-key-3e1f", "cloud_api_secret": "CANARY-secret-9b2c"}


def test_the_stack_declares_key_pair_group_and_eight_started_vms() -> None:
    mocks = evaluate_stack("cloudstack")
    [fleet] = mocks.of_type("cookbook:cloud:Fleet")
    [key] = mocks.of_type("pulumi-python:dynamic/cloud:KeyPair")
    [group] = mocks.of_type("pulumi-python:dynamic/cloud:SecurityGroup")
    nodes = mocks.of_type(NODE_TYPE)
    assert sorted(n.inputs["name"] for n in nodes) == [*(f"etcd-{i}" for i in (1, 2, 3)),
                                                       *(f"k8s-{i}" for i in range(1, 6))]
    assert all(r.parent == fleet.urn for r in (key, group, *nodes))
    assert key.inputs["name"] == "cookbook-cloudstack-deploy"
    assert group.inputs["rules"] == [r.as_dict() for r in security_rules(
        "198.51.100.0/24", ["etcd", "control-plane", "worker"])]
    for node in nodes:
        # the node waits for the key pair and the group: it takes their names from their outputs
        assert set(node.registration.dependencies) >= {key.urn, group.urn}
        assert node.inputs["key_pair"] == "cloud-key-id" and node.inputs["security_groups"] == [
            "cookbook-cloudstack-nodes"]
        assert f'"data:,{node.inputs["name"]}%0A"' in node.inputs["user_data"]
        assert node.inputs["size"] == ("Small Instance" if node.inputs["name"].startswith("etcd") else
                                       "Medium Instance")


def test_credentials_are_in_no_input_and_in_no_pickled_provider() -> None:
    mocks = evaluate_stack("cloudstack", extra_secrets=CANARY)
    dynamic = [r for r in mocks.resources if r.type.startswith("pulumi-python:dynamic")]
    assert len(dynamic) == 10
    for resource in mocks.resources:
        assert "CANARY" not in repr(resource.registration.raw_inputs), resource.name
    for resource in dynamic:
        pickled = base64.b64decode(resource.inputs["__provider"])
        assert b"CANARY" not in pickled and b"cluster-cookbook:cloud_api_key" in pickled, resource.name


def fake_cloud_config(**cloud: Any) -> dict[str, Any]:
    config = load_stack_config("cloudstack")
    section = dict(config["cluster-cookbook:cloud"])
    section.update({"endpoint": ENDPOINT, "zone": ZONE, "image": IMAGE, "size": SIZE,
                    "nodes": [{k: v for k, v in n.items() if k != "size"} for n in section["nodes"]], **cloud})
    return {**config, "cluster-cookbook:cloud": section, **FAKE_SECRETS,
            "cloud_api_key": API_KEY, "cloud_api_secret": API_SECRET}


@pytest.fixture
def cloud() -> Iterator[FakeCloudStack]:
    with installed(FakeCloudStack()) as fake:
        yield fake


def run(config: dict[str, Any], state: dict[str, Any]) -> tuple[dict[str, Any], DynamicProviderMocks]:
    mocks = DynamicProviderMocks(config, state)
    outputs = run_program(mocks, config, stack="cloudstack", secret_keys=[*FAKE_SECRETS, *CANARY])
    return outputs, mocks


def test_the_program_creates_the_vms_through_its_providers_and_a_rerun_changes_nothing(
        cloud: FakeCloudStack) -> None:
    state: dict[str, Any] = {}
    started = time.monotonic()
    outputs, _ = run(fake_cloud_config(), state)
    elapsed = time.monotonic() - started
    nodes = outputs["cloud_nodes"]
    assert sorted(nodes) == ["etcd-1", "etcd-2", "etcd-3", "k8s-1", "k8s-2", "k8s-3", "k8s-4", "k8s-5"]
    assert {vm["nic"][0]["ipaddress"] for vm in cloud.vms.values()} == {node["address"] for node in nodes.values()}
    assert all(node["user"] == "core" and node["os"] == "flatcar" for node in nodes.values())
    assert len(cloud.commands("deployVirtualMachine")) == 8 and len(cloud.groups) == len(cloud.key_pairs) == 1
    assert elapsed < 60
    calls = len(cloud.calls)
    outputs_again, again = run(fake_cloud_config(), state)
    assert outputs_again == outputs and again.operations == []
    # a second run only reads the catalog (check), it changes nothing in the cloud
    assert {command for command, _ in cloud.calls[calls:]} <= {"listZones", "listTemplates", "listServiceOfferings"}


def test_changing_the_image_replaces_every_vm_delete_first(cloud: FakeCloudStack) -> None:
    state: dict[str, Any] = {}
    run(fake_cloud_config(), state)
    before = {vm["name"]: vm["id"] for vm in cloud.vms.values()}
    _, mocks = run(fake_cloud_config(image="XEN OpenSUSE x64 11.4 R2.0"), state)
    replaced = sorted(name for op, name in mocks.operations if op == "replace-delete")
    assert replaced == sorted(f"cloud-{name}" for name in before)
    after = {vm["name"]: vm["id"] for vm in cloud.vms.values()}
    assert sorted(after) == sorted(before) and not set(after.values()) & set(before.values())
    assert {vm["templateid"] for vm in cloud.vms.values()} == {422}


def test_an_unknown_image_stops_the_run_before_any_vm(cloud: FakeCloudStack) -> None:
    with pytest.raises(Exception, match=r"image: unknown image 'Fedora CoreOS 99'; the cloud offers: "):
        run(fake_cloud_config(image="Fedora CoreOS 99"), {})
    assert cloud.commands("deployVirtualMachine") == []
