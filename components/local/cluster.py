"""The cookbook on this machine's Docker engine, no hardware: etcd, k3s on that etcd, and a registry for images
the stack builds, in containers on one Docker network. It changes nothing outside the engine: containers, one
network and named volumes (images are pulled and kept).

Resources (for `local`, prefix `cookbook-local`):

    local-network                         docker network `cookbook-local` (bridge, a fixed subnet: every container
                                          has a fixed address; published ports default to 127.0.0.1)
    local-image-etcd, -k3s, -registry     docker images, pulled once and kept on destroy
    local-etcd (cookbook:local:Etcd)      the etcd members (components/local/etcd.py)
    local-kubernetes (cookbook:local:Kubernetes)   k3s server and agents (components/local/kubernetes.py)
    local-registry-data, local-registry   docker volume and container: a registry published on 127.0.0.1 that
                                          the k3s nodes pull from (k3s's registries.yaml mirror), as k3d's
                                          registries work
    local-mesos (cookbook:mesos:Cluster)  with `local.mesos` switched on (amd64 engines only): the Mesos recipe's
                                          ZooKeeper, masters, Marathon and agents on this network
                                          (components/local/mesos.py)

The engine is reached as the Docker CLI would: DOCKER_HOST (or DOCKER_CONTEXT), else the local socket; the
program checks it answers before declaring anything (components/local/engine.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import pulumi
import pulumi_docker as docker

from components.kubernetes.cluster import Datastore
from components.local import render
from components.local.containers import LABEL, Limits, Published, container, pulled_image, volume
from components.local.etcd import LocalEtcd, LocalEtcdArgs, LocalEtcdTarget, member_names
from components.local.kubernetes import LocalKubernetes, LocalKubernetesArgs, LocalKubernetesTarget
from components.local.mesos import LocalMesosArgs
from components.local.mesos import cluster_args as mesos_cluster_args
from components.local.mesos import docker_objects as mesos_docker_objects
from components.local.mesos import problems as mesos_problems
from components.local.mesos import published_ports as mesos_published_ports
from components.mesos.cluster import MesosCluster

REGISTRY_IMAGE = "registry:3.0.0"  # CNCF Distribution, the `registry` official image (multi-arch)
DEFAULT_PREFIX = "cookbook-local"
DEFAULT_SUBNET = "10.213.0.0/24"
# Docker's bridge driver option: a port published without an address binds here, not on 0.0.0.0.
HOST_BINDING_OPTION = "com.docker.network.bridge.host_binding_ipv4"
REGISTRY_LIMITS = Limits(memory_mb=256, cpus="0.5")


@dataclass(frozen=True)
class LocalRegistryArgs:
    """A registry container published on 127.0.0.1:`port` (5001: macOS's AirPlay receiver holds 5000)."""

    image: str = REGISTRY_IMAGE
    port: int = 5001
    limits: Limits = REGISTRY_LIMITS


@dataclass(frozen=True)
class LocalClusterArgs:
    """Everything the local stack runs; `kubernetes` or `registry` None leaves it out. `prefix` names every
    Docker object (two local stacks on one engine need different prefixes, subnets and ports)."""

    prefix: str = DEFAULT_PREFIX
    subnet: str = DEFAULT_SUBNET
    etcd: LocalEtcdArgs = field(default_factory=LocalEtcdArgs)
    kubernetes: LocalKubernetesArgs | None = field(default_factory=LocalKubernetesArgs)
    registry: LocalRegistryArgs | None = field(default_factory=LocalRegistryArgs)
    mesos: LocalMesosArgs | None = None  # off unless switched on (`local.mesos`)
    context: str = DEFAULT_PREFIX  # the kubeconfig's cluster, user and context name (the program: the stack's)


def published_ports(args: LocalClusterArgs) -> list[tuple[int, str]]:
    """(port on 127.0.0.1, what publishes it) for every published port."""
    ports = [(port, f"etcd member {index}") for index, port in enumerate(args.etcd.client_ports, start=1)]
    if args.kubernetes is not None:
        ports.append((args.kubernetes.api_port, "the Kubernetes API"))
        ports += [(port, "a Kubernetes NodePort") for port in args.kubernetes.node_ports]
    if args.registry is not None:
        ports.append((args.registry.port, "the registry"))
    if args.mesos is not None:
        ports += mesos_published_ports(args.mesos)
    return ports


def validate(args: LocalClusterArgs) -> list[str]:
    problems = []
    if (error := render.subnet_problem(args.subnet)) is not None:
        problems.append(f"subnet: {error}")
    if args.etcd.members not in (1, 3, 5, 7):
        problems.append(f"etcd.members: etcd needs an odd number of members up to 7, got {args.etcd.members}")
    if len(args.etcd.client_ports) != args.etcd.members:
        problems.append(f"etcd.client_ports: one port per member ({args.etcd.members}), got "
                        f"{list(args.etcd.client_ports)}")
    if args.kubernetes is not None and not 0 <= args.kubernetes.agents <= render.MAX_AGENTS:
        problems.append(f"kubernetes.agents: between 0 and {render.MAX_AGENTS}, got {args.kubernetes.agents}")
    if args.mesos is not None:
        problems += mesos_problems(args.mesos)
    ports = published_ports(args)
    for port in sorted({port for port, _ in ports}):
        users = [what for p, what in ports if p == port]
        if len(users) > 1:
            problems.append(f"port {port} on 127.0.0.1 is published by {' and '.join(users)}")
    return problems


class LocalCluster(pulumi.ComponentResource):
    """etcd, k3s and a registry in containers on this machine's Docker engine."""

    TYPE: ClassVar[str] = "cookbook:local:Cluster"
    etcd: LocalEtcd
    kubernetes: LocalKubernetes | None
    registry: pulumi.Output[str] | None  # `127.0.0.1:<port>`: push images there; the cluster pulls them by that name
    registry_container: docker.Container | None
    mesos: MesosCluster | None
    docker_objects: pulumi.Output[dict[str, list[str]]]

    def __init__(self, name: str, args: LocalClusterArgs, opts: pulumi.ResourceOptions | None = None):
        problems = validate(args)
        if problems:
            raise ValueError(f"LocalCluster {name!r}: " + "; ".join(problems))
        super().__init__(self.TYPE, name, None, opts)
        agents = args.kubernetes.agents if args.kubernetes is not None else 0
        mesos = args.mesos
        fixed = render.addresses(args.subnet, args.etcd.members, agents, mesos.masters if mesos else 0,
                                 mesos.agents if mesos else 0)
        network = local_network(f"{name}-network", args.prefix, args.subnet, fixed.gateway, self)

        self.etcd = LocalEtcd(f"{name}-etcd", args.etcd, LocalEtcdTarget(
            prefix=args.prefix, network=network, addresses=fixed.etcd,
            image=pulled_image(f"{name}-image-etcd", args.etcd.image, self)),
            opts=pulumi.ResourceOptions(parent=self))
        created: list[pulumi.CustomResource] = list(self.etcd.containers)
        containers = member_names(args.prefix, args.etcd.members)
        volumes = [f"{member}-data" for member in containers]

        registries_yaml = None
        self.registry = None
        self.registry_container = None
        if args.registry is not None:
            reference = render.registry_reference(args.registry.port)
            data = volume(f"{name}-registry-data", f"{args.prefix}-registry-data", self)
            self.registry_container = container(
                f"{name}-registry", parent=self, name=f"{args.prefix}-registry",
                image=pulled_image(f"{name}-image-registry", args.registry.image, self), network=network,
                address=fixed.registry, limits=args.registry.limits, volumes={render.REGISTRY_DATA_DIR: data},
                published=[Published(render.REGISTRY_PORT, args.registry.port)])
            registries_yaml = render.registries_yaml(reference, fixed.registry)
            self.registry = self.registry_container.id.apply(lambda _: reference)
            created += [self.registry_container, data]
            containers.append(f"{args.prefix}-registry")
            volumes.append(f"{args.prefix}-registry-data")

        self.kubernetes = None
        if args.kubernetes is not None:
            etcd = self.etcd
            self.kubernetes = LocalKubernetes(f"{name}-kubernetes", args.kubernetes, LocalKubernetesTarget(
                prefix=args.prefix, network=network, server_address=fixed.server, agent_addresses=fixed.agents,
                image=pulled_image(f"{name}-image-k3s", args.kubernetes.image, self),
                datastore=Datastore(endpoints=etcd.network_endpoints, ca_cert_pem=etcd.ca_cert_pem,
                                    client_cert_pem=etcd.apiserver_client_cert_pem,
                                    client_key_pem=etcd.apiserver_client_key_pem),
                etcd_containers=etcd.containers, registries_yaml=registries_yaml, context=args.context),
                opts=pulumi.ResourceOptions(parent=self))

        self.mesos = None
        if mesos is not None:
            self.mesos = MesosCluster(f"{name}-mesos", mesos_cluster_args(args.prefix, mesos, network, fixed),
                                      opts=pulumi.ResourceOptions(parent=self))
            created += self.mesos.containers
            mesos_containers, mesos_volumes = mesos_docker_objects(args.prefix, mesos)
            containers += mesos_containers
            volumes += mesos_volumes

        nodes: pulumi.Input[list[str]] = self.kubernetes.node_names if self.kubernetes is not None else []

        def objects(node_names: list[str]) -> dict[str, list[str]]:
            return {"network": [args.prefix], "containers": sorted([*containers, *node_names]),
                    "volumes": sorted([*volumes, *(f"{node}-state" for node in node_names)])}

        # Known names, listed once everything exists.
        self.docker_objects = pulumi.Output.all(nodes, *(resource.id for resource in created)).apply(
            lambda values: objects(values[0]))
        self.register_outputs({
            "docker_objects": self.docker_objects,
            "registry": self.registry,
        })


def local_network(resource_name: str, prefix: str, subnet: str, gateway: str,
                  parent: pulumi.Resource | None) -> docker.Network:
    """The local stack's network: a bridge with a fixed subnet (every container has a fixed address) whose
    published ports bind to 127.0.0.1 unless a container says otherwise."""
    return docker.Network(
        resource_name, name=prefix, driver="bridge",
        ipam_configs=[docker.NetworkIpamConfigArgs(subnet=subnet, gateway=gateway)],
        options={HOST_BINDING_OPTION: render.LOOPBACK},
        labels=[docker.NetworkLabelArgs(label=LABEL.label, value=LABEL.value)],
        opts=pulumi.ResourceOptions(parent=parent))


def store_transformations(registry: pulumi.Resource | None) -> list[pulumi.ResourceTransformation]:
    """What a store on the local cluster needs, as transformations of its components (Pulumi's resource
    transformations apply to a component's children as they register): its Pithos image build waits for the
    registry it pushes to (it cannot name it), and nothing is protected: the store's Namespace and StatefulSet
    are on a host cluster, but `make destroy` must remove the local stack whole (its cluster goes with it)."""

    def transform(args: pulumi.ResourceTransformationArgs) -> pulumi.ResourceTransformationResult | None:
        extra = pulumi.ResourceOptions(protect=False)
        if registry is not None and args.type_ == "docker-build:index:Image":
            extra = pulumi.ResourceOptions(protect=False, depends_on=[registry])
        return pulumi.ResourceTransformationResult(args.props, pulumi.ResourceOptions.merge(args.opts, extra))

    return [transform]
