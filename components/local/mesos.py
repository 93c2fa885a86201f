"""Mesos on the local stack's Docker engine (`local.mesos`, off unless switched on; amd64 engines only).

It is the Mesos recipe's own MesosCluster (components/mesos/cluster.py: command lines, `--quorum`, ZooKeeper's
server list, volumes, restart policy), with every node a `LocalMesosNode` target instead of an SSH host:

- one engine, the one the rest of the local stack uses (the default Docker provider: DOCKER_HOST/the socket);
- every container on the local stack's network with its own fixed address, never on the host network. Host
  networking would put every daemon on all of the engine host's interfaces (against the local stack's rule:
  published on 127.0.0.1 only), and on one engine the masters, ZooKeepers and agents would all want the same ports
  (5050, 2181/2888/3888, 5051, 8080 for each of them), like a second node of anything on one host;
- each master's UI and each Marathon published on 127.0.0.1 only (`master_ports`, `marathon_ports`: 5050 and 8080
  for the first, +10000 for each next one, as the local etcd members' ports); ZooKeeper and the agents are
  reached on the network only (by the masters, Marathon and the agents themselves);
- container and volume names carry the stack's prefix and the node's number (`cookbook-local-mesos-master-1`);
  the volumes carry the stack's label;
- an agent's work directory is a named volume mounted at its own mountpoint (`docker volume inspect`'s
  `Mountpoint`, e.g. /var/lib/docker/volumes/<name>/_data): the same path on the engine's host and in the agent,
  which the Docker containerizer needs (it hands sandbox paths to the engine), yet removed by `make destroy` like
  every other volume and distinct per agent (two agents sharing /var/lib/mesos/agent would share one agent id);
- agents run with `--launcher=posix`: Mesos 1.x's Linux launcher needs cgroup v1's freezer hierarchy, which
  the engines of laptops (Docker Desktop, Colima, current distributions) no longer have (cgroup v2); the posix
  launcher serves the default isolation (`posix/cpu,posix/mem`) everywhere.

The agent keeps the recipe's settings otherwise: privileged, the engine host's PID namespace, its Docker socket and
cgroups (the Docker containerizer runs the tasks' containers beside it, on the same engine).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import pulumi
import pulumi_docker as docker

from components.local.containers import LABEL, Limits, Published, placement
from components.local.render import LOOPBACK, MAX_MESOS_AGENTS, MAX_MESOS_MASTERS, Addresses
from components.mesos.cluster import POSIX_LAUNCHER, AgentResources, Images, MesosClusterArgs, quorum_problem
from components.mesos.targets import Placement, WorkDir, volume

MASTER_PORT, MARATHON_PORT = 5050, 8080  # inside the containers (the recipe's defaults)
PORT_STEP = 10000  # published ports of the next master: 15050, 25050 (and 18080, 28080)
ZOOKEEPER_LIMITS = Limits(memory_mb=256, cpus="0.5")
MASTER_LIMITS = Limits(memory_mb=512, cpus="1")
MARATHON_LIMITS = Limits(memory_mb=1024, cpus="1")  # a JVM
AGENT_OVERHEAD_MB = 512  # the agent itself, beyond what it offers (Mesos-containerizer tasks run in its container)
# Sized for a laptop: what one agent offers to tasks (its container's limits follow from it).
LOCAL_AGENT_RESOURCES = AgentResources(cpus=1, mem=1024, disk=4096, ports=(31000, 32000))
AGENT_FLAGS = (POSIX_LAUNCHER,)  # always: laptop engines are cgroup v2 (see the module docstring)
# Master counts the local network's address plan holds whose majority `--quorum` tolerates failures: 1 and 3.
MESOS_MASTER_COUNTS = tuple(n for n in range(1, MAX_MESOS_MASTERS + 1) if quorum_problem(n, None) is None)
ROLE_CONTAINERS = {"zookeeper": "zookeeper", "master": "mesos-master", "marathon": "marathon", "agent": "mesos-agent"}
VOLUME_LABELS = (docker.VolumeLabelArgs(label=LABEL.label, value=LABEL.value),)


def default_ports(first: int, count: int) -> tuple[int, ...]:
    return tuple(first + PORT_STEP * index for index in range(count))


@dataclass(frozen=True)
class LocalMesosArgs:
    """`masters` master nodes (each a ZooKeeper, a master and a Marathon container) and `agents` agents."""

    masters: int = 1
    agents: int = 1
    images: Images = field(default_factory=Images)
    master_ports: tuple[int, ...] = (MASTER_PORT,)  # on 127.0.0.1, one per master
    marathon_ports: tuple[int, ...] = (MARATHON_PORT,)
    resources: AgentResources = LOCAL_AGENT_RESOURCES
    containerizers: tuple[str, ...] = ("docker", "mesos")
    zookeeper_limits: Limits = ZOOKEEPER_LIMITS
    master_limits: Limits = MASTER_LIMITS
    marathon_limits: Limits = MARATHON_LIMITS

    @property
    def agent_limits(self) -> Limits:
        """What the agent offers its tasks, plus its own share."""
        return Limits(memory_mb=self.resources.mem + AGENT_OVERHEAD_MB, cpus=f"{self.resources.cpus:g}")


def container_name(prefix: str, role: str, number: int) -> str:
    return f"{prefix}-{ROLE_CONTAINERS[role]}-{number}"


@dataclass(frozen=True)
class LocalMesosNode:
    """A Mesos node of the local stack (a `MesosTarget`): its containers' addresses on the local network by role,
    their limits, and the roles published on 127.0.0.1 (with their ports there)."""

    prefix: str
    number: int
    network: docker.Network
    addresses: Mapping[str, str]
    limits: Mapping[str, Limits]
    published: Mapping[str, int] = field(default_factory=dict)

    @property
    def node(self) -> str:
        return str(self.number)

    @property
    def engine(self) -> str:
        return ""  # the stack's one engine, through the default provider

    def provider(self, resource_name: str, parent: pulumi.Resource) -> None:
        return None

    def place(self, role: str, port: int | None) -> Placement:
        name = container_name(self.prefix, role, self.number)
        published = [Published(port, self.published[role])] if role in self.published and port else []
        return Placement(container=name, address=self.addresses[role],
                         settings=placement(name, self.network, self.addresses[role], self.limits[role], published),
                         flags=AGENT_FLAGS if role == "agent" else ())

    def volume_name(self, role: str, what: str) -> str:
        return f"{container_name(self.prefix, role, self.number)}-{what}"

    @property
    def volume_labels(self) -> tuple[docker.VolumeLabelArgs, ...]:
        return VOLUME_LABELS

    def agent_work_dir(self, resource_name: str, parent: pulumi.Resource,
                       provider: docker.Provider | None) -> WorkDir:
        work = volume(resource_name, self.volume_name("agent", "work"), parent, provider, VOLUME_LABELS)
        return WorkDir(work.mountpoint, docker.ContainerVolumeArgs(volume_name=work.name,
                                                                  container_path=work.mountpoint))

    def url(self, role: str, port: int) -> str:
        return f"http://{LOOPBACK}:{self.published[role]}"


def targets(prefix: str, args: LocalMesosArgs, network: docker.Network,
            fixed: Addresses) -> tuple[list[LocalMesosNode], list[LocalMesosNode]]:
    """The master nodes and the agent nodes, numbered from 1, at the local network's fixed addresses."""
    limits = {"zookeeper": args.zookeeper_limits, "master": args.master_limits, "marathon": args.marathon_limits,
              "agent": args.agent_limits}
    masters = [LocalMesosNode(prefix, number, network,
                              addresses={"zookeeper": zookeeper, "master": master, "marathon": marathon},
                              limits=limits, published={"master": master_port, "marathon": marathon_port})
               for number, (zookeeper, master, marathon, master_port, marathon_port) in enumerate(zip(
                   fixed.mesos_zookeepers, fixed.mesos_masters, fixed.marathons, args.master_ports,
                   args.marathon_ports, strict=True), start=1)]
    agents = [LocalMesosNode(prefix, number, network, addresses={"agent": address}, limits=limits)
              for number, address in enumerate(fixed.mesos_agents, start=1)]
    return masters, agents


