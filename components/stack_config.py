"""The typed model of one stack's configuration, built from raw config values and validated as a whole.

`__main__.py` is the only caller: it gathers the raw values (`pulumi.Config`), and `parse_stack_config`
turns them into frozen dataclasses or raises one `ConfigError` listing every problem with its key path.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from components.etcd_config import EtcdConfig, parse_etcd_config
from components.node import DEFAULT_PACKAGES, Bastion
from components.store_config import StoreConfig, parse_store_config
from components.validation import (
    Problems,
    Section,
    check_address,
    check_dns_label,
    check_port,
    check_positive,
    describe_type,
    did_you_mean,
    one_of,
)

NAMESPACE = "cluster-cookbook"
NODE_KINDS = ("linux", "pi")
NODE_ROLES = ("etcd", "control-plane", "worker")
# Keys whose values must come from secret config, with how to set them.
SECRET_KEYS = {
    "ssh_private_key": "< ~/.ssh/id_ed25519",
    "ssh_private_key_passphrase": "",
    "kubeconfig": "< ~/.kube/config",
}
PRIVATE_KEY_ENV = "COOKBOOK_SSH_PRIVATE_KEY"
_PACKAGE_NAME = re.compile(r"^[a-z0-9][a-z0-9+.-]+$")
_HOST_KEY = re.compile(r"^(ssh-ed25519|ssh-rsa|ecdsa-sha2-nistp(256|384|521)) [A-Za-z0-9+/]+={0,3}$")


def _check_package(value: str) -> str | None:
    return None if _PACKAGE_NAME.match(value) else f"must be a Debian package name, got {value!r}"


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


@dataclass(frozen=True)
class SshSecrets:
    """Credentials from secret config or the environment. Plain text only here; wrap before use."""

    private_key: str | None = None
    private_key_passphrase: str | None = None


@dataclass(frozen=True)
class StackConfig:
    nodes: tuple[NodeConfig, ...] = ()
    ssh: SshSettings = field(default_factory=SshSettings)
    prepare: PrepareConfig = field(default_factory=PrepareConfig)
    secrets: SshSecrets = field(default_factory=SshSecrets)
    store: StoreConfig | None = None
    etcd: EtcdConfig | None = None  # None: no node has role etcd


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


def _parse_ssh(raw: Any, problems: Problems, env: Mapping[str, str]) -> SshSettings:
    section = Section(raw, "ssh", problems)
    settings = SshSettings(
        user=section.value("user", str, "root"),
        port=section.value("port", int, 22, check_port),
        use_agent=section.value("agent", bool, bool(env.get("SSH_AUTH_SOCK"))),
        dial_error_limit=section.value("dial_error_limit", int, 10),
        per_dial_timeout=section.value("per_dial_timeout", int, 15, check_positive),
        reboot_timeout=section.value("reboot_timeout", int, 300, check_positive),
        proxy=_parse_proxy(section.raw("proxy"), "ssh.proxy", problems),
    )
    section.finish()
    return settings


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


def _parse_nodes(raw: Any, ssh: SshSettings, problems: Problems) -> tuple[NodeConfig, ...]:
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


def _parse_prepare(raw: Any, problems: Problems) -> PrepareConfig:
    section = Section(raw, "prepare", problems)
    prepare = PrepareConfig(
        packages=section.strings("packages", DEFAULT_PACKAGES, _check_package),
        time_servers=section.strings("time_servers", (), check_address),
        kubernetes_networking=section.value("kubernetes_networking", bool, True),
    )
    section.finish()
    return prepare


def _secret_values(raw: Mapping[str, Any], secret_keys: set[str], problems: Problems) -> dict[str, str | None]:
    """Values of SECRET_KEYS; each must have been set with `--secret` (else it sits in the stack file in clear)."""
    values: dict[str, str | None] = {}
    for key, example in SECRET_KEYS.items():
        value = raw.get(key)
        values[key] = None
        if value is None:
            continue
        if key not in secret_keys:
            problems.add(key, f"must be stored as a secret: `pulumi config set --secret {key} {example}` "
                              "(plain values would be written to the stack file)")
        elif not isinstance(value, str):
            problems.add(key, f"must be a string, got {describe_type(value)}")
        else:
            values[key] = value
    return values


def _check_credentials(config: StackConfig, problems: Problems) -> None:
    if config.nodes and not config.ssh.use_agent and config.secrets.private_key is None:
        problems.add("ssh_private_key",
                     "no SSH credentials: set it with `pulumi config set --secret ssh_private_key < KEYFILE`, "
                     f"export {PRIVATE_KEY_ENV}, or run an ssh-agent (SSH_AUTH_SOCK) and keep ssh.agent true")


TOP_LEVEL_KEYS = ("nodes", "ssh", "prepare", "store", "etcd", *SECRET_KEYS)


def parse_stack_config(raw: Mapping[str, Any], secret_keys: set[str] | None = None,
                       env: Mapping[str, str] | None = None) -> StackConfig:
    """Builds the typed model from raw values keyed without the namespace (e.g. `nodes`).

    Raises `ConfigError` listing every problem found, before anything is created.
    """
    problems = Problems()
    env = env or {}
    for unknown in sorted(set(raw) - set(TOP_LEVEL_KEYS)):
        problems.add(f"{NAMESPACE}:{unknown}", f"unknown key{did_you_mean(unknown, TOP_LEVEL_KEYS)}")
    ssh = _parse_ssh(raw.get("ssh"), problems, env)
    nodes = _parse_nodes(raw.get("nodes"), ssh, problems)
    secrets = _secret_values(raw, secret_keys or set(), problems)
    config = StackConfig(
        nodes=nodes,
        ssh=ssh,
        prepare=_parse_prepare(raw.get("prepare"), problems),
        secrets=SshSecrets(private_key=secrets["ssh_private_key"] or env.get(PRIVATE_KEY_ENV),
                           private_key_passphrase=secrets["ssh_private_key_passphrase"]),
        store=parse_store_config(raw.get("store"), secrets["kubeconfig"], "kubeconfig" in raw, problems),
        etcd=parse_etcd_config(raw.get("etcd"), nodes, problems),
    )
    if "ssh_private_key" not in raw:  # a present but plain key was reported above
        _check_credentials(config, problems)
    problems.raise_if_any()
    return config
