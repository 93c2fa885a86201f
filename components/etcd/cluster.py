"""An etcd cluster over SSH hosts: mutual TLS, a systemd unit per member, a health-gated bootstrap,
growth and member replacement through etcd's runtime reconfiguration, and periodic snapshots.

Resources (for a cluster `etcd` and members a, b, c, later d):

    etcd-ca-key, etcd-ca                      tls: the cluster CA
    etcd-member-a-key/-csr/-cert ...          tls: one server+peer certificate per member (its names and IPs)
    etcd-operator-*, etcd-apiserver-*         tls: client certificates for operators and kube-apiserver
    etcd-member-a                             remote command on a: install, certs (stdin), env file, units,
                                              start (bootstrap members only)
    etcd-remove-x                             remote command on a healthy member: `member remove x`
    etcd-join-d                               remote command on d: learner add, start, promote
    etcd-health                               remote command on a member: waits for a healthy cluster

Stability rule: a member's command inputs depend only on that member and on the bootstrap record
(`bootstrap` names + addresses), never on the current member list. So adding members leaves every
existing member's resources untouched: a changed `--initial-cluster` would restart them all.
"""

from __future__ import annotations

import ipaddress
import string
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import pulumi
import pulumi_command as command

from components.nodes.host import Host
from components.shared import pki
from components.shared.scripts import remote_invocation, render_script, template

INSTALL_MODES = ("package", "tarball", "preinstalled")
MAX_MEMBERS = 7
SERVICE = "cookbook-etcd"
SNAPSHOT_UNIT = "cookbook-etcd-snapshot"
CONFIG_DIR = "/etc/cookbook-etcd"
PKI_DIR = f"{CONFIG_DIR}/pki"
DATA_ROOT = "/var/lib/cookbook-etcd"
PACKAGE_BINARIES = ("/usr/bin/etcd", "/usr/bin/etcdctl")
TARBALL_BINARIES = ("/usr/local/bin/etcd", "/usr/local/bin/etcdctl")
# etcd refuses to start on architectures its maintainers do not support unless told so.
UNSUPPORTED_ARCH = {"armhf": "arm", "armel": "arm", "arm": "arm", "i386": "386", "386": "386"}
# Commands that carry private keys on stdin: never log their output, keep it secret in the state.
SECRET_OUTPUTS = ["stdout", "stderr"]


@dataclass(frozen=True)
class Tarball:
    """An etcd release tarball on the machine running Pulumi (e.g. etcd-v3.4.23-linux-arm64.tar.gz)."""

    path: str
    sha256: str


@dataclass(frozen=True)
class EtcdClusterArgs:
    """One etcd cluster. `members` are the current members, in a stable order.

    `bootstrap` names the members that formed the cluster (default: all of `members`); it must never change
    after the first deployment. Members not in it join a running cluster, one at a time, in `members` order.
    `removed` maps members that are gone (dead or retired) to their addresses: each is removed from the
    cluster through a healthy member, and a removed bootstrap member's address stays part of the record.
    """

    members: Sequence[Host]
    bootstrap: Sequence[str] = ()
    removed: Mapping[str, str] = field(default_factory=dict)
    version: str = "3.4.23"
    install: str = "package"
    tarballs: Mapping[str, Tarball] = field(default_factory=dict)
    preinstalled_binaries: tuple[str, str] = PACKAGE_BINARIES
    client_port: int = 2379
    peer_port: int = 2380
    cluster_token: str = "cluster-cookbook"
    snapshot_schedule: str = "hourly"
    snapshot_retention: int = 24
    snapshot_dir: str = "/var/backups/cookbook-etcd"
    health_timeout: int = 300


