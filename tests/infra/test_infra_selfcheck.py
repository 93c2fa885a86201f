"""Self-check of tests/infra: boots real hosts and exercises every HostFleet / TestHost feature."""

from __future__ import annotations

import base64
import io
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import paramiko
import pytest

from tests.infra import network
from tests.infra.hosts import HostFleet, TestHost, find_leftovers

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(os.geteuid() != 0, reason="booting test hosts needs root"),
]

NAMES = ["h1", "h2", "h3"]


def ssh_client(fleet: HostFleet, host: TestHost) -> paramiko.SSHClient:
    """Connect as root with the fleet key, accepting only the host's own ed25519 host key."""
    client = paramiko.SSHClient()
    key_type, key_base64 = host.host_key.split()
    client.get_host_keys().add(host.address, key_type, paramiko.Ed25519Key(data=base64.b64decode(key_base64)))
    client.set_missing_host_key_policy(paramiko.RejectPolicy())
    client.connect(host.address, port=host.port, username="root",
                   pkey=paramiko.Ed25519Key.from_private_key(io.StringIO(fleet.private_key_pem)),
                   allow_agent=False, look_for_keys=False, timeout=10)
    return client


def ssh_run(fleet: HostFleet, host: TestHost, command: str, timeout: float = 180.0) -> tuple[int, str, str]:
    """Run a command over ssh; return (exit status, stdout, stderr)."""
    client = ssh_client(fleet, host)
    try:
        _stdin, stdout, stderr = client.exec_command(command, timeout=timeout)
        out, err = stdout.read().decode(), stderr.read().decode()
        return stdout.channel.recv_exit_status(), out, err
    finally:
        client.close()


def ssh_fire_and_forget(fleet: HostFleet, host: TestHost, command: str) -> None:
    """Run a command that ends the ssh session (reboot, poweroff); a dropped connection is expected."""
    client = ssh_client(fleet, host)
    try:
        _stdin, stdout, _stderr = client.exec_command(command, timeout=15)
        stdout.channel.status_event.wait(15)
    finally:
        client.close()


def port_open(address: str, port: int = 22, timeout: float = 2.0) -> bool:
    try:
        with socket.create_connection((address, port), timeout=timeout):
            return True
    except OSError:
        return False


def boot_id(host: TestHost) -> str:
    return host.read_file("/proc/sys/kernel/random/boot_id").strip()


def assert_nothing_left(workdir: Path) -> None:
    assert find_leftovers(workdir) == []
    # A host's overlay names its upper and work directories (under `workdir`) in its mount options; overlays of
    # other test files running at the same time (their Docker engines') do not count.
    with open("/proc/self/mountinfo") as mountinfo:
        assert [line for line in mountinfo if str(workdir) in line] == []


def test_exit_cleans_up_even_after_an_exception_and_a_kill(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match="boom"), HostFleet(["solo"], workdir=tmp_path) as fleet:
        host = fleet["solo"]
        host.run("echo survived > /root/kill-test && sync")
        host.kill()
        assert not host.is_running
        assert not port_open(host.address, timeout=1)
        host.start()
        assert host.read_file("/root/kill-test") == "survived\n"
        raise RuntimeError("boom")
    assert not host.is_running
    assert_nothing_left(tmp_path)


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HostFleet]:
    workdir = tmp_path_factory.mktemp("fleet")
    with HostFleet(NAMES, workdir=workdir) as booted:
        yield booted
    assert_nothing_left(workdir)


def test_hosts_have_names_addresses_and_keys(fleet: HostFleet) -> None:
    assert [host.name for host in fleet] == NAMES
    assert [host.address for host in fleet] == [f"{network.SUBNET}.{i}" for i in (11, 12, 13)]
    assert fleet.gateway == f"{network.SUBNET}.1"
    assert all(host.port == 22 and host.host_key.startswith("ssh-ed25519 AAAA") for host in fleet)
    assert len({host.host_key for host in fleet}) == len(NAMES)
    assert fleet.private_key_path.stat().st_mode & 0o777 == 0o600
    assert "PRIVATE KEY" in fleet.private_key_pem


