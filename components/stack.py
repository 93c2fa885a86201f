"""The typed model of one stack's configuration, built from raw config values and validated as a whole.

`__main__.py` is the only caller: it gathers the raw values (`pulumi.Config`), and `parse_stack_config`
turns them into frozen dataclasses or raises one `ConfigError` listing every problem with its key path.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from components.etcd.config import EtcdConfig, parse_etcd_config
from components.nodes.config import (
    NodeConfig,
    PrepareConfig,
    SshSettings,
    parse_nodes,
    parse_prepare,
    parse_ssh,
)
from components.shared.validation import Problems, describe_type, did_you_mean
from components.store.config import StoreConfig, parse_store_config

NAMESPACE = "cluster-cookbook"
# Keys whose values must come from secret config, with how to set them.
SECRET_KEYS = {
    "ssh_private_key": "< ~/.ssh/id_ed25519",
    "ssh_private_key_passphrase": "",
    "kubeconfig": "< ~/.kube/config",
}
PRIVATE_KEY_ENV = "COOKBOOK_SSH_PRIVATE_KEY"


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
    ssh = parse_ssh(raw.get("ssh"), problems, env)
    nodes = parse_nodes(raw.get("nodes"), ssh, problems)
    secrets = _secret_values(raw, secret_keys or set(), problems)
    config = StackConfig(
        nodes=nodes,
        ssh=ssh,
        prepare=parse_prepare(raw.get("prepare"), problems),
        secrets=SshSecrets(private_key=secrets["ssh_private_key"] or env.get(PRIVATE_KEY_ENV),
                           private_key_passphrase=secrets["ssh_private_key_passphrase"]),
        store=parse_store_config(raw.get("store"), secrets["kubeconfig"], "kubeconfig" in raw, problems),
        etcd=parse_etcd_config(raw.get("etcd"), nodes, problems),
    )
    if "ssh_private_key" not in raw:  # a present but plain key was reported above
        _check_credentials(config, problems)
    problems.raise_if_any()
    return config
