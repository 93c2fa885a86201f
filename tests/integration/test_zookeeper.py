"""The real program brings up a ZooKeeper ensemble on booted hosts: Debian's `zookeeper` package, installed by
the recipe from the hosts' offline apt repository, checked with a real client (kazoo) and the four-letter words.

One fleet of five hosts (k1..k5) for the module; the tests run in order and build on each other, like the life
of a stack: the hosts are prepared, 3 servers come up, faults under a writer, a second run, a rolling config
change under a writer, growth 3 -> 5 by dynamic reconfiguration, an unreachable host in the middle of a rolling
change, shrinking 5 -> 3 under a writer (then a rolling change over the 3), the replacement of a dead server, and a
fresh ensemble from a release tarball. Numbers are printed (`-s`) and collected in NUMBERS.
"""

from __future__ import annotations

import base64
import hashlib
import itertools
import json
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from kazoo.client import KazooClient
from kazoo.exceptions import KazooException

from components.shared.scripts import render_script
from components.zookeeper.ensemble import ZooKeeperEnsembleArgs
from components.zookeeper.gate import zookeeper_gate
from tests.harness import ssh
from tests.harness.executing import ExecutingMocks, StackState
from tests.harness.program import run_program
from tests.harness.random_emulator import emulate_random
from tests.infra.hosts import HostFleet, TestHost
from tests.integration.conftest import boot_fleet

pytestmark = [pytest.mark.integration]

HOSTS = ["k1", "k2", "k3", "k4", "k5"]
BOOTSTRAP = {"zk-a": "k1", "zk-b": "k2", "zk-c": "k3"}
GROWTH = {"zk-d": "k4", "zk-e": "k5"}
IDS = {"zk-a": 1, "zk-b": 2, "zk-c": 3, "zk-d": 4, "zk-e": 5, "zk-f": 6, "zk-g": 7, "zk-h": 8, "zk-i": 9}
SERVICE = "cookbook-zookeeper"
NUMBERS: dict[str, Any] = {}
LOGIN_USER = "pi"  # like Raspberry Pi OS: every step runs through `sudo -n`


def four_letter(address: str, word: str, port: int = 2181) -> str:
    """A server's answer to a four-letter word ("" when it does not answer)."""
    try:
        with socket.create_connection((address, port), timeout=2) as connection:
            connection.sendall(word.encode())
            chunks = []
            while chunk := connection.recv(4096):
                chunks.append(chunk)
            return b"".join(chunks).decode()
    except OSError:
        return ""


def mode(address: str) -> str:
    """leader, follower, or "" when the server does not serve."""
    for line in four_letter(address, "srvr").splitlines():
        if line.startswith("Mode: "):
            return line.removeprefix("Mode: ")
    return ""


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HostFleet]:
    yield from boot_fleet(HOSTS, tmp_path_factory, pi_user=True)
    print("\nzookeeper numbers:", json.dumps(NUMBERS, indent=1))


