"""Apache Cassandra on Kubernetes: a StatefulSet ring with seeds, drain on stop, a disruption budget and
hostname anti-affinity, following the Kubernetes docs' Cassandra example and k8ssandra's operational rules.

Scaling up is a config change. Scaling down is refused (at preview) until the pods that would go away have
been decommissioned by hand and listed in `decommissioned`: a removed pod's token ranges would otherwise
lose a replica without their data being streamed anywhere.

`seeds` is a record, like etcd's `bootstrap`: the pod ordinals every node contacts first. It never follows
`replicas` (a seed never bootstraps, so a new pod named a seed would join without its data, and any change
of the list restarts every pod). A seed must be a pod of the ring already deployed: the guard refuses new
ordinals at preview.

The Namespace (deleting it deletes every PersistentVolumeClaim in it, whatever the StatefulSet's retention
policy says) and the StatefulSet (replacing it stops every Cassandra pod at once) are `protect`ed: the
engine refuses to delete or replace them until they are unprotected on purpose (README: "Destroying the
store on purpose").
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import pulumi
import pulumi_kubernetes as kubernetes
from pulumi import dynamic

from components.shared.kubernetes import (
    MEBIBYTE,
    check_cpu,
    check_memory,
    check_storage,
    container_security,
    cpu_cores,
    labels,
    namespace_labels,
    pod_security,
    quantity,
    resources,
)
from components.shared.scripts import render_script

# The official image is multi-arch (amd64, arm64v8, arm32v7, ppc64le, s390x): Raspberry Pis pull arm64.
# 4.1.11 is the newest 4.1.x of docker-library/cassandra (versions.json, "Update 4.1 to 4.1.11",
# 2026-03-23), checked 2026-11-25.
CASSANDRA_IMAGE = "cassandra:4.1.11"
CASSANDRA_UID = 999  # the `cassandra` user of the official image; it owns /etc/cassandra and the data dir
CQL_PORT = 9042
PORTS = {"intra-node": 7000, "tls-intra-node": 7001, "jmx": 7199, "cql": CQL_PORT}
DATA_DIR = "/var/lib/cassandra"
MAX_HEAP_MB = 8192  # beyond 8G, G1/CMS pauses grow without helping Cassandra
_GRACE_MARGIN_SECONDS = 30
STARTUP_PROBE_PERIOD = 10
# A pod has started (commit log replayed, gossip listening); joining the ring and, for a new pod, streaming
# its data (bootstrap) may then take this long before CQL answers and the pod is ready.
JOIN_SECONDS = 600


def seed_hosts(statefulset: str, namespace: str, seeds: Sequence[int]) -> tuple[str, ...]:
    """Stable per-pod DNS names of the seed pods (resolvable before they are ready), in ordinal order."""
    return tuple(f"{statefulset}-{index}.{statefulset}.{namespace}.svc" for index in sorted(seeds))


def seed_problems(seeds: Sequence[int], replicas: int) -> list[str]:
    """What is wrong with a seed list for a ring of `replicas` pods (empty when it is usable)."""
    found: list[str] = []
    if not seeds:
        found.append("must name at least one pod ordinal (e.g. [0])")
    if len(set(seeds)) != len(seeds):
        found.append(f"names a pod twice: {list(seeds)}")
    if beyond := sorted(i for i in seeds if i >= replicas):
        found.append(f"ordinals {beyond} are not pods of a {replicas}-pod ring (0..{replicas - 1})")
    if replicas > 1 and len(set(seeds)) >= replicas:
        found.append(f"names all {replicas} pods: a seed never bootstraps, so at least one pod must not be a seed")
    return found


def new_seed_problem(previous_replicas: int | None, seeds: Sequence[int], statefulset: str) -> str | None:
    """Why `seeds` cannot be used with the ring deployed so far (`previous_replicas` pods), or None.

    A seed skips bootstrap: a pod that is a seed from its first start joins without streaming its data.
    So only pods that are already part of the deployed ring may become seeds (the first deployment, with an
    empty ring, may name any of its pods)."""
    if previous_replicas is None:
        return None
    new = sorted(i for i in seeds if i >= previous_replicas)
    if not new:
        return None
    pods = ", ".join(f"{statefulset}-{i}" for i in new)
    return (f"store.cassandra.seeds: {pods} would be a seed before it has joined the ring (the deployed ring has "
            f"{previous_replicas} pods): a seed never bootstraps, so it would serve its token ranges without their "
            f"data. Deploy the larger ring first with the current seeds; once `nodetool status` shows {pods} as UN, "
            f"add {new} to store.cassandra.seeds in a later `pulumi up`.")


def startup_failure_threshold(startup_timeout: int) -> int:
    return math.ceil(startup_timeout / STARTUP_PROBE_PERIOD)


def statefulset_timeout_seconds(args: CassandraArgs) -> int:
    """How long `pulumi up` waits for the StatefulSet: pods change one at a time (OrderedReady, rolling from the
    highest ordinal), each drained, restarted (the startupProbe's budget) and joined in turn."""
    per_pod = (args.drain_timeout + _GRACE_MARGIN_SECONDS + STARTUP_PROBE_PERIOD * startup_failure_threshold(
        args.startup_timeout) + JOIN_SECONDS)
    return args.replicas * per_pod


def jvm_heap(memory_limit: str, cpu_limit: str) -> tuple[int, int]:
    """(MAX_HEAP_SIZE, HEAP_NEWSIZE) in MiB from the container limits: half the memory (the rest is off-heap,
    page cache and metaspace) capped at 8 GiB; the young generation 100 MiB per core, at most a quarter."""
    heap = min(int(quantity(memory_limit) // MEBIBYTE) // 2, MAX_HEAP_MB)
    young = min(100 * cpu_cores(cpu_limit), heap // 4)
    return heap, young


@dataclass(frozen=True)
class CassandraArgs:
    namespace: str = "object-store"
    create_namespace: bool = True
    replicas: int = 3
    seeds: tuple[int, ...] = (0,)  # a record of pod ordinals: never changes with `replicas`
    cluster_name: str = "cookbook"
    datacenter: str = "dc1"
    rack: str = "rack1"
    image: str = CASSANDRA_IMAGE
    cpu_request: str = "500m"
    cpu_limit: str = "2"
    memory: str = "2Gi"
    storage_size: str = "10Gi"
    storage_class: str | None = None  # None: the cluster's default StorageClass
    anti_affinity: bool = True  # required one-pod-per-node; False for one-node labs (then only preferred)
    drain_timeout: int = 240
    startup_timeout: int = 1200  # seconds a starting pod may take to replay its commit log (startupProbe)
    decommissioned: tuple[int, ...] = ()  # ordinals decommissioned by hand before a scale-down
    client_label: tuple[str, str] = ("cookbook.dev/cql-client", "true")  # pods with it may reach CQL

    def problems(self) -> list[tuple[str, str]]:
        """(field, what is wrong) for every invalid field; empty when the args are usable."""
        found: list[tuple[str, str]] = []
        if self.replicas < 1:
            found.append(("replicas", f"must be at least 1, got {self.replicas}"))
        else:
            found.extend(("seeds", message) for message in seed_problems(self.seeds, self.replicas))
        for field_name, check in (("cpu_request", check_cpu), ("cpu_limit", check_cpu), ("memory", check_memory),
                                  ("storage_size", check_storage)):
            if (error := check(getattr(self, field_name))) is not None:
                found.append((field_name, error))
        if check_memory(self.memory) is None and quantity(self.memory) < 1024 * MEBIBYTE:
            found.append(("memory", f"Cassandra needs at least 1Gi, got {self.memory!r}"))
        if self.drain_timeout < 10:
            found.append(("drain_timeout", f"must be at least 10 seconds, got {self.drain_timeout}"))
        if self.startup_timeout < 60:
            found.append(("startup_timeout", f"must be at least 60 seconds, got {self.startup_timeout}"))
        if active := sorted(i for i in self.decommissioned if i < self.replicas):
            found.append(("decommissioned", f"ordinals {active} are below replicas={self.replicas}, "
                         "so those pods still run; list only pods removed by the scale-down"))
        return found


def cassandra_environment(args: CassandraArgs, statefulset: str) -> dict[str, str]:
    """The official image's settings (it writes them into cassandra.yaml at start)."""
    heap, young = jvm_heap(args.memory, args.cpu_limit)
    return {
        "CASSANDRA_CLUSTER_NAME": args.cluster_name,
        "CASSANDRA_DC": args.datacenter,
        "CASSANDRA_RACK": args.rack,
        "CASSANDRA_ENDPOINT_SNITCH": "GossipingPropertyFileSnitch",
        "CASSANDRA_SEEDS": ",".join(seed_hosts(statefulset, args.namespace, args.seeds)),
        "MAX_HEAP_SIZE": f"{heap}M",
        "HEAP_NEWSIZE": f"{young}M",
    }


def render_drain_script(drain_timeout: int) -> str:
    return render_script(["store/drain.sh"], {"DRAIN_TIMEOUT": drain_timeout})


def scale_down_problem(previous: int | None, wanted: int, decommissioned: Sequence[int],
                       statefulset: str, namespace: str) -> str | None:
    """Why shrinking the ring from `previous` to `wanted` pods is refused, or None when it is safe."""
    if previous is None or wanted >= previous:
        return None
    missing = [index for index in range(wanted, previous) if index not in decommissioned]
    if not missing:
        return None
    steps = "\n".join(f"  kubectl -n {namespace} exec {statefulset}-{index} -c cassandra -- nodetool decommission"
                      for index in sorted(missing, reverse=True))
    gone = list(range(wanted, previous))
    return (f"store.cassandra.replicas: scaling {statefulset} down from {previous} to {wanted} would remove "
            f"pods {gone} before their data is streamed to the remaining nodes. Decommission them first, "
            f"highest ordinal first, one at a time (each waits until its data has moved):\n{steps}\n"
            f"then check `nodetool status` lists {wanted} nodes, and set store.cassandra.decommissioned: "
            f"{gone} together with store.cassandra.replicas: {wanted}. Their PersistentVolumeClaims are kept; "
            "delete them by hand once you no longer need the data.")


class _RingGuardProvider(dynamic.ResourceProvider):
    """Compares the wanted ring with the deployed one: the engine passes the previous inputs to `check`."""

    KEYS = ("replicas", "seeds", "decommissioned", "statefulset", "namespace")

    def check(self, _olds: dict[str, Any], news: dict[str, Any]) -> dynamic.CheckResult:
        previous = _olds.get("replicas")
        previous_replicas = None if previous is None else int(previous)
        failures = []
        problem = scale_down_problem(previous_replicas, int(news["replicas"]),
                                     [int(i) for i in news.get("decommissioned") or []],
                                     str(news["statefulset"]), str(news["namespace"]))
        if problem is not None:
            failures.append(dynamic.CheckFailure("replicas", problem))
        seed_problem = new_seed_problem(previous_replicas, [int(i) for i in news.get("seeds") or []],
                                        str(news["statefulset"]))
        if seed_problem is not None:
            failures.append(dynamic.CheckFailure("seeds", seed_problem))
        return dynamic.CheckResult(news, failures)

    def diff(self, _id: str, _olds: dict[str, Any], _news: dict[str, Any]) -> dynamic.DiffResult:
        replaces = [key for key in ("statefulset", "namespace") if _olds.get(key) != _news.get(key)]
        return dynamic.DiffResult(changes=any(_olds.get(key) != _news.get(key) for key in self.KEYS),
                                  replaces=replaces, delete_before_replace=False)

    def create(self, props: dict[str, Any]) -> dynamic.CreateResult:
        return dynamic.CreateResult(id_=f"{props['namespace']}/{props['statefulset']}", outs=props)

    def update(self, _id: str, _olds: dict[str, Any], _news: dict[str, Any]) -> dynamic.UpdateResult:
        return dynamic.UpdateResult(outs=_news)


class RingGuard(dynamic.Resource):
    """Refuses (at preview) a replica count below the deployed one unless the removed pods were
    decommissioned, and seeds that are not yet pods of the deployed ring. Its inputs record the ring."""

    def __init__(self, name: str, replicas: int, seeds: Sequence[int], decommissioned: Sequence[int],
                 statefulset: str, namespace: str, opts: pulumi.ResourceOptions | None = None):
        super().__init__(_RingGuardProvider(), name, {
            "replicas": replicas, "seeds": sorted(seeds), "decommissioned": sorted(decommissioned),
            "statefulset": statefulset, "namespace": namespace,
        }, opts)


# Object fields are plain dicts with the SDK's snake_case keys; the strict schema tests
# (tests/unit/test_store_render.py) check the objects they become.
class CassandraCluster(pulumi.ComponentResource):
    """A Cassandra ring: namespace, headless Service, StatefulSet, PodDisruptionBudget and NetworkPolicy."""

    TYPE: ClassVar[str] = "cookbook:cassandra:Cluster"
    namespace: str
    statefulset_name: str
    service_host: str
    seeds: tuple[str, ...]
    replicas: int
    datacenter: str
    client_label: tuple[str, str]
    statefulset: kubernetes.apps.v1.StatefulSet

    def __init__(self, name: str, args: CassandraArgs, opts: pulumi.ResourceOptions | None = None):
        if problems := args.problems():
            raise ValueError("invalid CassandraArgs: " + "; ".join(f"{key}: {message}" for key, message in problems))
        super().__init__(self.TYPE, name, None, opts)
        self.namespace = args.namespace
        self.statefulset_name = name
        self.service_host = f"{name}.{args.namespace}.svc"
        self.seeds = seed_hosts(name, args.namespace, args.seeds)
        self.replicas = args.replicas
        self.datacenter = args.datacenter
        self.client_label = args.client_label
        child = pulumi.ResourceOptions(parent=self)
        selector = {"app.kubernetes.io/name": "cassandra", "app.kubernetes.io/instance": name}
        pod_labels = labels("cassandra", name, "database")
        metadata: Any = {"name": name, "namespace": args.namespace, "labels": pod_labels}

        depends: list[pulumi.Resource] = []
        if args.create_namespace:
            depends.append(kubernetes.core.v1.Namespace(
                f"{name}-namespace",
                metadata={"name": args.namespace, "labels": dict(namespace_labels())},
                # Deleting the namespace deletes every PVC in it: only ever on purpose (README).
                opts=pulumi.ResourceOptions(parent=self, protect=True)))
        # Namespaced objects need their namespace first (it is referenced by name, not by an Output).
        after_namespace = pulumi.ResourceOptions(parent=self, depends_on=depends)

        service = kubernetes.core.v1.Service(
            f"{name}-service",
            metadata=metadata,
            spec={
                "cluster_ip": "None",
                # Seeds must resolve before they are ready: a ring starts from its seeds.
                "publish_not_ready_addresses": True,
                "selector": selector,
                "ports": [{"name": port_name, "port": port, "target_port": port}
                          for port_name, port in PORTS.items()],
            },
            opts=after_namespace)

        kubernetes.policy.v1.PodDisruptionBudget(
            f"{name}-pdb",
            metadata=metadata,
            spec={"max_unavailable": 1, "selector": {"match_labels": selector}},
            opts=after_namespace)

        client_key, client_value = args.client_label
        kubernetes.networking.v1.NetworkPolicy(
            f"{name}-network-policy",
            metadata=metadata,
            spec={
                "pod_selector": {"match_labels": selector},
                "policy_types": ["Ingress"],
                "ingress": [
                    {"from": [{"pod_selector": {"match_labels": selector}}],
                     "ports": [{"port": port, "protocol": "TCP"} for port in PORTS.values()]},
                    {"from": [{"pod_selector": {"match_labels": {client_key: client_value}}}],
                     "ports": [{"port": CQL_PORT, "protocol": "TCP"}]},
                ],
            },
            opts=after_namespace)

        # The resource name predates the seed check; renaming it would change its URN and lose the record.
        timeout = statefulset_timeout_seconds(args)
        guard = RingGuard(f"{name}-scale-guard", args.replicas, args.seeds, args.decommissioned, name,
                          args.namespace, opts=child)

        self.statefulset = kubernetes.apps.v1.StatefulSet(
            f"{name}-statefulset",
            metadata=metadata,
            spec=self._statefulset_spec(name, args, selector, pod_labels),
            # The headless Service gives the seeds' DNS names; the guard must pass before replicas change.
            # Protected: a replacement would stop every pod at once (README: destroying on purpose).
            opts=pulumi.ResourceOptions(
                parent=self, depends_on=[*depends, service, guard], protect=True,
                custom_timeouts=pulumi.CustomTimeouts(create=f"{timeout}s", update=f"{timeout}s")))

        self.register_outputs({
            "namespace": self.namespace,
            "service_host": self.service_host,
            "seeds": list(self.seeds),
            "replicas": self.replicas,
            "datacenter": self.datacenter,
        })

    @staticmethod
    def _statefulset_spec(name: str, args: CassandraArgs, selector: Mapping[str, str],
                          pod_labels: Mapping[str, str]) -> Any:
        term = {"label_selector": {"match_labels": dict(selector)}, "topology_key": "kubernetes.io/hostname"}
        anti_affinity = ({"required_during_scheduling_ignored_during_execution": [term]} if args.anti_affinity
                         else {"preferred_during_scheduling_ignored_during_execution": [
                             {"weight": 100, "pod_affinity_term": term}]})
        volume_spec: dict[str, Any] = {
            "access_modes": ["ReadWriteOnce"],
            "resources": {"requests": {"storage": args.storage_size}},
        }
        if args.storage_class is not None:
            volume_spec["storage_class_name"] = args.storage_class
        env = [{"name": key, "value": value} for key, value in cassandra_environment(args, name).items()]
        return {
            "service_name": name,
            "replicas": args.replicas,
            # One pod at a time: a new node joins the ring only after the previous one has finished.
            "pod_management_policy": "OrderedReady",
            "update_strategy": {"type": "RollingUpdate"},
            "persistent_volume_claim_retention_policy": {"when_deleted": "Retain", "when_scaled": "Retain"},
            "selector": {"match_labels": dict(selector)},
            "template": {
                "metadata": {"labels": dict(pod_labels)},
                "spec": {
                    "termination_grace_period_seconds": args.drain_timeout + _GRACE_MARGIN_SECONDS,
                    "affinity": {"pod_anti_affinity": anti_affinity},
                    # The volume is chowned to the fsGroup once, not on every start (slow on big volumes).
                    "security_context": {**pod_security(CASSANDRA_UID), "fs_group_change_policy": "OnRootMismatch"},
                    "enable_service_links": False,
                    "containers": [{
                        "name": "cassandra",
                        "image": args.image,
                        "image_pull_policy": "IfNotPresent",
                        "ports": [{"name": port_name, "container_port": port}
                                  for port_name, port in PORTS.items()],
                        "env": env,
                        "resources": resources(args.cpu_request, args.cpu_limit, args.memory),
                        "security_context": container_security(CASSANDRA_UID),
                        # The intra-node port opens once the commit log is replayed (slow after a crash, on a
                        # Pi): liveness starts only then, so a long replay is never killed half-way.
                        "startup_probe": {"tcp_socket": {"port": PORTS["intra-node"]},
                                          "period_seconds": STARTUP_PROBE_PERIOD, "timeout_seconds": 5,
                                          "failure_threshold": startup_failure_threshold(args.startup_timeout)},
                        # CQL listens only once the node has joined the ring and can serve reads.
                        "readiness_probe": {"tcp_socket": {"port": CQL_PORT}, "period_seconds": 10,
                                            "timeout_seconds": 5, "failure_threshold": 3},
                        # A started node that stops answering on the intra-node port for 5 minutes is wedged.
                        "liveness_probe": {"tcp_socket": {"port": PORTS["intra-node"]}, "period_seconds": 30,
                                           "timeout_seconds": 10, "failure_threshold": 10},
                        "lifecycle": {"pre_stop": {"exec": {
                            "command": ["bash", "-c", render_drain_script(args.drain_timeout)]}}},
                        "volume_mounts": [{"name": "data", "mount_path": DATA_DIR}],
                    }],
                },
            },
            "volume_claim_templates": [{"metadata": {"name": "data", "labels": dict(selector)},
                                        "spec": volume_spec}],
        }
