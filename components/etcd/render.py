"""Pure renderers of everything an etcd member runs: the env file, the units, and the steps' scripts.

Inputs in, text out: tests call them directly, shellcheck the scripts and `systemd-analyze verify` the units.
"""

from __future__ import annotations

import string
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from components.shared.addresses import https_url as url
from components.shared.addresses import is_ip
from components.shared.scripts import render_script, template

if TYPE_CHECKING:
    from components.etcd.cluster import EtcdClusterArgs

SERVICE = "cookbook-etcd"
SNAPSHOT_UNIT = "cookbook-etcd-snapshot"
CONFIG_DIR = "/etc/cookbook-etcd"
PKI_DIR = f"{CONFIG_DIR}/pki"
DATA_ROOT = "/var/lib/cookbook-etcd"
LIB_DIR = "/usr/local/lib/cookbook-etcd"
CONFIG_HASH_PATH = f"{LIB_DIR}/config-hash"
RUN_DIR = "/run/cookbook-etcd"  # the unit's RuntimeDirectory
DOWNLOADED_MARKER = "COOKBOOK_ETCD_TARBALL_SHA256="
UNIT_PATH = f"/etc/systemd/system/{SERVICE}.service"
PACKAGE_BINARIES = ("/usr/bin/etcd", "/usr/bin/etcdctl")
TARBALL_BINARIES = ("/usr/local/bin/etcd", "/usr/local/bin/etcdctl")
# Hosts whose /usr is read-only (Fedora CoreOS, Flatcar: the `usr_read_only` fact) keep what the recipe installs
# under /opt: binaries in /opt/bin (as the Kubernetes recipe's), its scripts in /opt/lib/cookbook-etcd.
READ_ONLY_USR_TARBALL_BINARIES = ("/opt/bin/etcd", "/opt/bin/etcdctl")
READ_ONLY_USR_LIB_DIR = "/opt/lib/cookbook-etcd"
# Debian architecture -> Go's GOARCH, the value etcd expects in ETCD_UNSUPPORTED_ARCH.
GO_ARCH = {"amd64": "amd64", "arm64": "arm64", "armhf": "arm", "armel": "arm", "i386": "386",
           "ppc64el": "ppc64le", "s390x": "s390x", "riscv64": "riscv64"}


def listen_host(address: str) -> str:
    """etcd binds listen URLs to IPs only: a member known by DNS name listens on all addresses."""
    return address if is_ip(address) else "0.0.0.0"


def _fill(relative_path: str, **values: str | int) -> str:
    return string.Template(template(relative_path)).substitute(values).rstrip("\n")


def from_release(args: EtcdClusterArgs) -> bool:
    """etcd comes from a release tarball: uploaded (`tarball`) or fetched by the host (`download`)."""
    return args.install in ("tarball", "download")


def binaries(args: EtcdClusterArgs, usr_read_only: bool = False) -> tuple[str, str]:
    if from_release(args):
        return READ_ONLY_USR_TARBALL_BINARIES if usr_read_only else TARBALL_BINARIES
    if args.install == "preinstalled":
        return args.preinstalled_binaries
    return PACKAGE_BINARIES


def data_dir(member: str) -> str:
    return f"{DATA_ROOT}/{member}"


def started_record(member: str) -> str:
    return f"{RUN_DIR}/started-{member}"


def listen_client_urls(address: str, port: int) -> str:
    """The member's address, plus loopback for local tools. Listening on all addresses (a DNS-named
    member) already covers loopback: naming it again would bind the port twice."""
    listen = listen_host(address)
    if listen == "0.0.0.0":
        return url(listen, port)
    return f"{url(listen, port)},{url('127.0.0.1', port)}"


def render_env_file(args: EtcdClusterArgs, member: str, address: str) -> str:
    """The env file; the member step adds ETCD_UNSUPPORTED_ARCH when the installed binary needs it."""
    return _fill(
        "etcd/etcd.env", member=member, data_dir=data_dir(member),
        listen_peer_urls=url(listen_host(address), args.peer_port), peer_url=url(address, args.peer_port),
        listen_client_urls=listen_client_urls(address, args.client_port),
        client_url=url(address, args.client_port), cluster_token=args.cluster_token, pki_dir=PKI_DIR,
        heartbeat_interval=args.heartbeat_interval, election_timeout=args.election_timeout,
        auto_compaction_mode=args.auto_compaction_mode, auto_compaction_retention=args.auto_compaction_retention,
    )


def bootstrap_membership(args: EtcdClusterArgs, names: Sequence[str], addresses: Mapping[str, str]) -> str:
    """The membership file of a bootstrap member: only ever read when etcd creates its data dir."""
    initial = ",".join(f"{name}={url(addresses[name], args.peer_port)}" for name in names)
    return f"ETCD_INITIAL_CLUSTER={initial}\nETCD_INITIAL_CLUSTER_STATE=new"


