"""An etcd cluster over SSH hosts: mutual TLS, a systemd unit per member, a health-gated bootstrap,
growth and member replacement through etcd's runtime reconfiguration, periodic snapshots, and certificates
that are re-issued before they expire.

Resources (for a cluster `etcd` and members a, b, c, later d):

    etcd-ca-key, etcd-ca                      tls: the cluster CA, protected (generation 1; later
                                              generations of a CA rotation are etcd-ca-2, ...)
    etcd-member-a-key/-csr/-cert ...          tls: one server+peer certificate per member (its names and IPs)
    etcd-operator-*, etcd-apiserver-*         tls: client certificates for operators and kube-apiserver
    etcd-tarball-a / etcd-download-a          (tarball mode) the release tarball copied to a, or (download mode)
                                              fetched by a and checked against the release's SHA256SUMS
    etcd-member-a                             remote command on a: install, certs (stdin), env file, units,
                                              start, or a restart when the files it runs with changed
    etcd-remove-x                             remote command on a healthy member: `member remove x`
    etcd-join-d                               remote command on d: learner add, start, promote
    etcd-health                               remote command on a member: waits for a healthy cluster

Stability rule: a member's command inputs depend only on that member and on the bootstrap record
(`bootstrap` names + addresses), never on the current member list. So adding members leaves every
existing member's resources untouched: a changed `--initial-cluster` would restart them all. A join's
inputs depend on the members before it (its seeds), so a later growth leaves earlier joins untouched.

Convergence rule: every step reads the host and the cluster and does only what is missing, so it can run
again at any point (pulumi-command re-runs `create` whenever an input changes). Restarts are decided from
the host: the unit records a hash of the files etcd started with, and the member step compares it with the
files on disk.

Hosts: every member step waits for every member's Host (a Pi's reboot included). A member's address may be an
Output (a cloud node's VM address): scripts, certificates and outputs are rendered from resolved addresses. On a
host with a read-only /usr (Fedora CoreOS, Flatcar) the binaries go to /opt/bin and the scripts to /opt/lib.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import pulumi
import pulumi_command as command

from components.etcd import render
from components.etcd.render import PACKAGE_BINARIES, url
from components.nodes.host import Host
from components.shared import pki
from components.shared.scripts import remote_invocation

INSTALL_MODES = ("package", "tarball", "download", "preinstalled")
# Where the download mode fetches etcd's release tarballs and their SHA256SUMS (v<version>/ under it).
DOWNLOAD_URL = "https://github.com/etcd-io/etcd/releases/download"
AUTO_COMPACTION_MODES = ("periodic", "revision")
MAX_MEMBERS = 7
# A 3.5 release runs on arm64 without ETCD_UNSUPPORTED_ARCH (3.4 needs it there; the step detects that).
DEFAULT_VERSION = "3.5.17"
# Commands that carry private keys on stdin: never log their output, keep it secret in the state.
SECRET_OUTPUTS = ["stdout", "stderr"]


@dataclass(frozen=True)
class Tarball:
    """An etcd release tarball on the machine running Pulumi (e.g. etcd-v3.5.17-linux-arm64.tar.gz)."""

    path: str
    sha256: str


@dataclass(frozen=True)
class CertificateSettings:
    """Leaf certificate validity and early renewal, and the CA generations (a CA rotation, see README).

    `ca_generation` signs every leaf certificate; members and clients trust every generation in
    `ca_trusted` (default: only `ca_generation`)."""

    validity: pki.Validity = field(default_factory=pki.Validity)
    ca_generation: int = 1
    ca_trusted: tuple[int, ...] = ()

    @property
    def trusted(self) -> tuple[int, ...]:
        return tuple(sorted(set(self.ca_trusted or (self.ca_generation,))))


@dataclass(frozen=True)
class EtcdClusterArgs:
    """One etcd cluster. `members` are the current members, in a stable order.

    `bootstrap` names the members that formed the cluster (default: all of `members`); it must never change
    after the first deployment. Members not in it join a running cluster, one at a time, in `members` order.
    `removed` maps members that are gone (dead or retired) to their addresses: each is removed from the
    cluster through a healthy member, and a removed bootstrap member's address stays part of the record.
    Addresses (a member's `Host.address`, a removed one's) may be Outputs: a cloud node's VM address.
    """

    members: Sequence[Host]
    bootstrap: Sequence[str] = ()
    removed: Mapping[str, pulumi.Input[str]] = field(default_factory=dict)
    version: str = DEFAULT_VERSION
    install: str = "package"
    tarballs: Mapping[str, Tarball] = field(default_factory=dict)
    download_url: str = DOWNLOAD_URL
    preinstalled_binaries: tuple[str, str] = PACKAGE_BINARIES
    client_port: int = 2379
    peer_port: int = 2380
    cluster_token: str = "cluster-cookbook"
    heartbeat_interval: int = 100
    election_timeout: int = 1000
    auto_compaction_mode: str = "periodic"
    auto_compaction_retention: str = "1h"
    snapshot_schedule: str = "hourly"
    snapshot_retention: int = 24
    snapshot_dir: str = "/var/backups/cookbook-etcd"
    health_timeout: int = 300
    certificates: CertificateSettings = field(default_factory=CertificateSettings)


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
    problems += validate_timing(args.heartbeat_interval, args.election_timeout)
    problems += validate_certificates(args.certificates)
    return problems


def validate_timing(heartbeat: int, election: int) -> list[str]:
    """etcd's own rules (embed.Config.Validate): election >= 5 x heartbeat, election <= 50 s."""
    problems = []
    if heartbeat < 1:
        problems.append(f"heartbeat_interval: must be at least 1 ms, got {heartbeat}")
    if election < 5 * heartbeat:
        problems.append(f"election_timeout: must be at least 5 x heartbeat_interval ({5 * heartbeat} ms), "
                        f"got {election}")
    if election > 50000:
        problems.append(f"election_timeout: must be at most 50000 ms, got {election}")
    return problems


