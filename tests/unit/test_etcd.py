"""etcd: config validation, the resource graph, certificates, secrets, growth stability, rendered text."""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pulumi
import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID
from pulumi.runtime import mocks as pulumi_mocks

from components.etcd import cluster as etcd
from components.etcd import render
from components.nodes.host import Host, HostArgs, SshConnection
from components.shared.pki import parse_time
from components.shared.scripts import render_script
from components.shared.validation import ConfigError
from components.stack import parse_stack_config
from tests.harness.fixtures import FAKE_PRIVATE_KEY
from tests.harness.program import ROOT, RecordingMonitor, run_program
from tests.harness.recording import RecordingMocks, plain_strings, unwrap_secrets, waits_for
from tests.harness.tls import emulate_tls
from tests.harness.validators import shellcheck_findings, systemd_verify
from tools.offline import run as offline_run

ADDRESSES = {f"etcd-{letter}": f"10.9.0.{index}" for index, letter in enumerate("abcdefghij", start=1)}


class TlsRecordingMocks(RecordingMocks):
    """Recording mocks whose tls resources answer like the provider (real keys and certificates)."""

    def fake_outputs(self, typ: str, inputs: dict[str, Any]) -> dict[str, Any]:
        if typ.startswith("tls:"):
            return emulate_tls(typ, unwrap_secrets(dict(inputs)))
        return super().fake_outputs(typ, inputs)


def stack_config(members: list[str], removed: tuple[str, ...] = (), bootstrap: tuple[str, ...] | None = None,
                 **etcd_settings: Any) -> dict[str, Any]:
    nodes = [{"name": name, "address": ADDRESSES[name], "roles": ["etcd"]} for name in [*removed, *members]]
    return {
        "nodes": nodes,
        "ssh_private_key": FAKE_PRIVATE_KEY,
        "etcd": {"bootstrap": list(bootstrap if bootstrap is not None else members[:3]), "removed": list(removed),
                 **etcd_settings},
    }


def evaluate(config: dict[str, Any], mocks: RecordingMocks | None = None) -> RecordingMocks:
    mocks = mocks or RecordingMocks()
    run_program(mocks, config, secret_keys=["ssh_private_key"])
    return mocks


# --- config validation ----------------------------------------------------------------------------------
def problems_of(raw: dict[str, Any]) -> list[str]:
    with pytest.raises(ConfigError) as failure:
        parse_stack_config(raw, {"ssh_private_key"})
    return failure.value.problems


@pytest.mark.parametrize("size", [0, 2, 4, 6, 8])
def test_bad_member_counts_are_rejected_naming_nodes(size: int) -> None:
    names = list(ADDRESSES)[:size]
    raw = stack_config(names, bootstrap=())
    raw["nodes"] += [{"name": "plain", "address": "10.9.1.1"}]
    assert f"nodes: {size} nodes have role etcd; etcd needs an odd number between 1 and 7" in problems_of(raw)


@pytest.mark.parametrize("size", [1, 3, 5, 7])
def test_odd_member_counts_up_to_seven_are_accepted(size: int) -> None:
    config = parse_stack_config(stack_config(list(ADDRESSES)[:size], bootstrap=()), {"ssh_private_key"})
    assert config.etcd is not None and len(config.etcd.members) == size


def test_removed_members_do_not_count_and_must_stay_in_nodes() -> None:
    raw = stack_config(["etcd-a", "etcd-b", "etcd-d"], removed=("etcd-c",), bootstrap=("etcd-a", "etcd-b", "etcd-c"))
    config = parse_stack_config(raw, {"ssh_private_key"})
    assert config.etcd is not None
    assert config.etcd.members == ("etcd-a", "etcd-b", "etcd-d")
    assert dict(config.etcd.cluster.removed) == {"etcd-c": ADDRESSES["etcd-c"]} and config.etcd.removed == ("etcd-c",)
    raw["nodes"] = [node for node in raw["nodes"] if node["name"] != "etcd-c"]
    found = problems_of(raw)
    assert any(p.startswith("etcd.removed[0]: 'etcd-c' is not in nodes") for p in found), found
    assert any(p.startswith("etcd.bootstrap[2]: 'etcd-c'") for p in found), found


@pytest.mark.parametrize(("settings", "expected"), [
    ({"install": "docker"}, "etcd.install: must be one of package, tarball, download, preinstalled, got 'docker'"),
    ({"install": "tarball"}, "etcd.tarballs: etcd.install is tarball"),
    ({"tarballs": {"arm64": {"path": "/nonexistent.tgz", "sha256": "x"}}}, "etcd.tarballs.arm64.path: no such file"),
    ({"tarballs": {"arm64": {"path": "/nonexistent.tgz", "sha256": "x"}}}, "etcd.tarballs.arm64.sha256: must be 64"),
    ({"tarballs": {"arm-v7": {"path": "/x", "sha256": "0" * 64}}}, "etcd.tarballs.arm-v7: unknown architecture"),
    ({"snapshot": {"retention": 0}}, "etcd.snapshot.retention: must be greater than 0"),
    ({"snapshot": {"schedule": "hourly; rm -rf /"}}, "etcd.snapshot.schedule: must be a systemd OnCalendar"),
    ({"snapshot": {"keep": 3}}, "etcd.snapshot.keep: unknown key"),
    ({"versoin": "3.5.0"}, "etcd.versoin: unknown key (did you mean 'version'?)"),
    ({"peer_port": 2379}, "etcd.peer_port: must differ from etcd.client_port"),
    ({"bootstrap": ["etcd-a", "etcd-z"]}, "etcd.bootstrap[1]: 'etcd-z' is not a node with role etcd"),
    ({"version": "3.3.27"}, "etcd.version: must be 3.4 or later"),
    ({"heartbeat_interval": 300}, "etcd.election_timeout: must be at least 5 x heartbeat_interval (1500 ms)"),
    ({"election_timeout": 60000}, "etcd.election_timeout: must be at most 50000 ms"),
    ({"auto_compaction": {"mode": "hourly"}}, "etcd.auto_compaction.mode: must be one of periodic, revision"),
    ({"auto_compaction": {"retention": "1 hour"}}, "etcd.auto_compaction.retention: must be a duration"),
    ({"auto_compaction": {"mode": "revision", "retention": "1h"}}, "etcd.auto_compaction.retention: revision mode"),
    ({"certificates": {"validity_hours": 100, "early_renewal_hours": 100}},
     "etcd.certificates.early_renewal_hours: must be between 0 and validity_hours - 1 (99)"),
    ({"certificates": {"renew": 1}}, "etcd.certificates.renew: unknown key"),
    ({"ca": {"generation": 2, "trusted": [1]}}, "etcd.ca.trusted: must include ca.generation 2"),
    ({"ca": {"trusted": [1, "2"]}}, "etcd.ca.trusted[1]: must be a CA generation"),
])
def test_etcd_settings_are_validated_naming_the_key(settings: dict[str, Any], expected: str) -> None:
    raw = stack_config(["etcd-a", "etcd-b", "etcd-c"])
    raw["etcd"].update(settings)
    found = problems_of(raw)
    assert any(p.startswith(expected) for p in found), found