def test_ssh_as_root_with_fleet_key_and_pinned_host_key(fleet: HostFleet) -> None:
    for host in fleet:
        assert ssh_run(fleet, host, "hostname; id -u")[:2] == (0, f"{host.name}\n0\n")


def test_systemd_is_up(fleet: HostFleet) -> None:
    for host in fleet:
        state = host.run("systemctl is-system-running --wait", check=False).stdout.strip()
        assert state in ("running", "degraded"), host.run("systemctl --failed", check=False).stdout
    assert "bookworm" in fleet["h1"].read_file("/etc/os-release")
    machine_ids = {host.read_file("/etc/machine-id") for host in fleet}
    assert len(machine_ids) == len(NAMES)


def test_hosts_reach_each_other_over_the_bridge(fleet: HostFleet) -> None:
    probe = ("import socket, sys; s = socket.create_connection((sys.argv[1], 22), timeout=5); "
             "print(s.recv(7).decode())")
    for source in fleet:
        for target in fleet:
            if source is not target:
                assert source.run(["python3", "-c", probe, target.address]).stdout == "SSH-2.0\n"


def test_apt_installs_from_the_local_repository(fleet: HostFleet) -> None:
    status, output, errors = ssh_run(fleet, fleet["h1"], "apt-get update && DEBIAN_FRONTEND=noninteractive "
                                                 "apt-get install -y jq && echo '{\"a\": 42}' | jq .a")
    assert status == 0, errors
    assert output.rstrip().endswith("42")


def test_stop_and_start_keep_the_disk(fleet: HostFleet) -> None:
    host = fleet["h2"]
    assert ssh_run(fleet, host, "echo kept > /root/stop-test")[0] == 0
    first_boot = boot_id(host)
    host.stop()
    assert not host.is_running
    assert host.last_exit_code == 0
    assert not port_open(host.address, timeout=1)
    host.start()
    assert host.read_file("/root/stop-test") == "kept\n"
    assert boot_id(host) != first_boot
    assert ssh_run(fleet, host, "cat /root/stop-test")[:2] == (0, "kept\n")


def test_reboot_inside_the_host_relaunches_it(fleet: HostFleet) -> None:
    host = fleet["h3"]
    host.run("echo kept > /root/reboot-test")
    first_boot, boots = boot_id(host), host.boot_count
    ssh_fire_and_forget(fleet, host, "systemctl reboot")
    host.wait_for_reboot(boots)
    assert host.is_running
    assert boot_id(host) != first_boot
    assert host.read_file("/root/reboot-test") == "kept\n"
    assert ssh_run(fleet, host, "systemctl is-system-running --wait")[1].strip() in ("running", "degraded")


def test_poweroff_inside_the_host_is_not_relaunched(fleet: HostFleet) -> None:
    host = fleet["h3"]
    boots = host.boot_count
    ssh_fire_and_forget(fleet, host, "systemctl poweroff")
    deadline = time.monotonic() + 30
    while host.is_running and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not host.is_running
    assert host.last_exit_code == 0
    assert host.boot_count == boots
    host.start()
    assert ssh_run(fleet, host, "cat /root/reboot-test")[:2] == (0, "kept\n")


def test_block_makes_a_running_host_unreachable(fleet: HostFleet) -> None:
    host, peer = fleet["h1"], fleet["h2"]
    host.block()
    try:
        assert not port_open(host.address)
        connect = f"import socket; socket.create_connection(('{host.address}', 22), 2)"
        assert peer.run(["python3", "-c", connect], check=False).returncode != 0
        assert host.is_running
        assert host.run("echo alive").stdout == "alive\n"
    finally:
        host.unblock()
    host.wait_for_ssh(timeout=10)
    assert port_open(host.address)