def cluster_args(prefix: str, args: LocalMesosArgs, network: docker.Network, fixed: Addresses) -> MesosClusterArgs:
    """The Mesos recipe's settings for the local nodes: ZooKeeper in a container per master (the local stack has no
    ensemble), the daemons on the recipe's default ports inside their containers, the cluster named by the prefix."""
    masters, agents = targets(prefix, args, network, fixed)
    return MesosClusterArgs(masters=masters, agents=agents, zookeeper=None, cluster_name=prefix, images=args.images,
                            master_port=MASTER_PORT, marathon_port=MARATHON_PORT, resources=args.resources,
                            containerizers=args.containerizers)


def published_ports(args: LocalMesosArgs) -> list[tuple[int, str]]:
    """(port on 127.0.0.1, what publishes it)."""
    return [*((port, f"Mesos master {index}") for index, port in enumerate(args.master_ports, start=1)),
            *((port, f"Marathon {index}") for index, port in enumerate(args.marathon_ports, start=1))]


def docker_objects(prefix: str, args: LocalMesosArgs) -> tuple[list[str], list[str]]:
    """The names of the containers and volumes Mesos adds to the engine."""
    masters = range(1, args.masters + 1)
    agents = range(1, args.agents + 1)
    containers = [*(container_name(prefix, role, n) for n in masters for role in ("zookeeper", "master", "marathon")),
                  *(container_name(prefix, "agent", n) for n in agents)]
    volumes = [*(f"{container_name(prefix, 'zookeeper', n)}-{what}" for n in masters for what in ("data", "datalog")),
               *(f"{container_name(prefix, 'master', n)}-work" for n in masters),
               *(f"{container_name(prefix, 'agent', n)}-work" for n in agents)]
    return containers, volumes


def problems(args: LocalMesosArgs) -> list[str]:
    """What the component refuses (the config parser reports the same, naming keys)."""
    found = []
    if args.masters not in MESOS_MASTER_COUNTS:
        found.append(f"mesos.masters: one of {list(MESOS_MASTER_COUNTS)}, got {args.masters}")
    if not 0 <= args.agents <= MAX_MESOS_AGENTS:
        found.append(f"mesos.agents: between 0 and {MAX_MESOS_AGENTS}, got {args.agents}")
    for key, ports in (("master_ports", args.master_ports), ("marathon_ports", args.marathon_ports)):
        if len(ports) != args.masters:
            found.append(f"mesos.{key}: one port per master ({args.masters}), got {list(ports)}")
    return found