DEBIAN_FAMILY = ("debian", "raspbian", "ubuntu")  # os-release IDs with apt


def check_host(args: EtcdClusterArgs, member: str, facts: Mapping[str, Any]) -> None:
    """Refuses an install mode the host cannot take (Debian's package on a read-only /usr without apt: Fedora
    CoreOS, Flatcar), naming the member and the fix."""
    if args.install == "package" and facts.get("usr_read_only") and facts.get("os_id") not in DEBIAN_FAMILY:
        raise ValueError(f"etcd: {member} runs {facts.get('os_pretty_name') or facts.get('os_id')} with a read-only "
                         "/usr and no apt: etcd.install package cannot work there; use etcd.install download or "
                         "tarball (they install into /opt/bin)")


def for_host(script: str, usr_read_only: bool) -> str:
    """`script` for its host: on a read-only /usr, the recipe's scripts (the templates name LIB_DIR) live in
    READ_ONLY_USR_LIB_DIR. Other hosts get the script exactly as rendered: their step inputs stay the same."""
    return script.replace(LIB_DIR, READ_ONLY_USR_LIB_DIR) if usr_read_only else script


def render_unit(args: EtcdClusterArgs, member: str, usr_read_only: bool = False) -> str:
    return _fill("etcd/etcd.service", member=member, config_dir=CONFIG_DIR, etcd_bin=binaries(args, usr_read_only)[0],
                 config_hash=CONFIG_HASH_PATH, started_record=started_record(member))


def render_snapshot_units(args: EtcdClusterArgs, member: str) -> tuple[str, str]:
    return (_fill("etcd/snapshot.service", member=member, service=SERVICE),
            _fill("etcd/snapshot.timer", member=member, schedule=args.snapshot_schedule))


def _common_params(args: EtcdClusterArgs, usr_read_only: bool = False) -> dict[str, Any]:
    return {"PKI_DIR": PKI_DIR, "ETCDCTL_BIN": binaries(args, usr_read_only)[1], "SNAPSHOT_DIR": args.snapshot_dir,
            "SNAPSHOT_RETENTION": args.snapshot_retention}


def render_snapshot_script(args: EtcdClusterArgs, member: str, usr_read_only: bool = False) -> str:
    return render_script(
        ["shared/common.sh", "etcd/common.sh", "etcd/snapshot.sh"],
        {**_common_params(args, usr_read_only), "MEMBER_NAME": member,
         "LOCAL_CLIENT_URL": url("127.0.0.1", args.client_port)},
    )


def run_files(args: EtcdClusterArgs, usr_read_only: bool = False) -> tuple[str, ...]:
    """The files a member's etcd runs with: a change in any of them restarts it."""
    return (f"{CONFIG_DIR}/etcd.env", UNIT_PATH, f"{PKI_DIR}/ca.crt", f"{PKI_DIR}/member.crt",
            f"{PKI_DIR}/member.key", binaries(args, usr_read_only)[0])


def render_config_hash_script(args: EtcdClusterArgs, usr_read_only: bool = False) -> str:
    return render_script(["etcd/config-hash.sh"], {"RUN_FILES": run_files(args, usr_read_only)})


def render_configure_script(args: EtcdClusterArgs, member: str, address: str, architecture: str,
                            membership: str, usr_read_only: bool = False, downloaded_sha256: str = "") -> str:
    """`usr_read_only`: the host's fact (Fedora CoreOS, Flatcar): binaries in /opt/bin, scripts in /opt/lib.
    `downloaded_sha256` (download mode): the release tarball the download step fetched and checked; the step
    then installs it as the tarball mode installs an uploaded one."""
    tarball = args.tarballs.get(architecture) if args.install == "tarball" else None
    tarball_sha256 = downloaded_sha256 if args.install == "download" else tarball.sha256 if tarball else ""
    snapshot_service, snapshot_timer = render_snapshot_units(args, member)
    return for_host(render_script(
        ["shared/common.sh", "shared/files.sh", "etcd/common.sh", "etcd/install.sh", "etcd/restart.sh",
         "etcd/configure.sh"],
        {
            **_common_params(args, usr_read_only),
            # A downloaded tarball installs as an uploaded one does (install.sh knows the three modes).
            "INSTALL_MODE": "tarball" if from_release(args) else args.install,
            # Only a tarball is checked against the version: other modes' inputs do not depend on it.
            "ETCD_VERSION": args.version if from_release(args) else "",
            "ETCD_BIN": binaries(args, usr_read_only)[0],
            "GO_ARCH": GO_ARCH.get(architecture, architecture),
            "TARBALL_PATH": tarball_remote_path(args, architecture) if tarball_sha256 else "",
            "TARBALL_SHA256": tarball_sha256,
            "MEMBER_NAME": member,
            "CONFIG_DIR": CONFIG_DIR,
            "DATA_ROOT": DATA_ROOT,
            "SERVICE": SERVICE,
            "SNAPSHOT_UNIT": SNAPSHOT_UNIT,
            "ENV_CONTENT": render_env_file(args, member, address),
            "MEMBERSHIP_CONTENT": membership,
            "UNIT_CONTENT": render_unit(args, member, usr_read_only),
            "SNAPSHOT_SCRIPT": render_snapshot_script(args, member, usr_read_only),
            "CONFIG_HASH_SCRIPT": render_config_hash_script(args, usr_read_only),
            "CONFIG_HASH_PATH": CONFIG_HASH_PATH,
            "STARTED_RECORD": started_record(member),
            "SNAPSHOT_SERVICE_CONTENT": snapshot_service,
            "SNAPSHOT_TIMER_CONTENT": snapshot_timer,
            "LOCAL_CLIENT_URL": url("127.0.0.1", args.client_port),
            "HEALTH_TIMEOUT": args.health_timeout,
        },
    ), usr_read_only)


