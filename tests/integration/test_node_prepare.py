"""The real program prepares real hosts: pi-home-shaped config, commands executed over SSH.

Hosts t1..t3 boot with their own hostnames; the program renames them. t1 and t3 play Raspberry Pis, t1 with
the Bookworm layout (`/boot/firmware/cmdline.txt`), t3 with the older one (`/boot/cmdline.txt`): each kernel
command line changes once and each Pi reboots once.
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
from tests.infra.hosts import HostFleet
from tests.integration.conftest import boot_fleet

pytestmark = pytest.mark.integration

NAMES = {"t1": "pi-a", "t2": "node-b", "t3": "pi-c"}
CMDLINE_FILES = {"t1": "/boot/firmware/cmdline.txt", "t3": "/boot/cmdline.txt"}
PI_CMDLINE = "console=serial0,115200 root=PARTUUID=1234-02 rootfstype=ext4 rootwait"


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
        fleet[host].run(f"mkdir -p {path.rsplit('/', 1)[0]} && echo '{PI_CMDLINE}' > {path}")
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
    assert fleet[host].read_file("/proc/sys/kernel/random/boot_id") != first_run["boot_before"][host]
    assert fleet[host].boot_count == 2
    resources = first_run["state"].resources.values()
    stdout = next(r.outputs["stdout"] for r in resources if r.name == f"{NAMES[host]}-await-boot")
    assert "changed: host rebooted" in stdout


def test_facts_are_stack_outputs(fleet: HostFleet, first_run: dict[str, Any]) -> None:
    nodes = first_run["outputs"]["nodes"]
    assert set(nodes) == set(NAMES.values())
    for name, facts in nodes.items():
        assert facts["architecture"] == "amd64"
        assert facts["os"].startswith("Debian GNU/Linux 12")
        assert facts["is_pi"] is False  # a container has no device tree, whatever the config says
        assert isinstance(facts["memory_cgroup"], bool)
        assert facts["address"] == fleet[next(h for h, n in NAMES.items() if n == name)].address


def test_few_ssh_sessions_per_host(fleet: HostFleet, first_run: dict[str, Any]) -> None:
    sessions = first_run["sessions"]
    assert sessions[fleet["t1"].address] == sessions[fleet["t3"].address] == 2  # prepare, then the reboot wait
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
        if resource.type == "command:remote:Command":
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
    up(rerun, changed)
    # Only pi-c is left to do: its prepare step, then its reboot wait (whose input is the new boot state).
    assert rerun.operations == [("update", "pi-c-prepare"), ("update", "pi-c-await-boot")]
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
