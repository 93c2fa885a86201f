"""The real program brings up etcd on booted hosts; everything is checked with the real `etcdctl`.

One fleet of six hosts (e1..e6) for the module; the tests run in order and build on each other, like the
life of a stack: bootstrap 3 members from hosts without etcd (the `package` mode installs it), faults under
a writer, a second run, growth 3 -> 5 under a writer, settings changed after the growth (twice), a run
interrupted at a restart, replacement of a stopped member with joins that fail or are killed at named
steps, certificate re-issue and a CA rotation under a writer, snapshots and a restore, and a bring-up of 5
DNS-named members from a release tarball. Measured numbers are printed (run with `-s`) and collected in
`NUMBERS`.

Interruptions are real: a test-only wrapper in front of `systemctl` or `etcdctl` on a host (the tripwire)
fails the call, or SIGKILLs the step's whole process group at that call, as a dropped SSH session would.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import itertools
import json
import os
import re
import shutil
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from tests.harness import ssh
from tests.harness.executing import ExecutingMocks, StackState
from tests.harness.program import run_program
from tests.harness.tls import TlsEmulator, emulate_tls
from tests.infra.hosts import HostFleet, TestHost
from tests.integration.conftest import boot_fleet
from tests.integration.etcd_writer import EtcdWriter

pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(shutil.which("etcdctl") is None, reason="needs etcdctl (Debian etcd-client)")]

HOSTS = ["e1", "e2", "e3", "e4", "e5"]
SPARE = "e6"  # the replacement's replacement, later the bastion of the DNS-named members
BOOTSTRAP = {"etcd-a": "e1", "etcd-b": "e2", "etcd-c": "e3"}
GROWTH = {"etcd-d": "e4", "etcd-e": "e5"}
REPLACEMENT = ("etcd-c", "etcd-f", "e3")  # removed member, its replacement, the (re-imaged) host
NUMBERS: dict[str, Any] = {}


# Like Raspberry Pi OS: the program logs in as `pi` and runs every step through `sudo -n`.
LOGIN_USER = "pi"


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HostFleet]:
    yield from boot_fleet([*HOSTS, SPARE], tmp_path_factory, pi_user=True)
    print("\netcd numbers:", json.dumps(NUMBERS, indent=1))


@dataclass
class Stack:
    """A stack's state across runs, and the members the test currently expects."""

    fleet: HostFleet
    workdir: Path
    state: StackState = field(default_factory=StackState)
    members: dict[str, str] = field(default_factory=lambda: dict(BOOTSTRAP))  # name -> host
    removed: dict[str, str] = field(default_factory=dict)
    outputs: dict[str, Any] = field(default_factory=dict)
    etcd_settings: dict[str, Any] = field(default_factory=dict)

    def config(self) -> dict[str, Any]:
        nodes = [{"name": name, "address": self.fleet[host].address, "host_key": self.fleet[host].host_key,
                  "roles": ["etcd"]} for name, host in {**self.removed, **self.members}.items()]
        return {
            "ssh": {"user": LOGIN_USER, "dial_error_limit": 3, "per_dial_timeout": 5},
            "prepare": {"packages": ["jq"], "kubernetes_networking": False},
            "nodes": nodes,
            "ssh_private_key": self.fleet.private_key_pem,
            "etcd": {"install": "package", "bootstrap": list(BOOTSTRAP), "removed": list(self.removed),
                     "snapshot": {"schedule": "hourly", "retention": 2}, "health_timeout": 120,
                     **self.etcd_settings},
        }

    def up(self, tls: Any = emulate_tls) -> ExecutingMocks:
        mocks = ExecutingMocks(self.state, emulators={"tls": tls})
        self.outputs = run_program(mocks, self.config(), stack="it-etcd", secret_keys=["ssh_private_key"])
        mocks.finish()
        return mocks

    def failed_up(self, *expected: str) -> tuple[ExecutingMocks, str]:
        """A run that must fail (like `pulumi up` after a step failed): returns the mocks and the error."""
        mocks = ExecutingMocks(self.state, emulators={"tls": emulate_tls})
        with pytest.raises(Exception) as failure:
            run_program(mocks, self.config(), stack="it-etcd", secret_keys=["ssh_private_key"])
        for text in expected:
            assert text in str(failure.value), str(failure.value)[-2000:]
        return mocks, str(failure.value)

    def host(self, name: str) -> TestHost:
        return self.fleet[self.members[name]]

    def address(self, name: str) -> str:
        return self.fleet[self.members[name]].address

    def endpoints(self, names: list[str] | None = None) -> str:
        return ",".join(f"https://{self.address(n)}:2379" for n in (names or list(self.members)))

    # --- the operator's view: the local etcdctl with the component's outputs ---------------------------
    def pki(self) -> Path:
        directory = self.workdir / "pki"
        directory.mkdir(exist_ok=True)
        etcd = self.outputs["etcd"]
        for file, key in (("etcd-ca.crt", "ca_cert"), ("etcd-client.crt", "client_cert"),
                          ("etcd-client.key", "client_key")):
            path = directory / file
            if path.exists() and path.read_text() == etcd[key]:
                continue
            # Atomically: the writer thread's etcdctl may be reading the file right now.
            staging = directory / f".{file}.{threading.get_ident()}"
            staging.write_text(etcd[key])
            staging.chmod(0o600)
            os.replace(staging, path)
        return directory

    def etcdctl(self, *args: str, endpoints: str | None = None, cert: bool = True, timeout: str = "5s",
                check: bool = True) -> subprocess.CompletedProcess[str]:
        pki = self.pki()
        tls = [f"--cacert={pki}/etcd-ca.crt"]
        if cert:
            tls += [f"--cert={pki}/etcd-client.crt", f"--key={pki}/etcd-client.key"]
        argv = ["etcdctl", f"--endpoints={endpoints or self.endpoints()}", *tls, "--dial-timeout=2s",
                f"--command-timeout={timeout}", *args]
        done = subprocess.run(argv, capture_output=True, text=True, env={**os.environ, "ETCDCTL_API": "3"},
                              timeout=60, check=False)
        if check and done.returncode != 0:
            raise AssertionError(f"{' '.join(args)} failed: {done.stderr}")
        return done

    def member_list(self) -> list[dict[str, Any]]:
        members: list[dict[str, Any]] = json.loads(self.etcdctl("member", "list", "-w", "json").stdout)["members"]
        return members

    def raft_term(self) -> int:
        """The highest Raft term the members report: each election (a leadership hand-off included) adds one."""
        status = json.loads(self.etcdctl("endpoint", "status", "-w", "json").stdout)
        return max(int(entry["Status"]["raft_term"] if "raft_term" in entry["Status"]
                       else entry["Status"]["header"]["raft_term"]) for entry in status)

    def leader_host(self) -> str:
        status = json.loads(self.etcdctl("endpoint", "status", "-w", "json").stdout)
        for entry in status:
            if entry["Status"]["header"]["member_id"] == entry["Status"]["leader"]:
                address = entry["Endpoint"].split("//")[1].split(":")[0]
                return next(h for h in self.members.values() if self.fleet[h].address == address)
        raise AssertionError(f"no leader in {status}")


