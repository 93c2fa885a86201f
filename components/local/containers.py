"""What every container of the local recipe shares: the cookbook's network with a fixed address, ports published on
loopback only, a restart policy, memory and CPU limits, a label, a clean stop, and files uploaded before the first
start.

pulumi-docker (terraform-provider-docker underneath) creates a container, connects it to `networks_advanced`
(disconnecting Docker's default bridge), copies `uploads` into it (a tar at `/`, so missing directories are
created; named volumes are mounted for the copy), starts it and, with `wait`, polls its health until healthy or
`wait_timeout` (internal/provider/resource_docker_container_funcs.go, resourceDockerContainerCreate). Deleting it
stops it with `destroy_grace_seconds`, then removes it with its anonymous volumes (`remove_volumes`, default true).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_docker as docker

from components.local.render import LOOPBACK

RESTART_POLICY = "unless-stopped"  # back after a crash or an engine restart (a laptop reboot), not after `docker stop`
LABEL = docker.ContainerLabelArgs(label="managed-by", value="cluster-cookbook")
HEALTH_INTERVAL = "5s"
HEALTH_TIMEOUT = "10s"
STOP_GRACE_SECONDS = 30  # the provider's default is 0: an immediate SIGKILL on delete or replacement
# Uploads carrying keys or tokens: their content goes in as a secret, and the provider's echo of `uploads` is
# kept secret in the state too (the engine would also mark it, from the secret input).
SECRET_OUTPUTS = ["uploads"]


@dataclass(frozen=True)
class Limits:
    """A container's memory limit (MiB, no extra swap) and CPU quota (Docker's `--cpus`, e.g. "0.5")."""

    memory_mb: int
    cpus: str


@dataclass(frozen=True)
class Upload:
    """A file copied into the container before it first starts; `content` may be a secret Output."""

    path: str
    content: pulumi.Input[str]
    permissions: str = "0644"


@dataclass(frozen=True)
class Published:
    """A container port published on this machine's loopback address."""

    container_port: int
    host_port: int


def container(resource_name: str, *, parent: pulumi.Resource, name: str, image: docker.RemoteImage,
              network: docker.Network, address: str, limits: Limits, command: Sequence[str] = (),
              envs: Sequence[str] = (), volumes: Mapping[str, docker.Volume] | None = None,
              uploads: Sequence[Upload] = (), published: Sequence[Published] = (),
              healthcheck: Sequence[str] | None = None, wait_timeout: int = 120, privileged: bool = False,
              tmpfs: Mapping[str, str] | None = None, ulimits: Mapping[str, int] | None = None,
              depends_on: Sequence[pulumi.Resource] = ()) -> docker.Container:
    """One long-running container of the local recipe (see the module docstring)."""
    settings: dict[str, Any] = {}
    if healthcheck is not None:
        settings.update(
            healthcheck=docker.ContainerHealthcheckArgs(tests=list(healthcheck), interval=HEALTH_INTERVAL,
                                                        timeout=HEALTH_TIMEOUT, retries=3),
            # Created means healthy: what depends on this container finds it serving.
            wait=True, wait_timeout=wait_timeout)
    if privileged:
        settings["privileged"] = True
    if tmpfs:
        settings["tmpfs"] = dict(tmpfs)
    if ulimits:
        settings["ulimits"] = [docker.ContainerUlimitArgs(name=limit, soft=value, hard=value)
                               for limit, value in sorted(ulimits.items())]
    return docker.Container(
        resource_name,
        name=name,
        # By its pinned reference (the policy pack and `docker ps` see the name), once it is pulled.
        image=image.name,
        command=list(command),
        envs=list(envs),
        volumes=[docker.ContainerVolumeArgs(volume_name=volume.name, container_path=path)
                 for path, volume in sorted((volumes or {}).items())],
        uploads=[docker.ContainerUploadArgs(file=upload.path, content=upload.content, permissions=upload.permissions)
                 for upload in uploads],
        restart=RESTART_POLICY,
        must_run=True,
        labels=[LABEL],
        **placement(name, network, address, limits, published),
        opts=pulumi.ResourceOptions(
            parent=parent,
            # The image is pulled first; the caller's reasons for the others.
            depends_on=[image, *depends_on],
            # Names and addresses are fixed: a replacement must remove the old container first.
            delete_before_replace=True,
            additional_secret_outputs=SECRET_OUTPUTS if uploads else None),
        **settings,
    )


def placement(name: str, network: docker.Network, address: str, limits: Limits,
              published: Sequence[Published] = ()) -> dict[str, Any]:
    """The container arguments that put a container of the local recipe on its network (its name as hostname, a
    fixed address, ports on loopback only), within its limits and with a clean stop (also the Mesos recipe's
    placement on the local stack: components/local/mesos.py)."""
    return {
        "hostname": name,
        "networks_advanced": [docker.ContainerNetworksAdvancedArgs(name=network.name, ipv4_address=address)],
        "ports": [docker.ContainerPortArgs(internal=port.container_port, external=port.host_port, ip=LOOPBACK,
                                           protocol="tcp") for port in published],
        "memory": limits.memory_mb,
        "memory_swap": limits.memory_mb,  # no swap beyond the limit
        "cpus": limits.cpus,
        "destroy_grace_seconds": STOP_GRACE_SECONDS,
    }


def volume(resource_name: str, name: str, parent: pulumi.Resource,
           depends_on: Sequence[pulumi.Resource] = ()) -> docker.Volume:
    """A named volume: what a container keeps across its replacement, removed only by `make destroy`.
    `depends_on`: the caller's reasons."""
    return docker.Volume(resource_name, name=name,
                         labels=[docker.VolumeLabelArgs(label=LABEL.label, value=LABEL.value)],
                         opts=pulumi.ResourceOptions(parent=parent, depends_on=list(depends_on)))


def pulled_image(resource_name: str, reference: str, parent: pulumi.Resource) -> docker.RemoteImage:
    """The image on the engine (pulled when missing) and kept there on destroy: other work may use it, and the
    next `make up` starts without a download."""
    return docker.RemoteImage(resource_name, name=reference, keep_locally=True,
                              opts=pulumi.ResourceOptions(parent=parent))
