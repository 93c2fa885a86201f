"""Kubernetes (k3s) on SSH hosts: servers on control-plane nodes, agents on worker nodes, over the project's
etcd cluster, with embedded flannel. Changes roll one node at a time behind readiness checks.

Resources (for a cluster `kubernetes`, servers a and b, agent c):

    kubernetes-token, kubernetes-agent-token     random: the server token and the agent-only join token
    kubernetes-server-ca, kubernetes-client-ca   tls (kubernetes.ca: cookbook, the default): k3s's server and
                                                 client CAs (protected), placed on each server before k3s's first
                                                 start, where k3s uses them instead of making its own
    kubernetes-admin-*                           tls: the admin client certificate (O=system:masters) of the
                                                 kubeconfig output, renewed early by a later `up`
    kubernetes-upload-dir-a, kubernetes-binary-a, kubernetes-images-a
                                                 (airgap) the recipe's upload directory, then CopyToRemote of the
                                                 node architecture's k3s assets into it
    kubernetes-server-a                          remote command on a: checks, install, files (key material on
                                                 stdin), unit, start or rolling restart (drain on upgrade), role
                                                 labels and taint; its `delete` drains the node and removes k3s
    kubernetes-server-b                          the same on b, after a (one node at a time)
    kubernetes-admin                             (kubernetes.ca: k3s only) remote command on a: prints k3s's admin
                                                 kubeconfig
    kubernetes-agent-c                           remote command on c, after the last server
    kubernetes-ready                             remote command on a, after the last node step (re-run whenever
                                                 a node step runs): every configured node is Ready

The first node step waits for every Kubernetes node's Host (its reboot included), so reboots finish before
k3s rolls. A node's step decides from the host's state (a stamp of the k3s version and configuration it last
started with) whether to restart, so any step is correct to run again. Outputs resolve after `kubernetes-ready`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import pulumi
import pulumi_command as command
import pulumi_random as random

from components.kubernetes.render import (
    CA_FILES,
    CA_MODES,
    INSTALL_MODES,
    INSTALL_SCRIPT_SHA256,
    K3S_VERSION,
    SERVER_SECRET_FILES,
    AirgapArtifacts,
    ApiAddress,
    ClusterSettings,
    InstallPlan,
    NodePlan,
    Timeouts,
    admin_kubeconfig,
    agent_config,
    bin_dir_for,
    parse_marker,
    printed_kubeconfig,
    render_admin_script,
    render_delete_script,
    render_node_script,
    render_ready_script,
    render_upload_dir_script,
    rewrite_kubeconfig,
    secret_bundle,
    server_config,
    upload_paths,
)
from components.nodes.host import Host
from components.shared import pki

# Commands that carry key material on stdin: never log their output, keep it secret in the state.
SECRET_OUTPUTS = ["stdout", "stderr"]
TOKEN_LENGTH = 48
# The admin client certificate: a year, as k3s's own, re-issued by the first `up` in its last 90 days.
ADMIN_VALIDITY = pki.Validity(hours=365 * 24, early_renewal_hours=90 * 24)
ADMIN_USER = "cookbook-admin"


@dataclass(frozen=True)
class KubernetesNode:
    """A prepared host and its Kubernetes roles (`control-plane`, `worker`, or both)."""

    host: Host
    roles: tuple[str, ...]


@dataclass(frozen=True)
class Datastore:
    """The etcd cluster k3s servers keep their state in: client URLs, CA, and a client certificate and key."""

    endpoints: pulumi.Input[Sequence[str]]
    ca_cert_pem: pulumi.Input[str]
    client_cert_pem: pulumi.Input[str]
    client_key_pem: pulumi.Input[str]


@dataclass(frozen=True)
class KubernetesClusterArgs:
    """One k3s cluster. `nodes` in a stable order: servers restart in it, then agents."""

    nodes: Sequence[KubernetesNode] = ()
    datastore: Datastore | None = None
    version: str = K3S_VERSION
    install: str = "online"
    airgap: Mapping[str, AirgapArtifacts] = field(default_factory=dict)
    install_script_sha256: str = INSTALL_SCRIPT_SHA256[K3S_VERSION]
    settings: ClusterSettings = field(default_factory=ClusterSettings)
    api_name: str | None = None
    api_port: int = 6443
    context: str = "cluster-cookbook"  # the kubeconfig's cluster, user and context name (the stack's name)
    ready_timeout: int = 300
    drain_timeout: int = 300
    ca: str = "cookbook"  # cookbook: the stack's CAs and admin certificate; k3s: k3s's own (clusters made before)
    admin_validity: pki.Validity = ADMIN_VALIDITY


def validate(args: KubernetesClusterArgs) -> list[str]:
    """Problems with `args`, each naming its field."""
    problems: list[str] = []
    names = [node.host.hostname for node in args.nodes]
    if not any("control-plane" in node.roles for node in args.nodes):
        problems.append("nodes: no node has role control-plane; k3s needs at least one server")
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        problems.append(f"nodes: duplicate node names {', '.join(duplicates)}")
    for node in args.nodes:
        if not node.roles or set(node.roles) - {"control-plane", "worker"}:
            problems.append(f"nodes: {node.host.hostname} needs roles among control-plane, worker, got {node.roles}")
    if args.datastore is None:
        problems.append("datastore: k3s servers need the etcd datastore")
    if args.install not in INSTALL_MODES:
        problems.append(f"install: must be one of {', '.join(INSTALL_MODES)}, got {args.install!r}")
    if args.ca not in CA_MODES:
        problems.append(f"ca: must be one of {', '.join(CA_MODES)}, got {args.ca!r}")
    if args.install == "airgap" and not args.airgap:
        problems.append("airgap: the airgap install mode needs a binary and images per architecture")
    return problems


def check_facts(node: str, facts: Mapping[str, Any], args: KubernetesClusterArgs) -> None:
    """Refuses a node k3s cannot run on, naming it and the fix, before anything runs there."""
    if not facts.get("memory_cgroup", False):
        raise ValueError(
            f"kubernetes: node {node}: the memory cgroup is off, and k3s cannot start without it. Fix: add "
            "'cgroup_memory=1 cgroup_enable=memory' to its kernel command line (nodes of kind pi get it from the "
            "node recipe, which reboots them) and run again")
    if args.settings.flannel_backend == "wireguard-native" and not facts.get("wireguard", False):
        raise ValueError(
            f"kubernetes: node {node}: kubernetes.flannel.backend is wireguard-native but its kernel "
            f"({facts.get('kernel', 'unknown')}) has no WireGuard. Fix: install the WireGuard module or use vxlan")
    architecture = str(facts.get("architecture"))
    if args.install == "airgap" and architecture not in args.airgap:
        raise ValueError(
            f"kubernetes.airgap: no binary and images for architecture {architecture!r} of node {node}; "
            f"give kubernetes.airgap.{architecture}.binary and .images")


def _marker(step: command.remote.Command, marker: str) -> pulumi.Output[str]:
    """A digest line a node step printed. Its stdout is secret as a whole (the step handles keys); a digest
    reveals nothing, and keeping it plain keeps the command that includes it readable in previews."""
    return pulumi.Output.unsecret(step.stdout.apply(lambda out: parse_marker(out, marker)))


def _digest(*parts: str) -> str:
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:16]


def _secret_digest(bundle: pulumi.Output[str]) -> pulumi.Output[str]:
    """A digest of a secret stdin bundle: it reveals nothing, so it stays plain in the gate's command."""
    return pulumi.Output.unsecret(bundle.apply(_digest))


