"""The `cloudstack` stack evaluated under mocks: the graph, secrets (never in inputs or the pickled providers),
and the whole program with the dynamic providers really run against the fake CloudStack (libcloud MockHttp)."""

from __future__ import annotations

import base64
import json
import shlex
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from components.cloud.fleet import security_rules
from tests.harness.fixtures import FAKE_SECRETS, evaluate_stack
from tests.harness.program import SECRET_SIG, load_stack_config, run_program
from tests.harness.recording import RecordingMocks, fake_cloud_address, fake_ed25519, plain_strings, waits_for
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
from tests.unit.graph_shapes import cloud_member_replaced_store_on_cloud

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
        assert node.inputs["key_pair"] == "cookbook-cloudstack-deploy" and node.inputs["security_groups"] == [
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


# --- phase 2: VMs -> hosts -> etcd -> Kubernetes, in one program -----------------------------------------------
NUMBERS: dict[str, Any] = {}
CLOUD_NODES = [*(f"etcd-{i}" for i in (1, 2, 3)), *(f"k8s-{i}" for i in range(1, 6))]


def boot_files(vm: Any) -> dict[str, str]:
    """Path -> content of the files a VM's Ignition config writes."""
    boot = json.loads(vm.inputs["user_data"])
    return {f["path"]: urllib.parse.unquote(f["contents"]["source"].removeprefix("data:,"))
            for f in boot["storage"]["files"]}


def script_of(inputs: dict[str, Any], key: str = "create") -> str:
    words = shlex.split(inputs[key])
    return words[words.index("-c") + 1]


@pytest.fixture(scope="module")
def stack() -> tuple[RecordingMocks, dict[str, Any]]:
    mocks = RecordingMocks()
    config = {**load_stack_config("cloudstack"), **FAKE_SECRETS}
    started = time.monotonic()
    outputs = run_program(mocks, config, stack="cloudstack", secret_keys=list(FAKE_SECRETS))
    NUMBERS["cloudstack_evaluation_seconds"] = round(time.monotonic() - started, 2)
    NUMBERS["cloudstack_resources"] = len(mocks.resources)
    print("\ncloud numbers:", NUMBERS)
    return mocks, outputs


def test_the_whole_graph_runs_vms_then_hosts_then_etcd_then_kubernetes(
        stack: tuple[RecordingMocks, dict[str, Any]]) -> None:
    mocks, outputs = stack
    closure = waits_for(mocks)
    hosts = {r.name for r in mocks.of_type("cookbook:node:Host")}
    assert hosts == set(CLOUD_NODES)
    for name in CLOUD_NODES:
        vm, prepare = mocks.named(f"cloud-{name}"), mocks.named(f"{name}-prepare")
        # The host's steps reach the VM's address: they wait for the VM, which waits for key pair and group.
        assert {f"cloud-{name}", "cloud-key", "cloud-group", f"cloud-{name}-host-key"} <= closure[f"{name}-prepare"]
        connection = prepare.inputs["connection"]
        assert connection["host"] == fake_cloud_address(f"cloud-{name}") and connection["port"] == 22
        assert connection["user"] == "core" and prepare.inputs["create"].startswith("if ! sudo -n true")
        # The host key its first boot wrote is pinned from the first connection on.
        public = fake_ed25519(f"cloud-{name}-host-key")["publicKeyOpenssh"].strip()
        assert connection["hostKey"] == public
        assert f"{public}\n" == boot_files(vm)["/etc/ssh/ssh_host_ed25519_key.pub"]
        assert connection["dialErrorLimit"] == 600 // 5  # a booting VM: dials as long as ssh.reboot_timeout
        assert "PACKAGES=()" in script_of(prepare.inputs)  # CoreOS: nothing installed
    members = [f"etcd-member-etcd-{i}" for i in (1, 2, 3)]
    for step in members:
        assert {f"etcd-{i}-prepare" for i in (1, 2, 3)} <= closure[step]  # every member's host first
        script = script_of(mocks.named(step).inputs)
        assert "\nETCD_BIN=/opt/bin/etcd\n" in script and "/usr/local" not in script
    assert {"etcd-download-etcd-1", "etcd-member-etcd-1"} <= closure["etcd-member-etcd-2"]
    steps = [f"kubernetes-server-k8s-{i}" for i in (1, 2)] + [f"kubernetes-agent-k8s-{i}" for i in (3, 4, 5)]
    for step in steps:
        assert {"etcd-health", *(f"k8s-{i}-prepare" for i in range(1, 6))} <= closure[step], step
        assert "/opt/bin" in script_of(mocks.named(step).inputs)
    assert {*steps, *members} <= closure["kubernetes-ready"]
    # node-ip and the API address: the VMs' addresses, resolved
    first = fake_cloud_address("cloud-k8s-1")
    assert f"node-ip: {fake_cloud_address('cloud-k8s-3')}\n" in script_of(mocks.named("kubernetes-agent-k8s-3").inputs)
    assert f"server: https://{first}:6443\n" in script_of(mocks.named("kubernetes-agent-k8s-3").inputs)
    assert outputs["kubernetes"]["api_endpoint"] == f"https://{first}:6443"
    assert outputs["kubernetes"]["servers"] == ["k8s-1", "k8s-2"]
    assert outputs["etcd"]["client_endpoints"] == [f"https://{fake_cloud_address(f'cloud-etcd-{i}')}:2379"
                                                   for i in (1, 2, 3)]
    assert sorted(outputs["cloud_nodes"]) == CLOUD_NODES and sorted(outputs["nodes"]) == CLOUD_NODES
    assert all(node["usr_read_only"] for node in outputs["nodes"].values())


def test_member_certificates_name_the_vm_addresses(stack: tuple[RecordingMocks, dict[str, Any]]) -> None:
    mocks, _ = stack
    for i in (1, 2, 3):
        request = mocks.named(f"etcd-member-etcd-{i}-csr").inputs
        assert request["ipAddresses"] == sorted(["127.0.0.1", "::1", fake_cloud_address(f"cloud-etcd-{i}")])
        assert request["dnsNames"] == [f"etcd-{i}", "localhost"]


def test_host_private_keys_and_credentials_are_never_plain(stack: tuple[RecordingMocks, dict[str, Any]]) -> None:
    mocks, outputs = stack
    for name in CLOUD_NODES:
        vm = mocks.named(f"cloud-{name}")
        private = fake_ed25519(f"cloud-{name}-host-key")["privateKeyOpenssh"]
        assert boot_files(vm)["/etc/ssh/ssh_host_ed25519_key"] == private  # the first boot writes it
        assert SECRET_SIG in vm.registration.raw_inputs["user_data"]  # as a secret
        assert "user_data" in vm.registration.additional_secret_outputs  # and so in the state
        body = private.splitlines()[1]
        for resource in mocks.resources:
            assert body not in " ".join(plain_strings(resource.registration.raw_inputs)), resource.name
    assert "PRIVATE KEY" not in json.dumps(outputs["cloud_nodes"])


def test_a_removed_cloud_member_is_removed_at_its_vm_address_and_runs_nothing() -> None:
    config = {**load_stack_config("cloudstack"), **FAKE_SECRETS}
    cloud = dict(config["cluster-cookbook:cloud"])
    cloud["nodes"] = [*cloud["nodes"], {"name": "etcd-4", "roles": ["etcd"]}]
    config["cluster-cookbook:cloud"] = cloud
    config["cluster-cookbook:etcd"] = {**config["cluster-cookbook:etcd"], "removed": ["etcd-2"]}
    mocks = RecordingMocks()
    run_program(mocks, config, stack="cloudstack", secret_keys=list(FAKE_SECRETS))
    names = {r.name for r in mocks.resources}
    assert "cloud-etcd-2" in names  # its VM stays (its cloud.nodes entry does), as a removed node's entry
    assert not {"etcd-2", "etcd-2-prepare", "etcd-member-etcd-2"} & names  # nothing runs on it
    removal = script_of(mocks.named("etcd-remove-etcd-2").inputs)
    assert f"TARGET_PEER_URL=https://{fake_cloud_address('cloud-etcd-2')}:2380" in removal
    membership = script_of(mocks.named("etcd-member-etcd-1").inputs)
    assert f"etcd-2=https://{fake_cloud_address('cloud-etcd-2')}:2380" in membership  # the bootstrap record
    assert "etcd-join-etcd-4" in names


def test_the_api_is_open_to_the_operator_only_when_the_program_deploys_onto_the_cluster(tmp_path: Path) -> None:
    """6443 is for the nodes (the issue's rule); a stack with the object store deploys onto the cluster from
    where Pulumi runs, through the API, so then the operator's CIDR gets it too."""
    operator = {"protocol": "tcp", "start_port": 6443, "end_port": 6443, "source": "198.51.100.0/24"}
    plain = evaluate_stack("cloudstack").of_type("pulumi-python:dynamic/cloud:SecurityGroup")[0]
    assert operator not in plain.inputs["rules"]
    assert {**operator, "source": "group"} in plain.inputs["rules"]
    config = {f"cluster-cookbook:{key}": value for key, value in cloud_member_replaced_store_on_cloud(tmp_path).items()}
    mocks = RecordingMocks()
    run_program(mocks, {**config, **FAKE_SECRETS}, stack="cloudstack", secret_keys=list(FAKE_SECRETS))
    [group] = mocks.of_type("pulumi-python:dynamic/cloud:SecurityGroup")
    assert operator in group.inputs["rules"]
    assert "kubernetes-ready" in waits_for(mocks)["store-target-provider"]
