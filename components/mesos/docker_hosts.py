"""Docker hosts: one pulumi-docker provider per node over SSH, and the container settings every Mesos-recipe
container shares (host network, `unless-stopped`, its host's provider, its pulled image first).

Apache Mesos's images are amd64 only: a provider's host is computed from the node's architecture fact, so a node
of another architecture is refused, naming it, before anything reaches Docker on it.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_docker as docker

from components.nodes.host import Host

SUPPORTED_ARCHITECTURE = "amd64"
RETIREMENT = ("Apache Mesos is retired (Apache Attic, final release 1.11.0) and its images are built for amd64 "
              "only")
RESTART_POLICY = "unless-stopped"


@dataclass(frozen=True)
class DockerHost:
    """A node reached by the Docker provider: its Host (prepared, with the Docker engine) and the SSH client
    options of the machine running Pulumi (the provider shells out to `ssh`; it cannot take key material)."""

    host: Host
    user: str
    port: int = 22
    host_key: str | None = None
    jump: str | None = None  # user@host:port of a bastion
    identity_file: str | None = None
    connect_timeout: int = 15


def is_ip(address: str) -> bool:
    try:
        ipaddress.ip_address(address)
        return True
    except ValueError:
        return False


def bracketed(address: str) -> str:
    return f"[{address}]" if is_ip(address) and ipaddress.ip_address(address).version == 6 else address


def docker_url(target: DockerHost) -> str:
    """The provider's `host`: Docker's SSH transport (the remote `docker system dial-stdio`)."""
    return f"ssh://{target.user}@{bracketed(target.host.address)}:{target.port}"


def ssh_options(target: DockerHost) -> list[str]:
    """Options for the `ssh` the provider runs: never a prompt; the pinned host key is the only one trusted."""
    options = ["-o", "BatchMode=yes", "-o", f"ConnectTimeout={target.connect_timeout}"]
    if target.host_key:
        # OpenSSH 8.5+: the command prints the known_hosts line (%H is the name ssh looks up, [host]:port too).
        options += ["-o", "StrictHostKeyChecking=yes", "-o", "UserKnownHostsFile=/dev/null",
                    "-o", "GlobalKnownHostsFile=/dev/null",
                    "-o", f"KnownHostsCommand=/bin/echo %H {target.host_key.strip()}"]
    if target.identity_file:
        options += ["-o", "IdentitiesOnly=yes", "-i", target.identity_file]
    if target.jump:
        options += ["-J", target.jump]
    return options


def check_architecture(node: str, architecture: str) -> str:
    """The architecture when Mesos runs there; else a ValueError naming the node and the reason."""
    if architecture != SUPPORTED_ARCHITECTURE:
        raise ValueError(f"mesos: node {node} is {architecture}: {RETIREMENT}; give the Mesos roles to amd64 nodes")
    return architecture


def docker_provider(resource_name: str, target: DockerHost, parent: pulumi.Resource | None) -> docker.Provider:
    node = target.host.hostname
    # The architecture fact gates the provider, so nothing reaches a host Mesos cannot run on.
    url = target.host.architecture.apply(lambda arch: check_architecture(node, arch) and docker_url(target))
    return docker.Provider(
        resource_name,
        host=url,
        ssh_opts=ssh_options(target),
        opts=pulumi.ResourceOptions(
            parent=parent,
            # The node layer prepared the host and installed the Docker engine.
            depends_on=[target.host]),
    )


def pulled_image(resource_name: str, reference: str, parent: pulumi.Resource,
                 provider: docker.Provider) -> docker.RemoteImage:
    """The image pulled on the provider's host once, and kept there (other containers may use it)."""
    return docker.RemoteImage(resource_name, name=reference, keep_locally=True,
                              opts=pulumi.ResourceOptions(parent=parent, provider=provider))


def host_container(resource_name: str, *, parent: pulumi.Resource, provider: docker.Provider,
                   image: docker.RemoteImage, container: str, depends_on: Sequence[pulumi.Resource] = (),
                   **settings: Any) -> docker.Container:
    """A long-running container on the host's network, restarted unless stopped by hand."""
    return docker.Container(
        resource_name,
        name=container,
        # By its pinned reference (the policy pack and `docker ps` see the name), once it is pulled.
        image=image.name,
        network_mode="host",
        restart=RESTART_POLICY,
        must_run=True,
        labels=[docker.ContainerLabelArgs(label="managed-by", value="cluster-cookbook")],
        # The image is pulled first; `depends_on` gives the container's own reason. The container's name is
        # fixed, so a replacement must remove the old container before creating the new one.
        opts=pulumi.ResourceOptions(parent=parent, provider=provider, depends_on=[image, *depends_on],
                                    delete_before_replace=True),
        **settings,
    )


def volume(resource_name: str, name: str, parent: pulumi.Resource, provider: docker.Provider) -> docker.Volume:
    return docker.Volume(resource_name, name=name, opts=pulumi.ResourceOptions(parent=parent, provider=provider))
