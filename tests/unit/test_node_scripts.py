"""Node scripts: pure renderers, table-driven, every rendered script passes shellcheck, and the shell pieces
that can run on this machine (gate runner, cmdline.txt write, swap check, sudo refusal) run for real."""

from __future__ import annotations

import dataclasses
import json
import os
import stat
import subprocess
from pathlib import Path

import pytest

from components.etcd.cluster import EtcdClusterArgs
from components.etcd.gate import etcd_gate
from components.nodes.gates import HealthGate, gate_params
from components.nodes.host import (
    FACTS_MARKER,
    PI_CGROUP_FLAGS,
    HostArgs,
    RaspberryPiArgs,
    SshConnection,
    parse_facts,
    parse_pending,
    render_await_boot_script,
    render_prepare_script,
    render_reboot_script,
)
from components.shared import scripts
from components.shared.connection import sudo_refused_hint
from components.shared.scripts import remote_invocation, render_script, shell_assignment, template
from tests.harness.recording import FAKE_FACTS
from tests.harness.validators import shellcheck_findings

CONNECTION = SshConnection(host="192.168.1.21")
ETCD_GATE = etcd_gate(EtcdClusterArgs(members=()))
# A second recipe's gate (the control-plane gate has this shape); its fragment is supplied by the test.
OTHER_GATE = HealthGate(name="api", function="api_gate", fragment="kubernetes/gate.sh",
                        params={"API_GATE_URL": "https://127.0.0.1:6443/readyz"}, timeout=600)
OTHER_FRAGMENT = 'api_gate() {\n  curl -fsS --max-time 5 "$API_GATE_URL"\n}\n'
PI = RaspberryPiArgs(SshConnection(host="pi-a.lan", user="pi"), "pi-a", gates=(ETCD_GATE,))
PREPARED_PENDING = (f"changed: cmdline.txt\n{FACTS_MARKER}{json.dumps(FAKE_FACTS)}\n"
                    "COOKBOOK_PENDING_FLAGS=cgroup_memory=1 cgroup_enable=memory \n")
REBOOTED = {**FAKE_FACTS, "reboot_scheduled": True, "boot_id": "5f0c2b1e-0000-4000-8000-000000000001"}
SCRIPTS = {
    "linux-defaults": render_prepare_script(HostArgs(CONNECTION, "node-1")),
    "linux-no-k8s-time-servers": render_prepare_script(HostArgs(
        CONNECTION, "node-2", packages=("jq",), time_servers=("ntp1.example.org", "10.0.0.1"),
        kubernetes_networking=False)),
    "pi": render_prepare_script(PI),
    "pi-no-packages": render_prepare_script(RaspberryPiArgs(CONNECTION, "pi-b", packages=())),
    "reboot-no-gates": render_reboot_script(RaspberryPiArgs(CONNECTION, "pi-b")),
    "reboot-pending": render_reboot_script(RaspberryPiArgs(CONNECTION, "pi-b"), PREPARED_PENDING),
    "reboot-etcd-gate": render_reboot_script(PI),
    "reboot-extra-flag": render_reboot_script(RaspberryPiArgs(
        CONNECTION, "pi-c", cmdline_flags=(*PI_CGROUP_FLAGS, "cgroup_enable=cpuset"), gates=(ETCD_GATE,))),
    "await-boot-etcd-gate": render_await_boot_script(PI, REBOOTED),
    "await-boot-no-gates": render_await_boot_script(RaspberryPiArgs(CONNECTION, "pi-b"), REBOOTED),
}


@pytest.mark.parametrize("name", sorted(SCRIPTS))
def test_rendered_script_passes_shellcheck(name: str) -> None:
    assert shellcheck_findings(SCRIPTS[name]) == ""


@pytest.mark.parametrize(("name", "value", "expected"), [
    ("A", "plain", "A=plain"),
    ("A", "it's $(rm -rf /)", "A='it'\"'\"'s $(rm -rf /)'"),
    ("B", True, "B=1"),
    ("C", 42, "C=42"),
    ("D", ("x y", "z"), "D=('x y' z)"),
    ("E", (), "E=()"),
])
def test_shell_assignment_quotes_values(name: str, value: object, expected: str) -> None:
    assert shell_assignment(name, value) == expected  # type: ignore[arg-type]


