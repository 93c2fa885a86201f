"""The `local` section of a stack's config: the cookbook on this machine's Docker engine.

    cluster-cookbook:local:
      prefix: cookbook-local          # names every container, network and volume
      subnet: 10.213.0.0/24           # the Docker network's; every container has a fixed address in it
      etcd: {image: ..., members: 3, client_ports: [2379, 22379, 32379], memory_mb: 256, cpus: "0.5"}
      kubernetes: {enabled: true, image: ..., agents: 1, api_port: 6443, node_ports: [30080], ...}
      registry: {enabled: true, image: ..., port: 5001, memory_mb: 256, cpus: "0.5"}
      mesos: {enabled: false, masters: 1, agents: 1, ...}   # the Mesos recipe on this engine: off unless switched on

`local.mesos` is a switch: absent (or `enabled: false`) runs no Mesos; present, it runs the Mesos recipe on the local
engine. Apache Mesos's images are amd64 only: the program refuses the switch, naming `local.mesos.enabled`, on an
engine of another architecture (components/local/engine.py asks the engine, once it answered).

The local stack runs its own etcd and Kubernetes: it is refused together with nodes, etcd, kubernetes, zookeeper,
mesos or cloud sections. A `store` section goes onto its cluster (checked by `check_store_on_local`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from components.kubernetes.render import ClusterSettings
from components.local import render
from components.local.cluster import (
    DEFAULT_PREFIX,
    DEFAULT_SUBNET,
    LocalClusterArgs,
    LocalRegistryArgs,
    published_ports,
)
from components.local.containers import Limits
from components.local.etcd import LocalEtcdArgs
from components.local.kubernetes import DISABLED_COMPONENTS, LocalKubernetesArgs
from components.local.mesos import (
    LOCAL_AGENT_RESOURCES,
    MARATHON_PORT,
    MASTER_PORT,
    MESOS_MASTER_COUNTS,
    LocalMesosArgs,
    default_ports,
)
from components.mesos.config import parse_images, parse_resources
from components.shared.validation import (
    Problems,
    Section,
    check_dns_label,
    check_port,
    check_positive,
    one_of,
)

EXCLUSIVE_SECTIONS = ("nodes", "etcd", "kubernetes", "zookeeper", "mesos", "cloud")
_CPUS = re.compile(r"^(0\.[0-9]*[1-9][0-9]*|[1-9][0-9]*(\.[0-9]+)?)$")
_REPOSITORY = re.compile(r"^[a-z0-9]+([._-][a-z0-9]+)*(:[0-9]+)?(/[a-z0-9]+([._-][a-z0-9]+)*)*$")
_TAG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
_DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")
# What k3s's `disable` accepts (its packaged components: docs.k3s.io/installation/packaged-components).
K3S_COMPONENTS = ("coredns", "servicelb", "traefik", "local-storage", "metrics-server", "runtimes")
MIN_MEMORY_MB = {"etcd": 64, "server": 512, "agent": 512, "registry": 32, "zookeeper": 128, "mesos-master": 128,
                 "marathon": 256}


def check_cpus(value: str) -> str | None:
    return None if _CPUS.match(value) else f"must be a number of CPUs such as '0.5' or '2', got {value!r}"


def check_image(value: str) -> str | None:
    """A reference pinned by a tag other than `latest` or by a digest: the policy pack refuses anything else."""
    name, _, digest = value.partition("@")
    repository, tag = name, ""
    if ":" in name.rsplit("/", 1)[-1]:
        repository, _, tag = name.rpartition(":")
    pinned = _DIGEST.match(digest) if digest else (_TAG.match(tag) and tag != "latest")
    if _REPOSITORY.match(repository) and pinned:
        return None
    return (f"must be an image pinned by a tag other than latest or by a digest (repository:tag or "
            f"repository@sha256:...), got {value!r}")


def _limits(section: Section, role: str, default: Limits) -> Limits:
    minimum = MIN_MEMORY_MB[role]

    def memory(value: int) -> str | None:
        return None if value >= minimum else f"must be at least {minimum} (MiB), got {value}"

    return Limits(memory_mb=section.value("memory_mb", int, default.memory_mb, memory),
                  cpus=section.value("cpus", str, default.cpus, check_cpus))


def _ports(section: Section, name: str, default: tuple[int, ...]) -> tuple[int, ...]:
    raw = section.value(name, list, list(default))
    if any(isinstance(port, bool) or not isinstance(port, int) or check_port(port) for port in raw):
        section.problems.add(section.key(name), f"must be a list of TCP ports (1-65535), got {raw!r}")
        return default
    return tuple(raw)


def _enabled(section: Section) -> bool:
    return bool(section.value("enabled", bool, True))


def _parse_etcd(raw: Any, problems: Problems) -> LocalEtcdArgs:
    section = Section(raw, "local.etcd", problems)
    base = LocalEtcdArgs()
    members = section.value("members", int, base.members)
    if members not in (1, 3, 5, 7):
        problems.add(section.key("members"), f"etcd needs an odd number of members up to 7 (1, 3, 5), got {members}")
        members = base.members
    default_ports = base.client_ports if members == len(base.client_ports) else tuple(
        base.client_ports[0] + 10000 * index for index in range(members))
    args = LocalEtcdArgs(
        image=section.value("image", str, base.image, check_image),
        members=members,
        client_ports=_ports(section, "client_ports", default_ports),
        limits=_limits(section, "etcd", base.limits),
    )
    if len(args.client_ports) != members:
        problems.add(section.key("client_ports"), f"one port per member ({members}), got {list(args.client_ports)}")
    section.finish()
    return args


def _parse_kubernetes(raw: Any, problems: Problems) -> LocalKubernetesArgs | None:
    section = Section(raw, "local.kubernetes", problems)
    enabled = _enabled(section)
    base = LocalKubernetesArgs()

    def agents_range(value: int) -> str | None:
        return None if 0 <= value <= render.MAX_AGENTS else f"must be between 0 and {render.MAX_AGENTS}, got {value}"

    server = Section(section.raw("server"), "local.kubernetes.server", problems)
    agent = Section(section.raw("agent"), "local.kubernetes.agent", problems)
    args = LocalKubernetesArgs(
        image=section.value("image", str, base.image, check_image),
        agents=section.value("agents", int, base.agents, agents_range),
        api_port=section.value("api_port", int, base.api_port, check_port),
        node_ports=_ports(section, "node_ports", base.node_ports),
        server_limits=_limits(server, "server", base.server_limits),
        agent_limits=_limits(agent, "agent", base.agent_limits),
        settings=ClusterSettings(disable=section.strings("disable", DISABLED_COMPONENTS, one_of(K3S_COMPONENTS))),
        ready_timeout=section.value("ready_timeout", int, base.ready_timeout, check_positive),
    )
    for part in (server, agent, section):
        part.finish()
    return args if enabled else None


def _parse_registry(raw: Any, problems: Problems) -> LocalRegistryArgs | None:
    section = Section(raw, "local.registry", problems)
    enabled = _enabled(section)
    base = LocalRegistryArgs()
    args = LocalRegistryArgs(image=section.value("image", str, base.image, check_image),
                             port=section.value("port", int, base.port, check_port),
                             limits=_limits(section, "registry", base.limits))
    section.finish()
    return args if enabled else None


def _parse_mesos(raw: Any, problems: Problems) -> LocalMesosArgs | None:
    """`local.mesos`: None when absent or switched off (its other keys are still checked)."""
    if raw is None:
        return None
    section = Section(raw, "local.mesos", problems)
    enabled = _enabled(section)
    base = LocalMesosArgs()

    def masters_count(value: int) -> str | None:
        return None if value in MESOS_MASTER_COUNTS else (
            f"must be {' or '.join(map(str, MESOS_MASTER_COUNTS))} (an odd count: `--quorum` is a majority; at most "
            f"{render.MAX_MESOS_MASTERS} in the local network's address plan), got {value}")

    def agents_range(value: int) -> str | None:
        return None if 0 <= value <= render.MAX_MESOS_AGENTS else \
            f"must be between 0 and {render.MAX_MESOS_AGENTS}, got {value}"

    masters = section.value("masters", int, base.masters, masters_count)
    resources, containerizers = parse_resources(section.raw("agent"), problems, "local.mesos.agent",
                                                LOCAL_AGENT_RESOURCES)
    parts = {part: Section(section.raw(part), f"local.mesos.{part}", problems)
             for part in ("master", "marathon", "zookeeper")}
    args = LocalMesosArgs(
        masters=masters,
        agents=section.value("agents", int, base.agents, agents_range),
        images=parse_images(section.raw("images"), problems, "local.mesos.images"),
        master_ports=_ports(section, "master_ports", default_ports(MASTER_PORT, masters)),
        marathon_ports=_ports(section, "marathon_ports", default_ports(MARATHON_PORT, masters)),
        resources=resources,
        containerizers=containerizers,
        master_limits=_limits(parts["master"], "mesos-master", base.master_limits),
        marathon_limits=_limits(parts["marathon"], "marathon", base.marathon_limits),
        zookeeper_limits=_limits(parts["zookeeper"], "zookeeper", base.zookeeper_limits),
    )
    for key, ports in (("master_ports", args.master_ports), ("marathon_ports", args.marathon_ports)):
        if len(ports) != masters:
            problems.add(section.key(key), f"one port per master ({masters}), got {list(ports)}")
    for part in (*parts.values(), section):
        part.finish()
    return args if enabled else None


def _check_task_ports(args: LocalClusterArgs, problems: Problems) -> None:
    """An agent's task ports must not take what the stack publishes on this machine: a Docker task on the host
    network would bind them on the engine's host."""
    if args.mesos is None or args.mesos.agents == 0:
        return
    low, high = args.mesos.resources.ports
    for port, what in sorted(published_ports(args)):
        if low <= port <= high:
            problems.add("local.mesos.agent.ports", f"{low}-{high} includes port {port}, published on 127.0.0.1 by "
                                                    f"{what}: a task given it would clash")


