"""The `zookeeper` section of a stack's config, and the rules that involve `nodes`.

Servers are the nodes with role `zookeeper` that are not listed in `zookeeper.removed`. `zookeeper.ids` is the
ensemble's record: every server's id (`myid`), fixed for the server's life and never given to another (a removed
server keeps its entry). Every problem names its key path, e.g.
`nodes: 4 nodes have role zookeeper; a ZooKeeper ensemble needs an odd number between 1 and 7`.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from components.shared.validation import NodeLike, Problems, Section, check_port, check_positive, one_of
from components.zookeeper.ensemble import (
    DEFAULT_FOUR_LETTER_WORDS,
    FOUR_LETTER_WORDS,
    INSTALL_MODES,
    MAX_ID,
    MAX_SERVERS,
    Tarball,
    ZooKeeperEnsembleArgs,
)

ROLE = "zookeeper"
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_VERSION = re.compile(r"^\d+\.\d+\.\d+$")


@dataclass(frozen=True)
class ZooKeeperConfig:
    """The `zookeeper` section: server node names (in `nodes` order) and the ensemble's settings, whose
    `servers` the program fills with the nodes' Host components."""

    servers: tuple[str, ...]
    ensemble: ZooKeeperEnsembleArgs

    @property
    def removed(self) -> Mapping[str, str]:
        """Removed servers (name -> address): nothing runs on their nodes."""
        return self.ensemble.removed

    @property
    def ports(self) -> dict[int, str]:
        """Every port a server listens on, with what it is for (for the whole-stack port check)."""
        return {self.ensemble.client_port: "ZooKeeper client port",
                self.ensemble.quorum_port: "ZooKeeper quorum port",
                self.ensemble.election_port: "ZooKeeper election port"}


def _check_version(value: str) -> str | None:
    return None if _VERSION.match(value) else f"must be a version such as '3.8.4', got {value!r}"


def _check_word(value: str) -> str | None:
    return None if value in FOUR_LETTER_WORDS else f"must be one of {', '.join(FOUR_LETTER_WORDS)}, got {value!r}"


def _parse_ids(raw: Any, servers: Sequence[str], removed: Collection[str], problems: Problems) -> dict[str, int]:
    example = ", ".join(f"{name}: {index}" for index, name in enumerate(servers[:3], start=1)) or "zk-a: 1"
    if raw is None:
        if servers:
            problems.add("zookeeper.ids", f"is required: give every server a fixed id (its myid, 1-{MAX_ID}) "
                                          f"that never changes, e.g. {{{example}}}")
        return {}
    if not isinstance(raw, Mapping):
        problems.add("zookeeper.ids", f"must map each server's node name to its id, e.g. {{{example}}}")
        return {}
    ids: dict[str, int] = {}
    for name in sorted(raw):
        value = raw[name]
        if name not in servers and name not in removed:
            problems.add(f"zookeeper.ids.{name}", f"{name!r} is not a node with role {ROLE} (nor in zookeeper.removed)")
        elif isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_ID:
            problems.add(f"zookeeper.ids.{name}", f"must be an integer between 1 and {MAX_ID}, got {value!r}")
        else:
            ids[name] = value
    for name in servers:
        if name not in raw:
            problems.add("zookeeper.ids", f"no id for server {name!r}")
    for name in removed:
        if name not in raw:
            problems.add("zookeeper.ids", f"no id for removed server {name!r}: keep its entry (its id is what "
                                          "leaves the ensemble, and is never given to another server)")
    by_id: dict[int, list[str]] = {}
    for name, value in ids.items():
        by_id.setdefault(value, []).append(name)
    for value, names in sorted(by_id.items()):
        if len(names) > 1:
            problems.add("zookeeper.ids", f"id {value} is given to {' and '.join(sorted(names))}; ids are unique")
    return ids


def _parse_tarball(raw: Any, problems: Problems) -> Tarball | None:
    if raw is None:
        return None
    section = Section(raw, "zookeeper.tarball", problems)
    file = section.required("path", str, "")
    sha256 = section.required("sha256", str, "")
    section.finish()
    if file and not Path(file).expanduser().is_file():
        problems.add("zookeeper.tarball.path", f"no such file on this machine: {file}")
    if sha256 and not _SHA256.match(sha256):
        problems.add("zookeeper.tarball.sha256", "must be 64 lowercase hex digits (`sha256sum FILE`)")
    return Tarball(str(Path(file).expanduser()), sha256)


