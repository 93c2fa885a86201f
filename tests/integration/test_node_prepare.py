"""The real program prepares real hosts: pi-home-shaped config, commands executed over SSH.

Hosts t1..t3 boot with their own hostnames; the program renames them. t1 and t3 play Raspberry Pis
(tests/integration/node_pis.py: a test-only stand-in of the Pi firmware builds /proc/cmdline from cmdline.txt
at each boot), t1 with the Bookworm layout (`/boot/firmware/cmdline.txt`) and trixie's rpi-swap config, t3
with the older one (`/boot/cmdline.txt`): each kernel command line changes once and each Pi reboots once.
The serial reboots of quorum hosts under etcd are in test_node_reboots.py.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest

from components.nodes.host import parse_facts
from tests.harness import ssh
from tests.harness.executing import ExecutingMocks, StackState
from tests.harness.program import run_program
from tests.harness.readme import readme_block
from tests.infra.hosts import HostFleet
from tests.integration.conftest import boot_fleet
from tests.integration.node_pis import PI_CMDLINE, boot_as_if_without, emulate_pi, running_cmdline

pytestmark = pytest.mark.integration

NAMES = {"t1": "pi-a", "t2": "node-b", "t3": "pi-c"}
CMDLINE_FILES = {"t1": "/boot/firmware/cmdline.txt", "t3": "/boot/cmdline.txt"}
CGROUP_FLAGS = ["cgroup_memory=1", "cgroup_enable=memory"]
# What the rpi-swap package (Raspberry Pi OS trixie) ships as its main config.
RPI_SWAP_CONF = "[Main]\nMechanism=auto\n"


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HostFleet]:
    yield from boot_fleet(list(NAMES), tmp_path_factory)


def stack_config(fleet: HostFleet, **prepare: Any) -> dict[str, Any]:
    nodes = [{"name": name, "address": fleet[host].address, "host_key": fleet[host].host_key,
              "kind": "pi" if name.startswith("pi-") else "linux"}
             for host, name in NAMES.items()]
    return {
        "ssh": {"dial_error_limit": 2, "per_dial_timeout": 3, "reboot_timeout": 120},
        "prepare": {"packages": ["jq"], "kubernetes_networking": True, **prepare},
        "nodes": nodes,
        "ssh_private_key": fleet.private_key_pem,
    }


def up(mocks: ExecutingMocks, config: dict[str, Any]) -> dict[str, Any]:
    outputs = run_program(mocks, config, stack="it-nodes", secret_keys=["ssh_private_key"])
    mocks.finish()
    return outputs


@pytest.fixture(scope="module")
def first_run(fleet: HostFleet) -> dict[str, Any]:
    for host, path in CMDLINE_FILES.items():
        emulate_pi(fleet[host], path)
    fleet["t1"].run("mkdir -p /etc/rpi && cat >/etc/rpi/swap.conf", input=RPI_SWAP_CONF)
    fleet["t2"].run("echo '/swapfile none swap sw 0 0' >> /etc/fstab")
    boot_before = {host: fleet[host].read_file("/proc/sys/kernel/random/boot_id") for host in CMDLINE_FILES}
    state = StackState()
    mocks = ExecutingMocks(state)
    ssh.SESSIONS.clear()
    started = time.monotonic()
    outputs = up(mocks, stack_config(fleet))
    return {"state": state, "mocks": mocks, "outputs": outputs, "seconds": time.monotonic() - started,
            "sessions": dict(ssh.SESSIONS), "boot_before": boot_before}


def test_hosts_are_prepared(fleet: HostFleet, first_run: dict[str, Any]) -> None:
    for host, name in NAMES.items():
        target = fleet[host]
        assert target.run("hostname").stdout.strip() == name
        assert target.read_file("/etc/hostname").strip() == name
        assert f"127.0.1.1\t{name}" in target.read_file("/etc/hosts")
        assert target.run("dpkg-query -W -f='${db:Status-Status}' jq systemd-timesyncd").stdout == \
            "installedinstalled"
        assert target.run("systemctl is-enabled systemd-timesyncd").stdout.strip() == "enabled"
        assert target.run("swapon --show --noheadings").stdout.strip() == ""
        assert target.run("cat /proc/sys/net/ipv4/ip_forward").stdout.strip() == "1"
        assert "br_netfilter" in target.read_file("/etc/modules-load.d/cluster-cookbook.conf")
        assert "net.ipv4.ip_forward = 1" in target.read_file("/etc/sysctl.d/99-cluster-cookbook.conf")
    assert "# disabled by cluster-cookbook: /swapfile none swap sw 0 0" in fleet["t2"].read_file("/etc/fstab")


@pytest.mark.parametrize("host", sorted(CMDLINE_FILES))
def test_pi_cmdline_gets_cgroup_flags_and_the_pi_rebooted_once(fleet: HostFleet, first_run: dict[str, Any],
                                                                host: str) -> None:
    assert fleet[host].read_file(CMDLINE_FILES[host]).strip() == PI_CMDLINE + " cgroup_memory=1 cgroup_enable=memory"
    assert fleet[host].read_file(CMDLINE_FILES[host] + ".cookbook-bak").strip() == PI_CMDLINE
    directory = CMDLINE_FILES[host].rsplit("/", 1)[0]
    assert fleet[host].run(f"ls -A {directory}").stdout.split() == ["cmdline.txt", "cmdline.txt.cookbook-bak"]
    assert fleet[host].read_file("/proc/sys/kernel/random/boot_id") != first_run["boot_before"][host]
    assert fleet[host].boot_count == 2
    # The kernel now runs with the flags, its console as the firmware rewrote it.
    assert set(CGROUP_FLAGS) | {"console=ttyAMA0,115200"} <= set(running_cmdline(fleet[host]))
    resources = first_run["state"].resources.values()
    stdout = {r.name: r.outputs["stdout"] for r in resources}
    assert "changed: reboot scheduled to apply the kernel command line (cgroup_memory=1 cgroup_enable=memory)" \
        in stdout[f"{NAMES[host]}-reboot"]
    assert "changed: host rebooted" in stdout[f"{NAMES[host]}-await-boot"]
    assert "changed: reboot" not in stdout[f"{NAMES[host]}-prepare"]  # the prepare step never reboots


def test_rpi_swap_is_told_to_set_up_no_swap(fleet: HostFleet, first_run: dict[str, Any]) -> None:
    """Raspberry Pi OS trixie: a drop-in makes rpi-swap's generator create no zram and no swap file at boot;
    the host without rpi-swap gets none."""
    assert fleet["t1"].read_file("/etc/rpi/swap.conf.d/90-cluster-cookbook.conf").endswith("[Main]\nMechanism=none\n")
    assert fleet["t1"].read_file("/etc/rpi/swap.conf") == RPI_SWAP_CONF  # the package's own file is left alone
    assert fleet["t3"].run("test -e /etc/rpi", check=False).returncode == 1


def test_facts_are_stack_outputs(fleet: HostFleet, first_run: dict[str, Any]) -> None:
    nodes = first_run["outputs"]["nodes"]
    assert set(nodes) == set(NAMES.values())
    for name, facts in nodes.items():
        assert facts["architecture"] == "amd64"
        assert facts["os"].startswith("Debian GNU/Linux 12")
        assert facts["is_pi"] is False  # a container has no device tree, whatever the config says
        assert isinstance(facts["memory_cgroup"], bool)
        host = fleet[next(h for h, n in NAMES.items() if n == name)]
        assert facts["address"] == host.address
        assert facts["kernel"] == host.run("uname -r").stdout.strip()
        assert facts["cgroup_version"] == (2 if host.run("test -f /sys/fs/cgroup/cgroup.controllers",
                                                          check=False).returncode == 0 else 1)
        assert facts["missing_kernel_modules"] == [
            m for m in ("overlay", "br_netfilter") if host.run(f"test -d /sys/module/{m}", check=False).returncode]
        assert (facts["model"], facts["usr_read_only"]) == ("", False)
        assert isinstance(facts["wireguard"], bool)


def test_few_ssh_sessions_per_host(fleet: HostFleet, first_run: dict[str, Any]) -> None:
    sessions = first_run["sessions"]
    assert sessions[fleet["t1"].address] == sessions[fleet["t3"].address] == 3  # prepare, reboot, the wait
    assert sessions[fleet["t2"].address] == 1


def test_second_run_runs_nothing(fleet: HostFleet, first_run: dict[str, Any]) -> None:
    mocks = ExecutingMocks(first_run["state"])
    up(mocks, stack_config(fleet))
    assert mocks.operations == []


def test_scripts_change_nothing_on_prepared_hosts(fleet: HostFleet, first_run: dict[str, Any]) -> None:
    """Forget the state (as after `pulumi refresh` lost it): every script runs again and reports no change."""
    boots_before = {host: fleet[host].boot_count for host in NAMES}
    state = StackState()
    up(ExecutingMocks(state), stack_config(fleet))
    for resource in state.resources.values():
        if resource.type == "command:remote:Command" and resource.name.endswith("-await-boot"):
            assert resource.inputs.get("create") is None and resource.outputs["stdout"] == ""  # nothing ran
        elif resource.type == "command:remote:Command":
            changes = [line for line in resource.outputs["stdout"].splitlines() if line.startswith("changed:")]
            assert changes == [], (resource.name, changes)
            assert parse_facts(resource.outputs["stdout"])["reboot_scheduled"] is False
    assert {host: fleet[host].boot_count for host in NAMES} == boots_before


def test_unreachable_host_fails_naming_it_and_a_rerun_converges(fleet: HostFleet,
                                                               first_run: dict[str, Any]) -> None:
    state = first_run["state"]
    changed = stack_config(fleet, time_servers=[fleet.gateway])
    fleet["t3"].block()
    try:
        with pytest.raises(Exception) as failure:
            up(ExecutingMocks(state), changed)
        message = str(failure.value)
        assert "pi-c-prepare" in message and fleet["t3"].address in message
    finally:
        fleet["t3"].unblock()
    # The reachable hosts were updated.
    assert f"NTP={fleet.gateway}" in fleet["t2"].read_file("/etc/systemd/timesyncd.conf.d/cluster-cookbook.conf")
    rerun = ExecutingMocks(state)
    boots = fleet["t3"].boot_count
    up(rerun, changed)
    # Only pi-c is left to do: its prepare step; it finds no flag pending any more (the first run's did), so
    # the reboot step checks once and reboots nothing, and the await step has nothing to run.
    assert rerun.operations == [("update", "pi-c-prepare"), ("update", "pi-c-reboot"), ("update", "pi-c-await-boot")]
    assert fleet["t3"].boot_count == boots
    assert f"NTP={fleet.gateway}" in fleet["t3"].read_file("/etc/systemd/timesyncd.conf.d/cluster-cookbook.conf")
    print(json.dumps({"first_run_seconds": round(first_run["seconds"], 1)}))


def test_bastion_connection_goes_through_the_proxy(fleet: HostFleet, first_run: dict[str, Any]) -> None:
    bastion = fleet["t1"]
    config = stack_config(fleet)
    config["nodes"] = [{**config["nodes"][1], "proxy": {"host": bastion.address}}]
    since = fleet["t2"].run("date +%s").stdout.strip()
    up(ExecutingMocks(StackState()), config)
    log = fleet["t2"].run(f"journalctl -u ssh --since @{since} --no-pager").stdout
    assert f"Accepted publickey for root from {bastion.address} port" in log
    assert f"from {fleet.gateway} port" not in log


def test_a_pinned_host_key_that_does_not_match_is_refused(fleet: HostFleet, first_run: dict[str, Any]) -> None:
    config = stack_config(fleet)
    config["nodes"] = [{**config["nodes"][2], "host_key": fleet["t1"].host_key}]
    state = StackState()
    with pytest.raises(Exception, match=r"pi-c-prepare.*host key mismatch"):
        up(ExecutingMocks(state), config)
    assert state.resources == {} or all(r.name != "pi-c-prepare" for r in state.resources.values())


def test_a_flag_in_the_file_but_not_in_the_running_kernel_reboots(fleet: HostFleet,
                                                                  first_run: dict[str, Any]) -> None:
    """cmdline.txt has the flags but the kernel runs without them: what a run interrupted between writing the
    file and rebooting leaves behind. The next run (here with the state lost, so every step runs) reboots that
    Pi, because the reboot is decided from the host, and no other host."""
    boots = {host: fleet[host].boot_count for host in NAMES}
    boot_as_if_without(fleet["t3"], CGROUP_FLAGS)
    state = StackState()
    up(ExecutingMocks(state), stack_config(fleet))
    assert {host: fleet[host].boot_count for host in NAMES} == {**boots, "t3": boots["t3"] + 1}
    assert set(CGROUP_FLAGS) <= set(running_cmdline(fleet["t3"]))
    stdout = {r.name: r.outputs["stdout"] for r in state.resources.values()}
    assert "changed: host rebooted" in stdout["pi-c-await-boot"]
    assert stdout["pi-a-await-boot"] == ""


def test_a_sudo_that_asks_for_a_password_fails_with_how_to_allow_it(fleet: HostFleet,
                                                                    first_run: dict[str, Any]) -> None:
    """Like a Raspberry Pi OS image whose first user `pi` needs a password for sudo; the README's fix, run
    as written on the host, makes the next run work."""
    host = fleet["t2"]
    host.run("useradd --create-home --shell /bin/bash --password \"$(openssl passwd -6 secret)\" pi && "
             "install -d -m 0700 -o pi -g pi /home/pi/.ssh && "
             "install -m 0600 -o pi -g pi /root/.ssh/authorized_keys /home/pi/.ssh/ && "
             "echo 'pi ALL=(ALL) ALL' >/etc/sudoers.d/010_pi && chmod 0440 /etc/sudoers.d/010_pi")
    config = stack_config(fleet)
    config["nodes"] = [{**config["nodes"][1], "name": "node-pi", "user": "pi"}]
    with pytest.raises(Exception) as failure:
        up(ExecutingMocks(StackState()), config)
    message = str(failure.value)
    assert "node-pi-prepare" in message and host.address in message
    assert "error: pi cannot run sudo without a password here, and every step runs through `sudo -n`." in message
    assert "echo 'pi ALL=(ALL) NOPASSWD: ALL' | sudo tee /etc/sudoers.d/010_pi-nopasswd" in message
    assert host.read_file("/etc/hostname").strip() == "node-b"  # nothing ran
    # The README's fix, as written (run by an administrator on the host; root's sudo needs no password).
    host.run(readme_block("allow-sudo-n"))
    config["nodes"] = [{**config["nodes"][0], "name": "node-b"}]
    up(ExecutingMocks(StackState()), config)


def test_apt_waits_for_the_locks_of_a_fresh_host(fleet: HostFleet, first_run: dict[str, Any]) -> None:
    """Another apt (a fresh Pi's apt-daily) holds the lists lock for 6 s and the dpkg lock for 12 s while the
    prepare step must install a package: the step waits for both instead of failing."""
    host = fleet["t2"]
    hold = ("import fcntl, time\n"
            "lists = open('/var/lib/apt/lists/lock', 'a'); fcntl.lockf(lists, fcntl.LOCK_EX)\n"
            "dpkg = open('/var/lib/dpkg/lock-frontend', 'a'); fcntl.lockf(dpkg, fcntl.LOCK_EX)\n"
            "open('/run/apt-held', 'w').close()\n"
            "time.sleep(6); lists.close(); time.sleep(6)\n")
    host.run("cat >/run/hold-apt-locks.py", input=hold)
    host.run("systemd-run --quiet --unit=hold-apt-locks python3 /run/hold-apt-locks.py && "
             "timeout 10 sh -c 'until [ -e /run/apt-held ]; do sleep 0.1; done'")
    config = stack_config(fleet)
    config["nodes"] = [config["nodes"][1]]
    config["prepare"]["packages"] = ["jq", "etcd-client"]
    mocks = ExecutingMocks(StackState())
    started = time.monotonic()
    up(mocks, config)
    assert time.monotonic() - started >= 11
    stdout = next(r.outputs["stdout"] for r in mocks.state.resources.values() if r.name == "node-b-prepare")
    assert "changed: installed etcd-client" in stdout
    assert host.run("dpkg-query -W -f='${db:Status-Status}' etcd-client").stdout == "installed"
