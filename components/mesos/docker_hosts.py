"""Docker hosts: Mesos nodes reached over SSH, one pulumi-docker provider per node, every container on the host's
network at the node's address (a `MesosTarget`, see targets.py).

Apache Mesos's images are amd64 only: a provider's host is computed from the node's architecture fact, so a node
of another architecture is refused, naming it, before anything reaches Docker on it.
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_docker as docker

from components.mesos.targets import Placement, WorkDir
from components.nodes.host import Host
from components.shared.addresses import bracketed

SUPPORTED_ARCHITECTURE = "amd64"
AGENT_WORK_DIR = "/var/lib/mesos/agent"  # the same path on the host and in the agent's container
HOST_CONTAINERS = {"zookeeper": "cookbook-zookeeper", "master": "cookbook-mesos-master",
                   "marathon": "cookbook-marathon", "agent": "cookbook-mesos-agent"}
HOST_VOLUMES = {("master", "work"): "cookbook-mesos-master", ("zookeeper", "data"): "cookbook-zookeeper-data",
                ("zookeeper", "datalog"): "cookbook-zookeeper-datalog"}
# Mesos 1.x's launcher that needs no cgroup v1 hierarchy (process sessions; see launcher_flags).
POSIX_LAUNCHER = "--launcher=posix"
RETIREMENT = ("Apache Mesos is retired (Apache Attic, final release 1.11.0) and its images are built for amd64 "
              "only")


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

    # --- MesosTarget: one engine per host, the host's network, fixed names (one container of each role) ---
    @property
    def node(self) -> str:
        return self.host.hostname

    @property
    def engine(self) -> str:
        return self.host.hostname

    def provider(self, resource_name: str, parent: pulumi.Resource) -> docker.Provider:
        return docker_provider(resource_name, self, parent)

    def place(self, role: str, port: int | None) -> Placement:
        flags: pulumi.Input[list[str]] = []
        if role == "agent":
            node = self.node
            flags = self.host.facts.apply(lambda facts: launcher_flags(node, facts.get("cgroup_version")))
        return Placement(container=HOST_CONTAINERS[role], address=self.host.known_address("Mesos"),
                         settings={"network_mode": "host"}, flags=flags)

    def volume_name(self, role: str, what: str) -> str:
        return HOST_VOLUMES[(role, what)]

    @property
    def volume_labels(self) -> tuple[docker.VolumeLabelArgs, ...]:
        return ()  # none (a label is part of a volume's identity: adding one now would replace the volumes)

    def agent_work_dir(self, resource_name: str, parent: pulumi.Resource,
                       provider: docker.Provider | None) -> WorkDir:
        return WorkDir(AGENT_WORK_DIR, docker.ContainerVolumeArgs(host_path=AGENT_WORK_DIR,
                                                                  container_path=AGENT_WORK_DIR))

    def url(self, role: str, port: int) -> str:
        return f"http://{bracketed(self.host.known_address('Mesos'))}:{port}"


def docker_url(target: DockerHost) -> str:
    """The provider's `host`: Docker's SSH transport (the remote `docker system dial-stdio`)."""
    return f"ssh://{target.user}@{bracketed(target.host.known_address('Mesos'))}:{target.port}"


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


def launcher_flags(node: str, cgroup_version: object) -> list[str]:
    """The agent's launcher for its host's cgroup version (the node's `cgroup_version` fact: 2 when cgroup v2 is
    mounted at /sys/fs/cgroup). Mesos 1.11, its final release, knows cgroup v1 only: its Linux launcher prepares
    a v1 `freezer` hierarchy (src/slave/containerizer/mesos/linux_launcher.cpp, LinuxLauncher::create), and is the
    default whenever the agent runs as root and /proc/cgroups lists freezer (src/slave/flags.cpp, `launcher`);
    cgroup v2 support (src/linux/cgroups2.cpp, docs/cgroups2-support.md) came to its main branch in 2024 and is in
    no release. So a v2 host gets the posix launcher; a v1 host keeps the default (and its command line)."""
    if type(cgroup_version) is int and cgroup_version in (1, 2):
        return [POSIX_LAUNCHER] if cgroup_version == 2 else []
    raise ValueError(f"mesos: node {node} reports cgroup_version {cgroup_version!r}: expected 1 or 2 (the node "
                     "layer's facts: 2 when /sys/fs/cgroup/cgroup.controllers exists)")


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