def _parse_removed(section: Section, nodes: Sequence[NodeLike], etcd_removed: Collection[str],
                   problems: Problems) -> dict[str, str]:
    """`zookeeper.removed`: name -> address of each removed server, whose node entry stays and runs nothing."""
    by_name = {node.name: node for node in nodes}
    removed: dict[str, str] = {}
    for index, name in enumerate(section.strings("removed")):
        node = by_name.get(name)
        if node is None:
            problems.add(f"zookeeper.removed[{index}]",
                         f"{name!r} is not in nodes: keep a removed server's node entry (its address is part of the "
                         "ensemble's membership record); nothing runs on it")
            continue
        others = [role for role in node.roles if role != ROLE and not (role == "etcd" and name in etcd_removed)]
        if others:
            problems.add(f"zookeeper.removed[{index}]",
                         f"{name} also has role {' and '.join(others)}, but nothing runs on a removed server's node: "
                         "give those roles to a node that runs")
        removed[name] = node.address
    return removed


def parse_zookeeper_config(raw: Any, nodes: Sequence[NodeLike], problems: Problems,
                           etcd_removed: Collection[str] = ()) -> ZooKeeperConfig | None:
    """None when the stack has no ZooKeeper: no `zookeeper` section and no node with role zookeeper.
    `etcd_removed`: nodes nothing runs on (etcd.removed), which cannot be servers."""
    with_role = [node for node in nodes if ROLE in node.roles]
    if raw is None and not with_role:
        return None
    section = Section(raw, "zookeeper", problems)
    removed = _parse_removed(section, nodes, etcd_removed, problems)
    servers = tuple(node.name for node in with_role if node.name not in removed)
    for index, node in enumerate(nodes):
        if node.name in servers and node.name in etcd_removed:
            problems.add(f"nodes[{index}].roles", f"{node.name} is in etcd.removed (nothing runs on it), so it cannot "
                                                  f"have role {ROLE}; give the role to a node that runs")
    size = len(servers)
    if size == 0 or size % 2 == 0 or size > MAX_SERVERS:
        not_counting = f" (not counting {len(removed)} in zookeeper.removed)" if removed else ""
        problems.add("nodes", f"{size} nodes have role {ROLE}{not_counting}; a ZooKeeper ensemble needs an odd number "
                              f"between 1 and {MAX_SERVERS} (a majority must run: 3 tolerate one failure, 5 two)")
    ids = _parse_ids(section.raw("ids"), servers, removed, problems)
    bootstrap = section.strings("bootstrap")
    for index, name in enumerate(bootstrap):
        if name not in servers and name not in removed:
            problems.add(f"zookeeper.bootstrap[{index}]",
                         f"{name!r} is not a node with role {ROLE} (nor in zookeeper.removed)")
    if len(set(bootstrap)) != len(bootstrap):
        problems.add("zookeeper.bootstrap", "names a server twice")
    autopurge = Section(section.raw("autopurge"), "zookeeper.autopurge", problems)
    base = ZooKeeperEnsembleArgs(servers=(), ids={})
    ensemble = ZooKeeperEnsembleArgs(
        servers=(),
        ids=ids,
        bootstrap=bootstrap,
        removed=removed,
        install=section.value("install", str, base.install, one_of(INSTALL_MODES)),
        version=section.value("version", str, base.version, _check_version),
        tarball=_parse_tarball(section.raw("tarball"), problems),
        client_port=section.value("client_port", int, base.client_port, check_port),
        quorum_port=section.value("quorum_port", int, base.quorum_port, check_port),
        election_port=section.value("election_port", int, base.election_port, check_port),
        tick_time=section.value("tick_time", int, base.tick_time, check_positive),
        init_limit=section.value("init_limit", int, base.init_limit, check_positive),
        sync_limit=section.value("sync_limit", int, base.sync_limit, check_positive),
        heap_mb=section.value("heap_mb", int, base.heap_mb, _check_heap),
        snap_retain_count=autopurge.value("snap_retain_count", int, base.snap_retain_count, _check_retain),
        purge_interval_hours=autopurge.value("purge_interval_hours", int, base.purge_interval_hours,
                                             check_positive),
        four_letter_words=section.strings("four_letter_words", DEFAULT_FOUR_LETTER_WORDS, _check_word),
        health_timeout=section.value("health_timeout", int, base.health_timeout, check_positive),
    )
    autopurge.finish()
    section.finish()
    if ensemble.install == "tarball" and ensemble.tarball is None:
        problems.add("zookeeper.tarball", "zookeeper.install is tarball: give its path and sha256")
    ports = (ensemble.client_port, ensemble.quorum_port, ensemble.election_port)
    if len(set(ports)) != len(ports):
        problems.add("zookeeper", f"client_port, quorum_port and election_port must differ, got {ports}")
    if "srvr" not in ensemble.four_letter_words:
        problems.add("zookeeper.four_letter_words", "must include srvr (the health gate and restarts read it)")
    return ZooKeeperConfig(servers=servers, ensemble=ensemble)


def _check_heap(value: int) -> str | None:
    return None if value >= 64 else f"must be at least 64 (MiB), got {value}"


def _check_retain(value: int) -> str | None:
    # ZooKeeper itself raises anything below 3 to 3.
    return None if value >= 3 else f"must be at least 3 (ZooKeeper keeps at least 3 snapshots), got {value}"