def _check_subnet(value: str) -> str | None:
    return render.subnet_problem(value)


def parse_local_config(raw: Any, present: Iterable[str], problems: Problems) -> LocalClusterArgs | None:
    """The `local` section (None when absent). `present`: the other top-level keys of the stack's config."""
    if raw is None:
        return None
    for other in sorted(set(present) & set(EXCLUSIVE_SECTIONS)):
        if other == "mesos":
            problems.add(other, "the local stack runs Mesos from its own `local.mesos` section (a switch): move "
                                "these settings there, or remove `local` to run Mesos on nodes")
            continue
        problems.add(other, "the local stack runs its own etcd and Kubernetes in Docker: remove this section, or "
                            "remove `local` to run the recipes on nodes")
    section = Section(raw, "local", problems)
    args = LocalClusterArgs(
        prefix=section.value("prefix", str, DEFAULT_PREFIX, check_dns_label),
        subnet=section.value("subnet", str, DEFAULT_SUBNET, _check_subnet),
        etcd=_parse_etcd(section.raw("etcd"), problems),
        kubernetes=_parse_kubernetes(section.raw("kubernetes"), problems),
        registry=_parse_registry(section.raw("registry"), problems),
        mesos=_parse_mesos(section.raw("mesos"), problems),
    )
    section.finish()
    _check_task_ports(args, problems)
    ports = published_ports(args)
    for port in sorted({port for port, _ in ports}):
        users = [what for p, what in ports if p == port]
        if len(users) > 1:
            problems.add("local", f"port {port} on 127.0.0.1 is published by {' and '.join(users)}")
    return args


