"""Apache Mesos in Docker containers: masters (with Marathon) and agents, through pulumi-docker, on the nodes its
targets describe (targets.py): hosts reached over SSH with one Docker provider each (docker_hosts.py), or the
`local` stack's Docker engine (components/local/mesos.py). Command lines, quorum, ZooKeeper's servers, volumes and
restart policy are this module's, whatever the target.

Apache Mesos is retired: it moved to the Apache Attic in 2025 and its final release is 1.11.0. Its container
images are built for amd64 only, so a host of any other architecture is refused, naming the node. Use it for
what already runs on Mesos; new clusters are better served by the Kubernetes recipe.

Resources (for a cluster `mesos` on SSH hosts, masters m1..m3, agents a1, a2):

    mesos-docker-m1 ...                 pulumi:providers:docker, `ssh://user@address:port` (the node layer
                                        installs the Docker engine); refuses a non-amd64 host
    mesos-zookeeper-m1 ...              (no ZooKeeper ensemble in the stack) ZooKeeper in a container per master
    mesos-master-m1 ...                 mesos-master: --zk, --quorum (a majority), --work_dir on a named volume,
                                        host networking, advertised IP = the node's address
    mesos-marathon-m1 ...               Marathon: --master zk://.../mesos --zk zk://.../marathon
    mesos-agent-a1 ...                  mesos-agent: --containerizers=docker,mesos, the Docker socket, --work_dir
                                        at the same path on the host (the Docker containerizer needs it),
                                        resources from config
Every container restarts `unless-stopped`; images are pulled once per engine (RemoteImage, kept locally). A target
on the stack's default provider (engine "") gets no provider resource, and its images are named without a node.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import ClassVar

import pulumi
import pulumi_docker as docker

from components.mesos.docker_hosts import (
    AGENT_WORK_DIR,
    POSIX_LAUNCHER,
    RETIREMENT,
    SUPPORTED_ARCHITECTURE,
    DockerHost,
    check_architecture,
    docker_url,
    launcher_flags,
    ssh_options,
)
from components.mesos.targets import RESTART_POLICY, MesosTarget, container, pulled_image, volume
from components.mesos.zookeeper import ZooKeeperContainers, ZooKeeperContainersArgs
from components.shared.addresses import is_ip

__all__ = ["AGENT_WORK_DIR", "POSIX_LAUNCHER", "RESTART_POLICY", "RETIREMENT", "SUPPORTED_ARCHITECTURE",
           "AgentResources", "DockerHost", "Images", "MesosCluster", "MesosClusterArgs", "MesosTarget",
           "check_architecture", "docker_url", "launcher_flags", "majority", "quorum_problem", "ssh_options"]
MAX_MASTERS = 7
MASTER_WORK_DIR = "/var/lib/mesos/master"
DOCKER_SOCKET = "/var/run/docker.sock"


@dataclass(frozen=True)
class Images:
    """Image references, pinned by tag (or digest). The defaults are the newest published under these names."""

    master: str = "mesosphere/mesos-master:1.7.1"
    agent: str = "mesosphere/mesos-slave:1.7.1"
    marathon: str = "mesosphere/marathon:v1.11.24"
    zookeeper: str = "zookeeper:3.8.4"


@dataclass(frozen=True)
class AgentResources:
    cpus: float = 2
    mem: int = 2048  # MiB
    disk: int = 10240  # MiB
    ports: tuple[int, int] = (31000, 32000)


@dataclass(frozen=True)
class MesosClusterArgs:
    """Masters (each also runs Marathon) and agents, as targets (SSH hosts or local nodes); `zookeeper` is the
    client connect string of an ensemble (`a:2181,b:2181`), or None to run ZooKeeper in a container on every
    master."""

    masters: Sequence[MesosTarget]
    agents: Sequence[MesosTarget] = ()
    zookeeper: pulumi.Input[str] | None = None
    cluster_name: str = "cookbook"
    quorum: int | None = None  # default: a majority of the masters
    images: Images = field(default_factory=Images)
    master_port: int = 5050
    agent_port: int = 5051
    marathon: bool = True
    marathon_port: int = 8080
    zookeeper_client_port: int = 2181
    zookeeper_quorum_port: int = 2888
    zookeeper_election_port: int = 3888
    resources: AgentResources = field(default_factory=AgentResources)
    containerizers: tuple[str, ...] = ("docker", "mesos")


def majority(masters: int) -> int:
    """The `--quorum` of a replicated log over `masters` masters: more than half of them."""
    return masters // 2 + 1


def quorum_problem(masters: int, quorum: int | None) -> str | None:
    """Why `quorum` does not fit `masters` masters (None when it does)."""
    if masters == 0:
        return "a Mesos cluster needs at least one master"
    if masters % 2 == 0 or masters > MAX_MASTERS:
        return (f"{masters} masters: use an odd number up to {MAX_MASTERS} (1, 3, 5): {masters} masters need a "
                f"quorum of {majority(masters)} and tolerate no more failures than {masters - 1}")
    if quorum is not None and not majority(masters) <= quorum <= masters:
        if quorum < majority(masters):
            return (f"--quorum {quorum} with {masters} masters: two partitions could each elect a leader "
                    f"(split brain); use {majority(masters)} (a majority)")
        return f"--quorum {quorum} is more than the {masters} masters: no leader could ever be elected"
    return None


def validate(args: MesosClusterArgs) -> list[str]:
    problems: list[str] = []
    problem = quorum_problem(len(args.masters), args.quorum)
    if problem:
        problems.append(f"masters: {problem}")
    for group, hosts in (("masters", args.masters), ("agents", args.agents)):
        listed = [h.node for h in hosts]
        duplicates = sorted({n for n in listed if listed.count(n) > 1})
        if duplicates:
            problems.append(f"{group}: duplicate nodes {', '.join(duplicates)}")
    if args.agents and not args.masters:
        problems.append("agents: agents need masters")
    if not set(args.containerizers) <= {"docker", "mesos"} or not args.containerizers:
        problems.append(f"containerizers: docker and/or mesos, got {list(args.containerizers)}")
    return problems


# --- pure renderers ---------------------------------------------------------------------------------
def zk_url(connect: str, path: str) -> str:
    return f"zk://{connect}/{path}"


def _address_flags(address: str) -> list[str]:
    """Where a daemon listens and what it advertises: the node's address (an IP binds; a name is advertised)."""
    if is_ip(address):
        return [f"--ip={address}", f"--advertise_ip={address}", f"--hostname={address}"]
    return [f"--hostname={address}"]


