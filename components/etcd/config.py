"""The `etcd` section of a stack's config, and the membership rules that involve `nodes`.

Members are the nodes with role `etcd` that are not listed in `etcd.removed`. Every problem names its
key path, e.g. `nodes: 4 nodes have role etcd; etcd needs an odd number between 1 and 7`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from components.etcd.cluster import INSTALL_MODES, MAX_MEMBERS, EtcdClusterArgs, Tarball
from components.shared.validation import Problems, Section, check_port, check_positive, one_of

_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_VERSION = re.compile(r"^\d+\.\d+\.\d+$")
_CALENDAR = re.compile(r"^[A-Za-z0-9*:.,/ ~-]+$")
_ABSOLUTE_PATH = re.compile(r"^/[A-Za-z0-9._/-]+$")
ARCHITECTURES = ("amd64", "arm64", "armhf", "armel", "i386", "ppc64el", "s390x", "riscv64")


class NodeLike(Protocol):
    @property
    def name(self) -> str: ...
    @property
    def address(self) -> str: ...
    @property
    def roles(self) -> tuple[str, ...]: ...


@dataclass(frozen=True)
class EtcdConfig:
    """The `etcd` section: member node names (in `nodes` order) and the cluster's settings, whose
    `members` the program fills with the nodes' Host components."""

    members: tuple[str, ...]
    cluster: EtcdClusterArgs

    @property
    def removed(self) -> Mapping[str, str]:
        return self.cluster.removed


def _check_calendar(value: str) -> str | None:
    return None if _CALENDAR.match(value) else (
        f"must be a systemd OnCalendar expression such as 'hourly' or '*-*-* 03:00:00', got {value!r}")


def _check_version(value: str) -> str | None:
    return None if _VERSION.match(value) else f"must be a version such as '3.4.23', got {value!r}"


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


def parse_etcd_config(raw: Any, nodes: Sequence[NodeLike], problems: Problems) -> EtcdConfig | None:
    """None when the stack has no etcd: no `etcd` section and no node with role etcd."""
    with_role = [node for node in nodes if "etcd" in node.roles]
    if raw is None and not with_role:
        return None
    section = Section(raw, "etcd", problems)
    addresses = {node.name: node.address for node in nodes}
    removed_names = section.strings("removed")
    removed = {}
    for index, name in enumerate(removed_names):
        if name not in addresses:
            problems.add(f"etcd.removed[{index}]",
                         f"{name!r} is not in nodes: keep a removed member's node entry (its address is part of "
                         "the cluster's membership record); nothing runs on it")
        else:
            removed[name] = addresses[name]
    members = tuple(node.name for node in with_role if node.name not in removed)
    size = len(members)
    if size == 0 or size % 2 == 0 or size > MAX_MEMBERS:
        not_counting = f" (not counting {len(removed)} in etcd.removed)" if removed else ""
        problems.add("nodes", f"{size} nodes have role etcd{not_counting}; "
                              f"etcd needs an odd number between 1 and {MAX_MEMBERS}")
    bootstrap = section.strings("bootstrap")
    for index, name in enumerate(bootstrap):
        if name not in members and name not in removed:
            problems.add(f"etcd.bootstrap[{index}]",
                         f"{name!r} is not a node with role etcd (nor in etcd.removed)")
    if len(set(bootstrap)) != len(bootstrap):
        problems.add("etcd.bootstrap", "names a member twice")
    snapshot = Section(section.raw("snapshot"), "etcd.snapshot", problems)
    config = EtcdConfig(members=members, cluster=EtcdClusterArgs(
        members=(),
        bootstrap=bootstrap,
        removed=removed,
        version=section.value("version", str, "3.4.23", _check_version),
        install=section.value("install", str, "package", one_of(INSTALL_MODES)),
        tarballs=_parse_tarballs(section.raw("tarballs"), problems),
        client_port=section.value("client_port", int, 2379, check_port),
        peer_port=section.value("peer_port", int, 2380, check_port),
        cluster_token=section.value("cluster_token", str, "cluster-cookbook"),
        snapshot_schedule=snapshot.value("schedule", str, "hourly", _check_calendar),
        snapshot_retention=snapshot.value("retention", int, 24, check_positive),
        snapshot_dir=snapshot.value("directory", str, "/var/backups/cookbook-etcd", _check_absolute_path),
        health_timeout=section.value("health_timeout", int, 300, check_positive),
    ))
    snapshot.finish()
    section.finish()
    if config.cluster.install == "tarball" and not config.cluster.tarballs:
        problems.add("etcd.tarballs", "etcd.install is tarball: give a {path, sha256} per node architecture")
    if config.cluster.client_port == config.cluster.peer_port:
        problems.add("etcd.peer_port", "must differ from etcd.client_port")
    return config
