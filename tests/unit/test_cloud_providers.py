"""The cloud dynamic providers against libcloud's recorded CloudStack responses (through libcloud's MockHttp):
create / check / diff / update / read / delete, error messages, convergence after partial failures, and the
credentials kept out of the pickled provider."""

from __future__ import annotations

import base64
import json
import pickle
from collections.abc import Iterator
from typing import Any

import dill
import pytest
from pulumi.dynamic import Config, ConfigureRequest
from pulumi.dynamic.dynamic import serialize_provider

from components.cloud.api import CloudApi, CloudError, Rule
from components.cloud.fleet import security_rules
from components.cloud.providers import KeyPairProvider, NodeProvider, SecurityGroupProvider
from tests.unit.cloud_support import (
    API_KEY,
    API_SECRET,
    CREDENTIAL_KEYS,
    ENDPOINT,
    IMAGE,
    PROJECT,
    SIZE,
    ZONE,
    FakeCloudStack,
    installed,
    recorded,
)

PUBLIC_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIARldgzXBSQOjNeWmwe4DjlDqQyj8dKGhbfHKX2bOwm+ operator@example.com"
OTHER_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFt5Jm8b6CLkX3SIqXVjkIz2hGxmEyXGn6Fbg3bI0I3l other@example.com"
CLOUD = {"driver": "cloudstack", "endpoint": ENDPOINT}


def configured(provider_class: type[Any], key: str = API_KEY, secret: str = API_SECRET) -> Any:
    provider = provider_class(CREDENTIAL_KEYS, poll_interval=0)
    provider.configure(ConfigureRequest(Config({CREDENTIAL_KEYS[0]: key, CREDENTIAL_KEYS[1]: secret}, PROJECT)))
    return provider


@pytest.fixture
def cloud() -> Iterator[FakeCloudStack]:
    with installed(FakeCloudStack()) as fake:
        yield fake


def prepared(cloud: FakeCloudStack) -> tuple[str, str]:
    """The key pair and the group a node refers to."""
    configured(KeyPairProvider).create(key_props())
    configured(SecurityGroupProvider).create(group_props())
    return "cookbook-test-deploy", "cookbook-test-nodes"


def key_props(**overrides: Any) -> dict[str, Any]:
    return {"cloud": CLOUD, "name": "cookbook-test-deploy", "public_key": PUBLIC_KEY, **overrides}


def group_props(**overrides: Any) -> dict[str, Any]:
    rules = [rule.as_dict() for rule in security_rules("198.51.100.0/24", ["etcd", "control-plane"])]
    return {"cloud": CLOUD, "name": "cookbook-test-nodes", "description": "cluster-cookbook nodes of cookbook-test",
            "rules": rules, **overrides}


def node_props(**overrides: Any) -> dict[str, Any]:
    return {"cloud": CLOUD, "name": "etcd-1", "display_name": "cookbook-test-etcd-1", "zone": ZONE, "image": IMAGE,
            "size": SIZE, "key_pair": "cookbook-test-deploy", "security_groups": ["cookbook-test-nodes"],
            "user_data": '{"ignition":{"version":"3.3.0"}}', "start_timeout": 30, "expunge": True, **overrides}


# --- CloudNode ------------------------------------------------------------------------------------------------
def test_create_deploys_a_started_vm_with_key_groups_and_user_data(cloud: FakeCloudStack) -> None:
    prepared(cloud)
    cloud.start_polls = 2  # Starting for two listings, then Running
    result = configured(NodeProvider).create(node_props())
    [deploy] = cloud.params("deployVirtualMachine")
    assert deploy["startvm"] == "True"  # libcloud's default would leave the VM stopped
    assert (deploy["name"], deploy["displayname"], deploy["keypair"], deploy["securitygroupnames"]) == (
        "etcd-1", "cookbook-test-etcd-1", "cookbook-test-deploy", "cookbook-test-nodes")
    # names resolved to the ids of libcloud's recorded catalog
    assert (deploy["zoneid"], deploy["templateid"], deploy["serviceofferingid"]) == ("1", "421", "105")
    assert base64.b64decode(deploy["userdata"]).decode() == node_props()["user_data"]
    assert result.outs is not None
    assert result.outs["state"] == "Running" and result.outs["vm_id"] == result.id
    assert result.outs["address"] == result.outs["public_ips"][0]
    assert (result.outs["zone_id"], result.outs["image_id"], result.outs["size_id"]) == ("1", "421", "105")
    assert cloud.commands("listVirtualMachines").__len__() >= 3  # waited through the Starting listings


