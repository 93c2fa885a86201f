"""Raspberry Pis with role etcd reboot one at a time, behind the etcd health gate, with the real etcd recipe
as `__main__.py` composes it; an interrupted run still reboots next time.

Three hosts (r1..r3) play Pis (tests/integration/node_pis.py: a test-only stand-in of the Pi firmware builds
each host's /proc/cmdline from cmdline.txt at boot), log in as `pi` through `sudo -n` like Raspberry Pi OS,
and get etcd from the offline package repository. The tests build on each other, like a stack's life:
bare Pis -> prepared, rebooted one by one, etcd healthy; a new cmdline flag under an etcd writer; a run
killed after the prepare step. Numbers are printed (run with `-s`).
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.harness import ssh
from tests.harness.executing import StackState
from tests.harness.program import run_program
from tests.harness.tls import emulate_tls
from tests.infra.hosts import HostFleet
from tests.integration.conftest import boot_fleet
from tests.integration.etcd_writer import EtcdWriter
from tests.integration.node_pis import TimedMocks, boot_as_if_without, emulate_pi, running_cmdline, window

pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(shutil.which("etcdctl") is None, reason="needs etcdctl (Debian etcd-client)")]

PIS = {"r1": "pi-1", "r2": "pi-2", "r3": "pi-3"}  # host -> node name, in node order
CGROUP_FLAGS = ["cgroup_memory=1", "cgroup_enable=memory"]
NUMBERS: dict[str, Any] = {}


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HostFleet]:
    for fleet in boot_fleet(list(PIS), tmp_path_factory, pi_user=True):
        for host in fleet:
            emulate_pi(host)
        yield fleet
    print("\nnode reboot numbers:", json.dumps(NUMBERS, indent=1))


@dataclass
class Stack:
    fleet: HostFleet
    workdir: Path
    state: StackState = field(default_factory=StackState)
    extra_flags: list[str] = field(default_factory=list)
    time_servers: list[str] = field(default_factory=list)
    outputs: dict[str, Any] = field(default_factory=dict)
    bring_up: TimedMocks | None = None

    def config(self) -> dict[str, Any]:
        return {
            "ssh": {"user": "pi", "dial_error_limit": 3, "per_dial_timeout": 5, "reboot_timeout": 120},
            "prepare": {"packages": ["jq"], "kubernetes_networking": False, "pi_cmdline_flags": self.extra_flags,
                        "time_servers": self.time_servers},
            "nodes": [{"name": name, "address": self.fleet[host].address, "host_key": self.fleet[host].host_key,
                       "kind": "pi", "roles": ["etcd"]} for host, name in PIS.items()],
            "ssh_private_key": self.fleet.private_key_pem,
            "etcd": {"install": "package", "bootstrap": list(PIS.values()), "health_timeout": 120},
        }

    def up(self, kill_after: str | None = None) -> TimedMocks:
        mocks = TimedMocks(self.state, emulators={"tls": emulate_tls}, kill_after=kill_after)
        self.outputs = run_program(mocks, self.config(), stack="it-node-reboots", secret_keys=["ssh_private_key"])
        mocks.finish()
        self._write_pki()
        return mocks

    def _write_pki(self) -> None:
        """The operator's client credentials from the outputs, for the local etcdctl (each file replaced whole:
        a writer thread may be using them)."""
        pki = self.workdir / "pki"
        pki.mkdir(exist_ok=True)
        for file, key in (("ca.crt", "ca_cert"), ("client.crt", "client_cert"), ("client.key", "client_key")):
            staged = pki / f".{file}"
            staged.write_text(self.outputs["etcd"][key])
            staged.chmod(0o600)
            staged.replace(pki / file)

    def endpoints(self) -> str:
        return ",".join(f"https://{self.fleet[host].address}:2379" for host in PIS)

    def etcdctl(self, *args: str, timeout: str = "5s", dial: str = "2s") -> subprocess.CompletedProcess[str]:
        pki = self.workdir / "pki"
        argv = ["etcdctl", f"--endpoints={self.endpoints()}", f"--cacert={pki}/ca.crt", f"--cert={pki}/client.crt",
                f"--key={pki}/client.key", f"--dial-timeout={dial}", f"--command-timeout={timeout}", *args]
        return subprocess.run(argv, capture_output=True, text=True, env={**os.environ, "ETCDCTL_API": "3"},
                              timeout=60, check=False)


class Writer(EtcdWriter):
    """Puts numbered keys through all three endpoints (tests/integration/etcd_writer.py: a put whose connection
    broke because its member went down for the reboot is retried once, as etcd clients do)."""

    def __init__(self, stack: Stack, prefix: str):
        super().__init__(prefix)
        self.stack = stack

    def put(self, key: str, value: str) -> subprocess.CompletedProcess[str]:
        return self.stack.etcdctl("put", key, value, timeout="3s")


class QuorumMonitor(threading.Thread):
    """Every 0.5 s, how many members answer `endpoint status`: at most one may be down at any time."""

    def __init__(self, stack: Stack):
        super().__init__(daemon=True)
        self.stack = stack
        self.answering: list[int] = []
        self.halt = threading.Event()

    def run(self) -> None:
        while not self.halt.wait(0.5):
            done = self.stack.etcdctl("endpoint", "status", "-w", "json", timeout="2s", dial="1s")
            try:
                self.answering.append(len(json.loads(done.stdout or "[]")))
            except ValueError:
                self.answering.append(0)

    def stop(self) -> None:
        self.halt.set()
        self.join(timeout=30)


def assert_one_at_a_time(mocks: TimedMocks) -> None:
    """Each Pi's reboot step started only after the previous Pi's await-boot step ended."""
    names = list(PIS.values())
    for previous, current in itertools.pairwise(names):
        assert mocks.steps[f"{current}-reboot"][0] >= mocks.steps[f"{previous}-await-boot"][1], (previous, current)


def step_stdout(stack: Stack, name: str) -> str:
    return next(r.outputs["stdout"] for r in stack.state.resources.values() if r.name == name)


@pytest.fixture(scope="module")
def stack(fleet: HostFleet, tmp_path_factory: pytest.TempPathFactory) -> Stack:
    """Bare Pis: prepared in parallel, rebooted one at a time for the cgroup flags, then etcd."""
    stack = Stack(fleet, tmp_path_factory.mktemp("node-reboots"))
    ssh.SESSIONS.clear()
    started = time.monotonic()
    mocks = stack.up()
    NUMBERS["bring_up_seconds"] = round(time.monotonic() - started, 1)
    names = list(PIS.values())
    NUMBERS["prepare_and_serial_reboots_seconds"] = round(window(mocks, [
        f"{n}-{step}" for n in names for step in ("prepare", "reboot", "await-boot")]), 1)
    NUMBERS["serial_reboots_seconds"] = round(window(mocks, [
        f"{n}-{step}" for n in names for step in ("reboot", "await-boot")]), 1)
    NUMBERS["ssh_sessions_per_pi_bring_up"] = {n: ssh.SESSIONS[fleet[h].address] for h, n in PIS.items()}
    stack.bring_up = mocks
    return stack


def test_bare_pis_reboot_one_at_a_time_then_etcd_comes_up(fleet: HostFleet, stack: Stack) -> None:
    mocks = stack.bring_up
    assert mocks is not None
    assert_one_at_a_time(mocks)
    for host, name in PIS.items():
        assert fleet[host].boot_count == 2, name
        assert set(CGROUP_FLAGS) <= set(running_cmdline(fleet[host]))
        # First bring-up: etcd is not set up yet, so the gate has nothing to wait for.
        assert "gates passed before the reboot: etcd" in step_stdout(stack, f"{name}-reboot")
        assert "changed: host rebooted" in step_stdout(stack, f"{name}-await-boot")
    # The prepare steps ran side by side: each started before any reboot.
    first_reboot = min(mocks.steps[f"{n}-reboot"][0] for n in PIS.values())
    assert max(mocks.steps[f"{n}-prepare"][0] for n in PIS.values()) < first_reboot
    done = stack.etcdctl("endpoint", "health", "--cluster")
    assert done.returncode == 0, done.stderr


def test_a_second_run_runs_nothing(stack: Stack) -> None:
    assert stack.up().operations == []


def test_a_new_flag_reboots_the_pis_one_at_a_time_under_an_etcd_writer(fleet: HostFleet, stack: Stack) -> None:
    boots = {host: fleet[host].boot_count for host in PIS}
    writer, monitor = Writer(stack, "/it/node-reboots"), QuorumMonitor(stack)
    writer.start()
    monitor.start()
    time.sleep(1)
    stack.extra_flags = ["cgroup_enable=cpuset"]
    ssh.SESSIONS.clear()
    started = time.monotonic()
    mocks = stack.up()
    NUMBERS["flag_change_rolling_reboot_seconds"] = round(time.monotonic() - started, 1)
    NUMBERS["ssh_sessions_per_pi_flag_change"] = {n: ssh.SESSIONS[fleet[h].address] for h, n in PIS.items()}
    time.sleep(1)
    writer.stop()
    monitor.stop()
    NUMBERS["flag_change_writes"] = writer.counts()
    NUMBERS["flag_change_members_answering"] = {n: monitor.answering.count(n) for n in sorted(set(monitor.answering))}
    # Never two members down at once (and the monitor did see members go down).
    assert min(monitor.answering) == 2, monitor.answering
    assert writer.failed == []
    assert len(writer.acked) > 20
    assert_one_at_a_time(mocks)
    for host, name in PIS.items():
        assert fleet[host].boot_count == boots[host] + 1, name
        assert "cgroup_enable=cpuset" in running_cmdline(fleet[host])
        assert "gates passed before the reboot: etcd" in step_stdout(stack, f"{name}-reboot")
        assert "gates passed after the reboot: etcd" in step_stdout(stack, f"{name}-await-boot")
    # Every acknowledged write survived the rolling reboot.
    for _, key in writer.acked[:: max(1, len(writer.acked) // 25)]:
        assert stack.etcdctl("get", key, "--print-value-only").stdout.strip() == str(int(key.rsplit("/", 1)[1]))
    assert stack.etcdctl("endpoint", "health", "--cluster").returncode == 0


def test_a_prepare_run_that_finds_a_flag_not_running_reboots(fleet: HostFleet, stack: Stack) -> None:
    """cmdline.txt has every flag but the kernel runs without one (as after a run that stopped between
    writing the file and rebooting, with an earlier design): any run of the prepare step (here for a new
    time server) makes the reboot step run, and it reboots the Pis, one at a time, under a writer."""
    boots = {host: fleet[host].boot_count for host in PIS}
    for host in PIS:
        boot_as_if_without(fleet[host], ["cgroup_enable=cpuset"])
    writer, monitor = Writer(stack, "/it/node-drift"), QuorumMonitor(stack)
    writer.start()
    monitor.start()
    time.sleep(1)
    stack.time_servers = [fleet.gateway]
    mocks = stack.up()
    time.sleep(1)
    writer.stop()
    monitor.stop()
    NUMBERS["drift_writes"] = writer.counts()
    assert min(monitor.answering) == 2, monitor.answering
    assert writer.failed == []
    assert_one_at_a_time(mocks)
    for host, name in PIS.items():
        assert fleet[host].boot_count == boots[host] + 1, name
        assert "cgroup_enable=cpuset" in running_cmdline(fleet[host])
        assert "the prepare step found the running kernel without cgroup_enable=cpuset" in \
            step_stdout(stack, f"{name}-reboot")
    assert stack.up().operations == []


def test_a_run_killed_after_the_prepare_step_still_reboots_next_time(fleet: HostFleet, stack: Stack) -> None:
    boots = {host: fleet[host].boot_count for host in PIS}
    stack.extra_flags = ["cgroup_enable=cpuset", "cgroup_enable=hugetlb"]
    with pytest.raises(Exception, match="killed right after pi-1-prepare"):
        stack.up(kill_after="pi-1-prepare")
    # The killed run wrote cmdline.txt and rebooted nothing: the running kernels lack the new flag.
    for host in PIS:
        assert "cgroup_enable=hugetlb" in fleet[host].read_file("/boot/firmware/cmdline.txt").split()
        assert "cgroup_enable=hugetlb" not in running_cmdline(fleet[host])
        assert fleet[host].boot_count == boots[host]
    mocks = stack.up()
    assert_one_at_a_time(mocks)
    for host, name in PIS.items():
        assert fleet[host].boot_count == boots[host] + 1, name
        assert "cgroup_enable=hugetlb" in running_cmdline(fleet[host])
    # pi-1's prepare runs again (never recorded) and finds nothing to change; the reboots come from the hosts.
    assert not [line for line in step_stdout(stack, "pi-1-prepare").splitlines() if line.startswith("changed:")]
    assert stack.etcdctl("endpoint", "health", "--cluster").returncode == 0
    assert stack.up().operations == []
