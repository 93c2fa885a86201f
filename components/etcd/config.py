"""The `etcd` section of a stack's config, and the membership rules that involve `nodes`.

Members are the nodes with role `etcd` that are not listed in `etcd.removed`. Every problem names its
key path, e.g. `nodes: 4 nodes have role etcd; etcd needs an odd number between 1 and 7`.
"""

from __future__ import annotations

import re
import urllib.parse
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from components.etcd.cluster import (
    AUTO_COMPACTION_MODES,
    DEFAULT_VERSION,
    DOWNLOAD_URL,
    INSTALL_MODES,
    MAX_MEMBERS,
    CertificateSettings,
    EtcdClusterArgs,
    Tarball,
    validate_certificates,
    validate_timing,
)
from components.shared import pki
from components.shared.validation import NodeLike, Problems, Section, check_port, check_positive, describe_type, one_of

_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_VERSION = re.compile(r"^\d+\.\d+\.\d+$")
_RETENTION = re.compile(r"^(0|[1-9][0-9]*|[1-9][0-9]*(h|m|s)|([1-9][0-9]*h)?([1-9][0-9]*m)?([1-9][0-9]*s)?)$")
_CALENDAR = re.compile(r"^[A-Za-z0-9*:.,/ ~-]+$")
_ABSOLUTE_PATH = re.compile(r"^/[A-Za-z0-9._/-]+$")
ARCHITECTURES = ("amd64", "arm64", "armhf", "armel", "i386", "ppc64el", "s390x", "riscv64")


@dataclass(frozen=True)
class EtcdConfig:
    """The `etcd` section: member node names (in `nodes` order) and the cluster's settings, whose
    `members` the program fills with the nodes' Host components. `cluster.removed` holds the removed members
    whose address the config gives; `removed_unaddressed` the removed cloud nodes, whose address is their VM's
    (the program adds them to `cluster.removed`)."""

    members: tuple[str, ...]
    cluster: EtcdClusterArgs
    removed_unaddressed: tuple[str, ...] = ()

    @property
    def removed(self) -> tuple[str, ...]:
        """Every removed member's name: nothing runs on them."""
        return tuple(sorted({*self.cluster.removed, *self.removed_unaddressed}))


def _check_calendar(value: str) -> str | None:
    return None if _CALENDAR.match(value) else (
        f"must be a systemd OnCalendar expression such as 'hourly' or '*-*-* 03:00:00', got {value!r}")


def _check_version(value: str) -> str | None:
    if not _VERSION.match(value):
        return f"must be a version such as {DEFAULT_VERSION!r}, got {value!r}"
    major, minor, _ = (int(part) for part in value.split("."))
    if (major, minor) < (3, 4):
        return f"must be 3.4 or later (learners, which growth and replacement use, came in 3.4), got {value!r}"
    return None


def _check_retention(value: str) -> str | None:
    return None if value and _RETENTION.match(value) else (
        f"must be a duration such as '1h' or '30m' (periodic mode), a revision count such as '1000' (revision "
        f"mode), or '0' (off), got {value!r}")


def _parse_certificates(section: Section, problems: Problems) -> CertificateSettings:
    certificates = Section(section.raw("certificates"), "etcd.certificates", problems)
    validity = pki.Validity(
        hours=certificates.value("validity_hours", int, pki.LEAF_VALIDITY_HOURS, check_positive),
        early_renewal_hours=certificates.value("early_renewal_hours", int, pki.LEAF_EARLY_RENEWAL_HOURS),
    )
    certificates.finish()
    ca = Section(section.raw("ca"), "etcd.ca", problems)
    generation = ca.value("generation", int, 1, check_positive)
    raw_trusted = ca.value("trusted", list, [])
    trusted = []
    for index, item in enumerate(raw_trusted):
        if not isinstance(item, int) or isinstance(item, bool) or item < 1:
            problems.add(f"etcd.ca.trusted[{index}]", f"must be a CA generation (an integer from 1), "
                                                      f"got {describe_type(item)} {item!r}")
        else:
            trusted.append(item)
    ca.finish()
    settings = CertificateSettings(validity=validity, ca_generation=generation, ca_trusted=tuple(trusted))
    for problem in validate_certificates(settings):
        key, _, message = problem.partition(": ")
        problems.add(f"etcd.{key}", message)
    return settings


def _check_download_url(value: str) -> str | None:
    parsed = urllib.parse.urlparse(value)
    if parsed.scheme in ("http", "https") and parsed.hostname and not parsed.query:
        return None
    return f"must be an http(s) URL under which v<version>/SHA256SUMS and the tarballs are, got {value!r}"


def _check_absolute_path(value: str) -> str | None:
    return None if _ABSOLUTE_PATH.match(value) else f"must be an absolute path, got {value!r}"