def master_command(args: MesosClusterArgs, address: str, zookeeper: str) -> list[str]:
    return [
        f"--zk={zk_url(zookeeper, 'mesos')}",
        f"--quorum={args.quorum or majority(len(args.masters))}",
        f"--work_dir={MASTER_WORK_DIR}",
        f"--port={args.master_port}",
        f"--cluster={args.cluster_name}",
        *_address_flags(address),
        "--no-hostname_lookup",
    ]


def marathon_command(args: MesosClusterArgs, address: str, zookeeper: str) -> list[str]:
    return ["--master", zk_url(zookeeper, "mesos"), "--zk", zk_url(zookeeper, "marathon"),
            "--hostname", address, "--http_port", str(args.marathon_port)]


def agent_resources(resources: AgentResources) -> str:
    cpus = f"{resources.cpus:g}"
    low, high = resources.ports
    return f"cpus:{cpus};mem:{resources.mem};disk:{resources.disk};ports:[{low}-{high}]"


def agent_command(args: MesosClusterArgs, address: str, zookeeper: str, work_dir: str = AGENT_WORK_DIR) -> list[str]:
    return [
        f"--master={zk_url(zookeeper, 'mesos')}",
        f"--work_dir={work_dir}",
        f"--containerizers={','.join(args.containerizers)}",
        f"--port={args.agent_port}",
        f"--resources={agent_resources(args.resources)}",
        # Executors of Docker tasks run as containers too: the agent knows it runs in one.
        f"--docker_mesos_image={args.images.agent}",
        f"--docker_socket={DOCKER_SOCKET}",
        "--no-systemd_enable_support",
        *_address_flags(address),
        "--no-hostname_lookup",
    ]


def zookeeper_containers_args(args: MesosClusterArgs,
                              providers: Mapping[str, docker.Provider | None]) -> ZooKeeperContainersArgs:
    """ZooKeeper in a container on every master (a stack without an ensemble), ids in the masters' order."""
    return ZooKeeperContainersArgs(servers=args.masters, providers=providers, image=args.images.zookeeper,
                                   client_port=args.zookeeper_client_port, quorum_port=args.zookeeper_quorum_port,
                                   election_port=args.zookeeper_election_port)