def validate_certificates(settings: CertificateSettings) -> list[str]:
    problems = []
    validity = settings.validity
    if validity.hours < 1:
        problems.append(f"certificates.validity_hours: must be at least 1, got {validity.hours}")
    if not 0 <= validity.early_renewal_hours < validity.hours:
        problems.append(f"certificates.early_renewal_hours: must be between 0 and validity_hours - 1 "
                        f"({validity.hours - 1}), got {validity.early_renewal_hours} (else every run re-issues)")
    if settings.ca_generation < 1:
        problems.append(f"ca.generation: must be at least 1, got {settings.ca_generation}")
    if settings.ca_trusted and settings.ca_generation not in settings.ca_trusted:
        problems.append(f"ca.trusted: must include ca.generation {settings.ca_generation}, got "
                        f"{list(settings.ca_trusted)} (members must trust the CA that signs their certificates)")
    if any(generation < 1 for generation in settings.ca_trusted):
        problems.append(f"ca.trusted: generations start at 1, got {list(settings.ca_trusted)}")
    return problems


def bootstrap_names(args: EtcdClusterArgs) -> list[str]:
    return list(args.bootstrap) if args.bootstrap else [host.hostname for host in args.members]


def member_alternative_names(host: Host) -> list[str] | pulumi.Output[list[str]]:
    """The member certificate's names and IPs; an Output when the host's address is one (a cloud node)."""
    def names(address: str) -> list[str]:
        return sorted({host.hostname, address, "localhost", "127.0.0.1", "::1"})

    return names(host.address) if isinstance(host.address, str) else pulumi.Output.all(host.address).apply(
        lambda known: names(known[0]))


def read_only_usr(facts: Mapping[str, Any]) -> bool:
    """The host's `usr_read_only` fact (Fedora CoreOS, Flatcar): what the recipe installs goes under /opt."""
    return bool(facts.get("usr_read_only", False))