def test_a_stack_without_etcd_nodes_has_no_cluster() -> None:
    config = parse_stack_config({"nodes": [{"name": "n", "address": "10.9.1.1"}], "ssh_private_key": "k"},
                                {"ssh_private_key"})
    assert config.etcd is None


# --- component argument validation ----------------------------------------------------------------------
class FakeHost:
    def __init__(self, name: str) -> None:
        self.hostname, self.address = name, ADDRESSES.get(name, "10.9.9.9")


@pytest.mark.parametrize(("names", "expected"), [
    ([], "members: 0 members; etcd needs an odd number between 1 and 7"),
    (["etcd-a", "etcd-b"], "members: 2 members"),
    (list(ADDRESSES)[:8], "members: 8 members"),
    (["etcd-a", "etcd-a", "etcd-b"], "members: duplicate member names etcd-a"),
])
def test_component_rejects_bad_sizes_and_duplicates(names: list[str], expected: str) -> None:
    args = etcd.EtcdClusterArgs(members=[FakeHost(n) for n in names])  # type: ignore[misc]
    assert any(p.startswith(expected) for p in etcd.validate(args)), etcd.validate(args)


def test_component_rejects_reusing_a_removed_member_name() -> None:
    args = etcd.EtcdClusterArgs(members=[FakeHost("etcd-a")], removed={"etcd-a": "10.9.0.1"})  # type: ignore[list-item]
    assert any(p.startswith("removed: etcd-a cannot be both removed and a member") for p in etcd.validate(args))


# --- the resource graph ---------------------------------------------------------------------------------
def test_graph_of_a_three_member_cluster() -> None:
    mocks = evaluate(stack_config(["etcd-a", "etcd-b", "etcd-c"]))
    cluster = mocks.named("etcd")
    assert cluster.type == "cookbook:etcd:Cluster"
    commands = sorted(r.name for r in mocks.of_type("command:remote:Command") if r.name.startswith("etcd-"))
    assert commands == ["etcd-a-prepare", "etcd-b-prepare", "etcd-c-prepare", "etcd-health",
                        "etcd-member-etcd-a", "etcd-member-etcd-b", "etcd-member-etcd-c"]
    for resource in mocks.resources:
        if resource.name.startswith("etcd-member-") or resource.name in ("etcd-health", "etcd-ca"):
            assert resource.parent == cluster.urn, resource.name
    by_urn = {r.urn: r.name for r in mocks.resources}
    deps = {r.name: {by_urn.get(d) for d in r.registration.dependencies} for r in mocks.resources}
    assert "etcd-a-prepare" in deps["etcd-member-etcd-a"]  # the prepared host (a component's children)
    assert "etcd-member-etcd-a" in deps["etcd-member-etcd-b"]  # one member (re)configured at a time
    assert {"etcd-member-etcd-a", "etcd-member-etcd-b", "etcd-member-etcd-c"} <= deps["etcd-health"]
    member = mocks.named("etcd-member-etcd-b")
    assert member.inputs["connection"]["host"] == ADDRESSES["etcd-b"]
    assert "ETCD_INITIAL_CLUSTER_STATE=new" in member.inputs["create"]


def test_growth_joins_one_at_a_time_and_leaves_existing_members_byte_identical() -> None:
    three = evaluate(stack_config(["etcd-a", "etcd-b", "etcd-c"]))
    five = evaluate(stack_config(["etcd-a", "etcd-b", "etcd-c", "etcd-d", "etcd-e"]))
    before = {r.urn: r.registration.raw_inputs for r in three.resources}
    after = {r.urn: r.registration.raw_inputs for r in five.resources}
    names = {r.urn: r.name for r in five.resources}
    changed = sorted(names[urn] for urn in before if before[urn] != after.get(urn))
    assert changed == ["etcd-health"]
    added = sorted(r.name for r in five.resources if r.urn not in before and r.registration.custom)
    assert "etcd-join-etcd-d" in added and "etcd-join-etcd-e" in added
    by_urn = {r.urn: r.name for r in five.resources}
    join_e = five.named("etcd-join-etcd-e")
    assert "etcd-join-etcd-d" in {by_urn.get(d) for d in join_e.registration.dependencies}
    join_d = five.named("etcd-join-etcd-d")
    assert join_d.inputs["connection"]["host"] == ADDRESSES["etcd-d"]
    script = join_d.inputs["create"]
    assert "--learner" in script and "member promote" in script
    # Seeds are the bootstrap members: stable whatever joins later.
    assert "SEED_ENDPOINTS=https://10.9.0.1:2379,https://10.9.0.2:2379,https://10.9.0.3:2379" in script
    member_d = five.named("etcd-member-etcd-d")
    assert "ETCD_INITIAL_CLUSTER=" not in member_d.inputs["create"]  # written by its join step