@dataclass
class Stack:
    """A stack's state across runs, and the servers the test currently expects."""

    fleet: HostFleet
    name: str = "it-zookeeper"
    state: StackState = field(default_factory=StackState)
    servers: dict[str, str] = field(default_factory=lambda: dict(BOOTSTRAP))  # name -> host
    removed: dict[str, str] = field(default_factory=dict)  # name -> host: node entries kept, nothing runs there
    bootstrap: list[str] = field(default_factory=lambda: list(BOOTSTRAP))
    settings: dict[str, Any] = field(default_factory=dict)
    outputs: dict[str, Any] = field(default_factory=dict)
    with_zookeeper: bool = True

    def config(self) -> dict[str, Any]:
        nodes = [{"name": name, "address": self.fleet[host].address, "host_key": self.fleet[host].host_key,
                  "roles": ["zookeeper"] if self.with_zookeeper else []}
                 for name, host in {**self.servers, **self.removed}.items()]
        config: dict[str, Any] = {
            "ssh": {"user": LOGIN_USER, "dial_error_limit": 2, "per_dial_timeout": 3},
            "prepare": {"packages": ["jq"], "kubernetes_networking": False},
            "nodes": nodes,
            "ssh_private_key": self.fleet.private_key_pem,
        }
        if self.with_zookeeper:
            config["zookeeper"] = {"ids": {name: IDS[name] for name in {**self.servers, **self.removed}},
                                   "bootstrap": self.bootstrap, "removed": sorted(self.removed),
                                   "heap_mb": 128, "health_timeout": 90, **self.settings}
        return config

    def up(self) -> ExecutingMocks:
        mocks = ExecutingMocks(self.state, emulators={"random": emulate_random})
        self.outputs = run_program(mocks, self.config(), stack=self.name, secret_keys=["ssh_private_key"])
        mocks.finish()
        return mocks

    def host(self, name: str) -> TestHost:
        return self.fleet[self.servers[name] if name in self.servers else self.removed[name]]

    def address(self, name: str) -> str:
        return self.host(name).address

    def connect_string(self, names: list[str] | None = None) -> str:
        return ",".join(f"{self.address(n)}:2181" for n in (names or list(self.servers)))

    def modes(self) -> dict[str, str]:
        return {name: mode(self.address(name)) for name in self.servers}

    def leader(self) -> str:
        leaders = [name for name, role in self.modes().items() if role == "leader"]
        assert len(leaders) == 1, self.modes()
        return leaders[0]

    def step_output(self, resource: str) -> str:
        return str(next(r for r in self.state.resources.values() if r.name == resource).outputs.get("stdout", ""))

    def main_pid(self, name: str) -> str:
        return self.host(name).run(f"systemctl show -p MainPID --value {SERVICE}").stdout.strip()


def client(connect: str, timeout: float = 10.0) -> KazooClient:
    zk = KazooClient(hosts=connect, timeout=timeout)
    zk.start(timeout=30)
    return zk


