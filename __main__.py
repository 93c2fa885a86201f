"""cluster-cookbook: composes the stack's clusters from its config.

This is the only module that reads Pulumi config. It validates all of it into one typed model
(`components.stack_config`) before any resource is created, then builds the components.
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any

import pulumi

from components.etcd.cluster import EtcdCluster
from components.etcd.config import EtcdConfig
from components.nodes.host import Host, HostArgs, RaspberryPi, RaspberryPiArgs, SshConnection
from components.shared.kubernetes import KubernetesTarget, KubernetesTargetArgs
from components.shared.validation import ConfigError
from components.stack import NAMESPACE, NodeConfig, StackConfig, parse_stack_config
from components.store.cassandra import CassandraCluster
from components.store.config import StoreConfig
from components.store.pithos import ObjectStore


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
    args = HostArgs(
        connection=node_connection(config, node),
        hostname=node.name,
        packages=config.prepare.packages,
        time_servers=config.prepare.time_servers,
        kubernetes_networking=config.prepare.kubernetes_networking,
    )
    if node.kind == "pi":
        return RaspberryPi(node.name, RaspberryPiArgs(**vars(args), reboot_timeout=config.ssh.reboot_timeout))
    return Host(node.name, args)


def build_etcd(etcd: EtcdConfig, hosts: dict[str, Host]) -> EtcdCluster:
    """The etcd cluster on the nodes with role etcd (those in etcd.removed have no Host)."""
    members = [hosts[name] for name in etcd.members]
    return EtcdCluster("etcd", dataclasses.replace(etcd.cluster, members=members))


def build_store(store: StoreConfig) -> ObjectStore:
    """Cassandra and Pithos on the cluster the kubeconfig reaches (or rendered to YAML files)."""
    target = KubernetesTarget("store-target", KubernetesTargetArgs(
        kubeconfig=None if store.kubeconfig is None else pulumi.Output.secret(store.kubeconfig),
        context=store.context, render_directory=store.render_directory))
    on_target = pulumi.ResourceOptions(providers=[target.provider])
    cassandra = CassandraCluster("cassandra", store.cassandra, opts=on_target)
    pithos_args = dataclasses.replace(store.pithos, cassandra_host=cassandra.service_host,
                                      cassandra_client_label=cassandra.client_label)
    # Pithos's schema job talks to Cassandra: the whole Cassandra component (StatefulSet, Service) first.
    return ObjectStore("pithos", pithos_args,
                       opts=pulumi.ResourceOptions(providers=[target.provider], depends_on=[cassandra]))


def main() -> None:
    raw, secret_keys = read_raw_config()
    try:
        config = parse_stack_config(raw, secret_keys, os.environ)
    except ConfigError as error:
        raise pulumi.RunError(str(error)) from None  # the message says it all; no traceback
    gone = set(config.etcd.removed) if config.etcd else set()  # removed etcd members: nothing runs on them
    hosts = {node.name: build_host(config, node) for node in config.nodes if node.name not in gone}
    pulumi.export("nodes", {
        name: {"address": host.address, "architecture": host.architecture, "os": host.os_release,
               "is_pi": host.is_pi, "memory_cgroup": host.memory_cgroup}
        for name, host in hosts.items()
    })
    if config.store is not None:
        store = build_store(config.store)
        pulumi.export("store", {
            "endpoint": store.endpoint, "region": store.region,
            "access_key": store.access_key, "secret_key": store.secret_key, "tenant_keys": store.tenant_keys,
            "s3cfg": store.s3cfg, "boto3": store.boto3,
        })
    if config.etcd is not None:
        etcd = build_etcd(config.etcd, hosts)
        pulumi.export("etcd", {
            "client_endpoints": etcd.client_endpoints, "ca_cert": etcd.ca_cert_pem,
            "client_cert": etcd.client_cert_pem, "client_key": etcd.client_key_pem,
            "apiserver_client_cert": etcd.apiserver_client_cert_pem,
            "apiserver_client_key": etcd.apiserver_client_key_pem, "etcdctl_env": etcd.etcdctl_env,
        })


main()