def test_replacing_a_dead_member_removes_it_through_a_healthy_member_first() -> None:
    three = evaluate(stack_config(["etcd-a", "etcd-b", "etcd-c"]))
    replaced = evaluate(stack_config(["etcd-a", "etcd-b", "etcd-f"], removed=("etcd-c",),
                                     bootstrap=("etcd-a", "etcd-b", "etcd-c")))
    before = {r.urn: r.registration.raw_inputs for r in three.resources}
    for name in ("etcd-member-etcd-a", "etcd-member-etcd-b"):
        resource = replaced.named(name)
        assert before[resource.urn] == resource.registration.raw_inputs, name
    assert not [r.name for r in replaced.resources if r.name in ("etcd-c", "etcd-member-etcd-c", "etcd-c-prepare")]
    targets = {r.inputs.get("connection", {}).get("host") for r in replaced.resources}
    assert ADDRESSES["etcd-c"] not in targets  # nothing runs on the dead host
    remove = replaced.named("etcd-remove-etcd-c")
    assert remove.inputs["connection"]["host"] == ADDRESSES["etcd-a"]
    assert "member remove" in remove.inputs["create"]
    by_urn = {r.urn: r.name for r in replaced.resources}
    join = replaced.named("etcd-join-etcd-f")
    assert "etcd-remove-etcd-c" in {by_urn.get(d) for d in join.registration.dependencies}


# Every graph shape the etcd recipe can produce: bootstrap, growth, replacement, shrinking, tarball.
TARBALL_FILE = str(Path(__file__))  # any existing file: the graph does not read it
SHAPES = {
    "bootstrap": stack_config(["etcd-a", "etcd-b", "etcd-c"]),
    "growth": stack_config(["etcd-a", "etcd-b", "etcd-c", "etcd-d", "etcd-e"]),
    "replacement": stack_config(["etcd-a", "etcd-b", "etcd-f"], removed=("etcd-c",),
                                bootstrap=("etcd-a", "etcd-b", "etcd-c")),
    "shrink-and-replace": stack_config(["etcd-a", "etcd-f", "etcd-g"], removed=("etcd-b", "etcd-c", "etcd-d", "etcd-e"),
                                       bootstrap=("etcd-a", "etcd-b", "etcd-c")),
    "tarball": stack_config(["etcd-a", "etcd-b", "etcd-c", "etcd-d", "etcd-e"], install="tarball",
                            tarballs={"arm64": {"path": TARBALL_FILE, "sha256": "0" * 64}}),
}


@pytest.mark.parametrize("shape", sorted(SHAPES))
def test_every_resource_of_the_cluster_is_its_child(shape: str) -> None:
    mocks = evaluate(SHAPES[shape])
    cluster = mocks.named("etcd")
    mine = [r for r in mocks.resources if r.name.startswith("etcd-") and r.name != "etcd"
            and not r.name.endswith(("-prepare",)) and r.type.split(":")[0] in ("command", "tls")]
    kinds = {r.name.split("-")[1] for r in mine}
    assert {"member", "health", "ca", "operator", "apiserver"} <= kinds
    expected_kinds = {"growth": {"join"}, "replacement": {"join", "remove"}, "shrink-and-replace": {"join", "remove"},
                      "tarball": {"tarball", "join"}}.get(shape, set())
    assert expected_kinds <= kinds
    for resource in mine:
        assert resource.parent == cluster.urn, resource.name
        assert resource.urn.split("::")[2].startswith("cookbook:etcd:Cluster$"), resource.urn


@pytest.mark.parametrize("shape", sorted(SHAPES))
def test_the_health_gate_waits_for_every_member_step_join_and_removal(shape: str) -> None:
    mocks = evaluate(SHAPES[shape])
    by_urn = {r.urn: r.name for r in mocks.resources}
    gate = {by_urn.get(d) for d in mocks.named("etcd-health").registration.dependencies}
    steps = {r.name for r in mocks.of_type("command:remote:Command")
             if r.name.startswith(("etcd-member-", "etcd-join-", "etcd-remove-"))}
    assert steps and steps <= gate
    # and every membership change waits for every member step and the changes before it
    changes = [r for r in mocks.of_type("command:remote:Command") if r.name.startswith(("etcd-join-", "etcd-remove-"))]
    members = {name for name in steps if name.startswith("etcd-member-")}
    for index, change in enumerate(changes):
        deps = {by_urn.get(d) for d in change.registration.dependencies}
        assert members <= deps and {c.name for c in changes[:index]} <= deps, change.name


def test_joins_seed_from_the_members_before_them_not_the_bootstrap_record() -> None:
    """Every bootstrap member but one replaced: the seeds are current members, the join of g also seeds
    from f that joined before it; the removed members' addresses are nowhere."""
    mocks = evaluate(SHAPES["shrink-and-replace"])
    seeds = {name: re.findall(r"SEED_ENDPOINTS=(\S+)", mocks.named(f"etcd-join-{name}").inputs["create"])[0]
             for name in ("etcd-f", "etcd-g")}
    assert seeds == {"etcd-f": "https://10.9.0.1:2379", "etcd-g": "https://10.9.0.1:2379,https://10.9.0.6:2379"}


def test_a_later_growth_leaves_earlier_joins_untouched() -> None:
    five = evaluate(SHAPES["growth"])
    seven = evaluate(stack_config(["etcd-a", "etcd-b", "etcd-c", "etcd-d", "etcd-e", "etcd-f", "etcd-g"]))
    before = {r.urn: r.registration.raw_inputs for r in five.resources}
    for name in ("etcd-join-etcd-d", "etcd-join-etcd-e"):
        resource = seven.named(name)
        assert before[resource.urn] == resource.registration.raw_inputs, name