def test_parameters_come_first_and_are_readonly() -> None:
    script = SCRIPTS["linux-defaults"]
    assert script.startswith("#!/usr/bin/env bash\n")
    assert "set -euo pipefail\nNODE_HOSTNAME=node-1\n" in script
    assert ("readonly NODE_HOSTNAME PACKAGES KUBERNETES_NETWORKING TIME_SERVERS PI_CMDLINE_FLAGS INSTALL_DOCKER "
            "DOCKER_USER\n") in script
    assert "PI_CMDLINE_FLAGS=()" in script
    assert "PI_CMDLINE_FLAGS=(cgroup_memory=1 cgroup_enable=memory)" in SCRIPTS["pi"]


def test_prepare_never_reboots_and_the_reboot_step_does() -> None:
    for name in ("linux-defaults", "pi", "pi-no-packages"):
        assert "systemctl reboot" not in SCRIPTS[name]
        assert "wait_for_gates" not in SCRIPTS[name]
    reboot = SCRIPTS["reboot-etcd-gate"]
    assert reboot.index('wait_for_gates "before the reboot"') < reboot.index("print_facts 1") \
        < reboot.rindex("schedule_reboot")
    assert "systemctl reboot" in reboot


def test_what_prepare_found_pending_is_in_the_reboot_steps_input() -> None:
    assert "PENDING_AT_PREPARE=(cgroup_memory=1 cgroup_enable=memory)\nPENDING_IN_BOOT=00000000-0000-0000-" \
           "0000-000000000000\n" in SCRIPTS["reboot-pending"]
    assert "PENDING_AT_PREPARE=()\nPENDING_IN_BOOT=''\n" in SCRIPTS["reboot-no-gates"]
    assert parse_pending("COOKBOOK_PENDING_FLAGS=a b \nCOOKBOOK_PENDING_FLAGS=c \nx") == ("c",)
    assert parse_pending("COOKBOOK_FACTS={}") == ()


def test_gates_reach_the_reboot_and_await_steps() -> None:
    for name in ("reboot-etcd-gate", "await-boot-etcd-gate"):
        script = SCRIPTS[name]
        assert "GATE_NAMES=(etcd)\nGATE_FUNCTIONS=(etcd_gate)\nGATE_TIMEOUT=300\n" in script
        assert "ETCD_GATE_ETCDCTL=/usr/bin/etcdctl\n" in script
        assert "ETCD_GATE_ENDPOINT=https://127.0.0.1:2379\n" in script
        assert "etcd_gate() {" in script
    assert "PI_CMDLINE_FLAGS=(cgroup_memory=1 cgroup_enable=memory cgroup_enable=cpuset)" in \
        SCRIPTS["reboot-extra-flag"]
    assert "GATE_FUNCTIONS=()\nGATE_TIMEOUT=0\n" in SCRIPTS["reboot-no-gates"]
    assert SCRIPTS["await-boot-etcd-gate"].index("check_boot_state\n") \
        < SCRIPTS["await-boot-etcd-gate"].index('wait_for_gates "after the reboot"')
    assert "PREVIOUS_BOOT_ID=5f0c2b1e-0000-4000-8000-000000000001\n" in SCRIPTS["await-boot-etcd-gate"]


def test_any_number_of_gates_from_any_recipe(monkeypatch: pytest.MonkeyPatch) -> None:
    real = scripts.template
    monkeypatch.setattr(scripts, "template",
                        lambda name: OTHER_FRAGMENT if name == "kubernetes/gate.sh" else real(name))
    args = RaspberryPiArgs(CONNECTION, "pi-c", gates=(ETCD_GATE, OTHER_GATE, dataclasses.replace(
        OTHER_GATE, name="api-again", function="api_gate_again", params={}, timeout=5)))
    for script in (render_reboot_script(args), render_await_boot_script(args, REBOOTED)):
        assert shellcheck_findings(script) == ""
        assert "GATE_NAMES=(etcd api api-again)\nGATE_FUNCTIONS=(etcd_gate api_gate api_gate_again)\n" \
               "GATE_TIMEOUT=600\n" in script
        assert script.count("etcd_gate() {") == script.count("api_gate() {") == 1  # each fragment once
        assert script.index("etcd_gate() {") < script.index("api_gate() {") < script.index("wait_for_gates() {")


