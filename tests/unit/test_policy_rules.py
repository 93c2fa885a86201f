"""The policy pack's rules: a violating and a clean case each, the CrossGuard adapters, and every shipped
stack passing with zero mandatory violations."""

from __future__ import annotations

import base64
import copy
from collections.abc import Mapping
from typing import Any

import pytest
from pulumi_policy import (
    PolicyConfigSchema,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    StackValidationArgs,
    StackValidationPolicy,
)
from pulumi_policy.policy import PolicyCustomTimeouts, PolicyResource, PolicyResourceOptions

from policy import rules
from tests.harness.program import stack_names
from tests.unit.store_support import evaluated

STS = "kubernetes:apps/v1:StatefulSet"
DEPLOYMENT = "kubernetes:apps/v1:Deployment"
CONFIGMAP = "kubernetes:core/v1:ConfigMap"
PDB = "kubernetes:policy/v1:PodDisruptionBudget"


def workload(replicas: int = 3, **pod: Any) -> dict[str, Any]:
    container = {"name": "app", "image": "cassandra:4.1.7",
                 "resources": {"requests": {"cpu": "100m", "memory": "1Gi"},
                               "limits": {"cpu": "1", "memory": "1Gi"}}}
    return {
        "apiVersion": "apps/v1", "kind": "StatefulSet",
        "metadata": {"name": "db", "namespace": "store"},
        "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": "db"}},
                 "template": {"metadata": {"labels": {"app": "db", "tier": "data"}},
                              "spec": {"containers": [container], **pod}}},
    }


def container(props: dict[str, Any]) -> dict[str, Any]:
    first: dict[str, Any] = props["spec"]["template"]["spec"]["containers"][0]
    return first


def budget(labels: Mapping[str, str], namespace: str = "store") -> dict[str, Any]:
    return {"apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
            "metadata": {"name": "db", "namespace": namespace},
            "spec": {"maxUnavailable": 1, "selector": {"matchLabels": dict(labels)}}}


def with_image(image: str) -> dict[str, Any]:
    props = workload()
    container(props)["image"] = image
    return props


@pytest.mark.parametrize(("image", "ok"), [
    ("cassandra:4.1.7", True), ("registry.local:5000/team/pithos:0.7.5", True),
    ("cassandra@sha256:" + "a" * 64, True),
    ("cassandra", False), ("cassandra:latest", False), ("registry.local:5000/pithos", False), ("", False),
])
def test_images_pinned(image: str, ok: bool) -> None:
    assert (rules.images_pinned(STS, with_image(image)) == []) is ok


def test_images_pinned_covers_init_containers_and_cronjobs() -> None:
    props = workload(initContainers=[{"name": "init", "image": "busybox"}])
    assert rules.images_pinned(STS, props) == ["store/db initContainers[0] 'init': image 'busybox' has no tag: "
                                               "pin a version (e.g. busybox:1.2.3) or a digest"]
    cronjob = {"metadata": {"name": "c"}, "spec": {"jobTemplate": {"spec": {"template": {"spec": {
        "containers": [{"name": "x", "image": "alpine:latest"}]}}}}}}
    assert len(rules.images_pinned("kubernetes:batch/v1:CronJob", cronjob)) == 1
    assert rules.images_pinned("kubernetes:core/v1:Service", {"spec": {}}) == []


@pytest.mark.parametrize("pod", [
    {"hostNetwork": True}, {"hostPID": True}, {"hostIPC": True},
    {"volumes": [{"name": "root", "hostPath": {"path": "/"}}]},
])
def test_no_host_access_pod_level(pod: dict[str, Any]) -> None:
    found = rules.no_host_access(STS, workload(**pod))
    assert found and "host_access_allow_list" in found[-1]
    assert rules.no_host_access(STS, workload(**pod), rules.PolicyConfig(("store/db",))) == []


def test_no_host_access_privileged_container() -> None:
    props = workload()
    container(props)["securityContext"] = {"privileged": True}
    assert rules.no_host_access(STS, props)[0] == "store/db containers[0] 'app': runs privileged"
    container(props)["securityContext"] = {"privileged": False}
    assert rules.no_host_access(STS, props) == []
    assert rules.no_host_access(STS, workload(volumes=[{"name": "d", "emptyDir": {}}])) == []


def test_resources_limited() -> None:
    assert rules.resources_limited(STS, workload()) == []
    props = workload()
    del container(props)["resources"]["limits"]["memory"]
    container(props)["resources"]["requests"].pop("cpu")
    assert rules.resources_limited(STS, props) == ["store/db containers[0] 'app': no requests.cpu, limits.memory"]


@pytest.mark.parametrize("credential", rules.EXAMPLE_CREDENTIALS)
def test_no_example_credentials_anywhere(credential: str) -> None:
    config = {"pithos.yaml": f"keystore:\n  keys:\n    {credential}:\n      master: true\n"}
    found = rules.no_example_credentials("kubernetes:core/v1:Secret", {"stringData": config})
    assert len(found) == 1 and credential not in found[0]  # the message does not repeat it whole
    encoded = {"data": {"key": base64.b64encode(credential.encode()).decode()}}
    assert rules.no_example_credentials("kubernetes:core/v1:Secret", encoded)
    assert rules.no_example_credentials("command:remote:Command", {"create": f"export K={credential}"})