def test_ids_select_the_same_catalog_entries_as_names(cloud: FakeCloudStack) -> None:
    prepared(cloud)
    configured(NodeProvider).create(node_props(zone="1", image="421", size="105"))
    [deploy] = cloud.params("deployVirtualMachine")
    assert (deploy["zoneid"], deploy["templateid"], deploy["serviceofferingid"]) == ("1", "421", "105")


@pytest.mark.parametrize(("key", "value", "listed"), [
    ("size", "Huge", "'Compute Micro PRD', 'Compute Small PRD'"),
    ("image", "Fedora CoreOS 99", "'XEN Basic Ubuntu 10.04 Server x64 PV r2.0'"),
    ("zone", "ch-gva-2", "'Sydney'"),
])
def test_check_names_the_unknown_value_and_lists_the_clouds_choices(cloud: FakeCloudStack, key: str, value: str,
                                                                     listed: str) -> None:
    result = configured(NodeProvider).check({}, node_props(**{key: value}))
    assert [failure.property for failure in result.failures] == [key]
    reason = result.failures[0].reason
    assert reason.startswith(f"unknown {key} {value!r}; the cloud offers: ") and listed in reason
    assert configured(NodeProvider).check({}, node_props()).failures == []
    assert cloud.commands("deployVirtualMachine") == []


def test_create_with_an_unknown_size_fails_before_deploying(cloud: FakeCloudStack) -> None:
    prepared(cloud)
    with pytest.raises(CloudError, match=r"cloud node 'etcd-1': unknown size 'Huge'; the cloud offers: 'Compute"):
        configured(NodeProvider).create(node_props(size="Huge"))
    assert cloud.commands("deployVirtualMachine") == []


def test_check_rejects_user_data_cloudstack_cannot_take_in_a_query() -> None:
    result = NodeProvider(CREDENTIAL_KEYS).check({}, node_props(user_data="x" * 4000, zone="04da6b54-80e4-46f7-96ec-"
                                                                                            "b56ff0331ba9"))
    assert [failure.property for failure in result.failures] == ["user_data"]


@pytest.mark.parametrize(("change", "replaces"), [
    ({"image": "XEN OpenSUSE x64 11.4 R2.0"}, ["image"]),
    ({"size": "Compute Small PRD"}, ["size"]),
    ({"user_data": "{}"}, ["user_data"]),
    ({"zone": "2"}, ["zone"]),
    ({"key_pair": "other"}, ["key_pair"]),
    ({"start_timeout": 900}, []),
    ({"expunge": False}, []),
])
def test_diff_replaces_for_what_the_vm_is_made_of_and_updates_timeouts_in_place(change: dict[str, Any],
                                                                                replaces: list[str]) -> None:
    olds = {**node_props(), "vm_id": "vm-1", "state": "Running", "address": "203.0.113.5"}
    diff = NodeProvider(CREDENTIAL_KEYS).diff("vm-1", olds, {**node_props(), **change, "__provider": "p"})
    assert diff.changes is True and diff.replaces == replaces
    assert diff.delete_before_replace is True  # the replacement takes the same VM name
    assert NodeProvider(CREDENTIAL_KEYS).diff("vm-1", olds, {**node_props(), "__provider": "new"}).changes is False


