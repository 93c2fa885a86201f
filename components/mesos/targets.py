"""Where the Mesos recipe's containers run. MesosCluster asks a *target* (one Mesos node) a few questions and keeps
everything else — command lines, quorum, ZooKeeper's server list, volumes, restart policy — to itself, so both
kinds of node run the same recipe:

- `DockerHost` (docker_hosts.py): a node reached over SSH, with its own Docker engine and provider. Every
  container is on the host's network, every daemon binds and advertises the node's address, and container and
  volume names are fixed (one master, one Marathon, ... per host).
- `LocalMesosNode` (components/local/mesos.py): a node of the `local` stack. Its containers are on the local
  stack's Docker network, each with its own fixed address, their UIs published on 127.0.0.1 only; names carry the
  stack's prefix and the node's number; every node is on the stack's one engine (the default Docker provider).

Roles: `zookeeper`, `master`, `marathon` (on a master node) and `agent` (on an agent node).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import pulumi
import pulumi_docker as docker

ROLES = ("zookeeper", "master", "marathon", "agent")
RESTART_POLICY = "unless-stopped"
LABEL = docker.ContainerLabelArgs(label="managed-by", value="cluster-cookbook")


@dataclass(frozen=True)
class Placement:
    """One container of a node: its name on the engine, the address its daemon binds and advertises (what the
    other daemons dial), the docker.Container arguments that put it there (network, published ports, limits) and
    flags its command line needs there (an Output when they follow from the node's facts, e.g. an agent's
    launcher from its host's cgroup version)."""

    container: str
    address: str
    settings: Mapping[str, Any] = field(default_factory=dict)
    flags: pulumi.Input[Sequence[str]] = ()


@dataclass(frozen=True)
class WorkDir:
    """An agent's work directory: `path` is the same on the engine's host and in the container (the Docker
    containerizer hands sandbox paths to the engine, which resolves them on its host); `volume` mounts it."""

    path: pulumi.Input[str]
    volume: docker.ContainerVolumeArgs


class MesosTarget(Protocol):
    """A Mesos node, as MesosCluster places its containers."""

    @property
    def node(self) -> str:
        """Unique among the cluster's masters (and among its agents): names the node's resources."""
        ...

    @property
    def engine(self) -> str:
        """The Docker engine the node's containers run on: nodes on one engine share its provider and its pulled
        images. "" is the stack's default provider (DOCKER_HOST), made by nobody."""
        ...

    def provider(self, resource_name: str, parent: pulumi.Resource) -> docker.Provider | None:
        """The engine's provider (called once per engine), or None for the default provider."""
        ...

    def place(self, role: str, port: int | None) -> Placement:
        """Where the container of `role` runs; `port` is the port its daemon listens on (published when the
        target publishes that role)."""
        ...

    def volume_name(self, role: str, what: str) -> str:
        """The name of the named volume `what` (`work`, `data`, `datalog`) of the container of `role`."""
        ...

    @property
    def volume_labels(self) -> Sequence[docker.VolumeLabelArgs]: ...

    def agent_work_dir(self, resource_name: str, parent: pulumi.Resource,
                       provider: docker.Provider | None) -> WorkDir: ...

    def url(self, role: str, port: int) -> str:
        """How a user reaches the daemon of `role` listening on `port` (the outputs' URLs)."""
        ...


def pulled_image(resource_name: str, reference: str, parent: pulumi.Resource,
                 provider: docker.Provider | None) -> docker.RemoteImage:
    """The image pulled on the provider's engine once, and kept there (other containers may use it)."""
    return docker.RemoteImage(resource_name, name=reference, keep_locally=True,
                              opts=pulumi.ResourceOptions(parent=parent, provider=provider))


def volume(resource_name: str, name: str, parent: pulumi.Resource, provider: docker.Provider | None,
           labels: Sequence[docker.VolumeLabelArgs] = ()) -> docker.Volume:
    settings: dict[str, Any] = {"labels": list(labels)} if labels else {}
    return docker.Volume(resource_name, name=name, opts=pulumi.ResourceOptions(parent=parent, provider=provider),
                         **settings)


def container(resource_name: str, *, parent: pulumi.Resource, provider: docker.Provider | None,
              image: docker.RemoteImage, placement: Placement, depends_on: Sequence[pulumi.Resource] = (),
              **settings: Any) -> docker.Container:
    """A long-running container of the recipe where its target placed it, restarted unless stopped by hand."""
    return docker.Container(
        resource_name,
        name=placement.container,
        # By its pinned reference (the policy pack and `docker ps` see the name), once it is pulled.
        image=image.name,
        restart=RESTART_POLICY,
        must_run=True,
        labels=[LABEL],
        # The image is pulled first; `depends_on` gives the container's own reason. The container's name is
        # fixed, so a replacement must remove the old container before creating the new one.
        opts=pulumi.ResourceOptions(parent=parent, provider=provider, depends_on=[image, *depends_on],
                                    delete_before_replace=True),
        **placement.settings,
        **settings,
    )