def validate(args: EtcdClusterArgs) -> list[str]:
    """Problems with `args`, each naming its field; warnings go to `pulumi.log` separately."""
    problems: list[str] = []
    names = [host.hostname for host in args.members]
    size = len(names)
    if size == 0 or size % 2 == 0 or size > MAX_MEMBERS:
        problems.append(f"members: {size} members; etcd needs an odd number between 1 and {MAX_MEMBERS}")
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        problems.append(f"members: duplicate member names {', '.join(duplicates)}")
    reused = sorted(set(names) & set(args.removed))
    if reused:
        problems.append(f"removed: {', '.join(reused)} cannot be both removed and a member "
                        "(a replacement needs a new name: a removed member's identity is never reused)")
    known = set(names) | set(args.removed)
    for index, name in enumerate(args.bootstrap):
        if name not in known:
            problems.append(f"bootstrap[{index}]: {name!r} is neither a member nor in removed")
    if args.bootstrap and not (1 <= len(set(args.bootstrap)) <= MAX_MEMBERS):
        problems.append(f"bootstrap: {len(args.bootstrap)} names; a cluster starts with 1 to {MAX_MEMBERS}")
    if args.install not in INSTALL_MODES:
        problems.append(f"install: must be one of {', '.join(INSTALL_MODES)}, got {args.install!r}")
    if args.install == "tarball" and not args.tarballs:
        problems.append("tarballs: the tarball install mode needs a tarball per architecture")
    if args.snapshot_retention < 1:
        problems.append(f"snapshot_retention: must be at least 1, got {args.snapshot_retention}")
    if args.client_port == args.peer_port:
        problems.append("peer_port: must differ from client_port")
    return problems


# --- pure renderers ---------------------------------------------------------------------------------
def _url(address: str, port: int) -> str:
    try:
        if ipaddress.ip_address(address).version == 6:
            return f"https://[{address}]:{port}"
    except ValueError:
        pass
    return f"https://{address}:{port}"


def _listen_host(address: str) -> str:
    """etcd binds listen URLs to IPs only: a member known by DNS name listens on all addresses."""
    try:
        ipaddress.ip_address(address)
        return address
    except ValueError:
        return "0.0.0.0"


def _fill(relative_path: str, **values: str) -> str:
    return string.Template(template(relative_path)).substitute(values).rstrip("\n")


def binaries(args: EtcdClusterArgs) -> tuple[str, str]:
    if args.install == "tarball":
        return TARBALL_BINARIES
    if args.install == "preinstalled":
        return args.preinstalled_binaries
    return PACKAGE_BINARIES


def data_dir(member: str) -> str:
    return f"{DATA_ROOT}/{member}"


def render_env_file(args: EtcdClusterArgs, member: str, address: str, architecture: str) -> str:
    listen = _listen_host(address)
    text = _fill(
        "etcd/etcd.env", member=member, data_dir=data_dir(member),
        listen_peer_urls=_url(listen, args.peer_port), peer_url=_url(address, args.peer_port),
        listen_client_urls=f"{_url(listen, args.client_port)},{_url('127.0.0.1', args.client_port)}",
        client_url=_url(address, args.client_port), cluster_token=args.cluster_token, pki_dir=PKI_DIR,
    )
    if architecture in UNSUPPORTED_ARCH:
        text += f"\nETCD_UNSUPPORTED_ARCH={UNSUPPORTED_ARCH[architecture]}"
    return text


def render_bootstrap_membership(args: EtcdClusterArgs, addresses: Mapping[str, str]) -> str:
    """The membership file of a bootstrap member: only ever read when etcd creates its data dir."""
    initial = ",".join(f"{name}={_url(addresses[name], args.peer_port)}" for name in bootstrap_names(args))
    return f"ETCD_INITIAL_CLUSTER={initial}\nETCD_INITIAL_CLUSTER_STATE=new"


def render_unit(args: EtcdClusterArgs, member: str) -> str:
    return _fill("etcd/etcd.service", member=member, config_dir=CONFIG_DIR, etcd_bin=binaries(args)[0])


def render_snapshot_units(args: EtcdClusterArgs, member: str) -> tuple[str, str]:
    return (_fill("etcd/snapshot.service", member=member, service=SERVICE),
            _fill("etcd/snapshot.timer", member=member, schedule=args.snapshot_schedule))


def _common_params(args: EtcdClusterArgs) -> dict[str, Any]:
    return {"PKI_DIR": PKI_DIR, "ETCDCTL_BIN": binaries(args)[1], "SNAPSHOT_DIR": args.snapshot_dir}


