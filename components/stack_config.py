"""The typed model of one stack's configuration, built from raw config values and validated as a whole.

`__main__.py` is the only caller: it gathers the raw values (`pulumi.Config`), and `parse_stack_config`
turns them into frozen dataclasses or raises one `ConfigError` listing every problem with its key path.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from components.cassandra import CassandraArgs
from components.etcd_config import EtcdConfig, parse_etcd_config
from components.kubernetes_target import check_cpu, check_memory, check_storage
from components.node import DEFAULT_PACKAGES, Bastion
from components.pithos import SERVICE_TYPES, PithosArgs
from components.validation import (
    Problems,
    Section,
    check_address,
    check_dns_label,
    check_port,
    check_positive,
    did_you_mean,
    one_of,
)

NAMESPACE = "cluster-cookbook"
NODE_KINDS = ("linux", "pi")
NODE_ROLES = ("etcd", "control-plane", "worker")
SECRET_KEYS = ("ssh_private_key", "ssh_private_key_passphrase")
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
class StoreConfig:
    """The S3 object store (Cassandra + Pithos) on an existing Kubernetes cluster (`store` section)."""

    cassandra: CassandraArgs
    pithos: PithosArgs  # cassandra_host is filled in once the Cassandra component exists
    kubeconfig: str | None = None  # plain text here (from secret config); wrap before use
    context: str | None = None
    render_directory: str | None = None


@dataclass(frozen=True)
class StackConfig:
    nodes: tuple[NodeConfig, ...] = ()
    ssh: SshSettings = field(default_factory=SshSettings)
    prepare: PrepareConfig = field(default_factory=PrepareConfig)
    secrets: SshSecrets = field(default_factory=SshSecrets)
    store: StoreConfig | None = None
    etcd: EtcdConfig | None = None  # None: no node has role etcd

    def nodes_with_role(self, role: str) -> tuple[NodeConfig, ...]:
        return tuple(node for node in self.nodes if role in node.roles)


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


def _parse_secrets(raw: Mapping[str, Any], secret_keys: set[str], env: Mapping[str, str],
                   problems: Problems) -> SshSecrets:
    values: dict[str, str | None] = {}
    for key in SECRET_KEYS:
        value = raw.get(key)
        if value is None:
            values[key] = None
        elif key not in secret_keys:
            problems.add(key, f"must be stored as a secret: `pulumi config set --secret {key} ...` "
                              "(plain values would be written to the stack file)")
            values[key] = None
        elif not isinstance(value, str):
            problems.add(key, "must be a string")
            values[key] = None
        else:
            values[key] = value
    return SshSecrets(private_key=values["ssh_private_key"] or env.get(PRIVATE_KEY_ENV),
                      private_key_passphrase=values["ssh_private_key_passphrase"])


def _report(path: str, found: list[tuple[str, str]], problems: Problems) -> None:
    for name, message in found:
        problems.add(f"{path}.{name}", message)


def _parse_cassandra(raw: Any, namespace: str, problems: Problems) -> tuple[CassandraArgs, int]:
    section = Section(raw, "store.cassandra", problems)
    base = CassandraArgs()
    replicas = section.value("replicas", int, base.replicas, check_positive)
    args = CassandraArgs(
        namespace=namespace,
        replicas=replicas,
        seed_count=section.value("seed_count", int, None, check_positive),
        cluster_name=section.value("cluster_name", str, base.cluster_name, check_dns_label),
        datacenter=section.value("datacenter", str, base.datacenter, check_dns_label),
        rack=section.value("rack", str, base.rack, check_dns_label),
        image=section.value("image", str, base.image),
        cpu_request=section.value("cpu_request", str, base.cpu_request, check_cpu),
        cpu_limit=section.value("cpu_limit", str, base.cpu_limit, check_cpu),
        memory=section.value("memory", str, base.memory, check_memory),
        storage_size=section.value("storage_size", str, base.storage_size, check_storage),
        storage_class=section.value("storage_class", str, None, check_dns_label),
        anti_affinity=section.value("anti_affinity", bool, base.anti_affinity),
        drain_timeout=section.value("drain_timeout", int, base.drain_timeout, check_positive),
        decommissioned=tuple(section.value("decommissioned", list, [])),
    )
    if any(isinstance(i, bool) or not isinstance(i, int) or i < 0 for i in args.decommissioned):
        problems.add("store.cassandra.decommissioned", "must be a list of pod ordinals (0, 1, ...)")
        args = CassandraArgs(**{**vars(args), "decommissioned": ()})
    replication = section.value("replication_factor", int, min(3, replicas), check_positive)
    if replication > replicas:
        problems.add("store.cassandra.replication_factor",
                     f"must not exceed replicas ({replicas}): each replica lives on its own node, got {replication}")
    section.finish()
    _report("store.cassandra", args.problems(), problems)
    return args, replication


def _parse_pithos(raw: Any, cassandra: CassandraArgs, replication: int, problems: Problems) -> PithosArgs:
    section = Section(raw, "store.pithos", problems)
    base = PithosArgs(namespace=cassandra.namespace)
    args = PithosArgs(
        namespace=cassandra.namespace,
        datacenter=cassandra.datacenter,
        replication_factor=replication,
        cassandra_image=cassandra.image,
        image=section.value("image", str, base.image),
        jar_path=section.value("jar_path", str, base.jar_path),
        replicas=section.value("replicas", int, base.replicas),
        service_type=section.value("service_type", str, base.service_type, one_of(SERVICE_TYPES)),
        node_port=section.value("node_port", int, None, check_port),
        endpoint=section.value("endpoint", str, None),
        region=section.value("region", str, base.region, check_dns_label),
        keyspace=section.value("keyspace", str, base.keyspace),
        tenants=section.strings("tenants"),
        cpu_request=section.value("cpu_request", str, base.cpu_request, check_cpu),
        cpu_limit=section.value("cpu_limit", str, base.cpu_limit, check_cpu),
        memory=section.value("memory", str, base.memory, check_memory),
        schema_wait_seconds=section.value("schema_wait_seconds", int, base.schema_wait_seconds, check_positive),
    )
    section.finish()
    reported = {"service_type", "cpu_request", "cpu_limit", "memory"}  # already checked above
    _report("store.pithos", [(n, m) for n, m in args.problems() if n not in reported], problems)
    return args


def _parse_store(raw: Mapping[str, Any], secret_keys: set[str], problems: Problems) -> StoreConfig | None:
    kubeconfig = raw.get("kubeconfig")
    if kubeconfig is not None and "kubeconfig" not in secret_keys:
        problems.add("kubeconfig", "must be stored as a secret: "
                                   "`pulumi config set --secret kubeconfig < ~/.kube/config` "
                                   "(plain values would be written to the stack file)")
        kubeconfig = None
    elif kubeconfig is not None and not isinstance(kubeconfig, str):
        problems.add("kubeconfig", "must be the text of a kubeconfig file")
        kubeconfig = None
    if raw.get("store") is None:
        return None
    section = Section(raw.get("store"), "store", problems)
    namespace = section.value("namespace", str, "object-store", check_dns_label)
    context = section.value("context", str, None)
    render_directory = section.value("render_directory", str, None)
    cassandra, replication = _parse_cassandra(section.raw("cassandra"), namespace, problems)
    pithos = _parse_pithos(section.raw("pithos"), cassandra, replication, problems)
    section.finish()
    if kubeconfig is None and render_directory is None and "kubeconfig" not in raw:
        problems.add("kubeconfig", "the store needs a cluster: `pulumi config set --secret kubeconfig < FILE` "
                                   "(or set store.render_directory to only render manifests)")
    return StoreConfig(cassandra=cassandra, pithos=pithos, kubeconfig=kubeconfig, context=context,
                       render_directory=render_directory)


def _check_credentials(config: StackConfig, problems: Problems) -> None:
    if config.nodes and not config.ssh.use_agent and config.secrets.private_key is None:
        problems.add("ssh_private_key",
                     "no SSH credentials: set it with `pulumi config set --secret ssh_private_key < KEYFILE`, "
                     f"export {PRIVATE_KEY_ENV}, or run an ssh-agent (SSH_AUTH_SOCK) and keep ssh.agent true")


TOP_LEVEL_KEYS = ("nodes", "ssh", "prepare", "store", "kubeconfig", "etcd", *SECRET_KEYS)


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
    config = StackConfig(
        nodes=nodes,
        ssh=ssh,
        prepare=_parse_prepare(raw.get("prepare"), problems),
        secrets=_parse_secrets(raw, secret_keys or set(), env, problems),
        store=_parse_store(raw, secret_keys or set(), problems),
        etcd=parse_etcd_config(raw.get("etcd"), nodes, problems),
    )
    if "ssh_private_key" not in raw:  # a present but plain key was reported above
        _check_credentials(config, problems)
    problems.raise_if_any()
    return config