class Writer(EtcdWriter):
    """Puts numbered keys through `endpoints` (tests/integration/etcd_writer.py: one retry, unless `retry` is off)."""

    def __init__(self, stack: Stack, prefix: str, endpoints: str, timeout: str = "3s", retry: bool = True):
        super().__init__(prefix, retry)
        self.stack, self.endpoints, self.timeout = stack, endpoints, timeout

    def put(self, key: str, value: str) -> subprocess.CompletedProcess[str]:
        return self.stack.etcdctl("put", key, value, endpoints=self.endpoints, timeout=self.timeout, check=False)


ACKED: list[str] = []  # every acknowledged key of every writer, read back at the end


def stop_and_record(writer: Writer, change: str) -> None:
    """Stops the writer; its acknowledged keys are read back at the end, its counts reported under `change`."""
    writer.stop()
    ACKED.extend(key for _, key in writer.acked)
    NUMBERS[f"{change}_writes_acknowledged"] = len(writer.acked)
    NUMBERS[f"{change}_failed_writes"] = len(writer.failed)
    NUMBERS[f"{change}_slowest_put_seconds"] = writer.slowest_put()
    NUMBERS[f"{change}_writes_retried_once"] = len(writer.retried)


@pytest.fixture(scope="module")
def stack(fleet: HostFleet, tmp_path_factory: pytest.TempPathFactory) -> Stack:
    stack = Stack(fleet, tmp_path_factory.mktemp("etcd-stack"))
    ssh.SESSIONS.clear()
    started = time.monotonic()
    stack.up()
    NUMBERS["bring_up_3_seconds"] = round(time.monotonic() - started, 1)
    NUMBERS["ssh_sessions_per_member_bring_up_3"] = {
        name: ssh.SESSIONS[fleet[host].address] for name, host in stack.members.items()}
    return stack


def test_cluster_is_healthy_with_the_expected_members(stack: Stack) -> None:
    stack.etcdctl("endpoint", "health", "--cluster")
    members = stack.member_list()
    assert sorted(m["name"] for m in members) == sorted(BOOTSTRAP)
    for member in members:
        assert member["peerURLs"] == [f"https://{stack.address(member['name'])}:2380"]
        assert member["clientURLs"] == [f"https://{stack.address(member['name'])}:2379"]
        assert not member.get("isLearner", False)
    assert stack.outputs["etcd"]["client_endpoints"] == [f"https://{stack.address(n)}:2379" for n in BOOTSTRAP]
    assert "ETCDCTL_ENDPOINTS=" + stack.endpoints() in stack.outputs["etcd"]["etcdctl_env"]


def test_put_and_get_through_every_member(stack: Stack) -> None:
    names = list(stack.members)
    for writer in names:
        stack.etcdctl("put", f"/it/through/{writer}", writer, endpoints=stack.endpoints([writer]))
    for reader in names:
        for writer in names:
            got = stack.etcdctl("get", f"/it/through/{writer}", "--print-value-only",
                                endpoints=stack.endpoints([reader])).stdout.strip()
            assert got == writer


