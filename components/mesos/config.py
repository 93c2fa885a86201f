"""The `mesos` section of a stack's config, and the rules that involve `nodes`.

Masters are the nodes with role `mesos-master` (each also runs Marathon), agents the nodes with role
`mesos-agent`. ZooKeeper is the stack's ensemble (nodes with role `zookeeper`) when it has one, else a
container on every master. Every problem names its key path, all at once, before any resource exists; the
architecture of a `linux` node is a fact known only once the node is reached (see `cluster.check_architecture`).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from components.mesos.cluster import (
    RETIREMENT,
    AgentResources,
    Images,
    MesosClusterArgs,
    quorum_problem,
)
from components.shared.validation import Problems, Section, check_dns_label, check_port, check_positive, one_of

MASTER_ROLE = "mesos-master"
AGENT_ROLE = "mesos-agent"
CONTAINERIZERS = ("docker", "mesos")
_IMAGE = re.compile(r"^[a-z0-9][a-z0-9._/:-]*(:[A-Za-z0-9._-]+|@sha256:[0-9a-f]{64})$")


class NodeLike(Protocol):
    @property
    def name(self) -> str: ...
    @property
    def kind(self) -> str: ...
    @property
    def roles(self) -> tuple[str, ...]: ...


@dataclass(frozen=True)
class MesosConfig:
    """The `mesos` section: master and agent node names (in `nodes` order) and the cluster's settings, whose
    hosts the program fills in."""

    masters: tuple[str, ...]
    agents: tuple[str, ...]
    cluster: MesosClusterArgs
    zookeeper_containers: bool  # no ZooKeeper ensemble in the stack: a container on every master
    identity_file: str | None = None

    def port_uses(self, node: str) -> list[tuple[int, str]]:
        """The TCP ports this recipe listens on at `node` (host networking), with what each is for."""
        args, found = self.cluster, list[tuple[int, str]]()
        if node in self.masters:
            found.append((args.master_port, "Mesos master"))
            if args.marathon:
                found.append((args.marathon_port, "Marathon"))
            if self.zookeeper_containers:
                found += [(args.zookeeper_client_port, "ZooKeeper container client port"),
                          (args.zookeeper_quorum_port, "ZooKeeper container quorum port"),
                          (args.zookeeper_election_port, "ZooKeeper container election port")]
        if node in self.agents:
            found.append((args.agent_port, "Mesos agent"))
        return found

    def ports(self, node: str) -> dict[int, str]:
        return dict(self.port_uses(node))


def check_image(value: str) -> str | None:
    if not _IMAGE.match(value) or value.endswith(":latest"):
        return ("must name an image pinned by tag or digest (not latest), e.g. mesosphere/mesos-master:1.7.1, "
                f"got {value!r}")
    return None


def _check_memory(value: int) -> str | None:
    return None if value >= 32 else f"must be at least 32 (MiB), got {value}"


def _check_containerizer(value: str) -> str | None:
    return one_of(CONTAINERIZERS)(value)


def parse_resources(raw: Any, problems: Problems, path: str = "mesos.agent",
                    base: AgentResources | None = None) -> tuple[AgentResources, tuple[str, ...]]:
    """An agent's `--resources` and `--containerizers` (also `local.mesos.agent`, with its own defaults)."""
    section = Section(raw, path, problems)
    base = base or AgentResources()
    cpus: float = base.cpus
    raw_cpus = section.raw("cpus")
    if raw_cpus is not None:
        if isinstance(raw_cpus, bool) or not isinstance(raw_cpus, int | float) or raw_cpus <= 0:
            problems.add(section.key("cpus"), f"must be a number of CPUs above 0 (e.g. 2 or 1.5), got {raw_cpus!r}")
        else:
            cpus = float(raw_cpus)
    ports = section.value("ports", list, list(base.ports))
    if not (len(ports) == 2 and all(isinstance(p, int) and not isinstance(p, bool) and 1 <= p <= 65535
                                    for p in ports) and ports[0] < ports[1]):
        problems.add(section.key("ports"), f"must be a range [first, last] of TCP ports, got {ports!r}")
        ports = list(base.ports)
    resources = AgentResources(
        cpus=cpus,
        mem=section.value("mem", int, base.mem, _check_memory),
        disk=section.value("disk", int, base.disk, check_positive),
        ports=(ports[0], ports[1]),
    )
    containerizers = section.strings("containerizers", CONTAINERIZERS, _check_containerizer)
    if not containerizers:
        problems.add(section.key("containerizers"), "must name docker and/or mesos")
    section.finish()
    return resources, containerizers or CONTAINERIZERS