def test_generated_credentials_are_clean() -> None:
    props = {"stringData": {"pithos.yaml": "keys:\n  KIYAI6F08WBUV27AOSPJ: {secret: Zq3x}\n"}}
    assert rules.no_example_credentials("kubernetes:core/v1:Secret", props) == []
    assert rules.no_example_credentials("kubernetes:core/v1:Secret", {"data": {"k": "not base64!"}}) == []


@pytest.mark.parametrize(("data", "ok"), [
    ({"cassandra.yaml": "cluster_name: cookbook\nnum_tokens: 16\n"}, True),
    ({"log-level": "info", "endpoint": "http://s3:8080"}, True),
    ({"db-password": "x"}, False),
    ({"id_ed25519.key": "x"}, False),
    ({"s3cfg": "[default]\n"}, False),
    ({"app.ini": "[db]\npassword = hunter2\n"}, False),
    ({"client.conf": "secret_key: abc\n"}, False),
    ({"tls": "-----BEGIN RSA PRIVATE KEY-----\nMIIE\n"}, False),
])
def test_no_secrets_in_configmaps(data: dict[str, str], ok: bool) -> None:
    props = {"metadata": {"name": "cfg", "namespace": "store"}, "data": data}
    assert (rules.no_secrets_in_configmaps(CONFIGMAP, props) == []) is ok
    assert rules.no_secrets_in_configmaps("kubernetes:core/v1:Secret", props) == []


def test_replicated_statefulsets_have_a_pdb() -> None:
    sts = workload(replicas=3)
    missing = rules.replicated_statefulsets_have_pdb([(STS, sts)])
    assert missing == ["StatefulSet store/db runs 3 replicas but no PodDisruptionBudget selects its pods: "
                       "a node drain could stop several at once"]
    assert rules.replicated_statefulsets_have_pdb([(STS, sts), (PDB, budget({"app": "db"}))]) == []
    # A budget elsewhere, or for other pods, does not count; a single replica needs none.
    assert rules.replicated_statefulsets_have_pdb([(STS, sts), (PDB, budget({"app": "db"}, "other"))])
    assert rules.replicated_statefulsets_have_pdb([(STS, sts), (PDB, budget({"app": "web"}))])
    assert rules.replicated_statefulsets_have_pdb([(STS, workload(replicas=1))]) == []


def policy_args(resource_type: str, props: Mapping[str, Any],
                config: Mapping[str, Any] | None = None) -> ResourceValidationArgs:
    options = PolicyResourceOptions(False, [], None, [], PolicyCustomTimeouts(0, 0, 0), [])
    return ResourceValidationArgs(resource_type, props, f"urn:pulumi:t::p::{resource_type}::r", "r", options, None,
                                  config)


def run_resource_rule(rule: rules.Rule, args: ResourceValidationArgs) -> list[str]:
    reported: list[str] = []
    rules.validate_resource(rule)(args, lambda message, urn=None: reported.append(message))
    return reported


def test_crossguard_adapters_pass_config_and_report() -> None:
    (host_rule,) = [r for r in rules.RESOURCE_RULES if r.name == "kubernetes-no-host-access"]
    props = workload(hostNetwork=True)
    assert run_resource_rule(host_rule, policy_args(STS, props))
    assert run_resource_rule(host_rule, policy_args(STS, props, {"host_access_allow_list": ["store/db"]})) == []
    options = PolicyResourceOptions(False, [], None, [], PolicyCustomTimeouts(0, 0, 0), [])
    resources = [PolicyResource(STS, workload(), "urn:sts", "db", options, None, None, [], {})]
    reported: list[str] = []
    rules.validate_stack(StackValidationArgs(resources), lambda message, urn=None: reported.append(message))
    assert len(reported) == 1 and "PodDisruptionBudget" in reported[0]


def test_every_rule_builds_a_crossguard_policy() -> None:
    """What policy/__main__.py assembles (building the PolicyPack itself would block)."""
    policies: list[ResourceValidationPolicy | StackValidationPolicy] = [
        ResourceValidationPolicy(rule.name, rule.description, rules.validate_resource(rule),
                                 config_schema=PolicyConfigSchema(rules.CONFIG_SCHEMA))
        for rule in rules.RESOURCE_RULES]
    policies.append(StackValidationPolicy(rules.STACK_RULE_NAME, rules.STACK_RULE_DESCRIPTION, rules.validate_stack))
    assert len({policy.name for policy in policies}) == len(rules.RESOURCE_RULES) + 1


def test_a_violating_store_would_be_stopped() -> None:
    """The shipped store, with each safety setting broken in turn, trips the matching rule."""
    mocks, _ = evaluated("s3-store")
    items = [(r.type, r.inputs) for r in mocks.resources]
    (sts_type, sts) = next(item for item in items if item[0] == STS)
    broken = copy.deepcopy(sts)
    container(broken)["image"] = "cassandra"
    container(broken)["securityContext"]["privileged"] = True
    container(broken).pop("resources")
    without_pdb = [item for item in items if item[0] != PDB and item[0] != STS] + [(sts_type, broken)]
    names = {line.split(":")[0] for line in rules.all_violations(without_pdb)}
    assert names == {"kubernetes-images-pinned", "kubernetes-no-host-access", "kubernetes-resources-limited",
                     "kubernetes-statefulset-pdb"}


@pytest.mark.parametrize("stack", stack_names())
def test_every_shipped_stack_passes_the_policy_pack(stack: str) -> None:
    mocks, _ = evaluated(stack)
    assert mocks.resources
    assert rules.all_violations((r.type, r.inputs) for r in mocks.resources) == []