def test_a_removal_finds_an_unstarted_learner_by_peer_url_unless_its_address_is_reused() -> None:
    mocks = evaluate(SHAPES["shrink-and-replace"])
    # etcd-c's address 10.9.0.3 is nobody's now; etcd-f is at 10.9.0.6, etcd-g at 10.9.0.7
    assert "TARGET_PEER_URL=https://10.9.0.3:2380" in mocks.named("etcd-remove-etcd-c").inputs["create"]
    reused = stack_config(["etcd-a", "etcd-b", "etcd-f"], removed=("etcd-c",), bootstrap=("etcd-a", "etcd-b", "etcd-c"))
    reused["nodes"][-1]["address"] = ADDRESSES["etcd-c"]  # the replacement runs on the re-imaged machine
    again = evaluate(reused)
    script = again.named("etcd-remove-etcd-c").inputs["create"]
    assert "TARGET_PEER_URL=" in script and "TARGET_PEER_URL=https" not in script


# --- certificates and secrets ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def with_certificates() -> RecordingMocks:
    return evaluate(stack_config(["etcd-a", "etcd-b", "etcd-c"]), TlsRecordingMocks())


def pem_blocks(text: str) -> list[str]:
    return re.findall(r"-----BEGIN [A-Z ]+-----\n.*?-----END [A-Z ]+-----\n", text, re.S)


def test_member_certificates_name_the_member_and_its_addresses(with_certificates: RecordingMocks) -> None:
    for name in ("etcd-a", "etcd-b", "etcd-c"):
        # stdin: the member certificate, its key, then the CA bundle the member trusts
        cert_pem, key_pem, ca_pem = pem_blocks(with_certificates.named(f"etcd-member-{name}").inputs["stdin"])
        ca = x509.load_pem_x509_certificate(ca_pem.encode())
        cert = x509.load_pem_x509_certificate(cert_pem.encode())
        assert "PRIVATE KEY" in key_pem
        assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
        assert cert.issuer == ca.subject
        cert.verify_directly_issued_by(ca)
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        assert set(san.get_values_for_type(x509.DNSName)) == {name, "localhost"}
        assert set(san.get_values_for_type(x509.IPAddress)) == {
            ipaddress.ip_address(ADDRESSES[name]), ipaddress.ip_address("127.0.0.1"), ipaddress.ip_address("::1")}
        usages = set(cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value)
        assert usages == {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH}
        assert not cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca


def test_client_certificates_are_client_only(with_certificates: RecordingMocks) -> None:
    for name in ("etcd-operator-cert", "etcd-apiserver-cert"):
        request = with_certificates.named(name).inputs
        assert request["allowedUses"] == ["digital_signature", "key_encipherment", "client_auth"]


def test_private_keys_never_appear_in_plain_inputs(with_certificates: RecordingMocks) -> None:
    keys = [b for r in with_certificates.resources for b in pem_blocks(str(r.inputs.get("stdin", "")))
            if "PRIVATE KEY" in b]
    assert len(keys) == 3
    for resource in with_certificates.resources:
        plain = "".join(plain_strings(resource.registration.raw_inputs))
        assert "PRIVATE KEY-----\nMI" not in plain, resource.name
        assert not any(key.splitlines()[1] in plain for key in keys), resource.name


def test_commands_carrying_keys_are_secret_and_silent(with_certificates: RecordingMocks) -> None:
    for name in ("etcd-a", "etcd-b", "etcd-c"):
        member = with_certificates.named(f"etcd-member-{name}")
        assert member.inputs["logging"] == "none"
        assert set(member.registration.additional_secret_outputs) >= {"stdout", "stderr"}
        assert plain_strings(member.registration.raw_inputs.get("stdin")) == []  # stdin is a secret


# --- renewal, CA generations, protection, expiry ---------------------------------------------------------
class ProtectRecordingMocks(TlsRecordingMocks):
    def __init__(self) -> None:
        super().__init__()
        self.protected: dict[str, bool] = {}


class ProtectMonitor(RecordingMonitor):
    """Also records each registration's `protect` option (the engine refuses to replace or delete it)."""

    def RegisterResource(self, request: Any) -> Any:
        mocks: ProtectRecordingMocks = self.mocks  # type: ignore[assignment]
        mocks.protected[request.name] = bool(request.protect)
        return super().RegisterResource(request)


def evaluate_with_outputs(config: dict[str, Any]) -> tuple[ProtectRecordingMocks, dict[str, Any]]:
    mocks = ProtectRecordingMocks()
    outputs = offline_run(mocks, config, stack="test", secret_keys=["ssh_private_key"], monitor=ProtectMonitor(mocks))
    return mocks, outputs


def test_the_ca_is_protected_and_leaf_certificates_renew_early() -> None:
    mocks, _ = evaluate_with_outputs(SHAPES["growth"])
    assert mocks.protected["etcd-ca"] and mocks.protected["etcd-ca-key"]
    leaves = [r for r in mocks.of_type("tls:index/locallySignedCert:LocallySignedCert")]
    assert sorted(r.name for r in leaves) == sorted(
        ["etcd-operator-cert", "etcd-apiserver-cert", *(f"etcd-member-etcd-{x}-cert" for x in "abcde")])
    for leaf in leaves:
        assert not mocks.protected[leaf.name]
        assert leaf.inputs["validityPeriodHours"] == 5 * 365 * 24
        assert leaf.inputs["earlyRenewalHours"] == 90 * 24


def test_certificate_settings_reach_every_leaf() -> None:
    config = stack_config(["etcd-a", "etcd-b", "etcd-c"], certificates={"validity_hours": 8760,
                                                                        "early_renewal_hours": 720})
    mocks, _ = evaluate_with_outputs(config)
    for leaf in mocks.of_type("tls:index/locallySignedCert:LocallySignedCert"):
        assert (leaf.inputs["validityPeriodHours"], leaf.inputs["earlyRenewalHours"]) == (8760, 720), leaf.name


