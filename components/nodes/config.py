"""The `nodes`, `ssh` and `prepare` sections of a stack's config: which hosts exist and how to reach them."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from components.nodes.host import DEFAULT_PACKAGES
from components.shared.connection import Bastion
from components.shared.validation import (
    Problems,
    Section,
    check_address,
    check_dns_label,
    check_port,
    check_positive,
    one_of,
)

NODE_KINDS = ("linux", "pi")
NODE_ROLES = ("etcd", "control-plane", "worker", "zookeeper", "mesos-master", "mesos-agent")
# Roles whose hosts keep a quorum (etcd, zookeeper), the API (control-plane) or a cluster's workloads (worker): they
# reboot one at a time, in node order, in one chain (a worker never goes down while a quorum member or server is
# down, and its pods' replicas elsewhere stay up). (Only Pis reboot, and a Pi cannot have a Mesos role.)
SERIAL_REBOOT_ROLES = ("etcd", "control-plane", "worker", "zookeeper")
AGENT_ENV = "SSH_AUTH_SOCK"
_CMDLINE_FLAG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.,:/+=-]*$")
_PACKAGE_NAME = re.compile(r"^[a-z0-9][a-z0-9+.-]+$")
_HOST_KEY = re.compile(r"^(ssh-ed25519|ssh-rsa|ecdsa-sha2-nistp(256|384|521)) [A-Za-z0-9+/]+={0,3}$")

def _check_package(value: str) -> str | None:
    return None if _PACKAGE_NAME.match(value) else f"must be a Debian package name, got {value!r}"


def _check_cmdline_flag(value: str) -> str | None:
    return None if _CMDLINE_FLAG.match(value) else (
        f"must be one kernel command-line word such as 'cgroup_enable=cpuset', got {value!r}")


def _check_host_key(value: str) -> str | None:
    if _HOST_KEY.match(value.strip()):
        return None
    return ("must be a public host key line such as 'ssh-ed25519 AAAA...' "
            "(from `ssh-keyscan -t ed25519 HOST`, without the host name)")


@dataclass(frozen=True)
class SshSettings:
    """Connection defaults shared by every node (a node may override user, port and proxy)."""

    user: str = "root"
    port: int = 22
    use_agent: bool = False
    dial_error_limit: int = 10
    per_dial_timeout: int = 15
    reboot_timeout: int = 300
    proxy: Bastion | None = None


@dataclass(frozen=True)
class NodeConfig:
    name: str
    address: str
    kind: str = "linux"
    roles: tuple[str, ...] = ()
    user: str = "root"
    port: int = 22
    host_key: str | None = None
    proxy: Bastion | None = None


@dataclass(frozen=True)
class PrepareConfig:
    packages: tuple[str, ...] = DEFAULT_PACKAGES
    time_servers: tuple[str, ...] = ()
    kubernetes_networking: bool = True
    pi_cmdline_flags: tuple[str, ...] = ()  # added to cmdline.txt after the cgroup flags



def _parse_proxy(raw: Any, path: str, problems: Problems) -> Bastion | None:
    if raw is None:
        return None
    section = Section(raw, path, problems)
    proxy = Bastion(
        host=section.required("host", str, "", check_address),
        port=section.value("port", int, 22, check_port),
        user=section.value("user", str, "root"),
    )
    section.finish()
    return proxy


def parse_ssh(raw: Any, problems: Problems, env: Mapping[str, str]) -> SshSettings:
    section = Section(raw, "ssh", problems)
    settings = SshSettings(
        user=section.value("user", str, "root"),
        port=section.value("port", int, 22, check_port),
        use_agent=section.value("agent", bool, bool(env.get(AGENT_ENV))),
        dial_error_limit=section.value("dial_error_limit", int, 10),
        per_dial_timeout=section.value("per_dial_timeout", int, 15, check_positive),
        reboot_timeout=section.value("reboot_timeout", int, 300, check_positive),
        proxy=_parse_proxy(section.raw("proxy"), "ssh.proxy", problems),
    )
    section.finish()
    _check_agent(settings, section.has("agent"), env, problems)
    return settings


def _check_agent(settings: SshSettings, explicit: bool, env: Mapping[str, str], problems: Problems) -> None:
    """pulumi-command offers the keys of the agent at SSH_AUTH_SOCK whenever that variable is set, whatever
    the connection says (provider/pkg/provider/remote/connection.go, SSHConfig): `agent: false` can only be
    honoured without it, and `agent: true` needs it."""
    socket = env.get(AGENT_ENV)
    if explicit and not settings.use_agent and socket:
        problems.add("ssh.agent", f"is false, but {AGENT_ENV} is set ({socket}) and pulumi-command then offers "
                                  "the agent's keys to every host whatever the config says; run without it "
                                  f"(`env -u {AGENT_ENV} pulumi up`), or remove ssh.agent to use the agent")
    if explicit and settings.use_agent and not socket:
        problems.add("ssh.agent", f"is true, but {AGENT_ENV} is not set: start an agent holding your key "
                                  "(`eval \"$(ssh-agent)\" && ssh-add`), or set it false and store the key in "
                                  "ssh_private_key")


def _parse_node(raw: Any, path: str, ssh: SshSettings, problems: Problems) -> NodeConfig:
    section = Section(raw, path, problems)
    node = NodeConfig(
        name=section.required("name", str, "", check_dns_label),
        address=section.required("address", str, "", check_address),
        kind=section.value("kind", str, "linux", one_of(NODE_KINDS)),
        roles=section.strings("roles", (), one_of(NODE_ROLES)),
        user=section.value("user", str, ssh.user),
        port=section.value("port", int, ssh.port, check_port),
        host_key=section.value("host_key", str, None, _check_host_key),
        proxy=_parse_proxy(section.raw("proxy"), f"{path}.proxy", problems) or ssh.proxy,
    )
    section.finish()
    return node


def parse_nodes(raw: Any, ssh: SshSettings, problems: Problems) -> tuple[NodeConfig, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list):
        problems.add("nodes", "must be a list of nodes (each with name and address)")
        return ()
    nodes = tuple(_parse_node(item, f"nodes[{i}]", ssh, problems) for i, item in enumerate(raw))
    first_index: dict[str, int] = {}
    for index, node in enumerate(nodes):
        if node.name and node.name in first_index:
            problems.add(f"nodes[{index}].name",
                         f"duplicate node name {node.name!r} (also nodes[{first_index[node.name]}].name)")
        first_index.setdefault(node.name, index)
    return nodes


def parse_prepare(raw: Any, problems: Problems) -> PrepareConfig:
    section = Section(raw, "prepare", problems)
    prepare = PrepareConfig(
        packages=section.strings("packages", DEFAULT_PACKAGES, _check_package),
        time_servers=section.strings("time_servers", (), check_address),
        kubernetes_networking=section.value("kubernetes_networking", bool, True),
        pi_cmdline_flags=section.strings("pi_cmdline_flags", (), _check_cmdline_flag),
    )
    section.finish()
    return prepare
