"""Every config problem is reported with its key path and what is valid, all at once, before anything exists."""

from __future__ import annotations

from typing import Any

import pulumi
import pytest

from components.shared.validation import ConfigError
from components.stack import parse_stack_config
from tests.harness.program import run_program
from tests.harness.recording import RecordingMocks

KEY = "-----BEGIN OPENSSH PRIVATE KEY-----\nx\n-----END OPENSSH PRIVATE KEY-----\n"
NODE = {"name": "pi-a", "address": "192.168.1.21"}


def problems_of(raw: dict[str, Any], secret_keys: set[str] | None = None, env: dict[str, str] | None = None
                ) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        parse_stack_config(raw, {"ssh_private_key"} if secret_keys is None else secret_keys, env or {})
    return caught.value.problems


def with_key(**raw: Any) -> dict[str, Any]:
    return {"ssh_private_key": KEY, **raw}


@pytest.mark.parametrize(("raw", "expected"), [
    (with_key(nodes=[{"address": "10.0.0.1"}]), "nodes[0].name: is required"),
    (with_key(nodes=[NODE, {**NODE, "address": "10.0.0.2"}]),
     "nodes[1].name: duplicate node name 'pi-a' (also nodes[0].name)"),
    (with_key(nodes=[{**NODE, "name": "Pi_A"}]), "nodes[0].name: must be a DNS label"),
    (with_key(nodes=[{**NODE, "address": "300.1.1.1"}]),
     "nodes[0].address: must be an IPv4/IPv6 address or a DNS name"),
    (with_key(nodes=[{**NODE, "address": "bad host"}]), "nodes[0].address: must be an IPv4/IPv6 address"),
    (with_key(nodes=[{**NODE, "port": 70000}]), "nodes[0].port: must be a TCP port between 1 and 65535, got 70000"),
    (with_key(ssh={"port": 0}), "ssh.port: must be a TCP port between 1 and 65535"),
    (with_key(nodes=[{**NODE, "port": "22"}]), "nodes[0].port: must be an integer, got a string '22'"),
    (with_key(nodes=[{**NODE, "roles": ["etcd", "master"]}]),
     "nodes[0].roles[1]: must be one of etcd, control-plane, worker, zookeeper, mesos-master, mesos-agent, "
     "got 'master'"),
    (with_key(nodes=[{**NODE, "kind": "pie"}]), "nodes[0].kind: must be one of linux, pi, got 'pie'"),
    (with_key(nodes=[{**NODE, "adress": "x"}]), "nodes[0].adress: unknown key (did you mean 'address'?)"),
    (with_key(nodse=[]), "cluster-cookbook:nodse: unknown key (did you mean 'nodes'?)"),
    (with_key(ssh={"agnet": True}), "ssh.agnet: unknown key (did you mean 'agent'?)"),
    (with_key(nodes={"pi-a": NODE}), "nodes: must be a list of nodes"),
    (with_key(nodes=[{**NODE, "roles": "etcd"}]), "nodes[0].roles: must be a list, got a string 'etcd'"),
    (with_key(ssh={"agent": "yes"}), "ssh.agent: must be a boolean, got a string 'yes'"),
    (with_key(nodes=[{**NODE, "host_key": "AAAA"}]), "nodes[0].host_key: must be a public host key line"),
    (with_key(ssh={"proxy": {"port": 22}}), "ssh.proxy.host: is required"),
    (with_key(prepare={"packages": ["curl", "Bad Name"]}), "prepare.packages[1]: must be a Debian package name"),
    ({"nodes": [NODE]}, "ssh_private_key: no SSH credentials"),
])
def test_each_problem_names_its_key(raw: dict[str, Any], expected: str) -> None:
    assert any(expected in problem for problem in problems_of(raw)), problems_of(raw)


def test_secret_values_must_come_from_secret_config() -> None:
    problems = problems_of({"nodes": [NODE], "ssh_private_key": KEY}, secret_keys=set())
    assert any(p.startswith("ssh_private_key: must be stored as a secret: `pulumi config set --secret")
               for p in problems)


def test_all_problems_are_reported_at_once() -> None:
    raw = with_key(nodes=[{"name": "a", "address": "1.2.3.999", "port": -1, "roles": ["boss"]}, {"name": "a"}],
                   ssh={"user": 3})
    problems = problems_of(raw)
    assert len(problems) == 6, problems
    assert {p.split(":")[0] for p in problems} == {
        "nodes[0].address", "nodes[0].port", "nodes[0].roles[0]", "nodes[1].address", "nodes[1].name", "ssh.user"}


@pytest.mark.parametrize("env", [{"SSH_AUTH_SOCK": "/run/agent.sock"}, {"COOKBOOK_SSH_PRIVATE_KEY": KEY}])
def test_agent_or_environment_key_are_credentials(env: dict[str, str]) -> None:
    config = parse_stack_config({"nodes": [NODE]}, set(), env)
    assert config.ssh.use_agent == ("SSH_AUTH_SOCK" in env)
    assert config.secrets.private_key == env.get("COOKBOOK_SSH_PRIVATE_KEY")


def test_node_settings_inherit_ssh_defaults() -> None:
    config = parse_stack_config(with_key(ssh={"user": "pi", "port": 2222, "proxy": {"host": "bastion.lan"}},
                                         nodes=[NODE, {**NODE, "name": "b", "user": "admin", "port": 22}]),
                                {"ssh_private_key"})
    first, second = config.nodes
    assert (first.user, first.port, first.proxy and first.proxy.host) == ("pi", 2222, "bastion.lan")
    assert (second.user, second.port) == ("admin", 22)


def test_program_fails_before_creating_anything() -> None:
    mocks = RecordingMocks()
    with pytest.raises(pulumi.RunError, match=r"nodes\[0\]\.port"):
        run_program(mocks, {"nodes": [{**NODE, "port": 0}], "ssh_private_key": KEY},
                    secret_keys=["ssh_private_key"])
    assert mocks.resources == []