def test_expires_is_the_earliest_certificate_end() -> None:
    config = stack_config(["etcd-a", "etcd-b", "etcd-c"], certificates={"validity_hours": 1000,
                                                                        "early_renewal_hours": 100})
    mocks, outputs = evaluate_with_outputs(config)
    ends = [x509.load_pem_x509_certificate(pem.encode()).not_valid_after_utc
            for name in ("etcd-a", "etcd-b", "etcd-c")
            for pem in pem_blocks(mocks.named(f"etcd-member-{name}").inputs["stdin"]) if "CERTIFICATE" in pem]
    ends += [x509.load_pem_x509_certificate(outputs["etcd"][key].encode()).not_valid_after_utc
             for key in ("client_cert", "apiserver_client_cert")]
    expires = outputs["etcd"]["expires"]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", expires)
    assert parse_time(expires) == min(ends)  # a 1000-hour leaf, not the 10-year CA
    assert max(ends) - min(ends) > datetime.timedelta(days=365)


def ca_subjects(stdin: str) -> list[str]:
    return [x509.load_pem_x509_certificate(pem.encode()).subject.rfc4514_string() for pem in pem_blocks(stdin)[2:]]


ONE, TWO = "O=cluster-cookbook,CN=etcd etcd CA", "O=cluster-cookbook,CN=etcd etcd CA 2"


def test_a_ca_rotation_trusts_both_generations_then_signs_with_the_new_one() -> None:
    names = ["etcd-a", "etcd-b", "etcd-c"]
    first, _ = evaluate_with_outputs(stack_config(names))
    both, both_outputs = evaluate_with_outputs(stack_config(names, ca={"trusted": [1, 2]}))
    signed, _ = evaluate_with_outputs(stack_config(names, ca={"generation": 2, "trusted": [1, 2]}))
    only_new, _ = evaluate_with_outputs(stack_config(names, ca={"generation": 2}))
    # Generation 1 keeps its names (its URN must never change); generation 2 is new and protected too.
    assert {r.name for r in first.resources if r.name.startswith("etcd-ca")} == {"etcd-ca", "etcd-ca-key"}
    assert {r.name for r in both.resources if r.name.startswith("etcd-ca")} == {
        "etcd-ca", "etcd-ca-key", "etcd-ca-2", "etcd-ca-2-key"}
    assert both.protected["etcd-ca-2"] and both.protected["etcd-ca-2-key"]
    assert {r.name for r in only_new.resources if r.name.startswith("etcd-ca")} == {"etcd-ca-2", "etcd-ca-2-key"}
    for mocks, trusted, issuer in ((first, [ONE], ONE), (both, [ONE, TWO], ONE), (signed, [ONE, TWO], TWO),
                                   (only_new, [TWO], TWO)):
        for name in names:
            stdin = mocks.named(f"etcd-member-{name}").inputs["stdin"]
            assert ca_subjects(stdin) == trusted
            cert = x509.load_pem_x509_certificate(pem_blocks(stdin)[0].encode())
            assert cert.issuer.rfc4514_string() == issuer
    assert len(pem_blocks(both_outputs["etcd"]["ca_cert"])) == 2  # clients get the bundle too


def readme_etcd_output_keys() -> set[str]:
    text = (ROOT / "README.md").read_text()
    section = text[text.index("## etcd cluster"):]
    section = section[:section.index("\n## ", 3)]
    outputs = section[section.index("### Outputs"):]
    outputs = outputs[:outputs.index("\n### ", 3)]
    return set(re.findall(r"^\| `([a-z_]+)` \|", outputs, re.M))


def test_the_readme_documents_exactly_the_exported_etcd_outputs() -> None:
    _, outputs = evaluate_with_outputs(stack_config(["etcd-a", "etcd-b", "etcd-c"]))
    assert readme_etcd_output_keys() == set(outputs["etcd"])


# --- rendered text --------------------------------------------------------------------------------------
ARGS = etcd.EtcdClusterArgs(members=[], bootstrap=["a", "b", "c"])
TARBALL_ARGS = etcd.EtcdClusterArgs(members=[], install="tarball",
                                    tarballs={"arm64": etcd.Tarball("/tmp/etcd.tgz", "0" * 64)})
MEMBERSHIP = render.bootstrap_membership(ARGS, ["a", "b", "c"], {"a": "10.9.0.1", "b": "10.9.0.2", "c": "10.9.0.3"})
SCRIPTS = {
    "configure-package-bootstrap": render.render_configure_script(ARGS, "a", "10.9.0.1", "amd64", MEMBERSHIP),
    "configure-tarball-joiner": render.render_configure_script(TARBALL_ARGS, "d", "10.9.0.4", "arm64", ""),
    "config-hash": render.render_config_hash_script(ARGS),
    "configure-dns-name-armhf": render.render_configure_script(ARGS, "a", "pi-a.lan", "armhf", MEMBERSHIP),
    "join": render.render_join_script(ARGS, "d", "10.9.0.4", ["10.9.0.1", "10.9.0.2", "10.9.0.3"]),
    "remove": render.render_remove_script(ARGS, "c", "10.9.0.3", False),
    "health": render.render_health_script(ARGS, {"a": "10.9.0.1", "b": "10.9.0.2", "c": "10.9.0.3"}),
    "snapshot": render.render_snapshot_script(ARGS, "a"),
    # A host with a read-only /usr (Fedora CoreOS, Flatcar): binaries in /opt/bin, scripts in /opt/lib.
    "configure-tarball-read-only-usr": render.render_configure_script(TARBALL_ARGS, "d", "10.9.0.4", "amd64", "",
                                                                      usr_read_only=True),
    "configure-download-read-only-usr": render.render_configure_script(
        etcd.EtcdClusterArgs(members=[], install="download"), "a", "10.9.0.1", "amd64", MEMBERSHIP,
        usr_read_only=True, downloaded_sha256="1" * 64),
    "join-read-only-usr": render.render_join_script(TARBALL_ARGS, "d", "10.9.0.4", ["10.9.0.1"], usr_read_only=True),
    "health-read-only-usr": render.render_health_script(TARBALL_ARGS, {"a": "10.9.0.1"}, usr_read_only=True),
    "download": render.render_download_script(etcd.EtcdClusterArgs(members=[], install="download"), "arm64"),
}


