"""Cassandra and Pithos components under mocks: graph, defaults, safety settings, secrets, providers."""

from __future__ import annotations

import json
from typing import Any

import pulumi
import pulumi_kubernetes as kubernetes
import pulumi_random as random
import pytest

from components.shared.kubernetes import KubernetesTarget, KubernetesTargetArgs
from components.store.cassandra import (
    CassandraArgs,
    CassandraCluster,
    cassandra_environment,
    default_seed_count,
    jvm_heap,
    scale_down_problem,
    seed_hosts,
)
from components.store.pithos import ObjectStore, PithosArgs
from tests.harness.fixtures import FAKE_KUBECONFIG
from tests.harness.program import SECRET_SIG
from tests.harness.recording import plain_strings
from tests.unit.store_support import STORE_STACK, evaluated, kinds, pod_template, run_components, run_with


def test_store_stack_graph() -> None:
    mocks, _ = evaluated(STORE_STACK)
    components = {r.name: r.type for r in mocks.resources if not r.registration.custom}
    assert components == {"store-target": "cookbook:kubernetes_target:Target",
                          "cassandra": "cookbook:cassandra:Cluster", "pithos": "cookbook:pithos:ObjectStore"}
    assert sorted(kinds(mocks)) == [
        "Deployment/pithos", "Job/pithos-schema", "Namespace/object-store", "NetworkPolicy/cassandra",
        "PodDisruptionBudget/cassandra", "PodDisruptionBudget/pithos", "Secret/pithos-config", "Service/cassandra",
        "Service/pithos", "StatefulSet/cassandra"]
    provider = mocks.named("store-target-provider")
    assert provider.type == "pulumi:providers:kubernetes" and provider.parent == mocks.named("store-target").urn