def test_update_in_place_changes_no_vm_and_keeps_the_outputs(cloud: FakeCloudStack) -> None:
    prepared(cloud)
    created = configured(NodeProvider).create(node_props())
    before = list(cloud.calls)
    updated = configured(NodeProvider).update(created.id, dict(created.outs or {}), node_props(start_timeout=900))
    assert cloud.calls == before
    assert updated.outs is not None
    assert updated.outs["start_timeout"] == 900 and updated.outs["address"] == (created.outs or {})["address"]


def test_delete_is_idempotent_and_read_reports_a_deleted_vm(cloud: FakeCloudStack) -> None:
    prepared(cloud)
    provider = configured(NodeProvider)
    created = provider.create(node_props())
    outs = dict(created.outs or {})
    assert provider.read(created.id, outs).id == created.id
    provider.delete(created.id, outs)
    assert cloud.params("destroyVirtualMachine") == [{"id": created.id, "expunge": "True"}]
    assert provider.read(created.id, outs).id is None
    provider.delete(created.id, outs)  # already gone: success, nothing destroyed twice
    assert len(cloud.commands("destroyVirtualMachine")) == 1


def test_quota_exceeded_names_the_node_and_quotes_the_cloud(cloud: FakeCloudStack) -> None:
    prepared(cloud)
    cloud.fail_next("deployVirtualMachine", "deployVirtualMachine_quota.json")
    with pytest.raises(CloudError) as error:
        configured(NodeProvider).create(node_props())
    assert str(error.value) == ("cloud node 'etcd-1': deploying: Maximum number of resources of type 'user_vm' for "
                                "account name=cookbook in domain id=1 has been exceeded.")
    assert cloud.vms == {}


def test_failed_deploy_job_names_the_node_and_a_rerun_replaces_the_broken_vm(cloud: FakeCloudStack) -> None:
    prepared(cloud)
    cloud.fail_next("deployVirtualMachine", "queryAsyncJobResult_deployfailed.json")
    with pytest.raises(CloudError) as error:
        configured(NodeProvider).create(node_props())
    assert str(error.value) == "cloud node 'etcd-1': deploying: Unable to create a deployment for VM[User|i-2-1001-VM]"
    [broken] = cloud.vms.values()
    assert broken["state"] == "Error"
    # The engine recorded nothing; the next `pulumi up` runs create again and converges.
    result = configured(NodeProvider).create(node_props())
    assert cloud.params("destroyVirtualMachine") == [{"id": broken["id"], "expunge": "True"}]
    assert len(cloud.commands("deployVirtualMachine")) == 2
    assert [vm["id"] for vm in cloud.vms.values()] == [result.id]


def test_vm_stuck_starting_times_out_naming_the_node_and_a_rerun_adopts_it(cloud: FakeCloudStack) -> None:
    prepared(cloud)
    cloud.start_polls = None  # never runs
    with pytest.raises(CloudError) as error:
        configured(NodeProvider).create(node_props(start_timeout=0.2))
    [stuck] = cloud.vms.values()
    assert str(error.value) == (f"cloud node 'etcd-1': VM {stuck['id']} was still Starting after 0.2 s "
                                "(cloud.start_timeout); the next `pulumi up` waits for it again")
    stuck["state"] = "Running"  # the cloud got there eventually
    result = configured(NodeProvider).create(node_props())
    assert result.id == stuck["id"]
    assert len(cloud.commands("deployVirtualMachine")) == 1  # adopted, not deployed twice


def test_recorded_starting_vm_times_out_with_its_state(cloud: FakeCloudStack) -> None:
    """VM 2601 of libcloud's recorded listing is Starting: waiting on it ends with the state in the message."""
    starting = next(vm for vm in recorded("listVirtualMachines_default.json")["listvirtualmachinesresponse"]
                    ["virtualmachine"] if vm["state"] == "Starting")
    cloud.vms[str(starting["id"])] = starting
    api = CloudApi.connect(CLOUD, API_KEY, API_SECRET, poll_interval=0)
    with pytest.raises(CloudError, match=r"^cloud node 'test': VM 2601 was still Starting after 0.1 s"):
        api.wait_running("2601", "cloud node 'test'", 0.1)