def wants_local_kubernetes(raw: Any) -> bool:
    """The section builds a Kubernetes cluster (the store then needs no kubeconfig)."""
    if raw is None:
        return False
    kubernetes = raw.get("kubernetes") if isinstance(raw, dict) else None
    return not (isinstance(kubernetes, dict) and kubernetes.get("enabled") is False)


def check_store_on_local(local: LocalClusterArgs, *, context: str | None, replicas: int, anti_affinity: bool,
                         build_registry: str | None, node_port: int | None, endpoint: str | None,
                         problems: Problems) -> None:
    """The store of a local stack goes onto its cluster, its Pithos image through its registry, and clients
    reach Pithos through a published NodePort."""
    kubernetes = local.kubernetes
    if kubernetes is None:
        problems.add("store", "the store needs the local Kubernetes cluster: set local.kubernetes.enabled true")
        return
    if context is not None:
        problems.add("store.context", "the local stack's store goes onto its own cluster: remove store.context")
    schedulable = kubernetes.agents or 1
    if anti_affinity and replicas > schedulable:
        problems.add("store.cassandra.replicas", f"{replicas} replicas with anti_affinity need {replicas} "
                                                 f"schedulable nodes; the local cluster has {schedulable} "
                                                 "(local.kubernetes.agents, or set store.cassandra.anti_affinity "
                                                 "false)")
    if build_registry is not None:
        expected = render.registry_reference(local.registry.port) if local.registry is not None else None
        if expected is None:
            problems.add("store.pithos.build.registry", "the local stack builds Pithos into its registry: set "
                                                        "local.registry.enabled true")
        elif build_registry != expected:
            problems.add("store.pithos.build.registry", f"must be the local registry {expected!r} (the cluster "
                                                        f"pulls from it), got {build_registry!r}")
    if node_port is not None and node_port not in kubernetes.node_ports:
        problems.add("store.pithos.node_port", f"must be one of local.kubernetes.node_ports "
                                               f"{list(kubernetes.node_ports)} (published on 127.0.0.1), got "
                                               f"{node_port}")
    if node_port is not None and endpoint is not None and endpoint != f"http://{render.LOOPBACK}:{node_port}":
        problems.add("store.pithos.endpoint", f"clients reach Pithos at http://{render.LOOPBACK}:{node_port} "
                                              f"(the published NodePort), got {endpoint!r}")