def render_snapshot_script(args: EtcdClusterArgs, member: str) -> str:
    return render_script(
        ["shared/common.sh", "etcd/common.sh", "etcd/snapshot.sh"],
        {**_common_params(args), "MEMBER_NAME": member,
         "LOCAL_CLIENT_URL": _url("127.0.0.1", args.client_port),
         "SNAPSHOT_RETENTION": args.snapshot_retention},
    )


def render_configure_script(args: EtcdClusterArgs, member: str, address: str, architecture: str,
                            bootstrap_membership: str) -> str:
    etcd_bin = binaries(args)[0]
    tarball = args.tarballs.get(architecture) if args.install == "tarball" else None
    snapshot_service, snapshot_timer = render_snapshot_units(args, member)
    return render_script(
        ["shared/common.sh", "shared/files.sh", "etcd/common.sh", "etcd/install.sh", "etcd/configure.sh"],
        {
            **_common_params(args),
            "INSTALL_MODE": args.install,
            "ETCD_VERSION": args.version,
            "ETCD_BIN": etcd_bin,
            "TARBALL_PATH": tarball_remote_path(args, architecture) if tarball else "",
            "TARBALL_SHA256": tarball.sha256 if tarball else "",
            "MEMBER_NAME": member,
            "CONFIG_DIR": CONFIG_DIR,
            "DATA_ROOT": DATA_ROOT,
            "SERVICE": SERVICE,
            "SNAPSHOT_UNIT": SNAPSHOT_UNIT,
            "ENV_CONTENT": render_env_file(args, member, address, architecture),
            "MEMBERSHIP_CONTENT": bootstrap_membership,
            "UNIT_CONTENT": render_unit(args, member),
            "SNAPSHOT_SCRIPT": render_snapshot_script(args, member),
            "SNAPSHOT_SERVICE_CONTENT": snapshot_service,
            "SNAPSHOT_TIMER_CONTENT": snapshot_timer,
            "LOCAL_CLIENT_URL": _url("127.0.0.1", args.client_port),
            "HEALTH_TIMEOUT": args.health_timeout,
        },
    )


def render_join_script(args: EtcdClusterArgs, member: str, address: str, seeds: Sequence[str]) -> str:
    return render_script(
        ["shared/common.sh", "shared/files.sh", "etcd/common.sh", "etcd/join.sh"],
        {
            **_common_params(args),
            "MEMBER_NAME": member,
            "PEER_URL": _url(address, args.peer_port),
            "SEED_ENDPOINTS": ",".join(_url(seed, args.client_port) for seed in seeds),
            "CONFIG_DIR": CONFIG_DIR,
            "DATA_DIR": data_dir(member),
            "SERVICE": SERVICE,
            "LOCAL_CLIENT_URL": _url("127.0.0.1", args.client_port),
            "TIMEOUT": args.health_timeout,
        },
    )


def render_remove_script(args: EtcdClusterArgs, target: str) -> str:
    return render_script(
        ["shared/common.sh", "etcd/common.sh", "etcd/remove.sh"],
        {
            **_common_params(args),
            "TARGET_NAME": target,
            "LOCAL_CLIENT_URL": _url("127.0.0.1", args.client_port),
        },
    )


def render_health_script(args: EtcdClusterArgs, members: Mapping[str, str]) -> str:
    return render_script(
        ["shared/common.sh", "etcd/common.sh", "etcd/health.sh"],
        {
            **_common_params(args),
            "ENDPOINTS": ",".join(_url(address, args.client_port) for address in members.values()),
            "EXPECTED_MEMBERS": tuple(members),
            "TIMEOUT": args.health_timeout,
        },
    )