def _after(gate: pulumi.Output[Any], value: pulumi.Input[Any]) -> pulumi.Output[Any]:
    return pulumi.Output.all(gate, value).apply(lambda both: both[1])


class KubernetesCluster(pulumi.ComponentResource):
    """A k3s cluster on SSH hosts. Outputs resolve only once every configured node is Ready."""

    TYPE: ClassVar[str] = "cookbook:kubernetes:Cluster"
    kubeconfig: pulumi.Output[str]
    api_endpoint: pulumi.Output[str]
    node_names: pulumi.Output[list[str]]
    servers: pulumi.Output[list[str]]
    agents: pulumi.Output[list[str]]
    ready: pulumi.Output[str]
    admin_expires: pulumi.Output[str]

    def __init__(self, name: str, args: KubernetesClusterArgs, opts: pulumi.ResourceOptions | None = None):
        problems = validate(args)
        if problems:
            raise ValueError(f"KubernetesCluster {name!r}: " + "; ".join(problems))
        super().__init__(self.TYPE, name, None, opts)
        assert args.datastore is not None  # validate() refused it
        servers = [node for node in args.nodes if "control-plane" in node.roles]
        agents = [node for node in args.nodes if "control-plane" not in node.roles]
        first = servers[0].host
        # The first server's address is an Output on a cloud node (its VM's): renderers get it resolved.
        api: pulumi.Output[ApiAddress] = pulumi.Output.all(first.address).apply(
            lambda known: ApiAddress(first_server=known[0], port=args.api_port, name=args.api_name))
        api_url = api.apply(lambda at: at.url)
        child = pulumi.ResourceOptions(parent=self)
        token = pulumi.Output.secret(
            random.RandomPassword(f"{name}-token", length=TOKEN_LENGTH, special=False, opts=child).result)
        agent_token = pulumi.Output.secret(
            random.RandomPassword(f"{name}-agent-token", length=TOKEN_LENGTH, special=False, opts=child).result)
        datastore = args.datastore
        ca_files: list[pulumi.Output[str]] = []
        admin_kubeconfig: pulumi.Output[str] | None = None
        self.admin_expires = pulumi.Output.from_input("")
        if args.ca == "cookbook":
            server_ca = pki.certificate_authority(f"{name}-server-ca", f"{name} k3s server CA", self)
            client_ca = pki.certificate_authority(f"{name}-client-ca", f"{name} k3s client CA", self)
            admin = pki.issue_certificate(f"{name}-admin", client_ca, ADMIN_USER, organization="system:masters",
                                          uses=pki.CLIENT_USES, validity=args.admin_validity, parent=self)
            ca_files = [server_ca.cert_pem, server_ca.key_pem, client_ca.cert_pem, client_ca.key_pem]
            admin_kubeconfig = pulumi.Output.secret(pulumi.Output.all(
                api_url, server_ca.cert_pem, admin.cert_pem, admin.key_pem).apply(
                # (Test mocks that answer no PEM give None: it renders empty.)
                lambda values: admin_kubeconfig_text(args.context, values[0], values[1:])))
            self.admin_expires = admin.expires
        server_names = (*SERVER_SECRET_FILES, *(CA_FILES if ca_files else ()))
        server_bundle: pulumi.Output[str] = pulumi.Output.all(
            token, agent_token, datastore.ca_cert_pem, datastore.client_cert_pem, datastore.client_key_pem,
            *ca_files,
        ).apply(lambda values: secret_bundle(dict(zip(server_names, values, strict=True))))
        server_secrets: pulumi.Output[str] = pulumi.Output.secret(server_bundle)

        steps: list[command.remote.Command] = []
        creates: list[pulumi.Output[str]] = []  # each node step's command, in step order
        previous: command.remote.Command | None = None
        endpoints = pulumi.Output.from_input(datastore.endpoints)
        for node in servers:
            # The first step waits for every Kubernetes node's Host, reboot and await-boot included: the Pis'
            # reboots (one at a time, behind their gates) finish before any k3s node step rolls, so no k3s
            # restart overlaps another node's reboot. Every later step comes after it (the chain).
            hosts = [other.host for other in args.nodes] if previous is None else []
            previous, create = self._node_step(name, args, node, api, server_secrets, previous, endpoints, hosts,
                                               print_digest=args.ca == "k3s" and node is servers[0])
            steps.append(previous)
            creates.append(create)

        after_admin: list[pulumi.Resource] = []
        if admin_kubeconfig is None:  # kubernetes.ca: k3s: the admin kubeconfig k3s wrote, read back
            first_step = steps[0]
            admin = command.remote.Command(
                f"{name}-admin",
                connection=first.connection.args(),
                # Re-read whenever the first server's step saw a different admin kubeconfig (k3s renews it).
                create=pulumi.Output.all(first.facts, _marker(first_step, "kubeconfig-sha256")).apply(
                    lambda both: first.connection.command_line(
                        render_admin_script(bin_dir_for(both[0]), args.ready_timeout)
                        + f"# admin kubeconfig {both[1]}\n")),
                logging=command.remote.Logging.NONE,
                opts=pulumi.ResourceOptions(parent=self, additional_secret_outputs=SECRET_OUTPUTS,
                                            # k3s writes the admin kubeconfig when the first server starts.
                                            depends_on=[first_step]),
            )
            admin_kubeconfig = pulumi.Output.secret(pulumi.Output.all(admin.stdout, api_url).apply(
                lambda values: rewrite_kubeconfig(printed_kubeconfig(values[0]), values[1], args.context)))
            after_admin = [admin]

        agent_bundle: pulumi.Output[str] = pulumi.Output.all(agent_token, admin_kubeconfig).apply(
            lambda values: secret_bundle({"agent-token": values[0], "admin.kubeconfig": values[1]}))
        agent_secrets: pulumi.Output[str] = pulumi.Output.secret(agent_bundle)
        for node in agents:
            previous, create = self._node_step(name, args, node, api, agent_secrets, previous, None,
                                               extra=after_admin)
            steps.append(previous)
            creates.append(create)

        names = [node.host.hostname for node in args.nodes]
        stepped = [(node.host.hostname, 0 if node in servers else 1) for node in (*servers, *agents)]

        def ready_command(values: list[Any]) -> str:
            facts, bundles, commands = values[0], values[1:3], values[3:]
            # A digest of what each node step receives (its command, its stdin's digest): nothing secret.
            lines = "".join(f"# {node} {_digest(step_command, bundles[role])}\n"
                            for (node, role), step_command in zip(stepped, commands, strict=True))
            return first.connection.command_line(
                render_ready_script(bin_dir_for(facts), names, args.ready_timeout) + lines)

        gate = command.remote.Command(
            f"{name}-ready",
            connection=first.connection.args(),
            # Re-runs whenever a node step runs (a digest of each step's inputs is in its command), so the outputs
            # of every run that touched a node come after the whole cluster was Ready again.
            create=pulumi.Output.all(first.facts, _secret_digest(server_secrets), _secret_digest(agent_secrets),
                                     *creates).apply(ready_command),
            opts=pulumi.ResourceOptions(parent=self,
                                        # After every node step: the last one, which comes after all the others
                                        # (depending on each would cost the SDK's cycle check cubic time).
                                        depends_on=[steps[-1]]),
        )

        self.ready = gate.stdout
        self.kubeconfig = pulumi.Output.secret(_after(gate.stdout, admin_kubeconfig))
        self.api_endpoint = _after(gate.stdout, api_url)
        self.node_names = _after(gate.stdout, names)
        self.servers = _after(gate.stdout, [node.host.hostname for node in servers])
        self.agents = _after(gate.stdout, [node.host.hostname for node in agents])
        self.register_outputs({
            "kubeconfig": self.kubeconfig,
            "api_endpoint": self.api_endpoint,
            "node_names": self.node_names,
            "servers": self.servers,
            "agents": self.agents,
            "ready": self.ready,
            "admin_expires": self.admin_expires,
        })

    def _node_step(self, name: str, args: KubernetesClusterArgs, node: KubernetesNode, api: pulumi.Output[ApiAddress],
                   secrets: pulumi.Output[str], previous: command.remote.Command | None,
                   endpoints: pulumi.Output[Sequence[str]] | None, hosts: Sequence[Host] = (),
                   extra: Sequence[pulumi.Resource] = (),
                   print_digest: bool = False) -> tuple[command.remote.Command, pulumi.Output[str]]:
        """The node's k3s step, and its command (the readiness gate's command carries a digest of it)."""
        host = node.host
        plan = NodePlan(host.hostname, "", node.roles)  # its role and the delete script need no address
        timeouts = Timeouts(args.ready_timeout, args.drain_timeout)
        # Prepared first (packages, cgroup flags, reboot), and its facts pick the binary and its directory.
        depends: list[pulumi.Resource] = [host.ready, *hosts, *extra]
        if args.install == "airgap":
            depends += self._upload_airgap(name, args, host)
        if previous is not None:
            # One node at a time: a restart or upgrade waits until the previous node is Ready again.
            depends.append(previous)

        def script(values: list[Any]) -> str:
            facts, datastore_endpoints, address, api = values
            plan = NodePlan(host.hostname, address, node.roles)  # node-ip, tls-san: the resolved address
            check_facts(host.hostname, facts, args)
            architecture = str(facts["architecture"])
            install = InstallPlan(mode=args.install, version=args.version, bin_dir=bin_dir_for(facts),
                                  architecture=architecture, airgap=args.airgap.get(architecture),
                                  install_script_sha256=args.install_script_sha256)
            if plan.role == "server":
                config = server_config(plan, args.settings, api, list(datastore_endpoints))
            else:
                config = agent_config(plan, args.settings, api)
            rendered = render_node_script(plan, install, config, timeouts,
                                          wireguard=args.settings.flannel_backend == "wireguard-native",
                                          ca=args.ca, print_kubeconfig_digest=print_digest)
            return host.connection.command_line(rendered)

        create = pulumi.Output.all(host.facts, endpoints if endpoints is not None else [], host.address,
                                   api).apply(script)
        step = command.remote.Command(
            f"{name}-{plan.role}-{host.hostname}",
            connection=host.connection.args(),
            create=create,
            # Runs with the step's last inputs (stdin included) when the node leaves the stack.
            delete=host.connection.command_line(render_delete_script(plan, timeouts, args.ca)),
            stdin=secrets,
            logging=command.remote.Logging.NONE,
            opts=pulumi.ResourceOptions(parent=self,
                                        # Its host first; the first step every Kubernetes host; the previous
                                        # node step (one node at a time); the airgap uploads.
                                        depends_on=depends, additional_secret_outputs=SECRET_OUTPUTS),
        )
        return step, create

    def _upload_airgap(self, name: str, args: KubernetesClusterArgs, host: Host) -> list[pulumi.Resource]:
        upload_dir = command.remote.Command(
            f"{name}-upload-dir-{host.hostname}",
            connection=host.connection.args(),
            create=host.connection.command_line(render_upload_dir_script(host.connection.user)),
            # After the host's preparation.
            opts=pulumi.ResourceOptions(parent=self, depends_on=[host]),
        )

        def artifact(kind: str) -> Any:
            def source(facts: Mapping[str, Any]) -> pulumi.FileAsset:
                check_facts(host.hostname, facts, args)
                assets = args.airgap[str(facts["architecture"])]
                return pulumi.FileAsset((assets.binary if kind == "binary" else assets.images).path)
            return source

        def remote_path(index: int) -> Any:
            def path(facts: Mapping[str, Any]) -> str:
                check_facts(host.hostname, facts, args)
                architecture = str(facts["architecture"])
                return upload_paths(args.airgap[architecture], architecture)[index]
            return path

        uploads: list[pulumi.Resource] = []
        for kind, index in (("binary", 0), ("images", 1)):
            uploads.append(command.remote.CopyToRemote(
                f"{name}-{kind}-{host.hostname}",
                connection=host.connection.args(),
                source=host.facts.apply(artifact(kind)),
                remote_path=host.facts.apply(remote_path(index)),
                # Into the upload directory (after the host's preparation: its facts name the architecture).
                opts=pulumi.ResourceOptions(parent=self, depends_on=[upload_dir]),
            ))
        return uploads


def admin_kubeconfig_text(context: str, url: str, pems: Sequence[str | None]) -> str:
    return admin_kubeconfig(context, url, *(pem or "" for pem in pems))
