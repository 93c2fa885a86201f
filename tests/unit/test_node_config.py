"""The node layer's config: `ssh.agent` can only promise what pulumi-command does, extra cmdline flags."""

from __future__ import annotations

from typing import Any

import pytest

from components.shared.validation import ConfigError
from components.stack import parse_stack_config

KEY = "-----BEGIN OPENSSH PRIVATE KEY-----\nx\n-----END OPENSSH PRIVATE KEY-----\n"
NODE = {"name": "pi-a", "address": "192.168.1.21", "kind": "pi"}
AGENT = {"SSH_AUTH_SOCK": "/tmp/ssh-XXXX/agent.42"}


def parse(raw: dict[str, Any], env: dict[str, str]) -> Any:
    return parse_stack_config(raw, {"ssh_private_key"}, env)


def problems(raw: dict[str, Any], env: dict[str, str]) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        parse(raw, env)
    return caught.value.problems


def test_agent_false_is_refused_while_ssh_auth_sock_is_set() -> None:
    """pulumi-command adds the agent from SSH_AUTH_SOCK whenever it is set (connection.go SSHConfig), so the
    program cannot switch it off: it says so, naming the key and how to run without the variable."""
    found = problems({"nodes": [NODE], "ssh": {"agent": False}, "ssh_private_key": KEY}, AGENT)
    assert len(found) == 1
    assert found[0].startswith("ssh.agent: is false, but SSH_AUTH_SOCK is set (/tmp/ssh-XXXX/agent.42)")
    assert "`env -u SSH_AUTH_SOCK pulumi up`" in found[0]


@pytest.mark.parametrize("empty", [{}, {"SSH_AUTH_SOCK": ""}])
def test_agent_false_without_an_agent_uses_the_key(empty: dict[str, str]) -> None:
    config = parse({"nodes": [NODE], "ssh": {"agent": False}, "ssh_private_key": KEY}, empty)
    assert config.ssh.use_agent is False
    assert config.secrets.private_key == KEY


def test_agent_true_needs_an_agent() -> None:
    found = problems({"nodes": [NODE], "ssh": {"agent": True}, "ssh_private_key": KEY}, {})
    assert found == ["ssh.agent: is true, but SSH_AUTH_SOCK is not set: start an agent holding your key "
                     "(`eval \"$(ssh-agent)\" && ssh-add`), or set it false and store the key in ssh_private_key"]
    assert parse({"nodes": [NODE], "ssh": {"agent": True}}, AGENT).ssh.use_agent is True


@pytest.mark.parametrize(("env", "use_agent"), [({}, False), (AGENT, True)])
def test_agent_default_follows_the_environment(env: dict[str, str], use_agent: bool) -> None:
    assert parse({"nodes": [NODE], "ssh_private_key": KEY}, env).ssh.use_agent is use_agent


def test_extra_pi_cmdline_flags() -> None:
    config = parse({"nodes": [NODE], "ssh_private_key": KEY,
                    "prepare": {"pi_cmdline_flags": ["cgroup_enable=cpuset", "usbcore.autosuspend=-1"]}}, {})
    assert config.prepare.pi_cmdline_flags == ("cgroup_enable=cpuset", "usbcore.autosuspend=-1")
    assert parse({"nodes": [NODE], "ssh_private_key": KEY}, {}).prepare.pi_cmdline_flags == ()
    found = problems({"nodes": [NODE], "ssh_private_key": KEY,
                      "prepare": {"pi_cmdline_flags": ["two words", "ok=1", "$(reboot)"]}}, {})
    assert found == [
        "prepare.pi_cmdline_flags[0]: must be one kernel command-line word such as 'cgroup_enable=cpuset', "
        "got 'two words'",
        "prepare.pi_cmdline_flags[2]: must be one kernel command-line word such as 'cgroup_enable=cpuset', "
        "got '$(reboot)'",
    ]