def test_a_gate_may_come_as_rendered_text() -> None:
    """The shape of the Kubernetes recipe's control-plane gate: its own assignments, then the function."""
    text = ("KUBERNETES_GATE_NODE=pi-a\nKUBERNETES_GATE_TIMEOUT=5\n"
            'kubernetes_control_plane_gate() {\n  echo "node $KUBERNETES_GATE_NODE ready within '
            '$KUBERNETES_GATE_TIMEOUT s"\n}\n')
    gate = HealthGate(name="kubernetes", function="kubernetes_control_plane_gate", text=text, timeout=5)
    args = RaspberryPiArgs(CONNECTION, "pi-a", gates=(ETCD_GATE, gate))
    script = render_reboot_script(args)
    assert shellcheck_findings(script) == ""
    assert script.count(text) == 1
    assert script.index("etcd_gate() {") < script.index(text) < script.index("wait_for_gates() {") \
        < script.index("mapfile -t MISSING_FLAGS")
    assert "GATE_FUNCTIONS=(etcd_gate kubernetes_control_plane_gate)\nGATE_TIMEOUT=300\n" in script
    # Both gates run (no cookbook-etcd here: the etcd gate has nothing to wait for).
    done = _bash(script[:script.index("mapfile -t MISSING_FLAGS")] + "wait_for_gates now\n")
    assert (done.returncode, done.stdout) == (0, "gates passed now: etcd kubernetes\n"), done.stderr


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"fragment": "", "text": ""}, "either a template fragment"),
    ({"text": "x_gate() { :; }"}, "either a template fragment"),
    ({"fragment": "", "text": "x_gate() { :; }", "params": {"A": "1"}}, "either a template fragment"),
    ({"fragment": "", "text": "y_gate() { :; }"}, "does not define x_gate()"),
])
def test_a_gate_has_one_definition(kwargs: dict[str, object], message: str) -> None:
    fields: dict[str, object] = {"name": "x", "function": "x_gate", "fragment": "etcd/gate.sh", **kwargs}
    with pytest.raises(ValueError, match=message):
        HealthGate(**fields)  # type: ignore[arg-type]


def test_gate_timeout_is_the_largest_and_etcd_uses_its_health_timeout() -> None:
    gate = etcd_gate(EtcdClusterArgs(members=(), install="tarball", client_port=2479, health_timeout=42))
    params = gate_params([gate, HealthGate("b", "b_gate", "etcd/gate.sh", timeout=7)], {})
    assert params["GATE_TIMEOUT"] == 42
    assert params["ETCD_GATE_ETCDCTL"] == "/usr/local/bin/etcdctl"
    assert params["ETCD_GATE_ENDPOINT"] == "https://127.0.0.1:2479"
    assert params["ETCD_GATE_PKI_DIR"] == "/etc/cookbook-etcd/pki"


@pytest.mark.parametrize(("gates", "taken", "message"), [
    ([ETCD_GATE, ETCD_GATE], {}, "name etcd given twice"),
    ([ETCD_GATE, HealthGate("x", "etcd_gate", "etcd/gate.sh")], {}, "function etcd_gate given twice"),
    ([HealthGate("x", "x_gate", "etcd/gate.sh", {"PI_CMDLINE_FLAGS": "y"})], {"PI_CMDLINE_FLAGS": ()},
     "PI_CMDLINE_FLAGS is already a parameter"),
    ([HealthGate("x", "x_gate", "etcd/gate.sh", {"GATE_TIMEOUT": 1})], {}, "GATE_TIMEOUT is already"),
    ([HealthGate("x", "x_gate", "etcd/gate.sh", {"P": "1"}), HealthGate("y", "y_gate", "etcd/gate.sh", {"P": "2"})],
     {}, "P differs"),
])
def test_gate_params_refuse_collisions(gates: list[HealthGate], taken: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        gate_params(gates, taken)  # type: ignore[arg-type]


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"function": "Etcd-Gate"}, "lowercase shell name"),
    ({"params": {"lower": "x"}}, "upper case"),
    ({"timeout": 0}, "at least 1 s"),
])
def test_health_gate_validates_itself(kwargs: dict[str, object], message: str) -> None:
    fields: dict[str, object] = {"name": "x", "function": "x_gate", "fragment": "etcd/gate.sh", **kwargs}
    with pytest.raises(ValueError, match=message):
        HealthGate(**fields)  # type: ignore[arg-type]


@pytest.mark.parametrize(("become", "prefix"), [(False, "bash -c "), (True, "sudo -n bash -c ")])
def test_remote_invocation(become: bool, prefix: str) -> None:
    command = remote_invocation("echo 'hi'", become)
    assert command.startswith(prefix)
    assert subprocess.run(["bash", "-c", command.removeprefix("sudo -n ")], capture_output=True, text=True,
                          check=True).stdout == "hi\n"