@pytest.mark.parametrize("name", sorted(SCRIPTS))
def test_rendered_script_passes_shellcheck(name: str) -> None:
    assert shellcheck_findings(SCRIPTS[name]) == ""


@pytest.mark.parametrize("name", sorted(SCRIPTS))
def test_scripts_are_strict(name: str) -> None:
    assert SCRIPTS[name].startswith("#!/usr/bin/env bash\n") and "\nset -euo pipefail\n" in SCRIPTS[name]


@pytest.mark.parametrize("args", [ARGS, etcd.EtcdClusterArgs(members=[], install="preinstalled")],
                         ids=["package", "preinstalled"])
def test_units_pass_systemd_analyze_verify(args: etcd.EtcdClusterArgs, tmp_path: Path) -> None:
    service, timer = render.render_snapshot_units(args, "a")
    files = {f"{render.SERVICE}.service": render.render_unit(args, "a"), f"{render.SNAPSHOT_UNIT}.service": service,
             f"{render.SNAPSHOT_UNIT}.timer": timer}
    assert systemd_verify(files, tmp_path) == ""


def header_value(script: str, name: str) -> str:
    """A parameter of a rendered script, as bash sees it (the header is only assignments; values may hold whole
    scripts with their own `readonly` line: the script's own is the last one)."""
    header = script.rsplit("\nreadonly ", 1)[0]
    done = subprocess.run(["bash", "-c", f'{header}\nprintf %s "${{{name}}}"'], capture_output=True, text=True,
                          check=True)
    return done.stdout


@pytest.mark.parametrize("install", ["tarball", "download"])
def test_units_for_a_read_only_usr_pass_systemd_analyze_verify(install: str, tmp_path: Path) -> None:
    """The units as the configure script installs them on a Fedora CoreOS or Flatcar host."""
    script = SCRIPTS[f"configure-{install}-read-only-usr"]
    files = {f"{render.SERVICE}.service": header_value(script, "UNIT_CONTENT"),
             f"{render.SNAPSHOT_UNIT}.service": header_value(script, "SNAPSHOT_SERVICE_CONTENT"),
             f"{render.SNAPSHOT_UNIT}.timer": header_value(script, "SNAPSHOT_TIMER_CONTENT")}
    assert "ExecStart=/opt/bin/etcd\n" in files[f"{render.SERVICE}.service"]
    assert "ExecStart=/bin/bash /opt/lib/cookbook-etcd/snapshot" in files[f"{render.SNAPSHOT_UNIT}.service"]
    # The only complaint: the binary the step installs is not on this machine.
    assert systemd_verify(files, tmp_path) == \
        "cookbook-etcd.service: Command /opt/bin/etcd is not executable: No such file or directory"


@pytest.mark.parametrize("name", [name for name in SCRIPTS if name.endswith("-read-only-usr")])
def test_nothing_is_written_under_usr_on_a_read_only_usr(name: str) -> None:
    """Fedora CoreOS and Flatcar mount /usr read-only: every path the recipe writes or runs from is under /opt
    (the package's /usr/bin is never used there: the package mode is refused)."""
    script = SCRIPTS[name]
    assert "/usr/local" not in script, name
    assert "ETCDCTL_BIN=/opt/bin/etcdctl" in script
    if name.startswith("configure-"):
        assert "ETCD_BIN=/opt/bin/etcd\n" in script and "ExecStart=/opt/bin/etcd\n" in script
        assert "ExecStartPre=/bin/bash /opt/lib/cookbook-etcd/config-hash" in script
        assert "ExecStart=/bin/bash /opt/lib/cookbook-etcd/snapshot" in script


def test_other_hosts_get_the_scripts_they_always_got() -> None:
    """The read-only layout is opt-in per host: a host whose /usr is writable gets byte for byte the script it got
    before (its step does not run again)."""
    assert render.render_configure_script(TARBALL_ARGS, "d", "10.9.0.4", "arm64", "", usr_read_only=False) == \
        SCRIPTS["configure-tarball-joiner"]
    assert "/usr/local/lib/cookbook-etcd/snapshot" in SCRIPTS["configure-tarball-joiner"]


def test_the_download_mode_installs_the_downloaded_tarball_as_the_tarball_mode_does() -> None:
    args = etcd.EtcdClusterArgs(members=[], install="download", version="3.5.21")
    script = render.render_configure_script(args, "a", "10.9.0.1", "arm64", MEMBERSHIP, downloaded_sha256="ab" * 32)
    for line in ("INSTALL_MODE=tarball", "ETCD_VERSION=3.5.21", "ETCD_BIN=/usr/local/bin/etcd",
                 "TARBALL_PATH=/var/tmp/cookbook-etcd-v3.5.21-linux-arm64.tar.gz", "TARBALL_SHA256=" + "ab" * 32):
        assert f"\n{line}\n" in script, line
    download = render.render_download_script(args, "armhf")
    assert ("TARBALL_URL=https://github.com/etcd-io/etcd/releases/download/v3.5.21/etcd-v3.5.21-linux-arm.tar.gz"
            in download)  # etcd names its tarballs after Go's architecture
    assert "SUMS_URL=https://github.com/etcd-io/etcd/releases/download/v3.5.21/SHA256SUMS" in download
    assert render.downloaded_sha256("x\nCOOKBOOK_ETCD_TARBALL_SHA256=" + "cd" * 32 + "\n") == "cd" * 32