def ca_resource_name(name: str, generation: int) -> str:
    """Generation 1 keeps the first CA's name (its URN must never change); later ones are numbered."""
    return f"{name}-ca" if generation == 1 else f"{name}-ca-{generation}"


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
    expires: pulumi.Output[str]
    health: pulumi.Output[str]

    def __init__(self, name: str, args: EtcdClusterArgs, opts: pulumi.ResourceOptions | None = None):
        problems = validate(args)
        if problems:
            raise ValueError(f"EtcdCluster {name!r}: " + "; ".join(problems))
        super().__init__(self.TYPE, name, None, opts)
        if len(args.members) == 1:
            pulumi.log.warn(f"etcd cluster {name!r} has a single member: it tolerates no failure", self)

        hosts = {host.hostname: host for host in args.members}
        bootstrap = bootstrap_names(args)
        joiners = [host for host in args.members if host.hostname not in bootstrap]
        ordered = [hosts[name] for name in bootstrap if name in hosts] + joiners
        # Every address the scripts name (a cloud node's is an Output of its VM), resolved together: renderers
        # format plain strings only. Plain addresses stay plain, so an SSH stack's inputs are what they were.
        addresses: pulumi.Output[dict[str, str]] = pulumi.Output.all(
            **{**dict(args.removed), **{host.hostname: host.address for host in args.members}})

        certificates = args.certificates
        cas = {generation: pki.certificate_authority(ca_resource_name(name, generation),
                                                     f"{name} etcd CA" + (f" {generation}" if generation > 1 else ""),
                                                     self)
               for generation in sorted({certificates.ca_generation, *certificates.trusted})}
        signing = cas[certificates.ca_generation]
        trusted_bundle = pulumi.Output.all(*(cas[g].cert_pem for g in certificates.trusted)).apply(
            lambda pems: "".join((pem or "").rstrip("\n") + "\n" for pem in pems))
        operator = pki.issue_certificate(f"{name}-operator", signing, "etcd-operator", uses=pki.CLIENT_USES,
                                         validity=certificates.validity, parent=self)
        apiserver = pki.issue_certificate(f"{name}-apiserver", signing, "kube-apiserver-etcd-client",
                                          uses=pki.CLIENT_USES, validity=certificates.validity, parent=self)
        membership = addresses.apply(lambda known: render.bootstrap_membership(args, bootstrap, known))

        member_commands: dict[str, command.remote.Command] = {}
        member_certs: list[pki.KeyPair] = []
        previous: command.remote.Command | None = None
        for host in ordered:
            cert = pki.issue_certificate(f"{name}-member-{host.hostname}", signing, host.hostname,
                                         uses=pki.SERVER_AND_CLIENT_USES,
                                         alternative_names=member_alternative_names(host),
                                         validity=certificates.validity, parent=self)
            member_certs.append(cert)
            member_commands[host.hostname] = previous = self._member(
                name, args, host, cert, trusted_bundle, membership if host.hostname in bootstrap else "", previous)

        anchor = ordered[0]
        changes: list[command.remote.Command] = []

        def membership_change(resource_name: str, on: Host, script: Callable[[dict[str, str], bool], str]) -> None:
            """`script(addresses, usr_read_only of the host it runs on)`."""
            changes.append(command.remote.Command(
                resource_name,
                connection=on.connection.args(),
                create=pulumi.Output.all(addresses, on.facts).apply(lambda values: remote_invocation(
                    script(values[0], read_only_usr(values[1])), on.connection.become)),
                opts=pulumi.ResourceOptions(
                    parent=self,
                    # One membership change at a time, after every member step: removals first (a dead
                    # member is removed before its replacement joins), then joins in order.
                    depends_on=[*member_commands.values(), *changes]),
            ))

        current_names = [host.hostname for host in ordered]

        def removal(target: str) -> Callable[[dict[str, str], bool], str]:
            def script(known: dict[str, str], read_only: bool) -> str:
                reused = known[target] in {known[member] for member in current_names}
                return render.render_remove_script(args, target, known[target], reused, read_only)
            return script

        def join(member: str, seeds: Sequence[str]) -> Callable[[dict[str, str], bool], str]:
            def script(known: dict[str, str], read_only: bool) -> str:
                return render.render_join_script(args, member, known[member], [known[seed] for seed in seeds],
                                                 read_only)
            return script

        for target in sorted(args.removed):  # through the anchor's etcdctl and certificate
            membership_change(f"{name}-remove-{target}", anchor, removal(target))
        before = [name for name in bootstrap if name in hosts]  # the members before each join: its seeds
        for host in joiners:
            membership_change(f"{name}-join-{host.hostname}", host, join(host.hostname, tuple(before)))
            before = [*before, host.hostname]

        def current(known: dict[str, str]) -> dict[str, str]:
            return {member: known[member] for member in current_names}

        health = command.remote.Command(
            f"{name}-health",
            connection=anchor.connection.args(),
            create=pulumi.Output.all(addresses, anchor.facts).apply(lambda values: remote_invocation(
                render.render_health_script(args, current(values[0]), read_only_usr(values[1])),
                anchor.connection.become)),
            opts=pulumi.ResourceOptions(
                parent=self,
                # The gate checks the cluster every member step and membership change produced.
                depends_on=[*member_commands.values(), *changes]),
        )

        def after_health(value: pulumi.Input[Any]) -> pulumi.Output[Any]:
            return pulumi.Output.all(health.stdout, value).apply(lambda both: both[1])

        self.health = health.stdout
        self.client_endpoints = after_health(addresses.apply(
            lambda known: [url(address, args.client_port) for address in current(known).values()]))
        self.ca_cert_pem = after_health(trusted_bundle)
        # Client credentials are secrets as a pair (a certificate alone grants nothing, but it names a client).
        self.client_cert_pem = pulumi.Output.secret(after_health(operator.cert_pem))
        self.client_key_pem = pulumi.Output.secret(after_health(operator.key_pem))
        self.apiserver_client_cert_pem = pulumi.Output.secret(after_health(apiserver.cert_pem))
        self.apiserver_client_key_pem = pulumi.Output.secret(after_health(apiserver.key_pem))
        self.etcdctl_env = after_health(addresses.apply(
            lambda known: render.render_etcdctl_env(args, list(current(known).values()))))
        self.expires = pki.earliest([pair.expires for pair in
                                     (*cas.values(), operator, apiserver, *member_certs)])
        self.register_outputs({
            "client_endpoints": self.client_endpoints,
            "ca_cert_pem": self.ca_cert_pem,
            "client_cert_pem": self.client_cert_pem,
            "client_key_pem": self.client_key_pem,
            "apiserver_client_cert_pem": self.apiserver_client_cert_pem,
            "apiserver_client_key_pem": self.apiserver_client_key_pem,
            "etcdctl_env": self.etcdctl_env,
            "expires": self.expires,
            "health": self.health,
        })

    def _member(self, name: str, args: EtcdClusterArgs, host: Host, cert: pki.KeyPair,
                trusted_bundle: pulumi.Output[str], membership: pulumi.Input[str],
                previous: command.remote.Command | None) -> command.remote.Command:
        member = host.hostname
        # Every member's Host first (its facts pick the binary and the env file): a Pi's reboot waits only for
        # the Pi before it, so a member step that waited only for its own host could restart this member while
        # another member's Pi reboots (two members down: no quorum of three). Reboots first, then the members.
        depends: list[pulumi.Resource] = [*args.members]
        downloaded: pulumi.Output[str] = pulumi.Output.from_input("")
        if args.install == "tarball":
            depends.append(self._upload_tarball(name, args, host))
        if args.install == "download":
            downloaded = self._download_tarball(name, args, host).stdout.apply(render.downloaded_sha256)
        if previous is not None:
            # Members are (re)configured one at a time: a restart never takes two members down at once.
            depends.append(previous)
        def script(values: list[Any]) -> str:
            facts, address, membership_text, tarball_sha256 = values
            render.check_host(args, member, facts)
            return remote_invocation(render.render_configure_script(
                args, member, address, str(facts["architecture"]), membership_text, read_only_usr(facts),
                tarball_sha256), host.connection.become)

        return command.remote.Command(
            f"{name}-member-{member}",
            connection=host.connection.args(),
            create=pulumi.Output.all(host.facts, host.address, membership, downloaded).apply(script),
            stdin=_pem_bundle(cert.cert_pem, cert.key_pem, trusted_bundle),
            logging=command.remote.Logging.NONE,
            opts=pulumi.ResourceOptions(parent=self, depends_on=depends,
                                        additional_secret_outputs=SECRET_OUTPUTS),
        )

    def _download_tarball(self, name: str, args: EtcdClusterArgs, host: Host) -> command.remote.Command:
        """Download mode: the host fetches the release tarball and checks it against the release's SHA256SUMS."""
        return command.remote.Command(
            f"{name}-download-{host.hostname}",
            connection=host.connection.args(),
            create=host.architecture.apply(lambda arch: host.connection.command_line(
                render.render_download_script(args, arch))),
            # After the host's preparation (its facts name the architecture).
            opts=pulumi.ResourceOptions(parent=self, depends_on=[host]),
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
            remote_path=host.architecture.apply(lambda arch: render.tarball_remote_path(args, arch)),
            # After the host's preparation (its facts name the architecture; /var/tmp must exist).
            opts=pulumi.ResourceOptions(parent=self, depends_on=[host]),
        )