def test_cassandra_statefulset_is_safe_by_default() -> None:
    objects = kinds(evaluated(STORE_STACK)[0])
    sts = objects["StatefulSet/cassandra"]
    spec, pod = sts["spec"], pod_template(sts)
    (container,) = pod["containers"]
    assert spec["replicas"] == 3 and spec["serviceName"] == "cassandra"
    assert spec["persistentVolumeClaimRetentionPolicy"] == {"whenDeleted": "Retain", "whenScaled": "Retain"}
    assert spec["volumeClaimTemplates"][0]["spec"]["resources"]["requests"]["storage"] == "20Gi"
    env = {item["name"]: item["value"] for item in container["env"]}
    assert env["CASSANDRA_SEEDS"] == "cassandra-0.cassandra.object-store.svc,cassandra-1.cassandra.object-store.svc"
    assert (env["MAX_HEAP_SIZE"], env["HEAP_NEWSIZE"]) == ("1024M", "200M")  # half of 2Gi; 100M per core
    assert container["resources"]["limits"] == {"cpu": "2", "memory": "2Gi"}
    assert container["image"] == "cassandra:4.1.7"
    assert "nodetool drain" in container["lifecycle"]["preStop"]["exec"]["command"][2]
    assert pod["terminationGracePeriodSeconds"] == 240 + 30
    assert container["readinessProbe"]["tcpSocket"]["port"] == 9042
    required = pod["affinity"]["podAntiAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    assert required[0]["topologyKey"] == "kubernetes.io/hostname"
    security = container["securityContext"]
    assert security["privileged"] is False and security["allowPrivilegeEscalation"] is False
    assert security["capabilities"] == {"drop": ["ALL"]} and pod["securityContext"]["runAsNonRoot"] is True
    pdb = objects["PodDisruptionBudget/cassandra"]["spec"]
    assert pdb["maxUnavailable"] == 1
    assert pdb["selector"]["matchLabels"].items() <= sts["spec"]["template"]["metadata"]["labels"].items()
    service = objects["Service/cassandra"]["spec"]
    assert service["clusterIP"] == "None" and service["publishNotReadyAddresses"] is True
    namespace = objects["Namespace/object-store"]["metadata"]["labels"]
    assert namespace["pod-security.kubernetes.io/enforce"] == "baseline"


def test_pithos_objects() -> None:
    objects = kinds(evaluated(STORE_STACK)[0])
    deployment = objects["Deployment/pithos"]
    assert deployment["spec"]["replicas"] == 2
    (container,) = pod_template(deployment)["containers"]
    assert container["readinessProbe"] and container["livenessProbe"]
    assert container["command"][-2:] == ["-a", "api-run"]
    assert objects["Service/pithos"]["spec"] == {
        "type": "NodePort", "selector": deployment["spec"]["selector"]["matchLabels"],
        "ports": [{"name": "http", "port": 8080, "targetPort": "http", "protocol": "TCP", "nodePort": 30080}]}
    job = pod_template(objects["Job/pithos-schema"])
    steps = [c["name"] for c in job["initContainers"]] + [c["name"] for c in job["containers"]]
    assert steps == ["schema-prepare", "schema-install", "schema-verify"]
    # Pods that speak CQL carry the label the Cassandra NetworkPolicy admits.
    admitted = objects["NetworkPolicy/cassandra"]["spec"]["ingress"][1]["from"][0]["podSelector"]["matchLabels"]
    for doc in (deployment, objects["Job/pithos-schema"]):
        assert admitted.items() <= doc["spec"]["template"]["metadata"]["labels"].items()


def test_store_secrets_stay_secret() -> None:
    mocks, exports = evaluated(STORE_STACK)
    store = exports["store"]
    generated = {value for keys in store["tenant_keys"].values() for value in keys.values()}
    assert len(generated) == 6  # operator, backups, photos: access and secret key each
    for resource in mocks.resources:
        leaked = [text for text in plain_strings(resource.registration.raw_inputs)
                  if any(key in text for key in generated)]
        assert leaked == [], resource.name
    config = mocks.named("pithos-config")
    assert "stringData" in config.registration.additional_secret_outputs
    assert store["endpoint"] == "http://192.168.1.21:30080"
    assert store["boto3"]["aws_access_key_id"] == store["access_key"]


def test_component_outputs_are_secret_and_children_use_the_given_provider() -> None:
    """A cluster built in the same stack hands its Provider over; every Kubernetes child uses it."""

    def build() -> dict[str, pulumi.Output[Any]]:
        # Stands in for a cluster component whose kubeconfig is an output of other resources.
        token = random.RandomPassword("cluster-token", length=32, special=False)
        kubeconfig = token.result.apply(lambda t: FAKE_KUBECONFIG.replace("FAKE-KEY-FOR-TESTS-ONLY", t))
        target = KubernetesTarget("lab", KubernetesTargetArgs(kubeconfig=kubeconfig))
        on_cluster = pulumi.ResourceOptions(providers=[target.provider])
        cassandra = CassandraCluster("db", CassandraArgs(replicas=1, anti_affinity=False), opts=on_cluster)
        store = ObjectStore("s3", PithosArgs(namespace="object-store", cassandra_host=cassandra.service_host,
                                             replication_factor=1, tenants=("alice",)), opts=on_cluster)
        return {"access_key": store.access_key, "secret_key": store.secret_key, "s3cfg": store.s3cfg,
                "boto3": store.boto3, "tenant_keys": store.tenant_keys, "endpoint": pulumi.Output.from_input(
                    store.endpoint)}

    mocks, outputs = run_components(build)
    for key in ("access_key", "secret_key", "s3cfg", "boto3", "tenant_keys"):
        assert outputs[key][1] is True, f"{key} must be secret"
    assert outputs["endpoint"] == ("http://s3.object-store.svc.cluster.local:8080", False)
    provider = mocks.named("lab-provider")
    kube_children = [r for r in mocks.resources if r.typ.startswith("kubernetes:")]
    assert len(kube_children) == 10
    assert all(r.provider and r.provider.startswith("urn:") and "::lab-provider::" in r.provider
               for r in kube_children), [(r.name, r.provider) for r in kube_children]
    kubeconfig = provider.inputs["kubeconfig"]  # sent as a secret
    assert SECRET_SIG in kubeconfig and kubeconfig["value"].startswith("apiVersion: v1")
    s3cfg, _ = outputs["s3cfg"]
    assert "signature_v2 = True" in s3cfg and f"access_key = {outputs['access_key'][0]}" in s3cfg
    assert "host_bucket = s3.object-store.svc.cluster.local:8080" in s3cfg  # path-style
    assert sorted(outputs["tenant_keys"][0]) == ["alice", "operator"]


@pytest.mark.parametrize(("replicas", "seeds"), [(1, 1), (2, 1), (3, 2), (4, 3), (9, 3)])
def test_seeds_name_a_few_pods_but_never_all(replicas: int, seeds: int) -> None:
    assert default_seed_count(replicas) == seeds
    hosts = seed_hosts("cassandra", "ns", seeds)
    assert hosts[0] == "cassandra-0.cassandra.ns.svc" and len(hosts) == seeds
    assert replicas == 1 or len(hosts) < replicas


@pytest.mark.parametrize(("memory", "cpu", "heap"), [
    ("1Gi", "1", (512, 100)), ("2Gi", "2", (1024, 200)), ("4096Mi", "500m", (2048, 100)),
    ("32Gi", "8", (8192, 800)), ("1.5Gi", "4", (768, 192)),
])
def test_jvm_heap_is_derived_from_the_limits(memory: str, cpu: str, heap: tuple[int, int]) -> None:
    assert jvm_heap(memory, cpu) == heap
    env = cassandra_environment(CassandraArgs(memory=memory, cpu_limit=cpu), "c")
    assert (env["MAX_HEAP_SIZE"], env["HEAP_NEWSIZE"]) == (f"{heap[0]}M", f"{heap[1]}M")


def test_scale_down_is_refused_until_the_pods_are_decommissioned() -> None:
    assert scale_down_problem(None, 3, (), "cassandra", "ns") is None  # first deployment
    assert scale_down_problem(3, 5, (), "cassandra", "ns") is None  # scaling up
    problem = scale_down_problem(5, 3, (), "cassandra", "ns")
    assert problem is not None and problem.startswith("store.cassandra.replicas: scaling cassandra down from 5 to 3")
    assert problem.index("exec cassandra-4") < problem.index("exec cassandra-3")  # highest ordinal first
    assert "nodetool decommission" in problem and "store.cassandra.decommissioned: [3, 4]" in problem
    assert "cassandra-3" not in (scale_down_problem(5, 3, (3,), "cassandra", "ns") or "").split("decommission")[0]
    assert scale_down_problem(5, 3, (3, 4), "cassandra", "ns") is None


def test_the_scale_guard_checks_against_the_previous_inputs() -> None:
    mocks, _ = evaluated(STORE_STACK)
    guard = mocks.named("cassandra-scale-guard")
    assert guard.type == "pulumi-python:dynamic:Resource"
    assert (guard.inputs["replicas"], guard.inputs["statefulset"]) == (3, "cassandra")
    sts = mocks.named("cassandra-statefulset")
    assert guard.urn in sts.registration.dependencies  # the StatefulSet changes only after the check passed
    from components.store.cassandra import _ScaleGuardProvider

    provider = _ScaleGuardProvider()
    news = {"replicas": 2, "decommissioned": [], "statefulset": "cassandra", "namespace": "object-store"}
    refused = provider.check({**news, "replicas": 3}, news)
    assert [f.property for f in refused.failures] == ["replicas"]
    assert provider.check({**news, "replicas": 3}, {**news, "decommissioned": [2]}).failures == []
    assert provider.check({}, news).failures == []


@pytest.mark.parametrize(("args", "field"), [
    (CassandraArgs(replicas=0), "replicas"),
    (CassandraArgs(replicas=3, seed_count=3), "seed_count"),
    (CassandraArgs(memory="512Mi"), "memory"),
    (CassandraArgs(cpu_limit="2Gi"), "cpu_limit"),
    (CassandraArgs(replicas=3, decommissioned=(2,)), "decommissioned"),
])
def test_invalid_cassandra_args_name_the_field(args: CassandraArgs, field: str) -> None:
    assert [name for name, _ in args.problems()] == [field]
    with pytest.raises(ValueError, match=f"{field}:"):
        run_components(lambda: (CassandraCluster("bad", args), {})[1])


@pytest.mark.parametrize(("args", "field"), [
    (PithosArgs(namespace="n", replicas=1), "replicas"),
    (PithosArgs(namespace="n", service_type="Ingress"), "service_type"),
    (PithosArgs(namespace="n", tenants=("operator",)), "tenants[0]"),
    (PithosArgs(namespace="n", tenants=("a", "a")), "tenants"),
    (PithosArgs(namespace="n", keyspace="bad-name"), "keyspace"),
])
def test_invalid_pithos_args_name_the_field(args: PithosArgs, field: str) -> None:
    assert [name for name, _ in args.problems()] == [field]


def test_render_directory_needs_no_kubeconfig_and_rendering_is_deterministic() -> None:
    store = {"render_directory": "build/manifests", "pithos": {"tenants": ["b", "a"]}}
    first, _ = run_with(store=store, secrets={})
    second, _ = run_with(store=store, secrets={})
    provider = first.named("store-target-provider")
    assert provider.inputs == {"renderYamlToDirectory": "build/manifests"}

    def dump(mocks: Any) -> str:
        return json.dumps({r.urn: r.registration.raw_inputs for r in mocks.resources}, sort_keys=True)

    assert dump(first) == dump(second)


def test_a_scale_to_one_node_lab_switches_anti_affinity_to_preferred() -> None:
    mocks, _ = run_with(store={"cassandra": {"replicas": 1, "anti_affinity": False}})
    pod = pod_template(kinds(mocks)["StatefulSet/cassandra"])
    assert set(pod["affinity"]["podAntiAffinity"]) == {"preferredDuringSchedulingIgnoredDuringExecution"}
    assert kubernetes  # the SDK module is what the components build on


def test_every_pod_meets_pod_security_restricted() -> None:
    """Beyond the "baseline" the namespace enforces: the "restricted" profile's container rules."""
    objects = kinds(evaluated(STORE_STACK)[0])
    pods = {name: pod_template(doc) for name, doc in objects.items()
            if doc["kind"] in ("StatefulSet", "Deployment", "Job")}
    assert len(pods) == 3
    for name, pod in pods.items():
        assert pod["securityContext"]["runAsNonRoot"] is True, name
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}, name
        assert not {"hostNetwork", "hostPID", "hostIPC"} & set(pod), name
        assert all("hostPath" not in volume for volume in pod.get("volumes", [])), name
        for container in pod.get("initContainers", []) + pod["containers"]:
            context = container["securityContext"]
            assert context["allowPrivilegeEscalation"] is False and context["privileged"] is False, name
            assert context["capabilities"] == {"drop": ["ALL"]}, name
            assert context["runAsUser"] > 0, name