def render_etcdctl_env(args: EtcdClusterArgs, addresses: Sequence[str]) -> str:
    endpoints = ",".join(_url(address, args.client_port) for address in addresses)
    return (
        "# Source after saving the ca, client cert and client key outputs into $ETCD_PKI_DIR (default: .)\n"
        "export ETCDCTL_API=3\n"
        f"export ETCDCTL_ENDPOINTS={endpoints}\n"
        'export ETCDCTL_CACERT="${ETCD_PKI_DIR:-.}/etcd-ca.crt"\n'
        'export ETCDCTL_CERT="${ETCD_PKI_DIR:-.}/etcd-client.crt"\n'
        'export ETCDCTL_KEY="${ETCD_PKI_DIR:-.}/etcd-client.key"\n'
    )


def tarball_remote_path(args: EtcdClusterArgs, architecture: str) -> str:
    return f"/var/tmp/cookbook-etcd-v{args.version}-linux-{architecture}.tar.gz"


def bootstrap_names(args: EtcdClusterArgs) -> list[str]:
    return list(args.bootstrap) if args.bootstrap else [host.hostname for host in args.members]


def member_alternative_names(host: Host) -> list[str]:
    return sorted({host.hostname, host.address, "localhost", "127.0.0.1", "::1"})


def _pem_bundle(*pems: pulumi.Input[str]) -> pulumi.Output[str]:
    return pulumi.Output.secret(pulumi.Output.all(*pems).apply(
        lambda texts: "".join((text or "").rstrip("\n") + "\n" for text in texts)))