def _parse_tarballs(raw: Any, problems: Problems) -> dict[str, Tarball]:
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        problems.add("etcd.tarballs", "must map an architecture (e.g. arm64) to {path, sha256}")
        return {}
    tarballs = {}
    for arch in sorted(raw):
        path = f"etcd.tarballs.{arch}"
        if arch not in ARCHITECTURES:
            problems.add(path, f"unknown architecture; use Debian names: {', '.join(ARCHITECTURES)}")
            continue
        section = Section(raw[arch], path, problems)
        file = section.required("path", str, "")
        sha256 = section.required("sha256", str, "")
        section.finish()
        if file and not Path(file).expanduser().is_file():
            problems.add(f"{path}.path", f"no such file on this machine: {file}")
        if sha256 and not _SHA256.match(sha256):
            problems.add(f"{path}.sha256", "must be 64 lowercase hex digits (`sha256sum FILE`)")
        tarballs[arch] = Tarball(str(Path(file).expanduser()), sha256)
    return tarballs


def parse_etcd_config(raw: Any, nodes: Sequence[NodeLike], problems: Problems,
                      nodes_key: str = "nodes") -> EtcdConfig | None:
    """None when the stack has no etcd: no `etcd` section and no node with role etcd. `nodes`: every node of
    the stack (cloud nodes too, whose address is ""); `nodes_key`: the config list the members come from."""
    with_role = [node for node in nodes if "etcd" in node.roles]
    if raw is None and not with_role:
        return None
    section = Section(raw, "etcd", problems)
    addresses = {node.name: node.address for node in nodes}
    removed_names = section.strings("removed")
    removed: dict[str, str] = {}
    unaddressed: list[str] = []
    for index, name in enumerate(removed_names):
        if name not in addresses:
            problems.add(f"etcd.removed[{index}]",
                         f"{name!r} is not in {nodes_key}: keep a removed member's node entry (its address is part "
                         "of the cluster's membership record); nothing runs on it")
        elif not (address := addresses[name]):
            unaddressed.append(name)
        else:
            removed[name] = address
    gone = {*removed, *unaddressed}
    members = tuple(node.name for node in with_role if node.name not in gone)
    size = len(members)
    if size == 0 or size % 2 == 0 or size > MAX_MEMBERS:
        not_counting = f" (not counting {len(gone)} in etcd.removed)" if gone else ""
        problems.add(nodes_key, f"{size} nodes have role etcd{not_counting}; "
                                f"etcd needs an odd number between 1 and {MAX_MEMBERS}")
    bootstrap = section.strings("bootstrap")
    for index, name in enumerate(bootstrap):
        if name not in members and name not in gone:
            problems.add(f"etcd.bootstrap[{index}]",
                         f"{name!r} is not a node with role etcd (nor in etcd.removed)")
    if len(set(bootstrap)) != len(bootstrap):
        problems.add("etcd.bootstrap", "names a member twice")
    snapshot = Section(section.raw("snapshot"), "etcd.snapshot", problems)
    auto_compaction = Section(section.raw("auto_compaction"), "etcd.auto_compaction", problems)
    config = EtcdConfig(members=members, removed_unaddressed=tuple(unaddressed), cluster=EtcdClusterArgs(
        members=(),
        bootstrap=bootstrap,
        removed=removed,
        version=section.value("version", str, DEFAULT_VERSION, _check_version),
        install=section.value("install", str, "package", one_of(INSTALL_MODES)),
        tarballs=_parse_tarballs(section.raw("tarballs"), problems),
        download_url=section.value("download_url", str, DOWNLOAD_URL, _check_download_url),
        client_port=section.value("client_port", int, 2379, check_port),
        peer_port=section.value("peer_port", int, 2380, check_port),
        cluster_token=section.value("cluster_token", str, "cluster-cookbook"),
        heartbeat_interval=section.value("heartbeat_interval", int, 100, check_positive),
        election_timeout=section.value("election_timeout", int, 1000, check_positive),
        auto_compaction_mode=auto_compaction.value("mode", str, "periodic", one_of(AUTO_COMPACTION_MODES)),
        auto_compaction_retention=auto_compaction.value("retention", str, "1h", _check_retention),
        snapshot_schedule=snapshot.value("schedule", str, "hourly", _check_calendar),
        snapshot_retention=snapshot.value("retention", int, 24, check_positive),
        snapshot_dir=snapshot.value("directory", str, "/var/backups/cookbook-etcd", _check_absolute_path),
        health_timeout=section.value("health_timeout", int, 300, check_positive),
        certificates=_parse_certificates(section, problems),
    ))
    snapshot.finish()
    auto_compaction.finish()
    section.finish()
    cluster = config.cluster
    if cluster.auto_compaction_mode == "revision" and not cluster.auto_compaction_retention.isdigit():
        problems.add("etcd.auto_compaction.retention", "revision mode keeps a number of revisions, e.g. '10000', "
                                                       f"got {cluster.auto_compaction_retention!r}")
    for problem in validate_timing(config.cluster.heartbeat_interval, config.cluster.election_timeout):
        key, _, message = problem.partition(": ")
        problems.add(f"etcd.{key}", message)
    if config.cluster.install == "tarball" and not config.cluster.tarballs:
        problems.add("etcd.tarballs", "etcd.install is tarball: give a {path, sha256} per node architecture")
    if config.cluster.client_port == config.cluster.peer_port:
        problems.add("etcd.peer_port", "must differ from etcd.client_port")
    return config