class MesosCluster(pulumi.ComponentResource):
    """Mesos masters with Marathon, and agents, in Docker containers on amd64 engines."""

    TYPE: ClassVar[str] = "cookbook:mesos:Cluster"
    master_urls: pulumi.Output[list[str]]
    marathon_urls: pulumi.Output[list[str]]
    zookeeper_url: pulumi.Output[str]
    containers: list[docker.Container]

    def __init__(self, name: str, args: MesosClusterArgs, opts: pulumi.ResourceOptions | None = None):
        problems = validate(args)
        if problems:
            raise ValueError(f"MesosCluster {name!r}: " + "; ".join(problems))
        super().__init__(self.TYPE, name, None, opts)
        pulumi.log.warn(f"{RETIREMENT}: this recipe keeps existing Mesos workloads running; prefer Kubernetes "
                        "for new ones", self)
        engines: dict[str, MesosTarget] = {}
        for target in [*args.masters, *args.agents]:
            engines.setdefault(target.engine, target)
        self.providers = {engine: target.provider(f"{name}-docker-{engine}", self)
                          for engine, target in engines.items()}
        self._images: dict[tuple[str, str], docker.RemoteImage] = {}

        zookeepers: list[docker.Container] = []
        if args.zookeeper is None:
            ensemble = ZooKeeperContainers(f"{name}-zookeeper", zookeeper_containers_args(args, self.providers),
                                           opts=pulumi.ResourceOptions(parent=self))
            zookeepers = ensemble.containers
            connect: pulumi.Output[str] = ensemble.connect_string
        else:
            connect = pulumi.Output.from_input(args.zookeeper)

        masters = [self._master(name, args, target, connect, zookeepers) for target in args.masters]
        marathons = [self._marathon(name, args, target, connect, masters) for target in args.masters] \
            if args.marathon else []
        agents = [self._agent(name, args, target, connect, masters) for target in args.agents]
        self.containers = [*zookeepers, *masters, *marathons, *agents]

        self.zookeeper_url = connect.apply(lambda text: zk_url(text, "mesos"))
        self.master_urls = pulumi.Output.all(*[m.id for m in masters]).apply(
            lambda _ids: [t.url("master", args.master_port) for t in args.masters])
        self.marathon_urls = pulumi.Output.all(*[m.id for m in marathons]).apply(
            lambda _ids: [t.url("marathon", args.marathon_port) for t in args.masters] if args.marathon else [])
        self.register_outputs({
            "master_urls": self.master_urls,
            "marathon_urls": self.marathon_urls,
            "zookeeper_url": self.zookeeper_url,
        })

    def _image(self, name: str, role: str, target: MesosTarget, reference: str) -> docker.RemoteImage:
        """Each image once per engine."""
        engine = target.engine
        if (role, engine) not in self._images:
            self._images[(role, engine)] = pulled_image(
                f"{name}-{role}-image-{engine}" if engine else f"{name}-{role}-image", reference, self,
                self.providers[engine])
        return self._images[(role, engine)]

    def _master(self, name: str, args: MesosClusterArgs, target: MesosTarget, connect: pulumi.Output[str],
                zookeepers: Sequence[docker.Container]) -> docker.Container:
        node, provider = target.node, self.providers[target.engine]
        placement = target.place("master", args.master_port)
        work = volume(f"{name}-master-work-{node}", target.volume_name("master", "work"), self, provider,
                      target.volume_labels)
        return container(
            f"{name}-master-{node}", parent=self, provider=provider, placement=placement,
            image=self._image(name, "master", target, args.images.master),
            # ZooKeeper's containers first: a master with no ZooKeeper to elect a leader through exits.
            depends_on=zookeepers,
            entrypoints=["mesos-master"],
            command=pulumi.Output.all(connect, placement.flags).apply(
                lambda values: [*master_command(args, placement.address, values[0]), *values[1]]),
            volumes=[docker.ContainerVolumeArgs(volume_name=work.name, container_path=MASTER_WORK_DIR)],
        )

    def _marathon(self, name: str, args: MesosClusterArgs, target: MesosTarget, connect: pulumi.Output[str],
                  masters: Sequence[docker.Container]) -> docker.Container:
        placement = target.place("marathon", args.marathon_port)
        return container(
            f"{name}-marathon-{target.node}", parent=self, provider=self.providers[target.engine],
            placement=placement, image=self._image(name, "marathon", target, args.images.marathon),
            # Marathon registers with the elected master.
            depends_on=masters,
            command=pulumi.Output.all(connect, placement.flags).apply(
                lambda values: [*marathon_command(args, placement.address, values[0]), *values[1]]),
        )

    def _agent(self, name: str, args: MesosClusterArgs, target: MesosTarget, connect: pulumi.Output[str],
               masters: Sequence[docker.Container]) -> docker.Container:
        node, provider = target.node, self.providers[target.engine]
        placement = target.place("agent", args.agent_port)
        work = target.agent_work_dir(f"{name}-agent-work-{node}", self, provider)
        binds = [(DOCKER_SOCKET, DOCKER_SOCKET), ("/sys/fs/cgroup", "/sys/fs/cgroup")]
        return container(
            f"{name}-agent-{node}", parent=self, provider=provider, placement=placement,
            image=self._image(name, "agent", target, args.images.agent),
            # An agent registers with the elected master.
            depends_on=masters,
            entrypoints=["mesos-agent"],
            # Flags the target adds (an SSH host's launcher follows its cgroup version fact).
            command=pulumi.Output.all(connect, work.path, placement.flags).apply(
                lambda values: [*agent_command(args, placement.address, values[0], values[1]), *values[2]]),
            # The Docker containerizer starts task containers beside it and shares its sandbox paths; the
            # Mesos containerizer needs the host's cgroups and process namespace.
            privileged=True,
            pid_mode="host",
            volumes=[*(docker.ContainerVolumeArgs(host_path=source, container_path=path) for source, path in binds),
                     work.volume],
            envs=["MESOS_SYSTEMD_ENABLE_SUPPORT=false"],
        )