def test_package_mode_is_refused_on_a_host_without_apt() -> None:
    coreos = {"usr_read_only": True, "os_id": "flatcar", "os_pretty_name": "Flatcar Container Linux 4152.2.3"}
    with pytest.raises(ValueError) as refused:
        render.check_host(ARGS, "a", coreos)
    assert str(refused.value).startswith("etcd: a runs Flatcar Container Linux 4152.2.3 with a read-only /usr and no "
                                         "apt: etcd.install package cannot work there; use etcd.install download")
    render.check_host(TARBALL_ARGS, "a", coreos)
    render.check_host(ARGS, "a", {"usr_read_only": False, "os_id": "debian"})


def test_tarball_unit_runs_the_uploaded_binary() -> None:
    assert "ExecStart=/usr/local/bin/etcd\n" in render.render_unit(TARBALL_ARGS, "a")
    script = SCRIPTS["configure-tarball-joiner"]
    # 3.5 by default: it runs on arm64 without ETCD_UNSUPPORTED_ARCH
    assert "TARBALL_PATH=/var/tmp/cookbook-etcd-v3.5.17-linux-arm64.tar.gz" in script
    assert "ETCD_VERSION=3.5.17" in script and "GO_ARCH=arm64" in script
    assert "TARBALL_SHA256=" + "0" * 64 in script


@pytest.mark.parametrize(("address", "expected"), [
    ("10.9.0.1", ["ETCD_LISTEN_PEER_URLS=https://10.9.0.1:2380",
                  "ETCD_LISTEN_CLIENT_URLS=https://10.9.0.1:2379,https://127.0.0.1:2379"]),
    # A DNS-named member listens on all addresses, which includes loopback: naming it too binds it twice.
    ("pi-a.lan", ["ETCD_LISTEN_PEER_URLS=https://0.0.0.0:2380", "ETCD_LISTEN_CLIENT_URLS=https://0.0.0.0:2379",
                  "ETCD_ADVERTISE_CLIENT_URLS=https://pi-a.lan:2379",
                  "ETCD_INITIAL_ADVERTISE_PEER_URLS=https://pi-a.lan:2380"]),
    ("fd00::1", ["ETCD_INITIAL_ADVERTISE_PEER_URLS=https://[fd00::1]:2380",
                 "ETCD_LISTEN_CLIENT_URLS=https://[fd00::1]:2379,https://127.0.0.1:2379"]),
])
def test_env_file(address: str, expected: list[str]) -> None:
    text = render.render_env_file(ARGS, "a", address)
    lines = text.splitlines()
    for line in ("ETCD_CLIENT_CERT_AUTH=true", "ETCD_PEER_CLIENT_CERT_AUTH=true", "ETCD_STRICT_RECONFIG_CHECK=true",
                 "ETCD_AUTO_TLS=false", "ETCD_PEER_AUTO_TLS=false", "ETCD_PRE_VOTE=true", "ETCD_HEARTBEAT_INTERVAL=100",
                 "ETCD_ELECTION_TIMEOUT=1000", "ETCD_AUTO_COMPACTION_MODE=periodic",
                 "ETCD_AUTO_COMPACTION_RETENTION=1h", *expected):
        assert line in lines
    assert "http://" not in text
    assert "ETCD_UNSUPPORTED_ARCH" not in text  # decided on the host, from what the installed binary says


def test_the_version_matters_in_tarball_mode_only() -> None:
    """Other modes run what the package (or the machine) has: their scripts do not change with it."""
    newer = etcd.EtcdClusterArgs(members=[], bootstrap=["a", "b", "c"], version="3.5.21")
    assert render.render_configure_script(newer, "a", "10.9.0.1", "amd64", MEMBERSHIP) == \
        SCRIPTS["configure-package-bootstrap"]


def test_the_unit_waits_for_time_sync_records_its_files_and_never_times_out_a_slow_start() -> None:
    unit = render.render_unit(ARGS, "a").splitlines()
    assert "After=network-online.target time-sync.target" in unit
    assert "TimeoutStartSec=infinity" in unit
    assert "RuntimeDirectory=cookbook-etcd" in unit
    assert "ExecStartPre=/bin/bash /usr/local/lib/cookbook-etcd/config-hash /run/cookbook-etcd/started-a" in unit
    assert render.run_files(ARGS) == ("/etc/cookbook-etcd/etcd.env", "/etc/systemd/system/cookbook-etcd.service",
                                      "/etc/cookbook-etcd/pki/ca.crt", "/etc/cookbook-etcd/pki/member.crt",
                                      "/etc/cookbook-etcd/pki/member.key", "/usr/bin/etcd")


def test_the_config_hash_records_what_etcd_starts_with(tmp_path: Path) -> None:
    files = [tmp_path / name for name in ("env", "unit", "key")]
    for file in files:
        file.write_text(file.name)
    script = render_script(["etcd/config-hash.sh"], {"RUN_FILES": tuple(str(f) for f in files)})
    first = subprocess.run(["bash", "-c", script, "config-hash", str(tmp_path / "started")], capture_output=True,
                           text=True, check=True).stdout
    assert (tmp_path / "started").read_text() == first and len(first.strip()) == 64
    files[2].write_text("a new key")
    second = subprocess.run(["bash", "-c", script], capture_output=True, text=True, check=True).stdout
    assert second != first


def test_timing_and_compaction_settings_reach_the_env_file() -> None:
    args = etcd.EtcdClusterArgs(members=[], heartbeat_interval=250, election_timeout=2500,
                                auto_compaction_mode="revision", auto_compaction_retention="10000")
    lines = render.render_env_file(args, "a", "10.9.0.1").splitlines()
    assert {"ETCD_HEARTBEAT_INTERVAL=250", "ETCD_ELECTION_TIMEOUT=2500", "ETCD_AUTO_COMPACTION_MODE=revision",
            "ETCD_AUTO_COMPACTION_RETENTION=10000"} <= set(lines)