def test_a_foreign_vm_with_the_same_name_is_neither_adopted_nor_touched(cloud: FakeCloudStack) -> None:
    prepared(cloud)
    foreign = cloud.add_vm("etcd-1", displayname="someone else's etcd-1")
    with pytest.raises(CloudError, match=r"a VM named 'etcd-1' \(id vm-\d+\) already exists and does not match"):
        configured(NodeProvider).create(node_props())
    assert cloud.commands("destroyVirtualMachine") == [] and list(cloud.vms.values()) == [foreign]


def test_rejected_credentials_are_named() -> None:
    with installed(FakeCloudStack(api_key="the-real-key")) as cloud, \
            pytest.raises(CloudError, match="the cloud rejected the API credentials"):
        configured(NodeProvider).create(node_props())
    assert cloud.calls == []


def test_a_provider_without_configure_has_no_credentials() -> None:
    with pytest.raises(CloudError, match="no cloud credentials: the provider reads the secret config keys "
                                         "cluster-cookbook:cloud_api_key and cluster-cookbook:cloud_api_secret"):
        NodeProvider(CREDENTIAL_KEYS).create(node_props())


# --- CloudKeyPair ---------------------------------------------------------------------------------------------
def test_key_pair_import_adopt_conflict_and_idempotent_delete(cloud: FakeCloudStack) -> None:
    provider = configured(KeyPairProvider)
    created = provider.create(key_props())
    assert created.id == "cookbook-test-deploy"
    [register] = cloud.params("registerSSHKeyPair")
    assert register == {"name": "cookbook-test-deploy", "publickey": PUBLIC_KEY}
    again = provider.create(key_props())  # an interrupted run registered it already: adopted
    assert again.outs == created.outs and len(cloud.commands("registerSSHKeyPair")) == 1
    with pytest.raises(CloudError, match=r"cloud key pair 'cookbook-test-deploy' already exists with another key"):
        provider.create(key_props(public_key=OTHER_KEY))
    provider.delete(created.id, dict(created.outs or {}))
    provider.delete(created.id, dict(created.outs or {}))
    assert cloud.key_pairs == {} and len(cloud.commands("deleteSSHKeyPair")) == 1
    assert provider.read(created.id, dict(created.outs or {})).id is None
    assert provider.diff(created.id, dict(created.outs or {}), key_props(public_key=OTHER_KEY)).replaces == [
        "public_key"]


# --- CloudSecurityGroup ---------------------------------------------------------------------------------------
def test_group_rules_ssh_from_the_operator_and_cluster_ports_from_the_group(cloud: FakeCloudStack) -> None:
    created = configured(SecurityGroupProvider).create(group_props())
    group = cloud.groups["cookbook-test-nodes"]
    rules = {(r["protocol"], r["startport"], r["endport"], r.get("cidr") or r["securitygroupname"])
             for r in group["ingressrule"]}
    assert rules == {("tcp", 22, 22, "198.51.100.0/24"), ("tcp", 2379, 2380, "cookbook-test-nodes"),
                     ("tcp", 6443, 6443, "cookbook-test-nodes"), ("tcp", 10250, 10250, "cookbook-test-nodes"),
                     ("udp", 8472, 8472, "cookbook-test-nodes"), ("udp", 51820, 51820, "cookbook-test-nodes")}
    from_group = [p for p in cloud.params("authorizeSecurityGroupIngress") if "cidrlist" not in p]
    assert all(p["usersecuritygrouplist[0].account"] == group["account"] for p in from_group) and len(from_group) == 5
    assert created.outs is not None and created.outs["group_id"] == group["id"]


