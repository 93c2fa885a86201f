"""Cassandra and Pithos components under mocks: graph, defaults, safety settings, secrets, providers."""

from __future__ import annotations

import json
from typing import Any

import pulumi
import pulumi_random as random
import pytest

from components.shared.kubernetes import KubernetesTarget, KubernetesTargetArgs
from components.store.cassandra import (
    CASSANDRA_IMAGE,
    CassandraArgs,
    CassandraCluster,
    _RingGuardProvider,
    cassandra_environment,
    jvm_heap,
    new_seed_problem,
    scale_down_problem,
    seed_hosts,
    statefulset_timeout_seconds,
)
from components.store.pithos import (
    PITHOS_START_SECONDS,
    ObjectStore,
    PithosArgs,
    PithosBuild,
    deployment_timeout_seconds,
    jvm_options,
    schema_job_deadline,
)
from tests.harness.fixtures import FAKE_KUBECONFIG
from tests.harness.program import SECRET_SIG
from tests.harness.recording import plain_strings
from tests.unit.store_support import (
    IMAGE,
    STORE_STACK,
    docker_build_ref,
    evaluated,
    kinds,
    pod_template,
    run_components,
    run_with,
)


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
    assert container["image"] == CASSANDRA_IMAGE == "cassandra:4.1.11"
    assert "nodetool drain" in container["lifecycle"]["preStop"]["exec"]["command"][2]
    assert pod["terminationGracePeriodSeconds"] == 240 + 30
    assert container["readinessProbe"]["tcpSocket"]["port"] == 9042
    # Rollout and disruption, exactly: one pod at a time, never two down.
    assert spec["podManagementPolicy"] == "OrderedReady"
    assert spec["updateStrategy"] == {"type": "RollingUpdate"}  # no partition, no maxUnavailable > 1
    # Commit-log replay is covered by the startupProbe (1200 s in the stack file); liveness only after it.
    assert container["startupProbe"] == {"tcpSocket": {"port": 7000}, "periodSeconds": 10, "timeoutSeconds": 5,
                                         "failureThreshold": 120}
    assert "initialDelaySeconds" not in container["livenessProbe"]
    assert container["livenessProbe"]["tcpSocket"]["port"] == 7000
    assert pod["securityContext"]["fsGroupChangePolicy"] == "OnRootMismatch"
    required = pod["affinity"]["podAntiAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    assert required[0]["topologyKey"] == "kubernetes.io/hostname"
    security = container["securityContext"]
    assert security["privileged"] is False and security["allowPrivilegeEscalation"] is False
    assert security["capabilities"] == {"drop": ["ALL"]} and pod["securityContext"]["runAsNonRoot"] is True
    pdb = objects["PodDisruptionBudget/cassandra"]["spec"]
    assert pdb == {"maxUnavailable": 1, "selector": {"matchLabels": sts["spec"]["selector"]["matchLabels"]}}
    assert pdb["selector"]["matchLabels"].items() <= sts["spec"]["template"]["metadata"]["labels"].items()
    service = objects["Service/cassandra"]["spec"]
    assert service["clusterIP"] == "None" and service["publishNotReadyAddresses"] is True
    namespace = objects["Namespace/object-store"]["metadata"]["labels"]
    assert namespace["pod-security.kubernetes.io/enforce"] == "baseline"


def test_pithos_objects() -> None:
    objects = kinds(evaluated(STORE_STACK)[0])
    deployment = objects["Deployment/pithos"]
    assert deployment["spec"]["replicas"] == 2
    # Never two Pithos pods down: a rollout adds one before removing one, a drain may take one.
    assert deployment["spec"]["strategy"] == {"type": "RollingUpdate",
                                              "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}}
    assert objects["PodDisruptionBudget/pithos"]["spec"] == {
        "maxUnavailable": 1, "selector": {"matchLabels": deployment["spec"]["selector"]["matchLabels"]}}
    (container,) = pod_template(deployment)["containers"]
    assert container["image"] == "registry.lan:5000/pithos:0.7.5"  # the stack file's own build
    assert container["startupProbe"] == {"tcpSocket": {"port": 8080}, "periodSeconds": 10,
                                         "failureThreshold": PITHOS_START_SECONDS // 10}
    assert container["readinessProbe"]["tcpSocket"]["port"] == 8080
    assert container["livenessProbe"]["tcpSocket"]["port"] == 8080
    # 1Gi: 614 MiB heap, 102 MiB direct buffers; the jar and config where the project's image has them.
    assert container["command"] == ["java", "-Xmx614m", "-XX:MaxDirectMemorySize=102m",
                                    "-XX:+ExitOnOutOfMemoryError", "-jar", "/opt/pithos/pithos.jar",
                                    "-f", "/etc/pithos/pithos.yaml", "-a", "api-run"]
    assert deployment["spec"]["progressDeadlineSeconds"] > PITHOS_START_SECONDS
    assert objects["Service/pithos"]["spec"] == {
        "type": "NodePort", "selector": deployment["spec"]["selector"]["matchLabels"],
        "ports": [{"name": "http", "port": 8080, "targetPort": "http", "protocol": "TCP", "nodePort": 30080}]}
    job = pod_template(objects["Job/pithos-schema"])
    steps = [c["name"] for c in job["initContainers"]] + [c["name"] for c in job["containers"]]
    assert steps == ["schema-prepare", "schema-tables", "schema-verify"]
    # Every step is cqlsh of the ring's own image: nothing of Pithos's install-schema runs any more.
    assert {c["image"] for c in job["initContainers"] + job["containers"]} == {CASSANDRA_IMAGE}
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
                                             image=IMAGE, replication_factor=1, tenants=("alice",)),
                            opts=on_cluster)
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


def cassandra_env(mocks: Any) -> dict[str, str]:
    (container,) = pod_template(kinds(mocks)["StatefulSet/cassandra"])["containers"]
    return {item["name"]: item["value"] for item in container["env"]}


@pytest.mark.parametrize("replicas", [1, 2, 3, 4, 9])
def test_seeds_do_not_move_with_replicas(replicas: int) -> None:
    """Defect: seeds were the first min(3, replicas-1) pods, so 1 -> 3 made the new cassandra-1 a seed (which
    never bootstraps) and every change of that count restarted the ring. Now the default is [0], always."""
    mocks, _ = run_with(store={"cassandra": {"replicas": replicas, "anti_affinity": replicas > 1}})
    assert cassandra_env(mocks)["CASSANDRA_SEEDS"] == "cassandra-0.cassandra.object-store.svc"


def test_changing_replicas_leaves_the_pod_template_alone() -> None:
    """Scaling must only change `replicas`: any change of the pod template restarts every pod."""
    seeds = {"seeds": [0, 1]}

    def statefulset(replicas: int) -> dict[str, Any]:
        mocks, _ = run_with(store={"cassandra": {"replicas": replicas, **seeds}})
        return kinds(mocks)["StatefulSet/cassandra"]

    three, five = statefulset(3), statefulset(5)
    assert (three["spec"]["replicas"], five["spec"]["replicas"]) == (3, 5)
    assert three["spec"]["template"] == five["spec"]["template"]


def guard_inputs(store: dict[str, Any]) -> dict[str, Any]:
    mocks, _ = run_with(store=store)
    return dict(mocks.named("cassandra-scale-guard").inputs)


def test_a_seed_must_already_be_part_of_the_deployed_ring() -> None:
    """The guard compares with the inputs it recorded last time (what the engine passes to `check`)."""
    provider = _RingGuardProvider()
    one = guard_inputs({"cassandra": {"replicas": 1, "anti_affinity": False}})
    three = guard_inputs({"cassandra": {"replicas": 3}})
    three_two_seeds = guard_inputs({"cassandra": {"replicas": 3, "seeds": [0, 1]}})
    assert (one["seeds"], three_two_seeds["seeds"]) == ([0], [0, 1])
    # 1 -> 3 with cassandra-1 as a seed at once: refused (it would never bootstrap).
    refused = provider.check(one, three_two_seeds).failures
    assert [f.property for f in refused] == ["seeds"]
    assert "cassandra-1 would be a seed before it has joined the ring" in refused[0].reason
    # 1 -> 3 with the recorded seeds, then cassandra-1 as a seed in a later run: both pass.
    assert provider.check(one, three).failures == []
    assert provider.check(three, three_two_seeds).failures == []
    # A first deployment forms a new ring: any of its pods may be a seed.
    assert provider.check({}, three_two_seeds).failures == []
    # Seeds are part of the record: changing them is a change (the StatefulSet then restarts, on purpose).
    assert provider.diff("id", three, three_two_seeds).changes is True
    assert provider.diff("id", three, dict(three)).changes is False


def test_new_seed_problem() -> None:
    assert new_seed_problem(None, [0, 1, 2], "c") is None
    assert new_seed_problem(3, [0, 2], "c") is None
    problem = new_seed_problem(2, [0, 2, 3], "c")
    assert problem is not None and problem.startswith("store.cassandra.seeds: c-2, c-3 would be a seed")
    assert "add [2, 3] to store.cassandra.seeds" in problem


def test_seed_hosts_are_the_recorded_ordinals() -> None:
    assert seed_hosts("cassandra", "ns", (2, 0)) == ("cassandra-0.cassandra.ns.svc", "cassandra-2.cassandra.ns.svc")


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
    assert (guard.inputs["replicas"], guard.inputs["seeds"], guard.inputs["statefulset"]) == (3, [0, 1], "cassandra")
    sts = mocks.named("cassandra-statefulset")
    assert guard.urn in sts.registration.dependencies  # the StatefulSet changes only after the check passed

    provider = _RingGuardProvider()
    news = {"replicas": 2, "seeds": [0], "decommissioned": [], "statefulset": "cassandra",
            "namespace": "object-store"}
    refused = provider.check({**news, "replicas": 3}, news)
    assert [f.property for f in refused.failures] == ["replicas"]
    assert provider.check({**news, "replicas": 3}, {**news, "decommissioned": [2]}).failures == []
    assert provider.check({}, news).failures == []


@pytest.mark.parametrize(("args", "field"), [
    (CassandraArgs(replicas=0), "replicas"),
    (CassandraArgs(replicas=3, seeds=(0, 1, 2)), "seeds"),  # every pod a seed: none ever bootstraps
    (CassandraArgs(replicas=3, seeds=(0, 3)), "seeds"),  # not a pod of the ring
    (CassandraArgs(replicas=3, seeds=()), "seeds"),
    (CassandraArgs(replicas=3, seeds=(1, 1)), "seeds"),
    (CassandraArgs(startup_timeout=30), "startup_timeout"),
    (CassandraArgs(memory="512Mi"), "memory"),
    (CassandraArgs(cpu_limit="2Gi"), "cpu_limit"),
    (CassandraArgs(replicas=3, decommissioned=(2,)), "decommissioned"),
])
def test_invalid_cassandra_args_name_the_field(args: CassandraArgs, field: str) -> None:
    assert [name for name, _ in args.problems()] == [field]
    with pytest.raises(ValueError, match=f"{field}:"):
        run_components(lambda: (CassandraCluster("bad", args), {})[1])


@pytest.mark.parametrize(("args", "field"), [
    (PithosArgs(namespace="n", image=IMAGE, replicas=1), "replicas"),
    (PithosArgs(namespace="n", image=IMAGE, service_type="Ingress"), "service_type"),
    (PithosArgs(namespace="n", image=IMAGE, tenants=("operator",)), "tenants[0]"),
    (PithosArgs(namespace="n", image=IMAGE, tenants=("a", "a")), "tenants"),
    (PithosArgs(namespace="n", image=IMAGE, keyspace="bad-name"), "keyspace"),
    (PithosArgs(namespace="n", image=IMAGE, memory="256Mi"), "memory"),
    (PithosArgs(namespace="n"), "image"),  # no public image: one must be named or built
    (PithosArgs(namespace="n", image=IMAGE, build=PithosBuild("r.test")), "image"),
    (PithosArgs(namespace="n", build=PithosBuild("r.test", tag="latest")), "build.tag"),
    (PithosArgs(namespace="n", build=PithosBuild("r.test", platforms=("linux/mips64",))), "build.platforms[0]"),
    (PithosArgs(namespace="n", build=PithosBuild("r.test", username="me")), "build.username"),
    (PithosArgs(namespace="n", build=PithosBuild("https://r.test")), "build.registry"),
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
    assert pod["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"][0]["weight"] == 100


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


def test_what_cannot_be_rebuilt_is_protected_on_the_wire() -> None:
    """Deleting the namespace deletes every PVC; replacing the StatefulSet stops every pod at once. Both are
    protected (the engine refuses to delete or replace them), nothing else is."""
    mocks, _ = evaluated(STORE_STACK)
    protected = sorted(name for name, options in mocks.options.items() if options.protect)
    assert protected == ["cassandra-namespace", "cassandra-statefulset"]
    assert not [name for name, options in mocks.options.items() if options.retain_on_delete]


def test_timeouts_cover_the_slowest_legitimate_rollout() -> None:
    """pulumi-kubernetes waits 10 minutes by default; a Pi ring replaying commit logs, a schema job waiting
    `schema_wait_seconds` for CQL, or a slow JVM start take longer, so `pulumi up` failed although the
    cluster was converging."""
    mocks, _ = evaluated(STORE_STACK)
    objects = kinds(mocks)
    statefulset = mocks.wire("cassandra-statefulset").custom_timeouts
    cassandra = CassandraArgs(replicas=3, drain_timeout=240, startup_timeout=1200)
    per_pod = 240 + 30 + 1200  # drain, grace margin, commit-log replay (startupProbe budget)
    assert statefulset == {"create": f"{statefulset_timeout_seconds(cassandra)}s",
                           "update": f"{statefulset_timeout_seconds(cassandra)}s"}
    assert statefulset_timeout_seconds(cassandra) >= 3 * per_pod

    job = objects["Job/pithos-schema"]["spec"]
    wait = 900  # schema_wait_seconds, the default
    assert job["activeDeadlineSeconds"] == schema_job_deadline(wait)
    # Waiting for CQL, then 9 DDL statements and 8 other calls at cqlsh's 60 s request timeout.
    assert schema_job_deadline(wait) >= wait + (9 + 8) * 60
    job_timeout = int(mocks.wire("pithos-schema").custom_timeouts["create"].rstrip("s"))
    assert job_timeout > job["activeDeadlineSeconds"]  # the job's own failure reason shows, not a timeout
    assert mocks.wire("pithos-schema").custom_timeouts["update"] == f"{job_timeout}s"

    deployment = mocks.wire("pithos-deployment").custom_timeouts
    assert deployment == {"create": f"{deployment_timeout_seconds(2)}s", "update": f"{deployment_timeout_seconds(2)}s"}
    assert deployment_timeout_seconds(2) >= 2 * PITHOS_START_SECONDS
    assert objects["Deployment/pithos"]["spec"]["progressDeadlineSeconds"] > PITHOS_START_SECONDS


@pytest.mark.parametrize("wait", [60, 900, 3600])
def test_the_schema_job_timeout_follows_schema_wait_seconds(wait: int) -> None:
    mocks, _ = run_with(store={"pithos": {"schema_wait_seconds": wait}})
    deadline = kinds(mocks)["Job/pithos-schema"]["spec"]["activeDeadlineSeconds"]
    assert deadline == schema_job_deadline(wait) > wait
    assert int(mocks.wire("pithos-schema").custom_timeouts["create"].rstrip("s")) > deadline


@pytest.mark.parametrize(("replicas", "startup"), [(1, 600), (3, 1200), (5, 3600)])
def test_the_statefulset_timeout_follows_the_ring(replicas: int, startup: int) -> None:
    mocks, _ = run_with(store={"cassandra": {"replicas": replicas, "anti_affinity": replicas > 1,
                                             "startup_timeout": startup}})
    timeout = int(mocks.wire("cassandra-statefulset").custom_timeouts["update"].rstrip("s"))
    assert timeout >= replicas * (240 + 30 + startup)
    (container,) = pod_template(kinds(mocks)["StatefulSet/cassandra"])["containers"]
    probe = container["startupProbe"]
    assert probe["periodSeconds"] * probe["failureThreshold"] >= startup


@pytest.mark.parametrize(("memory", "options"), [
    ("512Mi", ["-Xmx307m", "-XX:MaxDirectMemorySize=51m"]),
    ("1Gi", ["-Xmx614m", "-XX:MaxDirectMemorySize=102m"]),
    ("2Gi", ["-Xmx1228m", "-XX:MaxDirectMemorySize=204m"]),
])
def test_pithos_jvm_memory_follows_the_limit(memory: str, options: list[str]) -> None:
    assert jvm_options(memory) == [*options, "-XX:+ExitOnOutOfMemoryError"]


def test_the_stack_can_build_and_push_the_pithos_image() -> None:
    """`store.pithos.build`: a multi-platform pulumi-docker-build Image from the project's Dockerfile, pushed;
    the Deployment runs the pushed tag@digest, and registry credentials travel as secrets only."""
    build = {"registry": "registry.lan:5000", "platforms": ["linux/amd64", "linux/arm64"],
             "builder": "multiarch", "username": "deployer"}
    mocks, _ = run_with(store={"pithos": {"build": build}}, extra={"registry_password": "s3cr3t-token"})
    image = mocks.named("pithos-image")
    assert image.type == "docker-build:index:Image" and image.parent == mocks.named("pithos").urn
    inputs = image.inputs
    assert inputs["tags"] == ["registry.lan:5000/pithos:0.7.5"]
    assert inputs["platforms"] == ["linux/amd64", "linux/arm64"] and inputs["push"] is True
    assert inputs["context"] == {"location": "components/store/docker"}
    assert inputs["dockerfile"] == {"location": "components/store/docker/Dockerfile"}
    assert inputs["builder"] == {"name": "multiarch"} and inputs["buildOnPreview"] is False
    assert inputs["buildArgs"] == {"PITHOS_JAR": "/opt/pithos/pithos.jar"}
    assert inputs["registries"] == [{"address": "registry.lan:5000", "username": "deployer",
                                     "password": "s3cr3t-token"}]
    for resource in mocks.resources:  # the password is on the wire only inside a secret
        assert not [t for t in plain_strings(resource.registration.raw_inputs) if "s3cr3t-token" in t], resource.name
    (container,) = pod_template(kinds(mocks)["Deployment/pithos"])["containers"]
    assert container["image"] == docker_build_ref(inputs)
    assert container["image"].startswith("registry.lan:5000/pithos:0.7.5@sha256:")
    # The image reaches the Deployment as an output: the engine waits for the push before rolling it out.
    assert image.urn in mocks.named("pithos-deployment").registration.dependencies


def test_without_credentials_the_build_uses_docker_login() -> None:
    mocks, _ = run_with(store={"pithos": {"build": {"registry": "registry.lan:5000"}}})
    inputs = mocks.named("pithos-image").inputs
    assert "registries" not in inputs and inputs["platforms"] == ["linux/amd64", "linux/arm64"]

