"""The real program brings up etcd on booted hosts; everything is checked with the real `etcdctl`.

One fleet of five hosts (e1..e5) for the module; the tests run in order and build on each other, like the
life of a stack: bootstrap 3 members, faults under a writer, a second run, growth 3 -> 5 under a writer,
replacement of a stopped member under a writer, snapshots and a restore. Measured numbers are printed
(run with `-s`) and collected in `NUMBERS`.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import json
import os
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
from tests.harness.tls import emulate_tls
from tests.infra.hosts import HostFleet
from tests.integration.conftest import boot_fleet

pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(shutil.which("etcdctl") is None, reason="needs etcdctl (Debian etcd-client)")]

HOSTS = ["e1", "e2", "e3", "e4", "e5"]
BOOTSTRAP = {"etcd-a": "e1", "etcd-b": "e2", "etcd-c": "e3"}
GROWTH = {"etcd-d": "e4", "etcd-e": "e5"}
REPLACEMENT = ("etcd-c", "etcd-f", "e3")  # removed member, its replacement, the (re-imaged) host
NUMBERS: dict[str, Any] = {}


# Like Raspberry Pi OS: the program logs in as `pi` and runs every step through `sudo -n`.
LOGIN_USER = "pi"
ADD_LOGIN_USER = (
    "useradd --create-home --shell /bin/bash pi && install -d -m 0700 -o pi -g pi /home/pi/.ssh && "
    "install -m 0600 -o pi -g pi /root/.ssh/authorized_keys /home/pi/.ssh/authorized_keys && "
    "echo 'pi ALL=(ALL) NOPASSWD: ALL' > /etc/sudoers.d/010_pi-nopasswd && chmod 0440 /etc/sudoers.d/010_pi-nopasswd"
)


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HostFleet]:
    for fleet in boot_fleet(HOSTS, tmp_path_factory):
        for host in fleet:
            host.run(ADD_LOGIN_USER)
        yield fleet
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

    def up(self) -> ExecutingMocks:
        mocks = ExecutingMocks(self.state, emulators={"tls": emulate_tls})
        self.outputs = run_program(mocks, self.config(), stack="it-etcd", secret_keys=["ssh_private_key"])
        mocks.finish()
        return mocks

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
            (directory / file).write_text(etcd[key])
            (directory / file).chmod(0o600)
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

    def leader_host(self) -> str:
        status = json.loads(self.etcdctl("endpoint", "status", "-w", "json").stdout)
        for entry in status:
            if entry["Status"]["header"]["member_id"] == entry["Status"]["leader"]:
                address = entry["Endpoint"].split("//")[1].split(":")[0]
                return next(h for h in self.members.values() if self.fleet[h].address == address)
        raise AssertionError(f"no leader in {status}")


class Writer(threading.Thread):
    """Puts numbered keys, one etcdctl process per write, recording acknowledgements and failures."""

    def __init__(self, stack: Stack, prefix: str, endpoints: str, timeout: str = "3s"):
        super().__init__(daemon=True)
        self.stack, self.prefix, self.endpoints, self.timeout = stack, prefix, endpoints, timeout
        self.acked: list[tuple[float, str]] = []  # (acknowledged at, key)
        self.started: dict[str, float] = {}  # key -> when its put started
        self.failed: list[tuple[float, str]] = []
        self.halt = threading.Event()

    def run(self) -> None:
        index = 0
        while not self.halt.is_set():
            key = f"{self.prefix}/{index:06d}"
            started = self.started[key] = time.monotonic()
            done = self.stack.etcdctl("put", key, str(index), endpoints=self.endpoints, timeout=self.timeout,
                                     check=False)
            if done.returncode == 0 and done.stdout.strip() == "OK":
                self.acked.append((time.monotonic(), key))
            else:
                self.failed.append((started, done.stderr.strip()[-300:]))
            index += 1

    def stop(self) -> None:
        self.halt.set()
        self.join(timeout=30)

    def first_ack_after(self, moment: float) -> float:
        """When the first write started after `moment` was acknowledged."""
        return min(t for t, key in self.acked if self.started[key] > moment)


ACKED: list[str] = []  # every acknowledged key of every writer, read back at the end


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
    assert host.run("stat -c '%a %U' /etc/cookbook-etcd/pki /etc/cookbook-etcd/pki/member.key "
                    "/var/lib/cookbook-etcd").stdout.split("\n")[:3] == ["700 etcd", "600 etcd", "700 etcd"]
    env = host.read_file("/etc/cookbook-etcd/etcd.env")
    for line in ("ETCD_CLIENT_CERT_AUTH=true", "ETCD_PEER_CLIENT_CERT_AUTH=true", "ETCD_STRICT_RECONFIG_CHECK=true",
                 "ETCD_AUTO_TLS=false", "ETCD_PEER_AUTO_TLS=false"):
        assert line in env.splitlines()
    assert "http://" not in env
    assert host.run("systemctl is-active cookbook-etcd cookbook-etcd-snapshot.timer").stdout.split() == \
        ["active", "active"]


def test_no_acknowledged_write_is_lost_when_the_leader_or_a_follower_is_killed(stack: Stack) -> None:
    leader = stack.leader_host()
    survivors = [n for n, h in stack.members.items() if h != leader]
    # A short client timeout: a put stuck with the dead leader is given up after 0.5 s and the next one sent,
    # so the measured window is the election time rounded up to 0.5 s.
    writer = Writer(stack, "/it/leader-kill", stack.endpoints(survivors), timeout="500ms")
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
    writer = Writer(stack, "/it/follower-kill", stack.endpoints(survivors))
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
    writer.stop()
    ACKED.extend(key for _, key in writer.acked)
    NUMBERS["growth_failed_writes"] = len(writer.failed)
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


def test_replacing_a_stopped_member_keeps_the_cluster_writable(stack: Stack) -> None:
    dead, new, host = REPLACEMENT
    writer = Writer(stack, "/it/replacement", stack.endpoints([n for n in stack.members if n != dead]))
    writer.start()
    stack.fleet[host].stop()
    # The host comes back with this cluster's config gone (re-installed), under a new member name; the old
    # member's data dir is still on disk, and a stale data dir waits where the new member's would go.
    upper = stack.fleet[host].upper_dir
    for leftover in ("etc/cookbook-etcd", "etc/systemd/system/multi-user.target.wants/cookbook-etcd.service"):
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
    mocks = stack.up()
    time.sleep(1)
    writer.stop()
    ACKED.extend(key for _, key in writer.acked)
    NUMBERS["replacement_failed_writes"] = len(writer.failed)
    order = [name for _, name in mocks.operations]
    assert order.index(f"etcd-remove-{dead}") < order.index(f"etcd-join-{new}")
    remove = next(r for r in stack.state.resources.values() if r.name == f"etcd-remove-{dead}")
    assert remove.inputs["connection"]["host"] == stack.address("etcd-a")  # through a healthy member
    assert writer.failed == []
    members = stack.member_list()
    assert sorted(m["name"] for m in members) == sorted(stack.members)
    stack.etcdctl("endpoint", "health", "--cluster")
    assert_all_acked_present(stack)
    # Data dirs are never reused: the removed member's is left alone, a stale one was moved aside.
    data = stack.fleet[host].run("ls -1 /var/lib/cookbook-etcd").stdout.split()
    assert dead in data and new in data and any(d.startswith(f"{new}.retired-") for d in data), data
    assert stack.fleet[host].run(f"ls /var/lib/cookbook-etcd/{new}/member").stdout.split() == ["snap", "wal"]
    # A second run is quiet again.
    assert stack.up().operations == []


def test_a_config_change_restarts_members_one_at_a_time(stack: Stack) -> None:
    """A changed env file (here the cluster token) restarts every member, in chain order, each waiting until
    it is healthy again before the next one restarts, the leader handing over first; writes go on and none
    acknowledged is lost."""
    writer = Writer(stack, "/it/rolling", stack.endpoints(), timeout="1s")
    writer.start()
    stack.etcd_settings["cluster_token"] = "rolled"
    pids_before = {name: stack.fleet[host].run("systemctl show -p MainPID --value cookbook-etcd").stdout.strip()
                   for name, host in stack.members.items()}
    started = time.monotonic()
    mocks = stack.up()
    NUMBERS["rolling_restart_5_seconds"] = round(time.monotonic() - started, 1)
    time.sleep(1)
    writer.stop()
    ACKED.extend(key for _, key in writer.acked)
    NUMBERS["rolling_restart_failed_writes"] = len(writer.failed)
    updates = [name for op, name in mocks.operations if op == "update" and name.startswith("etcd-member-")]
    assert updates == [f"etcd-member-{name}" for name in ("etcd-a", "etcd-b", "etcd-d", "etcd-e", "etcd-f")]
    for name, host in stack.members.items():
        assert stack.fleet[host].run("systemctl show -p MainPID --value cookbook-etcd").stdout.strip() != \
            pids_before[name]
    # Whoever leads when its turn comes hands leadership over before restarting (no election timeout).
    member_steps = [r.outputs["stdout"] for r in stack.state.resources.values() if r.name in updates]
    assert any("leadership moved to" in stdout for stdout in member_steps)
    stack.etcdctl("endpoint", "health", "--cluster")
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


def test_bring_up_of_5_members_from_scratch_from_a_release_tarball(stack: Stack) -> None:
    """Last: wipe the cluster from every host and bootstrap 5 members at once, as a new stack would, this
    time in tarball mode: the tarball for each host's architecture is uploaded, checked and unpacked to
    /usr/local/bin (the hosts' packaged etcd is left alone)."""
    assert_all_acked_present(stack)
    for host in HOSTS:
        stack.fleet[host].run("systemctl disable --now cookbook-etcd cookbook-etcd-snapshot.timer 2>/dev/null; "
                              "rm -rf /etc/cookbook-etcd /var/lib/cookbook-etcd /var/backups/cookbook-etcd")
    path, sha256 = release_tarball(stack.workdir / "release")
    fresh = Stack(stack.fleet, stack.workdir / "five", members={"etcd-a": "e1", "etcd-b": "e2", "etcd-f": "e3",
                                                                "etcd-d": "e4", "etcd-e": "e5"})
    fresh.workdir.mkdir()
    five = list(fresh.members)
    ssh.SESSIONS.clear()
    started = time.monotonic()
    mocks = ExecutingMocks(fresh.state, emulators={"tls": emulate_tls})
    config = fresh.config()
    config["etcd"].update(bootstrap=five, install="tarball", tarballs={"amd64": {"path": path, "sha256": sha256}})
    fresh.outputs = run_program(mocks, config, stack="it-etcd-5", secret_keys=["ssh_private_key"])
    mocks.finish()
    NUMBERS["bring_up_5_seconds"] = round(time.monotonic() - started, 1)
    NUMBERS["ssh_sessions_per_member_bring_up_5"] = {
        name: ssh.SESSIONS[stack.fleet[host].address] for name, host in fresh.members.items()}
    assert sorted(m["name"] for m in fresh.member_list()) == sorted(five)
    fresh.etcdctl("endpoint", "health", "--cluster")
    assert not any(name.startswith("etcd-join-") for _, name in mocks.operations)
    assert {name for _, name in mocks.operations if name.startswith("etcd-tarball-")} == {
        f"etcd-tarball-{name}" for name in five}
    for host in HOSTS:
        assert stack.fleet[host].run("systemctl show -p ExecStart --value cookbook-etcd").stdout.startswith(
            "{ path=/usr/local/bin/etcd ")
        assert stack.fleet[host].run("/usr/local/bin/etcdctl version").stdout.startswith("etcdctl version: 3.4.23")


def test_report_numbers(stack: Stack) -> None:
    print("\netcd numbers:", json.dumps(NUMBERS, indent=1))