class EtcdCluster(pulumi.ComponentResource):
    """An etcd cluster over SSH hosts. Outputs resolve only after the cluster reported healthy."""

    TYPE: ClassVar[str] = "cookbook:etcd:Cluster"
    client_endpoints: pulumi.Output[list[str]]
    ca_cert_pem: pulumi.Output[str]
    client_cert_pem: pulumi.Output[str]
    client_key_pem: pulumi.Output[str]
    apiserver_client_cert_pem: pulumi.Output[str]
    apiserver_client_key_pem: pulumi.Output[str]
    etcdctl_env: pulumi.Output[str]
    health: pulumi.Output[str]

    def __init__(self, name: str, args: EtcdClusterArgs, opts: pulumi.ResourceOptions | None = None):
        problems = validate(args)
        if problems:
            raise ValueError(f"EtcdCluster {name!r}: " + "; ".join(problems))
        super().__init__(self.TYPE, name, None, opts)
        if len(args.members) == 1:
            pulumi.log.warn(f"etcd cluster {name!r} has a single member: it tolerates no failure", self)

        hosts = {host.hostname: host for host in args.members}
        addresses = {**dict(args.removed), **{host.hostname: host.address for host in args.members}}
        bootstrap = bootstrap_names(args)
        joiners = [host for host in args.members if host.hostname not in bootstrap]
        ordered = [hosts[name] for name in bootstrap if name in hosts] + joiners

        ca = pki.certificate_authority(f"{name}-ca", f"{name} etcd CA", self)
        operator = pki.issue_certificate(f"{name}-operator", ca, "etcd-operator", uses=pki.CLIENT_USES,
                                         parent=self)
        apiserver = pki.issue_certificate(f"{name}-apiserver", ca, "kube-apiserver-etcd-client",
                                          uses=pki.CLIENT_USES, parent=self)
        membership = render_bootstrap_membership(args, addresses)

        member_commands: dict[str, command.remote.Command] = {}
        previous: command.remote.Command | None = None
        for host in ordered:
            member_commands[host.hostname] = previous = self._member(
                name, args, host, ca, membership if host.hostname in bootstrap else "", previous)

        anchor = ordered[0]
        changes: list[command.remote.Command] = []

        def membership_change(resource_name: str, on: Host, script: str) -> None:
            changes.append(command.remote.Command(
                resource_name,
                connection=on.connection.args(),
                create=remote_invocation(script, on.connection.become),
                opts=pulumi.ResourceOptions(
                    parent=self,
                    # One membership change at a time, after every member step: removals first (a dead
                    # member is removed before its replacement joins), then joins in order.
                    depends_on=[*member_commands.values(), *changes]),
            ))

        for target in sorted(args.removed):  # through the anchor's etcdctl and certificate
            membership_change(f"{name}-remove-{target}", anchor, render_remove_script(args, target))
        seeds = [addresses[name] for name in bootstrap]
        for host in joiners:
            membership_change(f"{name}-join-{host.hostname}", host,
                              render_join_script(args, host.hostname, host.address, seeds))

        current = {host.hostname: host.address for host in ordered}
        health = command.remote.Command(
            f"{name}-health",
            connection=anchor.connection.args(),
            create=remote_invocation(render_health_script(args, current), anchor.connection.become),
            opts=pulumi.ResourceOptions(
                parent=self,
                # The gate checks the cluster every member step and membership change produced.
                depends_on=[*member_commands.values(), *changes]),
        )

        def after_health(value: pulumi.Input[Any]) -> pulumi.Output[Any]:
            return pulumi.Output.all(health.stdout, value).apply(lambda both: both[1])

        self.health = health.stdout
        self.client_endpoints = after_health([_url(address, args.client_port) for address in current.values()])
        self.ca_cert_pem = after_health(ca.cert_pem)
        # Client credentials are secrets as a pair (a certificate alone grants nothing, but it names a client).
        self.client_cert_pem = pulumi.Output.secret(after_health(operator.cert_pem))
        self.client_key_pem = pulumi.Output.secret(after_health(operator.key_pem))
        self.apiserver_client_cert_pem = pulumi.Output.secret(after_health(apiserver.cert_pem))
        self.apiserver_client_key_pem = pulumi.Output.secret(after_health(apiserver.key_pem))
        self.etcdctl_env = after_health(render_etcdctl_env(args, list(current.values())))
        self.register_outputs({
            "client_endpoints": self.client_endpoints,
            "ca_cert_pem": self.ca_cert_pem,
            "client_cert_pem": self.client_cert_pem,
            "client_key_pem": self.client_key_pem,
            "apiserver_client_cert_pem": self.apiserver_client_cert_pem,
            "apiserver_client_key_pem": self.apiserver_client_key_pem,
            "etcdctl_env": self.etcdctl_env,
            "health": self.health,
        })

    def _member(self, name: str, args: EtcdClusterArgs, host: Host, ca: pki.KeyPair, membership: str,
                previous: command.remote.Command | None) -> command.remote.Command:
        member = host.hostname
        cert = pki.issue_certificate(f"{name}-member-{member}", ca, member, uses=pki.SERVER_AND_CLIENT_USES,
                                     alternative_names=member_alternative_names(host), parent=self)
        # Prepared first (hostname, packages), and its facts pick the binary and the env file.
        depends: list[pulumi.Resource] = [host]
        if args.install == "tarball":
            depends.append(self._upload_tarball(name, args, host))
        if previous is not None:
            # Members are (re)configured one at a time: a config change restarts them without losing quorum.
            depends.append(previous)
        script = host.architecture.apply(lambda arch: remote_invocation(
            render_configure_script(args, member, host.address, arch, membership), host.connection.become))
        return command.remote.Command(
            f"{name}-member-{member}",
            connection=host.connection.args(),
            create=script,
            stdin=_pem_bundle(ca.cert_pem, cert.cert_pem, cert.key_pem),
            logging=command.remote.Logging.NONE,
            opts=pulumi.ResourceOptions(parent=self, depends_on=depends,
                                        additional_secret_outputs=SECRET_OUTPUTS),
        )

    def _upload_tarball(self, name: str, args: EtcdClusterArgs, host: Host) -> command.remote.CopyToRemote:
        def source(arch: str) -> pulumi.FileAsset:
            if arch not in args.tarballs:
                raise ValueError(f"etcd.tarballs: no tarball for architecture {arch!r} of {host.hostname}")
            return pulumi.FileAsset(args.tarballs[arch].path)

        return command.remote.CopyToRemote(
            f"{name}-tarball-{host.hostname}",
            connection=host.connection.args(),
            source=host.architecture.apply(source),
            remote_path=host.architecture.apply(lambda arch: tarball_remote_path(args, arch)),
            # After the host's preparation (its facts name the architecture; /var/tmp must exist).
            opts=pulumi.ResourceOptions(parent=self, depends_on=[host]),
        )