def test_group_update_adds_and_revokes_rules_in_place(cloud: FakeCloudStack) -> None:
    provider = configured(SecurityGroupProvider)
    created = provider.create(group_props())
    news = group_props(rules=[Rule("tcp", 22, 22, "203.0.113.0/24").as_dict(),
                              Rule("tcp", 2379, 2380, "group").as_dict()])
    diff = provider.diff(created.id, dict(created.outs or {}), news)
    assert diff.changes is True and diff.replaces == []
    provider.update(created.id, dict(created.outs or {}), news)
    group = cloud.groups["cookbook-test-nodes"]
    assert sorted((r["startport"], r.get("cidr", "group")) for r in group["ingressrule"]) == [
        (22, "203.0.113.0/24"), (2379, "group")]
    assert len(cloud.commands("revokeSecurityGroupIngress")) == 5
    # refresh sees the cloud's rules: a rule removed by hand shows up as a diff the next update restores
    group["ingressrule"] = group["ingressrule"][:1]
    read = provider.read(created.id, news)
    assert read.outs is not None
    assert provider.diff(created.id, read.outs, news).changes is True


def test_group_converges_after_an_interrupted_create_and_refuses_a_foreign_group(cloud: FakeCloudStack) -> None:
    provider = configured(SecurityGroupProvider)
    provider.create(group_props(rules=group_props()["rules"][:2]))  # the run stopped after two rules
    provider.create(group_props())  # the engine recorded nothing: create runs again
    assert len(cloud.commands("createSecurityGroup")) == 1
    assert len(cloud.groups["cookbook-test-nodes"]["ingressrule"]) == len(group_props()["rules"]) == 6
    assert len(cloud.commands("authorizeSecurityGroupIngress")) == 6  # the first two were not authorized again
    with pytest.raises(CloudError, match=r"already exists and was not created by this stack"):
        provider.create(group_props(description="hand-made"))


def test_group_delete_is_idempotent(cloud: FakeCloudStack) -> None:
    provider = configured(SecurityGroupProvider)
    created = provider.create(group_props())
    provider.delete(created.id, dict(created.outs or {}))
    provider.delete(created.id, dict(created.outs or {}))
    assert cloud.groups == {} and len(cloud.commands("deleteSecurityGroup")) == 1


def test_malformed_rules_fail_check() -> None:
    result = SecurityGroupProvider(CREDENTIAL_KEYS).check({}, group_props(rules=[
        {"protocol": "icmp", "start_port": 0, "end_port": 0, "source": "group"}, {"protocol": "tcp"}]))
    assert [failure.property for failure in result.failures] == ["rules[0]", "rules[1]"]


# --- credentials never in the pickled provider ----------------------------------------------------------------
CANARY_KEY, CANARY_SECRET = "CANARY-api-key-7f3a9c", "CANARY-secret-key-51d0e8"


@pytest.mark.parametrize("provider_class", [NodeProvider, KeyPairProvider, SecurityGroupProvider])
def test_a_configured_provider_pickles_without_its_credentials(provider_class: type[Any]) -> None:
    provider = configured(provider_class, CANARY_KEY, CANARY_SECRET)
    assert provider._credentials == (CANARY_KEY, CANARY_SECRET)  # the canary did reach the provider
    serialized = base64.b64decode(serialize_provider(provider))  # how Pulumi pickles it into `__provider`
    assert b"CANARY" not in serialized
    assert b"components.cloud.providers" in serialized  # by reference: the host imports the module
    restored = dill.loads(serialized)
    assert restored._credentials is None and restored.credential_keys == CREDENTIAL_KEYS
    assert b"CANARY" not in pickle.dumps(provider)


def test_the_canary_check_catches_a_provider_that_keeps_credentials() -> None:
    """The same check on an object that does hold the canary finds it (the check can fail)."""

    class Leaky(NodeProvider):
        def __getstate__(self) -> dict[str, Any]:
            return dict(self.__dict__)

    provider = configured(Leaky, CANARY_KEY, CANARY_SECRET)
    assert b"CANARY" in base64.b64decode(serialize_provider(provider))


def test_user_data_reaches_the_cloud_as_sent() -> None:
    data = json.dumps({"ignition": {"version": "3.3.0"}})
    with installed(FakeCloudStack()) as cloud:
        prepared(cloud)
        configured(NodeProvider).create(node_props(user_data=data))
        assert base64.b64decode(cloud.params("deployVirtualMachine")[0]["userdata"]).decode() == data