def test_membership_lists_the_bootstrap_members() -> None:
    assert MEMBERSHIP == ("ETCD_INITIAL_CLUSTER=a=https://10.9.0.1:2380,b=https://10.9.0.2:2380,"
                          "c=https://10.9.0.3:2380\nETCD_INITIAL_CLUSTER_STATE=new")


def test_inputs_are_identical_across_hash_seeds() -> None:
    program = (
        "import json, sys\n"
        "from tests.unit.test_etcd import evaluate, stack_config\n"
        "mocks = evaluate(stack_config(['etcd-a', 'etcd-b', 'etcd-d', 'etcd-e', 'etcd-f'], removed=('etcd-c',),"
        " bootstrap=('etcd-a', 'etcd-b', 'etcd-c')))\n"
        "json.dump({r.urn: r.registration.raw_inputs for r in mocks.resources}, sys.stdout, sort_keys=True)\n"
    )

    def dump(seed: str) -> str:
        env = {**os.environ, "PYTHONHASHSEED": seed}
        env.pop("SSH_AUTH_SOCK", None)
        return subprocess.run([sys.executable, "-c", program], cwd=ROOT, env=env, capture_output=True, text=True,
                              check=True).stdout

    first, second = dump("1"), dump("977")
    assert first == second
    assert "etcd-join-etcd-f" in first and "etcd-remove-etcd-c" in first


# --- outputs ----------------------------------------------------------------------------------------------
def test_outputs_are_secret_where_needed_and_wait_for_the_health_gate() -> None:
    loop = asyncio.new_event_loop()  # run_program leaves no current loop behind
    asyncio.set_event_loop(loop)
    mocks = TlsRecordingMocks()
    pulumi_mocks.set_mocks(mocks, project="cluster-cookbook", stack="unit", preview=False,
                           monitor=RecordingMonitor(mocks))

    @pulumi.runtime.test
    def check() -> pulumi.Output[Any]:
        hosts = [Host(name, HostArgs(connection=SshConnection(host=ADDRESSES[name]), hostname=name))
                 for name in ("etcd-a", "etcd-b", "etcd-c")]
        cluster = etcd.EtcdCluster("etcd", etcd.EtcdClusterArgs(members=hosts))
        outputs = {"client_endpoints": cluster.client_endpoints, "ca_cert_pem": cluster.ca_cert_pem,
                   "client_cert_pem": cluster.client_cert_pem, "client_key_pem": cluster.client_key_pem,
                   "apiserver_client_key_pem": cluster.apiserver_client_key_pem, "etcdctl_env": cluster.etcdctl_env}

        secret = {"client_cert_pem", "client_key_pem", "apiserver_client_key_pem"}

        async def inspect() -> None:
            for name, output in outputs.items():
                depends_on = {getattr(r, "_name", None) for r in await output.resources()}
                assert "etcd-health" in depends_on, (name, depends_on)
                assert await output.is_secret() is (name in secret), name
            assert await cluster.client_endpoints.future() == [
                f"https://{ADDRESSES[n]}:2379" for n in ("etcd-a", "etcd-b", "etcd-c")]

        return pulumi.Output.from_input(inspect())

    try:
        check()
    finally:
        loop.close()
        asyncio.set_event_loop(None)


def readme_etcd_config_keys() -> set[str]:
    text = (ROOT / "README.md").read_text()
    section = text[text.index("## etcd cluster"):]
    table = section[section.index("### Config keys (`cluster-cookbook:etcd`)"):]
    table = table[:table.index("\n### ", 3)]
    return set(re.findall(r"^\| `(etcd\.[a-z0-9_.<>]+)` \|", table, re.M))


def parser_etcd_config_keys() -> set[str]:
    """Every key the etcd section's parser reads, from its own "unknown key; valid keys: ..." answers."""
    keys: set[str] = set()
    nested = {"snapshot": {}, "auto_compaction": {}, "certificates": {}, "ca": {},
              "tarballs": {"arm64": {"path": "/x", "sha256": "0" * 64, "zzz": 1}}}
    raw = stack_config(["etcd-a", "etcd-b", "etcd-c"])
    raw["etcd"].update({"zzz": 1, **{name: {**value, "zzz": 1} if name != "tarballs" else value
                                     for name, value in nested.items()}})
    for problem in problems_of(raw):
        path, _, message = problem.partition(": ")
        if path.endswith(".zzz") and "valid keys: " in message:
            prefix = path.removesuffix(".zzz").replace(".arm64", ".<arch>")
            keys |= {f"{prefix}.{key}" for key in message.split("valid keys: ")[1].split(", ")}
    return {key for key in keys if key.removeprefix("etcd.") not in nested}


def test_the_readme_documents_exactly_the_etcd_config_keys() -> None:
    assert readme_etcd_config_keys() == parser_etcd_config_keys()


# --- ordering against the node layer's reboots ----------------------------------------------------------
def test_no_member_step_runs_while_another_members_pi_reboots() -> None:
    """Audit: an `up` that adds a kernel flag and changes an etcd setting reboots the Pis one at a time (the
    node layer's chain), and must not restart any member before every member's Pi is back (up to its
    await-boot): member a restarting while Pi b reboots would leave one of three members up."""
    raw = stack_config(["etcd-a", "etcd-b", "etcd-c"], heartbeat_interval=150, election_timeout=1500)
    for node in raw["nodes"]:
        node["kind"] = "pi"
    mocks = evaluate(raw)
    closure = waits_for(mocks)
    members = [r.name for r in mocks.of_type("command:remote:Command") if r.name.startswith("etcd-member-")]
    assert len(members) == 3
    overlapping = sorted((step, host) for step in members for host in ("etcd-a", "etcd-b", "etcd-c")
                         if not {f"{host}-prepare", f"{host}-reboot", f"{host}-await-boot"} <= closure[step])
    assert overlapping == []
