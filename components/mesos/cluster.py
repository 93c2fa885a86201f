"""Apache Mesos on Docker hosts: masters (with Marathon) and agents in containers, through pulumi-docker with one
Docker provider per host over SSH.

Apache Mesos is retired: it moved to the Apache Attic in 2025 and its final release is 1.11.0. Its container
images are built for amd64 only, so a host of any other architecture is refused, naming the node. Use it for
what already runs on Mesos; new clusters are better served by the Kubernetes recipe.

Resources (for a cluster `mesos`, masters m1..m3, agents a1, a2):

    mesos-docker-m1 ...                 pulumi:providers:docker, `ssh://user@address:port` (the node layer
                                        installs the Docker engine); refuses a non-amd64 host
    mesos-zookeeper-m1 ...              (no ZooKeeper ensemble in the stack) ZooKeeper in a container per master
    mesos-master-m1 ...                 mesos-master: --zk, --quorum (a majority), --work_dir on a named volume,
                                        host networking, advertised IP = the node's address
    mesos-marathon-m1 ...               Marathon: --master zk://.../mesos --zk zk://.../marathon
    mesos-agent-a1 ...                  mesos-agent: --containerizers=docker,mesos, the Docker socket, --work_dir
                                        at the same path on the host (the Docker containerizer needs it),
                                        resources from config
Every container restarts `unless-stopped`; images are pulled once per host (RemoteImage, kept locally).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import ClassVar

import pulumi
import pulumi_docker as docker

from components.mesos.docker_hosts import (
    RESTART_POLICY,
    RETIREMENT,
    SUPPORTED_ARCHITECTURE,
    DockerHost,
    bracketed,
    check_architecture,
    docker_provider,
    docker_url,
    host_container,
    is_ip,
    pulled_image,
    ssh_options,
    volume,
)
from components.mesos.zookeeper import ZooKeeperContainers, ZooKeeperContainersArgs

__all__ = ["RESTART_POLICY", "RETIREMENT", "SUPPORTED_ARCHITECTURE", "AgentResources", "DockerHost", "Images",
           "MesosCluster", "MesosClusterArgs", "check_architecture", "docker_url", "majority", "quorum_problem",
           "ssh_options"]
MAX_MASTERS = 7
MASTER_WORK_DIR = "/var/lib/mesos/master"
AGENT_WORK_DIR = "/var/lib/mesos/agent"  # the same path on the host and in the agent's container
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
    """Masters (each also runs Marathon) and agents; `zookeeper` is the client connect string of an ensemble
    (`a:2181,b:2181`), or None to run ZooKeeper in a container on every master."""

    masters: Sequence[DockerHost]
    agents: Sequence[DockerHost] = ()
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
        listed = [h.host.hostname for h in hosts]
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


def agent_command(args: MesosClusterArgs, address: str, zookeeper: str) -> list[str]:
    return [
        f"--master={zk_url(zookeeper, 'mesos')}",
        f"--work_dir={AGENT_WORK_DIR}",
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


class MesosCluster(pulumi.ComponentResource):
    """Mesos masters with Marathon, and agents, in Docker containers on amd64 hosts."""

    TYPE: ClassVar[str] = "cookbook:mesos:Cluster"
    master_urls: pulumi.Output[list[str]]
    marathon_urls: pulumi.Output[list[str]]
    zookeeper_url: pulumi.Output[str]

    def __init__(self, name: str, args: MesosClusterArgs, opts: pulumi.ResourceOptions | None = None):
        problems = validate(args)
        if problems:
            raise ValueError(f"MesosCluster {name!r}: " + "; ".join(problems))
        super().__init__(self.TYPE, name, None, opts)
        pulumi.log.warn(f"{RETIREMENT}: this recipe keeps existing Mesos workloads running; prefer Kubernetes "
                        "for new ones", self)
        targets: dict[str, DockerHost] = {}
        for target in [*args.masters, *args.agents]:
            targets.setdefault(target.host.hostname, target)
        self.providers = {node: docker_provider(f"{name}-docker-{node}", target, self)
                          for node, target in targets.items()}

        zookeepers: list[docker.Container] = []
        if args.zookeeper is None:
            ensemble = ZooKeeperContainers(f"{name}-zookeeper", ZooKeeperContainersArgs(
                servers=args.masters, providers=self.providers, image=args.images.zookeeper,
                client_port=args.zookeeper_client_port, quorum_port=args.zookeeper_quorum_port,
                election_port=args.zookeeper_election_port), opts=pulumi.ResourceOptions(parent=self))
            zookeepers = ensemble.containers
            connect: pulumi.Output[str] = ensemble.connect_string
        else:
            connect = pulumi.Output.from_input(args.zookeeper)

        masters = [self._master(name, args, target, connect, zookeepers) for target in args.masters]
        marathons = [self._marathon(name, args, target, connect, masters) for target in args.masters] \
            if args.marathon else []
        for target in args.agents:
            self._agent(name, args, target, connect, masters)

        self.zookeeper_url = connect.apply(lambda text: zk_url(text, "mesos"))
        self.master_urls = pulumi.Output.all(*[m.id for m in masters]).apply(
            lambda _ids: [f"http://{bracketed(t.host.address)}:{args.master_port}" for t in args.masters])
        self.marathon_urls = pulumi.Output.all(*[m.id for m in marathons]).apply(
            lambda _ids: [f"http://{bracketed(t.host.address)}:{args.marathon_port}" for t in args.masters]
            if args.marathon else [])
        self.register_outputs({
            "master_urls": self.master_urls,
            "marathon_urls": self.marathon_urls,
            "zookeeper_url": self.zookeeper_url,
        })

    def _image(self, name: str, role: str, target: DockerHost, reference: str) -> docker.RemoteImage:
        node = target.host.hostname
        return pulled_image(f"{name}-{role}-image-{node}", reference, self, self.providers[node])

    def _master(self, name: str, args: MesosClusterArgs, target: DockerHost, connect: pulumi.Output[str],
                zookeepers: Sequence[docker.Container]) -> docker.Container:
        node = target.host.hostname
        provider = self.providers[node]
        work = volume(f"{name}-master-work-{node}", "cookbook-mesos-master", self, provider)
        return host_container(
            f"{name}-master-{node}", parent=self, provider=provider,
            image=self._image(name, "master", target, args.images.master), container="cookbook-mesos-master",
            # ZooKeeper's containers first: a master with no ZooKeeper to elect a leader through exits.
            depends_on=zookeepers,
            entrypoints=["mesos-master"],
            command=connect.apply(lambda text: master_command(args, target.host.address, text)),
            volumes=[docker.ContainerVolumeArgs(volume_name=work.name, container_path=MASTER_WORK_DIR)],
        )

    def _marathon(self, name: str, args: MesosClusterArgs, target: DockerHost, connect: pulumi.Output[str],
                  masters: Sequence[docker.Container]) -> docker.Container:
        node = target.host.hostname
        return host_container(
            f"{name}-marathon-{node}", parent=self, provider=self.providers[node],
            image=self._image(name, "marathon", target, args.images.marathon), container="cookbook-marathon",
            # Marathon registers with the elected master.
            depends_on=masters,
            command=connect.apply(lambda text: marathon_command(args, target.host.address, text)),
        )

    def _agent(self, name: str, args: MesosClusterArgs, target: DockerHost, connect: pulumi.Output[str],
               masters: Sequence[docker.Container]) -> docker.Container:
        node = target.host.hostname
        binds = [(DOCKER_SOCKET, DOCKER_SOCKET), ("/sys/fs/cgroup", "/sys/fs/cgroup"),
                 (AGENT_WORK_DIR, AGENT_WORK_DIR)]
        return host_container(
            f"{name}-agent-{node}", parent=self, provider=self.providers[node],
            image=self._image(name, "agent", target, args.images.agent), container="cookbook-mesos-agent",
            # An agent registers with the elected master.
            depends_on=masters,
            entrypoints=["mesos-agent"],
            command=connect.apply(lambda text: agent_command(args, target.host.address, text)),
            # The Docker containerizer starts task containers beside it and shares its sandbox paths; the
            # Mesos containerizer needs the host's cgroups and process namespace.
            privileged=True,
            pid_mode="host",
            volumes=[docker.ContainerVolumeArgs(host_path=source, container_path=path) for source, path in binds],
            envs=["MESOS_SYSTEMD_ENABLE_SUPPORT=false"],
        )
