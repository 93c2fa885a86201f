"""ZooKeeper in a Docker container on every Mesos master, for a stack without a ZooKeeper ensemble ("Mesos in
one command"). The official `zookeeper` image is configured through its documented environment (`ZOO_MY_ID`,
`ZOO_SERVERS`, ...); ids follow the masters' order. Changing the servers recreates every container (its
environment changes): a stack that grows belongs on the `zookeeper` recipe's ensemble, which grows without
restarts. Each server is placed by its master's target (targets.py): at the host's address on the host network,
or at its own address on the local stack's network.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import ClassVar

import pulumi
import pulumi_docker as docker

from components.mesos.targets import MesosTarget, container, pulled_image, volume
from components.shared.addresses import bracketed

DATA = "/data"
DATALOG = "/datalog"
ROLE = "zookeeper"


@dataclass(frozen=True)
class ZooKeeperContainersArgs:
    """One server per target, in order (ids 1..n); `providers` are the Docker providers by engine
    (`MesosTarget.engine`; None: the default provider)."""

    servers: Sequence[MesosTarget]
    providers: Mapping[str, docker.Provider | None]
    image: str = "zookeeper:3.8.4"
    client_port: int = 2181
    quorum_port: int = 2888
    election_port: int = 3888


def servers_setting(args: ZooKeeperContainersArgs) -> str:
    """ZOO_SERVERS: `server.N=host:2888:3888;2181` for every server, ids in order."""
    return " ".join(f"server.{index}={bracketed(address(s, args))}:{args.quorum_port}:{args.election_port};"
                    f"{args.client_port}" for index, s in enumerate(args.servers, start=1))


def address(server: MesosTarget, args: ZooKeeperContainersArgs) -> str:
    return server.place(ROLE, args.client_port).address


def environment(args: ZooKeeperContainersArgs, server_id: int) -> list[str]:
    """The official image's documented settings: id, servers, AdminServer off (its port 8080 is Marathon's),
    the 4lw whitelist, a quorum even of one (so the ensemble can grow), autopurge."""
    return sorted([
        f"ZOO_MY_ID={server_id}",
        f"ZOO_SERVERS={servers_setting(args)}",
        "ZOO_ADMINSERVER_ENABLED=false",
        "ZOO_4LW_COMMANDS_WHITELIST=srvr,ruok,mntr",
        "ZOO_STANDALONE_ENABLED=false",
        "ZOO_AUTOPURGE_SNAPRETAINCOUNT=3",
        "ZOO_AUTOPURGE_PURGEINTERVAL=1",
    ])


def connect_string(args: ZooKeeperContainersArgs) -> str:
    return ",".join(f"{bracketed(address(s, args))}:{args.client_port}" for s in args.servers)


class ZooKeeperContainers(pulumi.ComponentResource):
    """ZooKeeper servers in containers; `connect_string` resolves once every container runs."""

    TYPE: ClassVar[str] = "cookbook:mesos:ZooKeeperContainers"
    connect_string: pulumi.Output[str]
    containers: list[docker.Container]

    def __init__(self, name: str, args: ZooKeeperContainersArgs, opts: pulumi.ResourceOptions | None = None):
        if not args.servers or len(args.servers) % 2 == 0:
            raise ValueError(f"ZooKeeperContainers {name!r}: servers: {len(args.servers)} servers; an ensemble "
                             "needs an odd number")
        super().__init__(self.TYPE, name, None, opts)
        self.containers = []
        images: dict[str, docker.RemoteImage] = {}
        for server_id, server in enumerate(args.servers, start=1):
            node, engine = server.node, server.engine
            provider = args.providers[engine]
            if engine not in images:  # once per engine
                images[engine] = pulled_image(f"{name}-image-{engine}" if engine else f"{name}-image", args.image,
                                              self, provider)
            data = volume(f"{name}-data-{node}", server.volume_name(ROLE, "data"), self, provider,
                          server.volume_labels)
            datalog = volume(f"{name}-datalog-{node}", server.volume_name(ROLE, "datalog"), self, provider,
                             server.volume_labels)
            self.containers.append(container(
                f"{name}-{node}", parent=self, provider=provider, image=images[engine],
                placement=server.place(ROLE, args.client_port),
                envs=environment(args, server_id),
                volumes=[docker.ContainerVolumeArgs(volume_name=data.name, container_path=DATA),
                         docker.ContainerVolumeArgs(volume_name=datalog.name, container_path=DATALOG)],
            ))
        self.connect_string = pulumi.Output.all(*[c.id for c in self.containers]).apply(
            lambda _ids: connect_string(args))
        self.register_outputs({"connect_string": self.connect_string})
