"""etcd: config validation, the resource graph, certificates, secrets, growth stability, rendered text."""

from __future__ import annotations

import asyncio
import hashlib
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
from components.nodes.host import Host, HostArgs, SshConnection
from components.shared.scripts import render_script
from components.shared.validation import ConfigError
from components.stack import parse_stack_config
from tests.harness.fixtures import FAKE_PRIVATE_KEY
from tests.harness.program import ROOT, RecordingMonitor, run_program
from tests.harness.recording import RecordingMocks, plain_strings, unwrap_secrets
from tests.harness.tls import emulate_tls
from tests.harness.validators import shellcheck_findings, systemd_verify

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
    assert dict(config.etcd.removed) == {"etcd-c": ADDRESSES["etcd-c"]}
    raw["nodes"] = [node for node in raw["nodes"] if node["name"] != "etcd-c"]
    found = problems_of(raw)
    assert any(p.startswith("etcd.removed[0]: 'etcd-c' is not in nodes") for p in found), found
    assert any(p.startswith("etcd.bootstrap[2]: 'etcd-c'") for p in found), found


@pytest.mark.parametrize(("settings", "expected"), [
    ({"install": "docker"}, "etcd.install: must be one of package, tarball, preinstalled, got 'docker'"),
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


# --- certificates and secrets ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def with_certificates() -> RecordingMocks:
    return evaluate(stack_config(["etcd-a", "etcd-b", "etcd-c"]), TlsRecordingMocks())


def pem_blocks(text: str) -> list[str]:
    return re.findall(r"-----BEGIN [A-Z ]+-----\n.*?-----END [A-Z ]+-----\n", text, re.S)


def test_member_certificates_name_the_member_and_its_addresses(with_certificates: RecordingMocks) -> None:
    for name in ("etcd-a", "etcd-b", "etcd-c"):
        ca_pem, cert_pem, key_pem = pem_blocks(with_certificates.named(f"etcd-member-{name}").inputs["stdin"])
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


# --- rendered text --------------------------------------------------------------------------------------
ARGS = etcd.EtcdClusterArgs(members=[], bootstrap=["a", "b", "c"])
TARBALL_ARGS = etcd.EtcdClusterArgs(members=[], install="tarball",
                                    tarballs={"arm64": etcd.Tarball("/tmp/etcd.tgz", "0" * 64)})
MEMBERSHIP = etcd.render_bootstrap_membership(ARGS, {"a": "10.9.0.1", "b": "10.9.0.2", "c": "10.9.0.3"})
SCRIPTS = {
    "configure-package-bootstrap": etcd.render_configure_script(ARGS, "a", "10.9.0.1", "amd64", MEMBERSHIP),
    "configure-tarball-joiner": etcd.render_configure_script(TARBALL_ARGS, "d", "10.9.0.4", "arm64", ""),
    "configure-dns-name-armhf": etcd.render_configure_script(ARGS, "a", "pi-a.lan", "armhf", MEMBERSHIP),
    "join": etcd.render_join_script(ARGS, "d", "10.9.0.4", ["10.9.0.1", "10.9.0.2", "10.9.0.3"]),
    "remove": etcd.render_remove_script(ARGS, "c"),
    "health": etcd.render_health_script(ARGS, {"a": "10.9.0.1", "b": "10.9.0.2", "c": "10.9.0.3"}),
    "snapshot": etcd.render_snapshot_script(ARGS, "a"),
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
    service, timer = etcd.render_snapshot_units(args, "a")
    files = {f"{etcd.SERVICE}.service": etcd.render_unit(args, "a"), f"{etcd.SNAPSHOT_UNIT}.service": service,
             f"{etcd.SNAPSHOT_UNIT}.timer": timer}
    assert systemd_verify(files, tmp_path) == ""


def test_tarball_unit_runs_the_uploaded_binary() -> None:
    assert "ExecStart=/usr/local/bin/etcd\n" in etcd.render_unit(TARBALL_ARGS, "a")
    script = SCRIPTS["configure-tarball-joiner"]
    assert "TARBALL_PATH=/var/tmp/cookbook-etcd-v3.4.23-linux-arm64.tar.gz" in script
    assert "TARBALL_SHA256=" + "0" * 64 in script


@pytest.mark.parametrize(("address", "architecture", "expected", "unexpected"), [
    ("10.9.0.1", "amd64", ["ETCD_LISTEN_PEER_URLS=https://10.9.0.1:2380",
                           "ETCD_LISTEN_CLIENT_URLS=https://10.9.0.1:2379,https://127.0.0.1:2379"],
     ["ETCD_UNSUPPORTED_ARCH"]),
    ("pi-a.lan", "armhf", ["ETCD_LISTEN_PEER_URLS=https://0.0.0.0:2380", "ETCD_ADVERTISE_CLIENT_URLS=https://pi-a.lan:2379",
                           "ETCD_UNSUPPORTED_ARCH=arm"], []),
    ("fd00::1", "arm64", ["ETCD_INITIAL_ADVERTISE_PEER_URLS=https://[fd00::1]:2380"], ["ETCD_UNSUPPORTED_ARCH"]),
])
def test_env_file(address: str, architecture: str, expected: list[str], unexpected: list[str]) -> None:
    text = etcd.render_env_file(ARGS, "a", address, architecture)
    lines = text.splitlines()
    for line in ("ETCD_CLIENT_CERT_AUTH=true", "ETCD_PEER_CLIENT_CERT_AUTH=true", "ETCD_STRICT_RECONFIG_CHECK=true",
                 "ETCD_AUTO_TLS=false", "ETCD_PEER_AUTO_TLS=false", *expected):
        assert line in lines
    assert "http://" not in text
    for fragment in unexpected:
        assert fragment not in text


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


# --- the tarball install step, run for real in a temp dir -----------------------------------------------
def tarball_install(tmp_path: Path, sha256: str) -> subprocess.CompletedProcess[str]:
    script = render_script(
        ["shared/common.sh", "shared/files.sh", "etcd/common.sh", "etcd/install.sh"],
        {"PKI_DIR": str(tmp_path / "pki"), "ETCDCTL_BIN": str(tmp_path / "bin/etcdctl"),
         "SNAPSHOT_DIR": str(tmp_path / "snapshots"), "INSTALL_MODE": "tarball", "ETCD_VERSION": "3.4.23",
         "ETCD_BIN": str(tmp_path / "bin/etcd"), "TARBALL_PATH": str(tmp_path / "etcd.tar.gz"),
         "TARBALL_SHA256": sha256},
    ) + "install_from_tarball\n"
    return subprocess.run(["bash", "-c", script], capture_output=True, text=True, check=False)


@pytest.fixture
def release_tarball(tmp_path: Path) -> str:
    """A tarball shaped like an etcd release (etcd-v3.4.23-linux-amd64/etcd, etcdctl); returns its sha256."""
    release = tmp_path / "release" / "etcd-v3.4.23-linux-amd64"
    release.mkdir(parents=True)
    for binary in ("etcd", "etcdctl"):
        (release / binary).write_text(f"#!/bin/sh\necho '{binary} Version: 3.4.23'\n")
        (release / binary).chmod(0o755)
    (release / "README.md").write_text("docs\n")
    subprocess.run(["tar", "-czf", str(tmp_path / "etcd.tar.gz"), "-C", str(tmp_path / "release"),
                    "etcd-v3.4.23-linux-amd64"], check=True)
    return hashlib.sha256((tmp_path / "etcd.tar.gz").read_bytes()).hexdigest()


def test_tarball_install_verifies_the_checksum_and_is_idempotent(tmp_path: Path, release_tarball: str) -> None:
    wrong = tarball_install(tmp_path, "0" * 64)
    assert wrong.returncode == 1 and "does not match etcd.tarballs sha256" in wrong.stderr
    assert not (tmp_path / "bin/etcd").exists()
    first = tarball_install(tmp_path, release_tarball)
    assert first.returncode == 0, first.stderr
    assert "changed: installed etcd 3.4.23" in first.stdout
    assert subprocess.run([str(tmp_path / "bin/etcd"), "--version"], capture_output=True, text=True,
                          check=True).stdout.strip() == "etcd Version: 3.4.23"
    assert (tmp_path / "bin/etcdctl").exists() and not (tmp_path / "bin/README.md").exists()
    again = tarball_install(tmp_path, release_tarball)
    assert again.returncode == 0 and again.stdout == ""


def test_install_file_never_runs_in_a_pipeline_subshell() -> None:
    """`... | install_file` would set FILE_CHANGED in a subshell: restarts and daemon-reloads would be skipped
    (the rolling-restart integration test caught exactly that)."""
    for template in sorted((Path(etcd.__file__).parent / "templates").glob("*.sh")):
        assert not re.search(r"\|\s*(\\\n\s*)?install_file", template.read_text()), template.name


# --- the removal's quorum guard, run for real against a fake etcdctl ------------------------------------
FAKE_ETCDCTL = """#!/bin/bash
# Answers like etcdctl 3.4 from $FAKE_DIR/members; endpoints listed in $FAKE_DIR/down are unreachable.
printf '%s\\n' "$*" >>"$FAKE_DIR/calls"
endpoint=$(printf '%s\\n' "$@" | sed -n 's/^--endpoints=//p')
case " $* " in
  *" member list "*) cat "$FAKE_DIR/members" ;;
  *" endpoint health "*) ! grep -qxF "$endpoint" "$FAKE_DIR/down" ;;
  *" snapshot save "*) for last; do :; done; : >"$last" ;;
  *" member remove "*) echo "Member removed" ;;
  *) exit 2 ;;
esac
"""


def run_remove(tmp_path: Path, members: list[tuple[str, str, bool]], down: list[str], target: str) -> tuple[
        subprocess.CompletedProcess[str], str]:
    """members: (id, name, healthy); the target's client URL is irrelevant: it is found by name."""
    fake = tmp_path / "etcdctl"
    fake.write_text(FAKE_ETCDCTL)
    fake.chmod(0o755)
    lines = [f"{mid}, started, {name}, https://{name}:2380, https://{name}:2379, false" for mid, name, _ in members]
    (tmp_path / "members").write_text("\n".join(lines) + "\n")
    (tmp_path / "down").write_text("".join(f"https://{name}:2379\n" for name in down))
    script = render_script(["shared/common.sh", "etcd/common.sh", "etcd/remove.sh"], {
        "PKI_DIR": str(tmp_path), "ETCDCTL_BIN": str(fake), "SNAPSHOT_DIR": str(tmp_path / "snapshots"),
        "TARGET_NAME": target, "LOCAL_CLIENT_URL": "https://127.0.0.1:2379"})
    done = subprocess.run(["bash", "-c", script], capture_output=True, text=True, check=False,
                          env={"PATH": "/usr/bin:/bin", "FAKE_DIR": str(tmp_path)})
    calls = (tmp_path / "calls").read_text() if (tmp_path / "calls").exists() else ""
    return done, calls


@pytest.mark.parametrize(("size", "down", "allowed"), [
    (3, ["c"], True),             # 2 of 2 remaining healthy, quorum 2
    (3, ["c", "b"], False),       # 1 of 2 remaining healthy
    (5, ["e", "d"], True),        # 3 of 4 remaining healthy, quorum 3
    (5, ["e", "d", "b"], False),  # 2 of 4 remaining healthy
])
def test_removal_refuses_when_the_remaining_members_would_lose_quorum(tmp_path: Path, size: int, down: list[str],
                                                                     allowed: bool) -> None:
    names = list("abcde")[:size]
    target = down[0]
    done, calls = run_remove(tmp_path, [(f"{i:016x}", n, n not in down) for i, n in enumerate(names, 1)],
                             down, target)
    removed = f"member remove {names.index(target) + 1:016x}" in calls
    assert removed is allowed, (done.stdout, done.stderr)
    if allowed:
        assert done.returncode == 0 and f"changed: removed member {target}" in done.stdout
        assert "snapshot save" in calls.split("member remove")[0]  # a snapshot first
    else:
        assert done.returncode == 1 and f"refusing to remove {target}" in done.stderr


def test_removal_of_an_absent_member_changes_nothing(tmp_path: Path) -> None:
    done, calls = run_remove(tmp_path, [("1", "a", True), ("2", "b", True), ("3", "d", True)], [], "c")
    assert done.returncode == 0 and "c is not a member (already removed)" in done.stdout
    assert "member remove" not in calls and "snapshot" not in calls


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