def wait_healthy(stack: Stack, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while True:
        modes = stack.modes()
        if sorted(modes.values()).count("leader") == 1 and all(m in ("leader", "follower") for m in modes.values()):
            return
        assert time.monotonic() < deadline, f"ensemble not healthy: {modes}"
        time.sleep(0.3)


class Writer(threading.Thread):
    """Creates numbered znodes through one kazoo session, recording acknowledgements, failures and the
    session's states (a LOST state means the session expired)."""

    def __init__(self, connect: str, prefix: str, session_timeout: float = 10.0):
        super().__init__(daemon=True)
        self.zk = client(connect, session_timeout)
        self.prefix = prefix
        self.zk.ensure_path(prefix)
        self.acked: list[tuple[float, str]] = []  # (acknowledged at, path)
        self.started: dict[str, float] = {}
        self.failed: list[tuple[float, str]] = []  # (started at, error)
        self.states: list[str] = []
        self.zk.add_listener(lambda state: self.states.append(str(state)))
        self.halt = threading.Event()

    def run(self) -> None:
        index = 0
        while not self.halt.is_set():
            path = f"{self.prefix}/{index:06d}"
            started = self.started[path] = time.monotonic()
            try:
                self.zk.create(path, str(index).encode())
                self.acked.append((time.monotonic(), path))
            except KazooException as error:
                self.failed.append((started, type(error).__name__))
                time.sleep(0.05)
            index += 1
            time.sleep(0.02)

    def stop(self) -> None:
        self.halt.set()
        self.join(timeout=30)
        self.zk.stop()
        self.zk.close()

    def first_ack_after(self, moment: float) -> float:
        return min(t for t, path in self.acked if self.started[path] > moment)


ACKED: list[str] = []  # every acknowledged znode of every writer, read back at the end


def assert_all_acked_present(stack: Stack) -> None:
    zk = client(stack.connect_string())
    try:
        zk.sync("/")
        lost = [path for path in ACKED if zk.exists(path) is None]
    finally:
        zk.stop()
        zk.close()
    NUMBERS["acknowledged_writes"] = len(ACKED)
    NUMBERS["acknowledged_writes_lost"] = len(lost)
    assert lost == []


@pytest.fixture(scope="module")
def stack(fleet: HostFleet) -> Stack:
    """Hosts prepared first (a run without ZooKeeper), then the 3-server bring-up is measured on its own."""
    stack = Stack(fleet, with_zookeeper=False)
    stack.up()
    stack.with_zookeeper = True
    ssh.SESSIONS.clear()
    started = time.monotonic()
    mocks = stack.up()
    NUMBERS["bring_up_3_from_prepared_hosts_seconds"] = round(time.monotonic() - started, 1)
    NUMBERS["ssh_sessions_per_server_bring_up_3"] = {
        name: ssh.SESSIONS[fleet[host].address] for name, host in stack.servers.items()}
    NUMBERS["bring_up_step_seconds"] = {name: round(end - start, 1) for name, (start, end) in mocks.timings.items()
                                        if name.startswith("zookeeper-")}
    return stack


def test_the_ensemble_forms_with_one_leader(stack: Stack) -> None:
    modes = stack.modes()
    assert sorted(modes.values()) == ["follower", "follower", "leader"], modes
    assert stack.outputs["zookeeper"]["connect_string"] == stack.connect_string()
    assert stack.step_output("zookeeper-health").startswith(f"healthy: 3 servers, leader {stack.leader()}")
    leader = stack.leader()
    mntr = four_letter(stack.address(leader), "mntr")
    assert "zk_synced_followers\t2" in mntr and "zk_synced_non_voting_followers\t0" in mntr
    # Every server runs as a voter of one membership, the one the record describes.
    zk = client(stack.connect_string())
    try:
        config, _ = zk.get("/zookeeper/config")
    finally:
        zk.stop()
        zk.close()
    lines = sorted(line for line in config.decode().splitlines() if line.startswith("server."))
    assert lines == [f"server.{IDS[n]}={stack.address(n)}:2888:3888:participant;0.0.0.0:2181" for n in BOOTSTRAP]


def test_a_write_through_one_server_is_read_through_every_other(stack: Stack) -> None:
    clients = {name: client(f"{stack.address(name)}:2181") for name in stack.servers}
    try:
        for writer, zk in clients.items():
            zk.create(f"/it/through/{writer}", writer.encode(), makepath=True)
        for reader, zk in clients.items():
            for writer in clients:
                if writer != reader:
                    zk.sync(f"/it/through/{writer}")
                    assert zk.get(f"/it/through/{writer}")[0] == writer.encode()
    finally:
        for zk in clients.values():
            zk.stop()
            zk.close()


def test_admin_server_off_and_only_whitelisted_four_letter_words(stack: Stack) -> None:
    address = stack.address("zk-a")
    assert four_letter(address, "ruok") == "imok"
    assert "Mode: " in four_letter(address, "srvr")
    assert "zk_server_state" in four_letter(address, "mntr")
    for word in ("envi", "stat", "dump", "conf"):
        assert "is not executed because it is not in the whitelist" in four_letter(address, word), word
    with pytest.raises(OSError):
        socket.create_connection((address, 8080), timeout=2).close()


def test_files_units_and_the_super_digest_stay_private(stack: Stack) -> None:
    host = stack.host("zk-a")
    assert host.run("stat -c '%a %U' /etc/cookbook-zookeeper/jvm-secret.args").stdout.strip() == "600 zookeeper"
    assert "superDigest=super:" in host.read_file("/etc/cookbook-zookeeper/jvm-secret.args")
    # The digest stays in the argument file: the process list shows only its name.
    command_line = host.run(f"tr '\\0' ' ' </proc/$(systemctl show -p MainPID --value {SERVICE})/cmdline").stdout
    assert "@/etc/cookbook-zookeeper/jvm-secret.args" in command_line and "superDigest" not in command_line
    assert host.run("systemctl is-enabled zookeeper.service", check=False).stdout.strip() == "masked"
    assert host.run(f"systemctl is-enabled {SERVICE}").stdout.strip() == "enabled"
    assert host.read_file("/var/lib/cookbook-zookeeper/zk-a/data/myid").strip() == "1"
    # ZooKeeper owns its runtime copy and keeps its membership beside it.
    runtime = host.read_file("/var/lib/cookbook-zookeeper/zk-a/conf/zoo.cfg")
    assert "dynamicConfigFile=/var/lib/cookbook-zookeeper/zk-a/conf/zoo.cfg.dynamic." in runtime
    # The server's log reaches the journal.
    assert "QuorumPeer" in host.run(f"journalctl -u {SERVICE} --no-pager -n 200").stdout


def test_no_acknowledged_write_is_lost_when_the_leader_is_killed(stack: Stack) -> None:
    leader = stack.leader()
    writer = Writer(stack.connect_string(), "/it/leader-kill")
    writer.start()
    time.sleep(2)
    pid = stack.main_pid(leader)
    stack.host(leader).run(f"kill -9 {pid}")
    killed_at = time.monotonic()  # the leader is gone by now
    time.sleep(8)
    writer.stop()
    ACKED.extend(path for _, path in writer.acked)
    NUMBERS["leader_kill_first_ack_after_kill_seconds"] = round(writer.first_ack_after(killed_at) - killed_at, 2)
    NUMBERS["leader_kill_longest_ack_gap_seconds"] = round(max(
        b[0] - a[0] for a, b in itertools.pairwise(writer.acked)), 2)
    NUMBERS["leader_kill_failed_writes"] = len(writer.failed)
    NUMBERS["leader_kill_failures"] = sorted({error for _, error in writer.failed})
    assert writer.first_ack_after(killed_at) - killed_at < 10
    assert "KazooState.LOST" not in writer.states  # the session survived the failover
    wait_healthy(stack)  # systemd restarted the killed server; it rejoined
    NUMBERS["leader_kill_new_leader"] = f"{leader} -> {stack.leader()}"
    assert_all_acked_present(stack)


def test_a_second_run_changes_nothing(stack: Stack) -> None:
    mocks = stack.up()
    assert mocks.operations == []


def run_gate(stack: Stack, name: str) -> subprocess.CompletedProcess[str]:
    """The node layer's reboot gate of `name`'s host, run there as the reboot step runs it."""
    gate = zookeeper_gate(ZooKeeperEnsembleArgs(servers=(), ids=IDS), name)
    script = render_script(["shared/common.sh", gate.fragment], dict(gate.params)) + "zookeeper_gate\n"
    return stack.host(name).run(["bash", "-c", script], check=False)


def test_the_reboot_gate_passes_only_while_every_server_serves(stack: Stack) -> None:
    assert run_gate(stack, "zk-a").returncode == 0
    stack.host("zk-b").run(f"systemctl stop {SERVICE}")
    try:
        stopped = run_gate(stack, "zk-a")
        assert stopped.returncode == 1 and f"server.{IDS['zk-b']}:not-serving" in stopped.stdout, stopped.stdout
    finally:
        stack.host("zk-b").run(f"systemctl start {SERVICE}")
    wait_healthy(stack)
    assert run_gate(stack, "zk-c").returncode == 0


class Monitor(threading.Thread):
    """Polls every server's srvr mode; records for each server the moments it stopped and resumed serving."""

    def __init__(self, stack: Stack):
        super().__init__(daemon=True)
        self.stack = stack
        self.halt = threading.Event()
        self.down: dict[str, list[tuple[float, float | None]]] = {name: [] for name in stack.servers}

    def run(self) -> None:
        serving = dict.fromkeys(self.stack.servers, True)
        while not self.halt.is_set():
            for name in self.stack.servers:
                now_serving = mode(self.stack.address(name)) in ("leader", "follower")
                if serving[name] and not now_serving:
                    self.down[name].append((time.monotonic(), None))
                elif not serving[name] and now_serving:
                    self.down[name][-1] = (self.down[name][-1][0], time.monotonic())
                serving[name] = now_serving
            time.sleep(0.1)

    def stop(self) -> None:
        self.halt.set()
        self.join(timeout=10)


def restart_window(stack: Stack, name: str) -> tuple[float, float]:
    """When systemd last stopped the server and started it again (CLOCK_MONOTONIC, shared by every host)."""
    shown = stack.host(name).run(f"systemctl show -p InactiveEnterTimestampMonotonic "
                                 f"-p ActiveEnterTimestampMonotonic {SERVICE}").stdout
    values = dict(line.split("=", 1) for line in shown.split())
    return int(values["InactiveEnterTimestampMonotonic"]) / 1e6, int(values["ActiveEnterTimestampMonotonic"]) / 1e6


def test_a_config_change_restarts_followers_one_at_a_time_and_the_leader_last(stack: Stack) -> None:
    """A changed setting restarts every server: followers first, one at a time (the next only once the previous
    serves again), the leader last; a writer's session lives through it and no acknowledged write is lost."""
    leader = stack.leader()
    pids = {name: stack.main_pid(name) for name in stack.servers}
    writer = Writer(stack.connect_string(), "/it/rolling", session_timeout=15)
    monitor = Monitor(stack)
    writer.start()
    monitor.start()
    stack.settings["tick_time"] = 1500
    started = time.monotonic()
    mocks = stack.up()
    NUMBERS["rolling_restart_3_seconds"] = round(time.monotonic() - started, 1)
    time.sleep(1)
    monitor.stop()
    writer.stop()
    ACKED.extend(path for _, path in writer.acked)
    NUMBERS["rolling_restart_failed_writes"] = len(writer.failed)
    NUMBERS["rolling_restart_failures"] = sorted({error for _, error in writer.failed})
    assert "KazooState.LOST" not in writer.states, writer.states  # no failed session
    assert all(stack.main_pid(name) != pids[name] for name in stack.servers)
    # The leader's first step deferred it; its second step restarted it, after every follower.
    assert "restart deferred" in stack.step_output(f"zookeeper-server-{leader}")
    assert "it was leader" in stack.step_output(f"zookeeper-restart-{leader}")
    windows = sorted((restart_window(stack, name), name) for name in stack.servers)
    assert windows[-1][1] == leader, windows
    for (_, previous), (window, _) in itertools.pairwise(windows):
        # The next server stopped only after the previous one served again (seen from outside).
        resumed = [end for start, end in monitor.down[previous] if end is not None and start <= window[0]]
        assert resumed and max(resumed) <= window[0], (previous, monitor.down, windows)
    assert [name for op, name in mocks.operations if op == "update"] == [f"zookeeper-server-{n}" for n in BOOTSTRAP]
    assert stack.step_output("zookeeper-health").startswith("healthy: 3 servers")
    assert_all_acked_present(stack)
    assert stack.up().operations == []


def test_growth_3_to_5_by_reconfiguration_leaves_existing_servers_untouched(stack: Stack) -> None:
    writer = Writer(stack.connect_string(), "/it/growth")
    writer.start()
    pids = {name: stack.main_pid(name) for name in stack.servers}
    stack.servers.update(GROWTH)
    ssh.SESSIONS.clear()
    started = time.monotonic()
    mocks = stack.up()
    NUMBERS["growth_3_to_5_seconds"] = round(time.monotonic() - started, 1)
    NUMBERS["ssh_sessions_per_new_server_growth"] = {
        name: ssh.SESSIONS[stack.fleet[host].address] for name, host in GROWTH.items()}
    writer.stop()
    ACKED.extend(path for _, path in writer.acked)
    NUMBERS["growth_failed_writes"] = len(writer.failed)
    touched = {name for _, name in mocks.operations}
    for name in BOOTSTRAP:
        assert not {r for r in touched if r.endswith(f"-{name}")}, (name, mocks.operations)
        assert stack.main_pid(name) == pids[name]
    order = [name for _, name in mocks.operations]
    assert order.index("zookeeper-join-zk-d") < order.index("zookeeper-join-zk-e")
    assert writer.failed == []
    wait_healthy(stack)
    assert sorted(stack.modes().values()) == ["follower"] * 4 + ["leader"]
    mntr = four_letter(stack.address(stack.leader()), "mntr")
    assert "zk_synced_followers\t4" in mntr and "zk_synced_non_voting_followers\t0" in mntr
    assert stack.outputs["zookeeper"]["connect_string"] == stack.connect_string()
    assert_all_acked_present(stack)
    assert stack.up().operations == []


def test_an_unreachable_server_fails_the_run_with_its_name_and_a_rerun_converges(stack: Stack) -> None:
    """zk-e is cut off the network during a rolling change: the others restart (4 of 5 keep a quorum without
    any one of them), zk-e's step fails naming it, and the leader's second step never starts. Back on the
    network, a re-run restarts zk-e and then the leader, and the ensemble is healthy."""
    stack.host("zk-e").block()
    stack.settings["sync_limit"] = 4
    try:
        with pytest.raises(Exception, match=r"zookeeper-server-zk-e' on 10\.250\.\d+\.15 failed") as failure:
            stack.up()
    finally:
        stack.host("zk-e").unblock()
    NUMBERS["unreachable_error"] = str(failure.value).splitlines()[0][:200]
    mocks = stack.up()
    ran = [name for _, name in mocks.operations]
    assert "zookeeper-server-zk-e" in ran and "zookeeper-health" in ran
    wait_healthy(stack)
    for name in stack.servers:
        config = stack.host(name).read_file("/etc/cookbook-zookeeper/zoo.cfg")
        assert "syncLimit=4" in config
        assert stack.host(name).run(
            "test \"$(cat /var/lib/cookbook-zookeeper/*/started-with)\" = \"$(cat /etc/cookbook-zookeeper/install.env "
            "/etc/cookbook-zookeeper/zoo.cfg /etc/cookbook-zookeeper/jvm.args "
            "/etc/cookbook-zookeeper/jvm-secret.args /etc/systemd/system/cookbook-zookeeper.service | sha256sum | "
            "cut -d' ' -f1)\"", check=False).returncode == 0, f"{name} runs an older configuration"
    assert_all_acked_present(stack)
    assert stack.up().operations == []


def membership_lines(stack: Stack) -> list[str]:
    """The voting membership the ensemble reports (`/zookeeper/config`, after a sync), sorted."""
    zk = client(stack.connect_string())
    try:
        zk.sync("/zookeeper/config")
        config, _ = zk.get("/zookeeper/config")
    finally:
        zk.stop()
        zk.close()
    return sorted(line for line in config.decode().splitlines() if line.startswith("server."))


def expected_lines(stack: Stack) -> list[str]:
    return sorted(f"server.{IDS[n]}={stack.address(n)}:2888:3888:participant;0.0.0.0:2181" for n in stack.servers)


def test_shrinking_5_to_3_under_a_writer_then_a_config_change_still_rolls(stack: Stack) -> None:
    """zk-c (a bootstrap server) and zk-e leave by `reconfig -remove`, one after the other, while a writer's
    session lives on; the servers that stay are not touched. The retired servers keep running as non-voting
    followers until they are stopped (README); the health gate counts voters. Then a changed setting restarts the
    3 remaining servers one at a time, the leader last: every quorum check counts 3 voters, not 5."""
    writer = Writer(stack.connect_string(), "/it/shrink", session_timeout=15)
    writer.start()
    retire = ["zk-c", "zk-e"]
    pids = {name: stack.main_pid(name) for name in stack.servers if name not in retire}
    NUMBERS["shrink_removed_the_leader"] = stack.leader() in retire
    for name in retire:
        stack.removed[name] = stack.servers.pop(name)
    started = time.monotonic()
    mocks = stack.up()
    NUMBERS["shrink_5_to_3_seconds"] = round(time.monotonic() - started, 1)
    ran = [name for operation, name in mocks.operations if operation != "delete"]  # (deletes: state only)
    assert ran.index("zookeeper-remove-zk-c") < ran.index("zookeeper-remove-zk-e") < ran.index("zookeeper-health")
    assert not [name for name in ran if name.startswith(("zookeeper-server-", "zookeeper-restart-"))], ran
    deleted = {name for operation, name in mocks.operations if operation == "delete"}
    assert {f"zookeeper-{step}-{name}" for step in ("install", "server", "restart") for name in retire} <= deleted
    assert "changed: removed zk-c (server.3) from the ensemble" in stack.step_output("zookeeper-remove-zk-c")
    assert membership_lines(stack) == expected_lines(stack)
    assert stack.outputs["zookeeper"]["connect_string"] == stack.connect_string()
    for name in retire:  # README step 3: stop the retired servers
        stack.host(name).run(f"systemctl disable --now {SERVICE}")
    time.sleep(3)
    writer.stop()
    ACKED.extend(path for _, path in writer.acked)
    NUMBERS["shrink_failed_writes"] = len(writer.failed)
    NUMBERS["shrink_failures"] = sorted({error for _, error in writer.failed})
    assert "KazooState.LOST" not in writer.states, writer.states  # no failed session
    assert {name: stack.main_pid(name) for name in stack.servers} == pids  # nobody restarted
    wait_healthy(stack)
    assert "zk_synced_followers\t2" in four_letter(stack.address(stack.leader()), "mntr")
    assert stack.up().operations == []

    # A rolling change over the 3 that remain: each restart's quorum check counts 3 voters (2 of them serving
    # suffice), which 5 voters with 2 retired ones stopped would refuse.
    leader = stack.leader()
    writer = Writer(stack.connect_string(), "/it/after-shrink", session_timeout=15)
    writer.start()
    stack.settings["tick_time"] = 1800
    started = time.monotonic()
    mocks = stack.up()
    NUMBERS["rolling_restart_after_shrink_seconds"] = round(time.monotonic() - started, 1)
    writer.stop()
    ACKED.extend(path for _, path in writer.acked)
    assert "KazooState.LOST" not in writer.states, writer.states
    assert all(stack.main_pid(name) != pids[name] for name in stack.servers)
    assert "it was leader" in stack.step_output(f"zookeeper-restart-{leader}")
    assert sorted((restart_window(stack, name), name) for name in stack.servers)[-1][1] == leader
    gate = run_gate(stack, "zk-a")
    assert gate.returncode == 0 and "3 of 3 members serving, 1 leader(s)" in gate.stdout, gate.stdout
    assert_all_acked_present(stack)
    assert stack.up().operations == []


def test_a_dead_server_is_removed_and_replaced(stack: Stack) -> None:
    """zk-b's machine dies (its server stopped, the machine cut off the network). It goes to `removed` and a
    replacement with a new name and id joins on zk-c's retired machine (same address): the removal runs through a
    serving server (the two that remain of 3 both serve) before the join, and nothing is run on the dead machine."""
    dead = "zk-b"
    dead_host = stack.host(dead)
    dead_host.run(f"systemctl stop {SERVICE}")
    dead_host.block()
    try:
        writer = Writer(stack.connect_string([n for n in stack.servers if n != dead]), "/it/replace",
                        session_timeout=15)
        writer.start()
        stack.removed[dead] = stack.servers.pop(dead)
        stack.servers["zk-i"] = stack.removed["zk-c"]  # the retired zk-c's machine, stopped and disabled
        ssh.SESSIONS.clear()
        started = time.monotonic()
        mocks = stack.up()
        NUMBERS["replace_dead_server_seconds"] = round(time.monotonic() - started, 1)
        writer.stop()
        ACKED.extend(path for _, path in writer.acked)
        NUMBERS["replace_failed_writes"] = len(writer.failed)
        assert "KazooState.LOST" not in writer.states, writer.states
        assert dead_host.address not in ssh.SESSIONS  # nothing ran on the dead machine
        ran = [name for operation, name in mocks.operations if operation != "delete"]
        assert ran.index("zookeeper-remove-zk-b") < ran.index("zookeeper-join-zk-i")
        # The earlier removals ran again (their inputs name the current servers): a server that is gone is done.
        assert "zk-c (server.3) is not a member of the ensemble (already removed)" in \
            stack.step_output("zookeeper-remove-zk-c")
        wait_healthy(stack)
        assert membership_lines(stack) == expected_lines(stack)
        assert sorted(stack.modes().values()) == ["follower", "follower", "leader"]
        assert_all_acked_present(stack)
        assert stack.up().operations == []
    finally:
        dead_host.unblock()
    # The dead machine is back: its server must not rejoin (README: stop and disable it).
    dead_host.run(f"systemctl disable --now {SERVICE}")


# Run on a host with the Debian package: lays out lib/ (zookeeper.jar and the jars its manifest lists) and conf/.
_RELEASE_BUILDER = """
import pathlib, shutil, tarfile, zipfile


def class_path(jar):
    manifest = zipfile.ZipFile(jar).read("META-INF/MANIFEST.MF").decode().replace("\\r\\n", "\\n")
    lines = manifest.replace("\\n ", "").splitlines()
    entries = next((line.split(": ", 1)[1].split() for line in lines if line.startswith("Class-Path:")), [])
    return [str(pathlib.Path(jar).parent / entry) if not entry.startswith("/") else entry for entry in entries]

# zookeeper.jar and every jar its manifests reach (Debian's jars name their own dependencies).
seen, queue = set(), ["/usr/share/java/zookeeper.jar", "/usr/share/java/slf4j-simple.jar"]
while queue:
    jar = str(pathlib.Path(queue.pop()).resolve())
    if jar in seen or not pathlib.Path(jar).exists():  # manifests also name optional jars (jline)
        continue
    seen.add(jar)
    queue += class_path(jar)
root = pathlib.Path("/tmp/zk-release/apache-zookeeper-3.8.0-bin")
shutil.rmtree(root.parent, ignore_errors=True)
(root / "lib").mkdir(parents=True)
(root / "conf").mkdir()
for jar in sorted(seen):
    name = "zookeeper-3.8.0.jar" if jar.endswith("/zookeeper.jar") else pathlib.Path(jar).name
    shutil.copy(jar, root / "lib" / name)
(root / "conf" / "logback.xml").write_text("<configuration/>\\n")
with tarfile.open("/tmp/zk-release.tar.gz", "w:gz") as tar:
    tar.add(root, arcname=root.name)
"""


def release_tarball(fleet: HostFleet, directory: Path) -> tuple[str, str]:
    """A ZooKeeper binary release laid out like Apache's (`apache-zookeeper-3.8.0-bin/lib/*.jar`, `conf/`), made
    of the Debian package's jars on a host (Apache's tarball cannot be downloaded here): (path, sha256)."""
    host = fleet["k1"]
    host.run("python3 -", input=_RELEASE_BUILDER)
    tarball = directory / "apache-zookeeper-3.8.0-bin.tar.gz"
    tarball.write_bytes(base64.b64decode(host.run("base64 -w0 /tmp/zk-release.tar.gz").stdout))
    return str(tarball), hashlib.sha256(tarball.read_bytes()).hexdigest()


def test_a_fresh_ensemble_from_a_release_tarball(stack: Stack, tmp_path: Path) -> None:
    """Last: ZooKeeper wiped from every host; a new stack bootstraps 3 servers from a release tarball (uploaded,
    checksum-verified, unpacked to /opt/cookbook-zookeeper) instead of the package."""
    path, sha256 = release_tarball(stack.fleet, tmp_path)
    for test_host in stack.fleet:  # the servers' hosts and the removed servers' ones
        test_host.run(f"systemctl disable --now {SERVICE}; rm -rf /etc/cookbook-zookeeper "
                      f"/var/lib/cookbook-zookeeper /etc/systemd/system/{SERVICE}.service; systemctl daemon-reload")
    for host in ("k3", "k4", "k5"):  # no packaged ZooKeeper (nor its Java) left on the tarball's hosts
        stack.fleet[host].run("export DEBIAN_FRONTEND=noninteractive; for package in zookeeper libzookeeper-java; do "
                              "if dpkg -s $package >/dev/null 2>&1; then apt-get purge -y -qq $package >/dev/null; fi; "
                              "done; apt-get autoremove --purge -y -qq >/dev/null && "
                              "! test -e /usr/share/java/zookeeper.jar && ! test -e /usr/bin/java")
    fresh = Stack(stack.fleet, name="it-zookeeper-tarball", servers={"zk-f": "k3", "zk-g": "k4", "zk-h": "k5"},
                  bootstrap=["zk-f", "zk-g", "zk-h"],
                  settings={"install": "tarball", "tarball": {"path": path, "sha256": sha256}})
    fresh.up()
    wait_healthy(fresh)
    for name in fresh.servers:
        assert fresh.host(name).read_file("/opt/cookbook-zookeeper/apache-zookeeper-3.8.0-bin/.cookbook-sha256"
                                          ).strip() == sha256
        assert "ZOOKEEPER_CLASSPATH=/opt/cookbook-zookeeper/apache-zookeeper-3.8.0-bin/lib/*" in \
            fresh.host(name).read_file("/etc/cookbook-zookeeper/install.env")
    zk = client(fresh.connect_string())
    try:
        zk.create("/tarball", b"ok")
        assert zk.get("/tarball")[0] == b"ok"
    finally:
        zk.stop()
        zk.close()
    assert fresh.up().operations == []


def test_report_numbers(stack: Stack) -> None:
    print("\nzookeeper numbers:", json.dumps(NUMBERS, indent=1))
    assert NUMBERS