def test_facts_line_is_found_after_change_lines() -> None:
    stdout = "changed: hostname set\n" + FACTS_MARKER + json.dumps(FAKE_FACTS) + "\nchanged: reboot scheduled"
    assert parse_facts(stdout)["architecture"] == "arm64"
    with pytest.raises(ValueError, match="printed no COOKBOOK_FACTS"):
        parse_facts("changed: nothing")


def test_facts_are_printed_as_valid_json_by_the_real_script() -> None:
    script = render_script(["shared/common.sh", "nodes/facts.sh"], {}) + "print_facts 1\n"
    done = subprocess.run(["bash", "-c", script], capture_output=True, text=True, check=True)
    facts = parse_facts(done.stdout)
    assert facts["architecture"] in {"amd64", "arm64", "armhf"}
    assert set(facts) == set(FAKE_FACTS)
    assert facts["reboot_scheduled"] is True


# --- shell pieces run for real ------------------------------------------------------------------------

def _bash(script: str, path: Path | None = None, **env: str) -> subprocess.CompletedProcess[str]:
    environment = {"PATH": f"{path}:{os.environ['PATH']}" if path else os.environ["PATH"], **env}
    return subprocess.run(["bash", "-c", script], capture_output=True, text=True, check=False, env=environment,
                          timeout=60)


def _stub(directory: Path, name: str, body: str) -> None:
    directory.mkdir(exist_ok=True)
    path = directory / name
    path.write_text(f"#!/bin/bash\n{body}\n")
    path.chmod(0o755)


def _gate_script(functions: str, names: str, timeout: int) -> str:
    header = render_script(["shared/common.sh"], {"GATE_NAMES": tuple(names.split()),
                                                  "GATE_FUNCTIONS": tuple(f"{n}_gate" for n in names.split()),
                                                  "GATE_TIMEOUT": timeout})
    return f"{header}{template('nodes/gates.sh')}\n{functions}\nwait_for_gates 'before the test'\n"


def test_gate_runner_waits_until_every_gate_passes_in_one_round(tmp_path: Path) -> None:
    counter = tmp_path / "count"
    functions = (f'a_gate() {{ echo "a ok"; }}\n'
                 f'b_gate() {{ n=$(cat {counter} 2>/dev/null || echo 0); echo $((n + 1)) >{counter}; '
                 '[ "$n" -ge 2 ] || { echo "b waits ($n)"; return 1; }; }\n')
    done = _bash(_gate_script(functions, "a b", 30))
    assert done.returncode == 0, done.stderr
    assert counter.read_text().strip() == "3"  # failed twice, passed the third time
    assert done.stdout == "gates passed before the test: a b\n"


def test_gate_runner_fails_naming_the_gate_and_its_last_output() -> None:
    functions = 'a_gate() { echo "a ok"; }\nb_gate() { echo "cluster unhealthy: 1 of 3 members down"; return 1; }\n'
    done = _bash(_gate_script(functions, "a b", 1))
    assert done.returncode == 1
    assert done.stderr == ("error: the b health gate did not pass within 1s before the test; its last output:\n"
                           "cluster unhealthy: 1 of 3 members down\n")


def test_gate_runner_without_gates_returns_at_once() -> None:
    done = _bash(_gate_script("", "", 0))
    assert (done.returncode, done.stdout, done.stderr) == (0, "", "")


ETCD_GATE_SCRIPT = render_script(["etcd/gate.sh"], dict(ETCD_GATE.params)) + "etcd_gate\n"


@pytest.mark.parametrize(("enabled", "active", "etcdctl_status", "passes", "calls_etcdctl"), [
    (False, False, 1, True, False),  # etcd not set up here (first bring-up): nothing to wait for
    (True, False, 1, False, True),   # enabled but not up yet (just rebooted): wait
    (False, True, 1, False, True),
    (True, True, 1, False, True),    # a member unhealthy
    (True, True, 0, True, True),
])
def test_etcd_gate(tmp_path: Path, enabled: bool, active: bool, etcdctl_status: int, passes: bool,
                   calls_etcdctl: bool) -> None:
    bin_dir = tmp_path / "bin"
    _stub(bin_dir, "systemctl", f'case "$1" in is-enabled) exit {0 if enabled else 1} ;; '
                                f'is-active) exit {0 if active else 3} ;; esac; exit 9')
    _stub(bin_dir, "etcdctl", f'echo "$ETCDCTL_API $*" >{tmp_path}/args; exit {etcdctl_status}')
    script = ETCD_GATE_SCRIPT.replace("ETCD_GATE_ETCDCTL=/usr/bin/etcdctl", f"ETCD_GATE_ETCDCTL={bin_dir}/etcdctl")
    done = _bash(script, bin_dir)
    assert (done.returncode == 0) is passes, done
    assert (tmp_path / "args").exists() is calls_etcdctl
    if calls_etcdctl:
        assert (tmp_path / "args").read_text().split() == [
            "3", "--endpoints=https://127.0.0.1:2379", "--cacert=/etc/cookbook-etcd/pki/ca.crt",
            "--cert=/etc/cookbook-etcd/pki/member.crt", "--key=/etc/cookbook-etcd/pki/member.key",
            "--dial-timeout=3s", "--command-timeout=10s", "endpoint", "health", "--cluster"]