def render_join_script(args: EtcdClusterArgs, member: str, address: str, seeds: Sequence[str],
                       usr_read_only: bool = False) -> str:
    """`seeds`: addresses of current members that are members before this one joins."""
    return render_script(
        ["shared/common.sh", "shared/files.sh", "etcd/common.sh", "etcd/join.sh"],
        {
            **_common_params(args, usr_read_only),
            "MEMBER_NAME": member,
            "PEER_URL": url(address, args.peer_port),
            "SEED_ENDPOINTS": ",".join(url(seed, args.client_port) for seed in seeds),
            "CONFIG_DIR": CONFIG_DIR,
            "DATA_DIR": data_dir(member),
            "SERVICE": SERVICE,
            "SNAPSHOT_UNIT": SNAPSHOT_UNIT,
            "LOCAL_CLIENT_URL": url("127.0.0.1", args.client_port),
            "TIMEOUT": args.health_timeout,
        },
    )


def render_remove_script(args: EtcdClusterArgs, target: str, target_address: str, address_reused: bool,
                         usr_read_only: bool = False) -> str:
    """`address_reused`: a current member has the target's address, so an unnamed (never started) entry at
    that peer URL is that member's learner, not the target's. `usr_read_only`: of the host it runs on."""
    return render_script(
        ["shared/common.sh", "etcd/common.sh", "etcd/remove.sh"],
        {
            **_common_params(args, usr_read_only),
            "TARGET_NAME": target,
            "TARGET_PEER_URL": "" if address_reused else url(target_address, args.peer_port),
            "LOCAL_CLIENT_URL": url("127.0.0.1", args.client_port),
        },
    )


def render_health_script(args: EtcdClusterArgs, members: Mapping[str, str], usr_read_only: bool = False) -> str:
    return render_script(
        ["shared/common.sh", "etcd/common.sh", "etcd/health.sh"],
        {
            **_common_params(args, usr_read_only),
            "ENDPOINTS": ",".join(url(address, args.client_port) for address in members.values()),
            "EXPECTED_MEMBERS": tuple(members),
            "TIMEOUT": args.health_timeout,
        },
    )


def render_etcdctl_env(args: EtcdClusterArgs, addresses: Sequence[str],
                       client_urls: Sequence[str] | None = None) -> str:
    """`client_urls` replaces the members' URLs (address + client port) when clients reach them elsewhere, e.g.
    the local recipe's members through their published loopback ports."""
    endpoints = ",".join(client_urls if client_urls is not None
                         else [url(address, args.client_port) for address in addresses])
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


def release_file(args: EtcdClusterArgs, architecture: str) -> str:
    """The name of etcd's release tarball for a Debian architecture (etcd names it after Go's)."""
    return f"etcd-v{args.version}-linux-{GO_ARCH.get(architecture, architecture)}.tar.gz"


def render_download_script(args: EtcdClusterArgs, architecture: str) -> str:
    """Download mode: fetches etcd's release tarball and the release's SHA256SUMS from `download_url`, checks
    one against the other, keeps the tarball where the member step installs it from, prints its sha256."""
    base = f"{args.download_url.rstrip('/')}/v{args.version}"
    return render_script(
        ["shared/common.sh", "etcd/download.sh"],
        {"TARBALL_URL": f"{base}/{release_file(args, architecture)}", "SUMS_URL": f"{base}/SHA256SUMS",
         "FILE_NAME": release_file(args, architecture), "TARBALL_PATH": tarball_remote_path(args, architecture),
         "SHA256_MARKER": DOWNLOADED_MARKER},
    )


def downloaded_sha256(stdout: str) -> str:
    """The sha256 the download step printed (its last marker line)."""
    for line in reversed(stdout.splitlines()):
        if line.startswith(DOWNLOADED_MARKER):
            return line[len(DOWNLOADED_MARKER):].strip()
    raise ValueError(f"the etcd download step printed no {DOWNLOADED_MARKER} line; output ended with: "
                     f"{stdout[-500:]!r}")