def test_clients_without_a_valid_certificate_are_rejected(stack: Stack, tmp_path: Path) -> None:
    no_cert = stack.etcdctl("get", "/it", cert=False, check=False, timeout="3s")
    assert no_cert.returncode != 0
    other_ca_key = ec.generate_private_key(ec.SECP256R1())
    other_key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "another CA")])
    cert = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "intruder")]))
            .issuer_name(ca_name).public_key(other_key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now).not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
            .sign(other_ca_key, hashes.SHA256()))
    (tmp_path / "c.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "c.key").write_bytes(other_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    pki = stack.pki()
    other = subprocess.run(
        ["etcdctl", f"--endpoints={stack.endpoints()}", f"--cacert={pki}/etcd-ca.crt", f"--cert={tmp_path}/c.crt",
         f"--key={tmp_path}/c.key", "--dial-timeout=2s", "--command-timeout=3s", "get", "/it"],
        capture_output=True, text=True, env={**os.environ, "ETCDCTL_API": "3"}, timeout=60, check=False)
    assert other.returncode != 0, other.stdout


def test_peer_port_requires_a_client_certificate(stack: Stack) -> None:
    context = ssl.create_default_context(cafile=str(stack.pki() / "etcd-ca.crt"))
    address = stack.address("etcd-a")
    with (pytest.raises((ssl.SSLError, ConnectionError, OSError)),
          socket.create_connection((address, 2380), timeout=5) as raw,
          context.wrap_socket(raw, server_hostname=address) as tls):
        tls.sendall(b"GET /members HTTP/1.1\r\nHost: x\r\n\r\n")
        if not tls.recv(100):
            raise ConnectionError("closed without an answer")
    # Plain HTTP is not served either.
    with socket.create_connection((address, 2380), timeout=5) as raw:
        raw.sendall(b"GET /members HTTP/1.1\r\nHost: x\r\n\r\n")
        answer = raw.recv(200)
    assert b'"id"' not in answer and b"peerURLs" not in answer


def test_files_and_units_on_the_hosts(stack: Stack) -> None:
    host = stack.fleet["e1"]
    assert host.run("stat -L -c '%a %U' /etc/cookbook-etcd/pki /etc/cookbook-etcd/pki/member.key "
                    "/var/lib/cookbook-etcd").stdout.split("\n")[:3] == ["700 etcd", "600 etcd", "700 etcd"]
    assert host.run("readlink /etc/cookbook-etcd/pki").stdout.startswith("pki.")  # switched in one rename
    env = host.read_file("/etc/cookbook-etcd/etcd.env")
    for line in ("ETCD_CLIENT_CERT_AUTH=true", "ETCD_PEER_CLIENT_CERT_AUTH=true", "ETCD_STRICT_RECONFIG_CHECK=true",
                 "ETCD_AUTO_TLS=false", "ETCD_PEER_AUTO_TLS=false"):
        assert line in env.splitlines()
    assert "http://" not in env
    assert host.run("systemctl is-active cookbook-etcd cookbook-etcd-snapshot.timer").stdout.split() == \
        ["active", "active"]


def test_the_distributions_etcd_service_never_ran_and_stays_masked(stack: Stack) -> None:
    """The hosts started without etcd; the member step masked etcd.service before apt installed the package,
    whose postinst would otherwise start a default single-member etcd on 2379."""
    for host in stack.members.values():
        target = stack.fleet[host]
        assert target.run("dpkg-query -W -f='${db:Status-Status}' etcd-server").stdout == "installed"
        assert target.run("systemctl is-enabled etcd.service", check=False).stdout.strip() == "masked"
        journal = target.run("journalctl --no-pager -o cat -u etcd.service").stdout
        assert "Started" not in journal and "etcd - highly-available" not in journal, journal
        assert not target.run("ls -A /var/lib/etcd").stdout.strip()  # no default member ever created


def test_no_acknowledged_write_is_lost_when_the_leader_or_a_follower_is_killed(stack: Stack) -> None:
    leader = stack.leader_host()
    survivors = [n for n, h in stack.members.items() if h != leader]
    # A short client timeout: a put stuck with the dead leader is given up after 0.5 s and the next one sent,
    # so the measured window is the election time rounded up to 0.5 s.
    writer = Writer(stack, "/it/leader-kill", stack.endpoints(survivors), timeout="500ms", retry=False)
    writer.start()
    time.sleep(2)
    killed_at = time.monotonic()
    stack.fleet[leader].run("kill -9 $(systemctl show -p MainPID --value cookbook-etcd)")
    time.sleep(6)
    writer.stop()
    ACKED.extend(key for _, key in writer.acked)
    before = max(t for t, _ in writer.acked if t <= killed_at)
    NUMBERS["leader_kill_first_ack_after_kill_seconds"] = round(writer.first_ack_after(killed_at) - killed_at, 2)
    NUMBERS["leader_kill_longest_ack_gap_seconds"] = round(max(
        b[0] - a[0] for a, b in zip(writer.acked, writer.acked[1:], strict=False) if b[0] >= before), 2)
    NUMBERS["leader_kill_failed_writes"] = len(writer.failed)
    NUMBERS["leader_kill_failures"] = [error[-120:] for _, error in writer.failed][:3]
    assert writer.first_ack_after(killed_at) - killed_at < 5

    wait_healthy(stack)
    follower = next(h for h in stack.members.values() if h != stack.leader_host())
    survivors = [n for n, h in stack.members.items() if h != follower]
    writer = Writer(stack, "/it/follower-kill", stack.endpoints(survivors), retry=False)
    writer.start()
    time.sleep(2)
    stack.fleet[follower].run("kill -9 $(systemctl show -p MainPID --value cookbook-etcd)")
    time.sleep(4)
    writer.stop()
    ACKED.extend(key for _, key in writer.acked)
    NUMBERS["follower_kill_failed_writes"] = len(writer.failed)
    assert writer.failed == []
    # systemd restarts the killed members; they rejoin.
    wait_healthy(stack)
    assert_all_acked_present(stack)


def wait_healthy(stack: Stack, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while stack.etcdctl("endpoint", "health", "--cluster", check=False).returncode != 0:
        assert time.monotonic() < deadline, "cluster did not become healthy again"
        time.sleep(0.5)


def assert_all_acked_present(stack: Stack) -> None:
    present = set(stack.etcdctl("get", "/it/", "--prefix", "--keys-only").stdout.split())
    lost = [key for key in ACKED if key not in present]
    NUMBERS["acknowledged_writes"] = len(ACKED)
    NUMBERS["acknowledged_writes_lost"] = len(lost)
    assert lost == []


def test_second_run_changes_nothing(stack: Stack) -> None:
    mocks = stack.up()
    assert mocks.operations == []


def test_growth_3_to_5_under_a_writer_leaves_existing_members_untouched(stack: Stack) -> None:
    writer = Writer(stack, "/it/growth", stack.endpoints())
    writer.start()
    stack.members.update(GROWTH)
    ssh.SESSIONS.clear()
    started = time.monotonic()
    mocks = stack.up()
    NUMBERS["growth_3_to_5_seconds"] = round(time.monotonic() - started, 1)
    NUMBERS["ssh_sessions_per_new_member_growth"] = {
        name: ssh.SESSIONS[stack.fleet[host].address] for name, host in GROWTH.items()}
    time.sleep(1)
    stop_and_record(writer, "growth")
    touched = {name for _, name in mocks.operations}
    for name in BOOTSTRAP:
        assert not {r for r in touched if name in r}, (name, mocks.operations)
    assert ("create", "etcd-join-etcd-d") in mocks.operations and ("create", "etcd-join-etcd-e") in mocks.operations
    order = [name for _, name in mocks.operations]
    assert order.index("etcd-join-etcd-d") < order.index("etcd-join-etcd-e")
    assert writer.failed == []
    members = stack.member_list()
    assert sorted(m["name"] for m in members) == sorted(stack.members)
    assert not any(m.get("isLearner") for m in members)
    stack.etcdctl("endpoint", "health", "--cluster")
    assert len(stack.outputs["etcd"]["client_endpoints"]) == 5


def test_second_run_after_growth_changes_nothing(stack: Stack) -> None:
    """Second run after growth: nothing happens; records that 5-member state is stable."""
    mocks = stack.up()
    assert mocks.operations == []


# --- tripwires: test-only wrappers that interrupt a step at a named call -----------------------------------
SYSTEMCTL_TRIPWIRE = r"""#!/bin/sh
# Test tripwire (not product code). /run/tripwire-systemctl holds "VERB UNIT ACTION": the first systemctl call
# with that verb and unit fails (ACTION fail), or SIGKILLs the calling step's process group (ACTION kill), as
# a dropped SSH session would, exactly there.
wire=/run/tripwire-systemctl
if [ -f "$wire" ]; then
  read -r verb unit action <"$wire"
  if printf ' %s ' "$*" | grep -q " $verb " && printf ' %s ' "$*" | grep -q " $unit "; then
    rm -f "$wire"
    echo "tripwire: systemctl $*" >&2
    if [ "$action" = kill ]; then
      /bin/kill -s KILL -- "-$(ps -o pgid= -p "$PPID" | tr -d ' ')"
    fi
    exit 1
  fi
fi
exec /usr/bin/systemctl "$@"
"""

ETCDCTL_TRIPWIRE = r"""#!/bin/sh
# Test tripwire (not product code): with /run/tripwire-etcdctl present, the first `member promote` waits until
# this host's member runs (so its learner has started), then SIGKILLs the calling step's process group.
if [ -f /run/tripwire-etcdctl ] && printf ' %s ' "$*" | grep -q " promote "; then
  rm -f /run/tripwire-etcdctl
  while ! /usr/bin/systemctl is-active --quiet cookbook-etcd; do sleep 0.2; done
  echo "tripwire: etcdctl $*" >&2
  /bin/kill -s KILL -- "-$(ps -o pgid= -p "$PPID" | tr -d ' ')"
  exit 1
fi
exec /usr/bin/etcdctl.real "$@"
"""


def arm_systemctl(host: TestHost, verb: str, unit: str, action: str) -> None:
    host.run("install -m 0755 /dev/stdin /usr/local/sbin/systemctl", input=SYSTEMCTL_TRIPWIRE)
    host.run(f"echo '{verb} {unit} {action}' > /run/tripwire-systemctl")


def arm_etcdctl_promote(host: TestHost) -> None:
    """Before etcd is installed: the package's etcdctl is diverted to etcdctl.real, the wrapper takes its place."""
    host.run("dpkg-divert --quiet --local --rename --divert /usr/bin/etcdctl.real --add /usr/bin/etcdctl")
    host.run("install -m 0755 /dev/stdin /usr/bin/etcdctl", input=ETCDCTL_TRIPWIRE)
    host.run("touch /run/tripwire-etcdctl")


def disarm(host: TestHost) -> None:
    host.run("rm -f /run/tripwire-systemctl /run/tripwire-etcdctl /usr/local/sbin/systemctl")


def unit_property(host: TestHost, prop: str, unit: str = "cookbook-etcd") -> str:
    return host.run(f"systemctl show -p {prop} --value {unit}").stdout.strip()


def running_env(host: TestHost) -> dict[str, str]:
    """The environment the member's running etcd process was started with."""
    pid = unit_property(host, "MainPID")
    pairs = host.run(f"tr '\\0' '\\n' < /proc/{pid}/environ").stdout.splitlines()
    return dict(pair.split("=", 1) for pair in pairs if "=" in pair)


@dataclass(frozen=True)
class Restart:
    member: str
    pid: str
    down: int  # ActiveExitTimestampMonotonic (us): it stopped serving
    up: int  # ActiveEnterTimestampMonotonic (us): ready again


def restarts(stack: Stack, pids_before: dict[str, str]) -> list[Restart]:
    """The members whose etcd process changed, with their down windows, in the order they went down. Test
    hosts share the machine's kernel, so their monotonic clocks are one clock."""
    found = []
    for name in stack.members:
        host = stack.host(name)
        pid = unit_property(host, "MainPID")
        if pid != pids_before[name]:
            found.append(Restart(name, pid, int(unit_property(host, "ActiveExitTimestampMonotonic")),
                                 int(unit_property(host, "ActiveEnterTimestampMonotonic"))))
    return sorted(found, key=lambda restart: restart.down)


def explain_failures(writer: Writer, found: list[Restart]) -> list[str]:
    """For each failed put: when it ran relative to the members' down windows (one clock: the machine's
    CLOCK_MONOTONIC, which the hosts' systemd timestamps share), and the endpoints etcdctl named."""
    lines = []
    for started, ended, stderr in writer.failures:
        near = [f"{r.member} down {r.down / 1e6 - started:+.2f}s..{r.up / 1e6 - started:+.2f}s" for r in found
                if r.down / 1e6 - 5 < started < r.up / 1e6 + 5]
        targets = sorted(set(re.findall(r"/(\d+\.\d+\.\d+\.\d+:\d+)", stderr)))
        lines.append(f"put at {started:.2f} ({ended - started:.2f}s): {near} endpoints {targets}: "
                     f"{stderr.strip().splitlines()[-1][:200]}")
    return lines


def assert_one_at_a_time(found: list[Restart]) -> None:
    for earlier, later in itertools.pairwise(found):
        assert earlier.up <= later.down, f"{later.member} went down before {earlier.member} was ready: {found}"


def hand_offs(stack: Stack, mocks: ExecutingMocks) -> int:
    """Leadership hand-offs the member steps of the run just made (call it before the next run)."""
    stepped = {name for _, name in mocks.operations if name.startswith("etcd-member-")}
    return sum("leadership moved to" in r.outputs.get("stdout", "")
               for r in stack.state.resources.values() if r.name in stepped)


def elections(stack: Stack, term_before: int, planned: int) -> dict[str, int]:
    """Raft elections since `term_before` (each hand-off is one), and how many were planned hand-offs."""
    return {"elections": stack.raft_term() - term_before, "planned_hand_offs": planned}


def main_pids(stack: Stack) -> dict[str, str]:
    return {name: unit_property(stack.host(name), "MainPID") for name in stack.members}


def test_settings_changed_after_growth_converge_twice_one_member_at_a_time(stack: Stack) -> None:
    """The user's scenario from issue 8: after the 3 -> 5 growth, change etcd.health_timeout and a setting
    members run with (the Raft timing), `up`, then change health_timeout again and `up`. Every step re-runs
    (their inputs changed); joins of members that already vote succeed at once; members restart one at a
    time, only in the first run (only there did their files change); a writer sees no failure."""
    writer = Writer(stack, "/it/settings", stack.endpoints())
    writer.start()
    pids = main_pids(stack)
    term = stack.raft_term()
    stack.etcd_settings.update(health_timeout=150, heartbeat_interval=150, election_timeout=1500)
    ssh.SESSIONS.clear()
    started = time.monotonic()
    first = stack.up()
    NUMBERS["settings_change_rolling_restart_5_seconds"] = round(time.monotonic() - started, 1)
    NUMBERS["ssh_sessions_per_member_settings_change"] = {
        name: ssh.SESSIONS[stack.host(name).address] for name in stack.members}
    found = restarts(stack, pids)
    planned = hand_offs(stack, first)
    pids = main_pids(stack)
    stack.etcd_settings.update(health_timeout=160)
    started = time.monotonic()
    second = stack.up()
    NUMBERS["settings_change_second_run_seconds"] = round(time.monotonic() - started, 1)
    time.sleep(1)
    stop_and_record(writer, "settings_change")
    for mocks in (first, second):
        ran = {name for _, name in mocks.operations}
        assert {"etcd-join-etcd-d", "etcd-join-etcd-e", "etcd-health"} <= ran, mocks.operations
    assert [r.member for r in found] == list(stack.members)  # all of them, in chain order
    assert_one_at_a_time(found)
    NUMBERS["settings_change_member_down_ms"] = [round((r.up - r.down) / 1000) for r in found]
    NUMBERS["settings_change_elections"] = elections(stack, term, planned)
    NUMBERS["settings_change_failures"] = explain_failures(writer, found)
    NUMBERS["settings_change_retries"] = [error for _, error in writer.retried]
    assert main_pids(stack) == pids  # the second run restarted nobody
    joins = [r.outputs["stdout"] for r in stack.state.resources.values() if r.name.startswith("etcd-join-")]
    assert all("was already a voting member" in out and "added" not in out for out in joins), joins
    for name in stack.members:
        assert running_env(stack.host(name))["ETCD_HEARTBEAT_INTERVAL"] == "150"
    assert writer.failed == []
    stack.etcdctl("endpoint", "health", "--cluster")
    assert_all_acked_present(stack)


def test_a_run_interrupted_at_a_restart_restarts_that_member_next_time(stack: Stack) -> None:
    """The first member's step is killed right before its restart: its new env file is on disk, etcd still
    runs with the old one. The next run sees no file to write, and restarts it all the same (the hash of
    what etcd started with differs from the files), then the others, one at a time."""
    first = stack.host("etcd-a")
    arm_systemctl(first, "restart", "cookbook-etcd", "kill")
    stack.etcd_settings.update(auto_compaction={"mode": "periodic", "retention": "30m"})
    try:
        stack.failed_up("etcd-member-etcd-a")
    finally:
        disarm(first)
    assert "ETCD_AUTO_COMPACTION_RETENTION=30m" in first.read_file("/etc/cookbook-etcd/etcd.env")
    assert running_env(first)["ETCD_AUTO_COMPACTION_RETENTION"] == "1h"  # interrupted before the restart
    writer = Writer(stack, "/it/interrupted", stack.endpoints())
    writer.start()
    pids = main_pids(stack)
    term = stack.raft_term()
    resumed = stack.up()
    time.sleep(1)
    stop_and_record(writer, "interrupted_restart")
    NUMBERS["interrupted_restart_elections"] = elections(stack, term, hand_offs(stack, resumed))
    found = restarts(stack, pids)
    NUMBERS["interrupted_restart_failures"] = explain_failures(writer, found)
    assert [r.member for r in found] == list(stack.members)
    assert_one_at_a_time(found)
    for name in stack.members:
        assert running_env(stack.host(name))["ETCD_AUTO_COMPACTION_RETENTION"] == "30m", name
    assert writer.failed == []
    assert stack.up().operations == []


def test_replacing_a_stopped_member_with_joins_that_fail_or_are_killed(stack: Stack) -> None:
    """Replace c (stopped for good) by f on the re-imaged host; the join of f fails at its start, then is
    killed right before its start (leaving an unstarted learner); f is given up for f2 on another host, whose
    join is killed after its learner started. Every later run converges; a writer never fails."""
    dead, new, host = REPLACEMENT
    writer = Writer(stack, "/it/replacement", stack.endpoints([n for n in stack.members if n != dead]))
    writer.start()
    stack.fleet[host].stop()
    # The host comes back with this cluster's config gone (re-installed), under a new member name; the old
    # member's data dir is still on disk, and a stale data dir waits where the new member's would go.
    upper = stack.fleet[host].upper_dir
    for leftover in ("etc/cookbook-etcd", "etc/systemd/system/multi-user.target.wants/cookbook-etcd.service",
                     "etc/systemd/system/timers.target.wants/cookbook-etcd-snapshot.timer"):
        path = upper / leftover
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        elif path.exists() or path.is_symlink():
            path.unlink()
    stack.fleet[host].start()
    stack.fleet[host].run(f"install -d -o etcd -g etcd /var/lib/cookbook-etcd/{new}/member && "
                          f"touch /var/lib/cookbook-etcd/{new}/member/stale")
    del stack.members[dead]
    stack.removed[dead] = host
    stack.members[new] = host
    peer_of_f = f"https://{stack.fleet[host].address}:2380"

    # 1. The start fails: the join removes the learner it added (etcd allows one learner at a time).
    arm_systemctl(stack.fleet[host], "start", "cookbook-etcd", "fail")
    mocks, _error = stack.failed_up(f"etcd-join-{new}", "removed the learner of etcd-f again")
    order = [name for _, name in mocks.operations]
    assert order.index(f"etcd-remove-{dead}") < order.index(f"etcd-join-{new}")
    remove = next(r for r in stack.state.resources.values() if r.name == f"etcd-remove-{dead}")
    assert remove.inputs["connection"]["host"] == stack.address("etcd-a")  # through a healthy member
    assert sorted(m["name"] for m in stack.member_list()) == ["etcd-a", "etcd-b", "etcd-d", "etcd-e"]
    assert not any(m.get("isLearner") for m in stack.member_list())
    assert unit_property(stack.fleet[host], "UnitFileState", "cookbook-etcd-snapshot.timer") != "enabled"

    # 2. Killed right before the start: no trap runs, an unstarted learner (no name) is left behind.
    arm_systemctl(stack.fleet[host], "start", "cookbook-etcd", "kill")
    stack.failed_up(f"etcd-join-{new}")
    disarm(stack.fleet[host])
    stale = [m for m in stack.member_list() if m.get("isLearner")]
    assert len(stale) == 1 and not stale[0].get("name") and stale[0]["peerURLs"] == [peer_of_f]

    # 3. f is given up for f2 on another host: its removal finds the nameless learner by its peer URL, so the
    #    join of f2 is not blocked; that join is killed after its learner started, right at the promotion.
    spare = stack.fleet[SPARE]
    arm_etcdctl_promote(spare)
    del stack.members[new]
    stack.removed[new] = host
    stack.members["etcd-f2"] = SPARE
    stack.failed_up("etcd-join-etcd-f2")
    learners = [m for m in stack.member_list() if m.get("isLearner")]
    assert [m.get("name") for m in learners] == ["etcd-f2"]  # started, not promoted: the run was killed
    assert not [m for m in stack.member_list() if m["peerURLs"] == [peer_of_f]]

    # 4. The next run resumes: straight to the promotion (the learner would fail a pre-add health gate).
    started = time.monotonic()
    mocks = stack.up()
    NUMBERS["resumed_join_seconds"] = round(time.monotonic() - started, 1)
    time.sleep(1)
    stop_and_record(writer, "replacement")
    join = next(r for r in stack.state.resources.values() if r.name == "etcd-join-etcd-f2").outputs["stdout"]
    assert "changed: promoted etcd-f2" in join and "added etcd-f2" not in join, join
    assert writer.failed == []
    members = stack.member_list()
    assert sorted(m["name"] for m in members) == sorted(stack.members)
    assert not any(m.get("isLearner") for m in members)
    stack.etcdctl("endpoint", "health", "--cluster")
    assert_all_acked_present(stack)
    assert unit_property(spare, "UnitFileState", "cookbook-etcd-snapshot.timer") == "enabled"
    # Data dirs are never reused: the removed member's is left alone, a stale one was moved aside.
    data = stack.fleet[host].run("ls -1 /var/lib/cookbook-etcd").stdout.split()
    assert dead in data and any(d.startswith(f"{new}.retired-") for d in data), data
    # A second run is quiet again.
    assert stack.up().operations == []


class PlannedLater:
    """pulumi-tls planning `hours` from now: every certificate issued before looks that much older, so those
    within their early renewal window are re-issued, as on a real `up` that late. The certificates it issues
    are valid from the real now (the hosts check them against their clocks)."""

    def __init__(self, hours: int) -> None:
        self.planner = TlsEmulator(clock=lambda: datetime.datetime.now(datetime.UTC) + datetime.timedelta(hours=hours))

    def __call__(self, typ: str, inputs: dict[str, Any]) -> dict[str, Any]:
        return emulate_tls(typ, inputs)

    def plan(self, typ: str, old_inputs: dict[str, Any], old_outputs: dict[str, Any],
             inputs: dict[str, Any]) -> Any:
        return self.planner.plan(typ, old_inputs, old_outputs, inputs)


def test_certificates_due_for_renewal_roll_one_member_at_a_time(stack: Stack) -> None:
    """An `up` 4 years and 9 months after the certificates were issued (5-year validity, renewal 90 days
    early): every leaf certificate is re-issued (the CA is not: 10 years), reaches its member through the
    member step, and each member restarts only because the files it runs with changed, one at a time, while a
    writer goes on."""
    writer = Writer(stack, "/it/leaf-rotation", stack.endpoints())
    writer.start()
    serials = {name: stack.host(name).run("openssl x509 -noout -serial -in /etc/cookbook-etcd/pki/member.crt")
               .stdout for name in stack.members}
    pids = main_pids(stack)
    term = stack.raft_term()
    started = time.monotonic()
    mocks = stack.up(tls=PlannedLater(hours=5 * 365 * 24 - 80 * 24))
    NUMBERS["leaf_rotation_5_seconds"] = round(time.monotonic() - started, 1)
    time.sleep(1)
    stop_and_record(writer, "leaf_rotation")
    NUMBERS["leaf_rotation_elections"] = elections(stack, term, hand_offs(stack, mocks))
    replaced = {name for op, name in mocks.operations if op == "replace-create"}
    assert replaced == {f"etcd-member-{name}-cert" for name in stack.members} | {
        "etcd-operator-cert", "etcd-apiserver-cert"}, mocks.operations
    for name in stack.members:
        assert stack.host(name).run("openssl x509 -noout -serial -in /etc/cookbook-etcd/pki/member.crt").stdout \
            != serials[name]
    found = restarts(stack, pids)
    NUMBERS["leaf_rotation_failures"] = explain_failures(writer, found)
    assert [r.member for r in found] == list(stack.members)
    assert_one_at_a_time(found)
    assert writer.failed == []
    stack.etcdctl("endpoint", "health", "--cluster")
    assert_all_acked_present(stack)
    expires = datetime.datetime.fromisoformat(stack.outputs["etcd"]["expires"].replace("Z", "+00:00"))
    in_five_years = datetime.datetime.now(datetime.UTC) + datetime.timedelta(hours=5 * 365 * 24)
    assert abs((expires - in_five_years).total_seconds()) < 900
    assert stack.up().operations == []  # and nothing is due at the real now


def test_documented_ca_rotation_keeps_every_member_talking(stack: Stack) -> None:
    """The README's CA rotation, step by step, under a writer that takes the stack's outputs after each
    step (as clients must): trust both CAs, sign with the new one, trust only the new one."""
    writer = Writer(stack, "/it/ca-rotation", stack.endpoints())
    writer.start()
    steps: dict[str, Any] = {
        "trust-both": {"trusted": [1, 2]},
        "sign-with-new": {"generation": 2, "trusted": [1, 2]},
        "trust-only-new": {"generation": 2},
    }
    issuers = {}
    old_client = (stack.outputs["etcd"]["client_cert"], stack.outputs["etcd"]["client_key"])
    term = stack.raft_term()
    planned = 0
    for step, ca in steps.items():
        pids = main_pids(stack)
        stack.etcd_settings["ca"] = ca
        started = time.monotonic()
        planned += hand_offs(stack, stack.up())
        NUMBERS[f"ca_rotation_{step}_seconds"] = round(time.monotonic() - started, 1)
        found = restarts(stack, pids)
        assert [r.member for r in found] == list(stack.members), step
        assert_one_at_a_time(found)
        stack.etcdctl("endpoint", "health", "--cluster")
        issuers[step] = stack.host("etcd-a").run(
            "openssl x509 -noout -issuer -in /etc/cookbook-etcd/pki/member.crt").stdout.strip()
        bundle = stack.host("etcd-a").read_file("/etc/cookbook-etcd/pki/ca.crt")
        assert bundle.count("BEGIN CERTIFICATE") == (1 if step == "trust-only-new" else 2), step
    time.sleep(1)
    stop_and_record(writer, "ca_rotation")
    NUMBERS["ca_rotation_elections"] = elections(stack, term, planned)
    assert "CN = etcd etcd CA," in issuers["trust-both"] and "CN = etcd etcd CA 2," in issuers["sign-with-new"]
    assert writer.failed == []
    # Only the new CA is trusted now: the operator certificate of the old CA is refused.
    old = stack.workdir / "old-ca-client"
    old.mkdir(exist_ok=True)
    (old / "client.crt").write_text(old_client[0])
    (old / "client.key").write_text(old_client[1])
    refused = subprocess.run(
        ["etcdctl", f"--endpoints={stack.endpoints()}", f"--cacert={stack.pki()}/etcd-ca.crt",
         f"--cert={old}/client.crt", f"--key={old}/client.key", "--dial-timeout=2s", "--command-timeout=3s",
         "get", "/it"], capture_output=True, text=True, env={**os.environ, "ETCDCTL_API": "3"}, timeout=60,
        check=False)
    assert refused.returncode != 0, refused.stdout
    assert_all_acked_present(stack)


def test_snapshot_timer_and_restore(stack: Stack, tmp_path: Path) -> None:
    stack.etcdctl("put", "/it/restore-me", "precious")
    host = stack.fleet["e1"]
    host.run("systemctl start cookbook-etcd-snapshot.service")
    listing = host.run("ls -1 /var/backups/cookbook-etcd").stdout.split()
    periodic = sorted(f for f in listing if f.startswith("etcd-a-"))
    assert periodic, listing
    assert any(f.startswith("before-add-etcd-d") for f in stack.fleet["e4"].run(
        "ls -1 /var/backups/cookbook-etcd").stdout.split())
    for _ in range(3):  # retention 2: older periodic snapshots are removed
        time.sleep(1.1)
        host.run("systemctl start cookbook-etcd-snapshot.service")
    periodic = [f for f in host.run("ls -1 /var/backups/cookbook-etcd").stdout.split() if f.startswith("etcd-a-")]
    assert len(periodic) == 2
    snapshot = tmp_path / "snapshot.db"
    snapshot.write_bytes(base64.b64decode(host.run(
        f"base64 -w0 /var/backups/cookbook-etcd/{sorted(periodic)[-1]}").stdout))
    assert_restores(snapshot, tmp_path, "/it/restore-me", "precious")


def test_documented_whole_cluster_restore_brings_deleted_data_back(stack: Stack) -> None:
    """The README's whole-cluster restore, step by step on every member, after a key was deleted."""
    stack.etcdctl("put", "/it/whole-restore", "before-the-disaster")
    source = stack.fleet[stack.members["etcd-a"]]
    source.run("systemctl start cookbook-etcd-snapshot.service")
    newest = sorted(f for f in source.run("ls -1 /var/backups/cookbook-etcd").stdout.split()
                    if f.startswith("etcd-a-"))[-1]
    snapshot = source.run(f"base64 -w0 /var/backups/cookbook-etcd/{newest}").stdout
    stack.etcdctl("del", "/it/whole-restore")  # the disaster
    initial = ",".join(f"{name}=https://{stack.address(name)}:2380" for name in stack.members)
    for host in stack.members.values():  # step 1: stop every member
        stack.fleet[host].run("systemctl stop cookbook-etcd")
    for name, host in stack.members.items():  # step 2: restore into a new data dir on each member
        stack.fleet[host].run("base64 -d > /root/SNAP", input=snapshot)
        stack.fleet[host].run(
            f"ETCDCTL_API=3 etcdctl snapshot restore /root/SNAP --name {name} --initial-cluster {initial} "
            f"--initial-cluster-token cluster-cookbook-restored "
            f"--initial-advertise-peer-urls https://{stack.address(name)}:2380 "
            f"--data-dir /var/lib/cookbook-etcd/{name}.restored && "
            f"mv /var/lib/cookbook-etcd/{name} /var/lib/cookbook-etcd/{name}.before-restore && "
            f"mv /var/lib/cookbook-etcd/{name}.restored /var/lib/cookbook-etcd/{name} && "
            f"chown -R etcd:etcd /var/lib/cookbook-etcd/{name}")
    for host in stack.members.values():  # step 3: start every member (a quorum must start to serve)
        stack.fleet[host].run("systemctl start --no-block cookbook-etcd")
    wait_healthy(stack)
    got = stack.etcdctl("get", "/it/whole-restore", "--print-value-only").stdout.strip()
    assert got == "before-the-disaster"
    assert sorted(m["name"] for m in stack.member_list()) == sorted(stack.members)
    assert_all_acked_present(stack)


def assert_restores(snapshot: Path, workdir: Path, key: str, value: str) -> None:
    """The README's etcd restore on one loopback member: `snapshot restore`, then start etcd on the result."""
    data = workdir / "restored"
    env = {**os.environ, "ETCDCTL_API": "3"}
    subprocess.run(["etcdctl", "snapshot", "restore", str(snapshot), f"--data-dir={data}", "--name=restored",
                    "--initial-cluster=restored=http://127.0.0.1:23800",
                    "--initial-advertise-peer-urls=http://127.0.0.1:23800"],
                   check=True, capture_output=True, env=env)
    server = subprocess.Popen(
        ["etcd", "--name=restored", f"--data-dir={data}", "--listen-client-urls=http://127.0.0.1:23799",
         "--advertise-client-urls=http://127.0.0.1:23799", "--listen-peer-urls=http://127.0.0.1:23800"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while True:
            got = subprocess.run(["etcdctl", "--endpoints=http://127.0.0.1:23799", "get", key, "--print-value-only"],
                                 capture_output=True, text=True, env=env, check=False)
            if got.returncode == 0:
                break
            assert time.monotonic() < deadline, got.stderr
            time.sleep(0.3)
        assert got.stdout.strip() == value
    finally:
        server.terminate()
        server.wait(timeout=30)


def release_tarball(directory: Path) -> tuple[str, str]:
    """An etcd release tarball for amd64 made of this machine's etcd 3.4.23 binaries: (path, sha256)."""
    release = directory / "etcd-v3.4.23-linux-amd64"
    release.mkdir(parents=True)
    for binary in ("etcd", "etcdctl"):
        shutil.copy2(f"/usr/bin/{binary}", release / binary)
    tarball = directory / "etcd-v3.4.23-linux-amd64.tar.gz"
    subprocess.run(["tar", "-czf", str(tarball), "-C", str(directory), release.name], check=True)
    return str(tarball), hashlib.sha256(tarball.read_bytes()).hexdigest()


def test_bring_up_of_5_dns_named_members_from_scratch_from_a_release_tarball(stack: Stack) -> None:
    """Last: wipe the cluster from every host and bootstrap 5 members at once, as a new stack would, this
    time in tarball mode (etcd 3.4.23, this machine's binaries; the hosts' packaged etcd is left alone) and
    with every member known by a DNS name only: the machine running the program reaches them through a
    bastion that resolves the names, as the members do (/etc/hosts). A DNS-named member listens on all
    addresses, which covers loopback: naming loopback as well would bind the client port twice."""
    assert_all_acked_present(stack)
    domain = "etcd.test"
    hosts_file = "".join(f"{stack.fleet[h].address} {h}.{domain}\n" for h in HOSTS)
    for host in [*HOSTS, SPARE]:
        stack.fleet[host].run("systemctl disable --now cookbook-etcd cookbook-etcd-snapshot.timer 2>/dev/null; "
                              "rm -rf /etc/cookbook-etcd /var/lib/cookbook-etcd /var/backups/cookbook-etcd")
        stack.fleet[host].run("cat >> /etc/hosts", input=hosts_file)
    path, sha256 = release_tarball(stack.workdir / "release")
    members = {"etcd-a": "e1", "etcd-b": "e2", "etcd-f": "e3", "etcd-d": "e4", "etcd-e": "e5"}
    five = list(members)
    bastion = {"host": stack.fleet[SPARE].address, "user": "root"}
    config = Stack(stack.fleet, stack.workdir, members=members).config()
    for node in config["nodes"]:
        host = members[node["name"]]
        node.update(address=f"{host}.{domain}", proxy=bastion)
    config["etcd"].update(bootstrap=five, install="tarball", version="3.4.23",
                          tarballs={"amd64": {"path": path, "sha256": sha256}})
    ssh.SESSIONS.clear()
    started = time.monotonic()
    mocks = ExecutingMocks(StackState(), emulators={"tls": emulate_tls})
    outputs = run_program(mocks, config, stack="it-etcd-5", secret_keys=["ssh_private_key"])
    mocks.finish()
    NUMBERS["bring_up_5_seconds"] = round(time.monotonic() - started, 1)
    NUMBERS["ssh_sessions_per_member_bring_up_5"] = {
        name: ssh.SESSIONS[f"{host}.{domain}"] for name, host in members.items()}
    assert outputs["etcd"]["client_endpoints"] == [f"https://{members[n]}.{domain}:2379" for n in five]
    assert not any(name.startswith("etcd-join-") for _, name in mocks.operations)
    assert {name for _, name in mocks.operations if name.startswith("etcd-tarball-")} == {
        f"etcd-tarball-{name}" for name in five}
    endpoints = ",".join(outputs["etcd"]["client_endpoints"])
    on_e1 = stack.fleet["e1"].run(
        f"ETCDCTL_API=3 /usr/local/bin/etcdctl --endpoints={endpoints} --cacert=/etc/cookbook-etcd/pki/ca.crt "
        "--cert=/etc/cookbook-etcd/pki/member.crt --key=/etc/cookbook-etcd/pki/member.key "
        "member list -w json && ETCDCTL_API=3 /usr/local/bin/etcdctl --endpoints=" + endpoints +
        " --cacert=/etc/cookbook-etcd/pki/ca.crt --cert=/etc/cookbook-etcd/pki/member.crt "
        "--key=/etc/cookbook-etcd/pki/member.key endpoint health --cluster").stdout
    listed = json.loads(on_e1.splitlines()[0])["members"]
    assert sorted(m["name"] for m in listed) == sorted(five)
    assert all(m["peerURLs"] == [f"https://{members[m['name']]}.{domain}:2380"] for m in listed)
    for host in HOSTS:
        env = stack.fleet[host].read_file("/etc/cookbook-etcd/etcd.env")
        assert "ETCD_LISTEN_CLIENT_URLS=https://0.0.0.0:2379\n" in env
        assert stack.fleet[host].run("systemctl show -p ExecStart --value cookbook-etcd").stdout.startswith(
            "{ path=/usr/local/bin/etcd ")
        assert stack.fleet[host].run("/usr/local/bin/etcdctl version").stdout.startswith("etcdctl version: 3.4.23")
    # Every member step again (a changed timeout): the version probe recognises the installed binaries, the
    # files are the ones etcd runs with: nothing is reinstalled, nobody restarts.
    pids = {host: unit_property(stack.fleet[host], "MainPID") for host in HOSTS}
    config["etcd"]["health_timeout"] = 121
    again = ExecutingMocks(mocks.state, emulators={"tls": emulate_tls})
    run_program(again, config, stack="it-etcd-5", secret_keys=["ssh_private_key"])
    steps = [r.outputs["stdout"] for r in mocks.state.resources.values()
             if r.type == "command:remote:Command" and r.name.startswith("etcd-member-")]
    assert len(steps) == 5 and not [out for out in steps if "changed:" in out], steps
    assert {host: unit_property(stack.fleet[host], "MainPID") for host in HOSTS} == pids


def test_report_numbers(stack: Stack) -> None:
    print("\netcd numbers:", json.dumps(NUMBERS, indent=1))