def test_cmdline_is_replaced_through_a_flushed_temporary_file(tmp_path: Path) -> None:
    boot = tmp_path / "firmware"
    boot.mkdir()
    cmdline = boot / "cmdline.txt"
    cmdline.write_text("console=serial0,115200 root=PARTUUID=1234-02\n")
    cmdline.chmod(0o644)
    (boot / ".cmdline.txt.cookbook-Ab12Cd").write_text("half a line")  # an interrupted write left it
    bin_dir = tmp_path / "bin"
    _stub(bin_dir, "sync", f'echo "$@" >>{tmp_path}/synced; exec /bin/sync "$@"')
    _stub(bin_dir, "mv", f'ls -a {boot} >{tmp_path}/before-rename; exec /bin/mv "$@"')
    script = (render_script(["shared/common.sh", "nodes/pi.sh"], {"PI_CMDLINE_FLAGS": ()})
              + f"write_cmdline {cmdline} 'console=serial0,115200 root=PARTUUID=1234-02 cgroup_memory=1'\n")
    done = _bash(script, bin_dir)
    assert done.returncode == 0, done.stderr
    assert cmdline.read_text() == "console=serial0,115200 root=PARTUUID=1234-02 cgroup_memory=1\n"
    assert stat.S_IMODE(cmdline.stat().st_mode) == 0o644
    assert sorted(p.name for p in boot.iterdir()) == ["cmdline.txt"]  # the leftover is gone, no temp remains
    temporary = [n for n in (tmp_path / "before-rename").read_text().split() if n.startswith(".cmdline.txt.cook")]
    assert len(temporary) == 1 and temporary != [".cmdline.txt.cookbook-Ab12Cd"]
    synced = (tmp_path / "synced").read_text().splitlines()
    assert synced == [str(boot / temporary[0]), str(boot)]  # the new content, then the directory entry