def parse_images(raw: Any, problems: Problems, path: str = "mesos.images") -> Images:
    """The recipe's images, each pinned (also `local.mesos.images`)."""
    images = Section(raw, path, problems)
    base = Images()
    settings = Images(
        master=images.value("master", str, base.master, check_image),
        agent=images.value("agent", str, base.agent, check_image),
        marathon=images.value("marathon", str, base.marathon, check_image),
        zookeeper=images.value("zookeeper", str, base.zookeeper, check_image),
    )
    images.finish()
    return settings


def parse_mesos_config(raw: Any, nodes: Sequence[NodeLike], problems: Problems, *,
                       zookeeper_ensemble: bool) -> MesosConfig | None:
    """None when the stack has no Mesos: no `mesos` section and no node with a Mesos role.
    `zookeeper_ensemble`: some node has role zookeeper (Mesos then uses that ensemble).

    The Docker provider connects with this machine's `ssh`, which cannot use the ssh_private_key secret: it
    finds the key in ssh-agent, in `mesos.ssh_identity_file`, or where ssh looks by default (~/.ssh/id_*)."""
    masters = tuple(node.name for node in nodes if MASTER_ROLE in node.roles)
    agents = tuple(node.name for node in nodes if AGENT_ROLE in node.roles)
    if raw is None and not masters and not agents:
        return None
    section = Section(raw, "mesos", problems)
    for index, node in enumerate(nodes):
        roles = sorted(set(node.roles) & {MASTER_ROLE, AGENT_ROLE})
        if roles and node.kind == "pi":
            problems.add(f"nodes[{index}].roles", f"node {node.name} is a Raspberry Pi (arm) with role "
                                                  f"{' and '.join(roles)}: {RETIREMENT}")
    quorum = section.value("quorum", int, None, check_positive)
    if agents and not masters:
        problems.add("nodes", f"{len(agents)} node(s) have role {AGENT_ROLE} but none has role {MASTER_ROLE}: "
                              "agents need masters")
    elif (problem := quorum_problem(len(masters), quorum)) is not None:
        path = "mesos.quorum" if quorum is not None and len(masters) % 2 else "nodes"
        problems.add(path, f"{len(masters)} node(s) have role {MASTER_ROLE}; {problem}")
    image_settings = parse_images(section.raw("images"), problems)
    marathon = Section(section.raw("marathon"), "mesos.marathon", problems)
    zookeeper = Section(section.raw("zookeeper"), "mesos.zookeeper", problems)
    resources, containerizers = parse_resources(section.raw("agent"), problems)
    base = MesosClusterArgs(masters=())
    cluster = MesosClusterArgs(
        masters=(),
        cluster_name=section.value("cluster_name", str, base.cluster_name, check_dns_label),
        quorum=quorum,
        images=image_settings,
        master_port=section.value("master_port", int, base.master_port, check_port),
        agent_port=section.value("agent_port", int, base.agent_port, check_port),
        marathon=marathon.value("enabled", bool, base.marathon),
        marathon_port=marathon.value("port", int, base.marathon_port, check_port),
        zookeeper_client_port=zookeeper.value("client_port", int, base.zookeeper_client_port, check_port),
        zookeeper_quorum_port=zookeeper.value("quorum_port", int, base.zookeeper_quorum_port, check_port),
        zookeeper_election_port=zookeeper.value("election_port", int, base.zookeeper_election_port, check_port),
        resources=resources,
        containerizers=containerizers,
    )
    identity_file = section.value("ssh_identity_file", str, None)
    marathon.finish()
    zookeeper.finish()
    section.finish()
    if identity_file is not None and not Path(identity_file).expanduser().is_file():
        problems.add("mesos.ssh_identity_file", f"no such file on this machine: {identity_file}")
    if zookeeper_ensemble and section.has("zookeeper"):
        problems.add("mesos.zookeeper", "the stack has a ZooKeeper ensemble (nodes with role zookeeper): Mesos "
                                        "uses it, so its settings are the zookeeper section's")
    config = MesosConfig(masters=masters, agents=agents, cluster=cluster, zookeeper_containers=not zookeeper_ensemble,
                         identity_file=str(Path(identity_file).expanduser()) if identity_file else None)
    for name in dict.fromkeys([*masters, *agents]):
        uses = config.port_uses(name)
        for port in sorted({port for port, _ in uses}):
            users = [what for p, what in uses if p == port]
            if len(users) > 1:
                problems.add("mesos", f"node {name}: port {port} is used by {' and '.join(users)}")
    return config
