"""Node scripts: pure renderers, table-driven, every rendered script passes shellcheck."""

from __future__ import annotations

import json
import subprocess

import pytest

from components.nodes.host import (
    FACTS_MARKER,
    HostArgs,
    RaspberryPiArgs,
    SshConnection,
    parse_facts,
    render_await_boot_script,
    render_prepare_script,
)
from components.shared.scripts import remote_invocation, shell_assignment
from tests.harness.recording import FAKE_FACTS
from tests.harness.validators import shellcheck_findings

CONNECTION = SshConnection(host="192.168.1.21")
SCRIPTS = {
    "linux-defaults": render_prepare_script(HostArgs(CONNECTION, "node-1")),
    "linux-no-k8s-time-servers": render_prepare_script(HostArgs(
        CONNECTION, "node-2", packages=("jq",), time_servers=("ntp1.example.org", "10.0.0.1"),
        kubernetes_networking=False)),
    "pi": render_prepare_script(RaspberryPiArgs(SshConnection(host="pi-a.lan", user="pi"), "pi-a")),
    "pi-no-packages": render_prepare_script(RaspberryPiArgs(CONNECTION, "pi-b", packages=())),
    "await-after-reboot": render_await_boot_script({**FAKE_FACTS, "reboot_scheduled": True}),
    "await-no-reboot": render_await_boot_script(FAKE_FACTS),
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
    assert "readonly NODE_HOSTNAME PACKAGES KUBERNETES_NETWORKING TIME_SERVERS PI_CMDLINE_FLAGS\n" in script
    assert "PI_CMDLINE_FLAGS=()" in script
    assert "PI_CMDLINE_FLAGS=(cgroup_memory=1 cgroup_enable=memory)" in SCRIPTS["pi"]


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


def test_facts_are_printed_as_valid_json_by_the_real_script(tmp_path: object) -> None:
    script = render_await_boot_script(FAKE_FACTS)
    done = subprocess.run(["bash", "-c", script], capture_output=True, text=True, check=True)
    facts = parse_facts(done.stdout)
    assert facts["architecture"] in {"amd64", "arm64", "armhf"}
    assert set(facts) == set(FAKE_FACTS)