def test_check_boot_state_refuses_swap_that_came_back(tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    _stub(bin_dir, "swapon", 'echo /dev/zram0')
    script = (render_script(["shared/common.sh", "nodes/facts.sh", "nodes/pi.sh"], {"PI_CMDLINE_FLAGS": ()})
              + "check_boot_state\n")
    done = _bash(script, bin_dir)
    if done.stderr.startswith("error: the memory cgroup is off"):
        pytest.skip("this machine's kernel has no memory cgroup; the swap check comes after it")
    assert done.returncode == 1
    assert done.stderr.startswith("error: swap is on again after the boot (/dev/zram0 )")
    _stub(bin_dir, "swapon", 'true')
    assert _bash(script, bin_dir).returncode == 0


@pytest.mark.parametrize("memory_cgroup", [True, False])
def test_check_boot_state_refuses_a_kernel_without_the_memory_cgroup(tmp_path: Path, memory_cgroup: bool) -> None:
    bin_dir = tmp_path / "bin"
    _stub(bin_dir, "swapon", "true")
    kernel = f"memory_cgroup_enabled() {{ {'true' if memory_cgroup else 'false'}; }}\n"  # what the kernel says
    script = (render_script(["shared/common.sh", "nodes/facts.sh", "nodes/pi.sh"], {"PI_CMDLINE_FLAGS": ()})
              + kernel + "check_boot_state\n")
    done = _bash(script, bin_dir)
    assert done.returncode == (0 if memory_cgroup else 1), done.stderr
    assert done.stderr.startswith("error: the memory cgroup is off") != memory_cgroup


def test_disable_swap_turns_swap_off_once(tmp_path: Path) -> None:
    """Swap that is on is turned off (and said so); a second run finds it off and says nothing."""
    bin_dir = tmp_path / "bin"
    off = tmp_path / "swap-off"
    _stub(bin_dir, "systemctl", "exit 1")  # no dphys-swapfile service
    _stub(bin_dir, "swapon", f'[ -e {off} ] || echo /dev/zram0')
    _stub(bin_dir, "swapoff", f'echo "swapoff $*" >>{tmp_path / "calls"}; touch {off}')
    # This machine's /etc/fstab is not the test's: its swap entries are left out.
    fstab_left_out = 'grep() { [ "${!#}" = /etc/fstab ] && return 1; command grep "$@"; }\n'
    script = render_script(["shared/common.sh", "shared/files.sh", "nodes/swap.sh"], {}) + fstab_left_out + \
        "disable_swap\n"
    first = _bash(script, bin_dir)
    assert first.returncode == 0, first.stderr
    assert first.stdout == "changed: swap turned off\n"
    assert (tmp_path / "calls").read_text() == "swapoff -a\n"
    again = _bash(script, bin_dir)
    assert again.returncode == 0 and again.stdout == ""
    assert (tmp_path / "calls").read_text() == "swapoff -a\n"


def test_flags_not_running_compares_word_by_word() -> None:
    running = Path("/proc/cmdline").read_text().split()
    script = render_script(["nodes/pi.sh"], {"PI_CMDLINE_FLAGS": (running[-1], "cookbook_flag=1", running[0][:-1])})
    done = _bash(script + "flags_not_running\n")
    assert done.returncode == 0, done.stderr
    # A running word counts; a word that is only part of a running word does not.
    assert done.stdout.splitlines() == ["cookbook_flag=1", running[0][:-1]]


@pytest.mark.parametrize("sudo_works", [True, False])
def test_a_refused_sudo_fails_with_how_to_allow_it(tmp_path: Path, sudo_works: bool) -> None:
    bin_dir = tmp_path / "bin"
    # A stand-in for sudo: `-n true` answers like sudo with or without NOPASSWD; `-n bash ...` runs bash.
    _stub(bin_dir, "sudo", f'[ "$1" = -n ] || exit 2; shift; [ "$1" = true ] && exit {0 if sudo_works else 1}; '
                           'exec "$@"')
    command = SshConnection(host="pi-a.lan", user="pi").command_line("echo stepped")
    done = _bash(command, bin_dir)
    if sudo_works:
        assert (done.returncode, done.stdout, done.stderr) == (0, "stepped\n", "")
    else:
        assert (done.returncode, done.stdout) == (1, "")
        assert done.stderr == sudo_refused_hint("pi") + "\n"
        assert "echo 'pi ALL=(ALL) NOPASSWD: ALL' | sudo tee /etc/sudoers.d/010_pi-nopasswd" in done.stderr


def test_root_runs_steps_without_sudo() -> None:
    assert CONNECTION.command_line("echo x") == "bash -c 'echo x'"


@pytest.mark.parametrize(("failures", "error", "installs"), [
    (2, "E: Could not get lock /var/lib/apt/lists/lock. It is held by process 812 (apt-get)", True),
    (1, "E: Failed to fetch http://deb.debian.org/debian/dists/bookworm/InRelease", False),
])
def test_apt_waits_for_the_lists_lock_and_the_dpkg_lock(tmp_path: Path, failures: int, error: str,
                                                       installs: bool) -> None:
    """`apt-get update` is retried while another apt holds the lists lock (it ignores DPkg::Lock::Timeout);
    any other failure stops at once; the install itself waits for the dpkg lock through the option."""
    bin_dir = tmp_path / "bin"
    calls = tmp_path / "calls"
    _stub(bin_dir, "apt-get", f'echo "$*" >>{calls}; if [ "$1" = update ]; then '
                              f'n=$(grep -c "^update" {calls}); [ "$n" -gt {failures} ] && exit 0; '
                              f'echo "{error}" >&2; exit 100; fi; exit 0')
    _stub(bin_dir, "dpkg-query", "exit 1")  # nothing is installed
    _stub(bin_dir, "sleep", "exit 0")  # the retry delay
    script = render_script(["shared/common.sh", "shared/files.sh"], {}) + "apt_install jq curl\n"
    done = _bash(script, bin_dir)
    lines = calls.read_text().splitlines()
    if installs:
        assert done.returncode == 0, done.stderr
        assert lines == ["update -qq"] * 3 + [
            "-o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends jq curl"]
        assert done.stdout == "changed: installed jq curl\n"
    else:
        assert done.returncode == 1
        assert lines == ["update -qq"]
        assert done.stderr.strip() == error
