"""cluster-cookbook: composes the stack's clusters from its config.

This is the only module that reads Pulumi config. It validates all of it into one typed model
(`components.stack_config`) before any resource is created, then builds the components.
"""

from __future__ import annotations

import json
import os
from typing import Any

import pulumi

from components.node import Host, HostArgs, RaspberryPi, RaspberryPiArgs, SshConnection
from components.stack_config import NAMESPACE, NodeConfig, StackConfig, parse_stack_config
from components.validation import ConfigError


def read_raw_config() -> tuple[dict[str, Any], set[str]]:
    """Every value of this project's namespace (JSON decoded where it is JSON) and which keys are secret."""
    prefix = f"{NAMESPACE}:"
    merged = {**pulumi.runtime.get_config_env(), **pulumi.runtime.config.CONFIG.get()}
    raw: dict[str, Any] = {}
    for full_key, text in sorted(merged.items()):
        if not full_key.startswith(prefix):
            continue
        try:
            raw[full_key[len(prefix):]] = json.loads(text)
        except (TypeError, ValueError):
            raw[full_key[len(prefix):]] = text
    secret = {key[len(prefix):] for key in merged if pulumi.runtime.is_config_secret(key)}
    return raw, secret


def node_connection(config: StackConfig, node: NodeConfig) -> SshConnection:
    secrets = config.secrets
    return SshConnection(
        host=node.address,
        port=node.port,
        user=node.user,
        private_key=pulumi.Output.secret(secrets.private_key) if secrets.private_key else None,
        private_key_passphrase=(pulumi.Output.secret(secrets.private_key_passphrase)
                                if secrets.private_key_passphrase else None),
        host_key=node.host_key,
        proxy=node.proxy,
        dial_error_limit=config.ssh.dial_error_limit,
        per_dial_timeout=config.ssh.per_dial_timeout,
    )


def build_host(config: StackConfig, node: NodeConfig) -> Host:
    common = {
        "connection": node_connection(config, node),
        "hostname": node.name,
        "packages": config.prepare.packages,
        "time_servers": config.prepare.time_servers,
        "kubernetes_networking": config.prepare.kubernetes_networking,
    }
    if node.kind == "pi":
        return RaspberryPi(node.name, RaspberryPiArgs(**common, reboot_timeout=config.ssh.reboot_timeout))
    return Host(node.name, HostArgs(**common))


def main() -> None:
    raw, secret_keys = read_raw_config()
    try:
        config = parse_stack_config(raw, secret_keys, os.environ)
    except ConfigError as error:
        raise pulumi.RunError(str(error)) from None  # the message says it all; no traceback
    hosts = {node.name: build_host(config, node) for node in config.nodes}
    pulumi.export("nodes", {
        name: {"address": host.address, "architecture": host.architecture, "os": host.os_release,
               "is_pi": host.is_pi, "memory_cgroup": host.memory_cgroup}
        for name, host in hosts.items()
    })


main()
