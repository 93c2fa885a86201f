"""The local stack run after run, as `pulumi up` runs it again: the program (`__main__.py`) under ExecutingMocks with
the engine's update rules, pulumi-tls and pulumi-random emulated (real keys, random tokens), dynamic providers run
as the engine runs them (tests/harness/dynamic_emulator.py: Check with the previous inputs, then Diff), and an
in-memory stand-in for the Docker engine that records what would be created, replaced and deleted.

What this proves under mocks (k3s cannot run here: its image cannot be pulled; etcd runs for real in
tests/integration/test_local_etcd.py):
- a change of `local.etcd.members` after the cluster exists is refused before anything changes, naming the key;
- every k3s node keeps its node password (/etc/rancher/node/password) across the replacement of its container, and
  an agent removed and added again gets the same one, so the server (whose `<node>.node-password.k3s` secret lives
  in etcd, not in the container) accepts it.
"""

from __future__ import annotations

import copy
import hashlib
from typing import Any

import pytest

from tests.harness.dynamic_emulator import DynamicEmulator
from tests.harness.executing import ExecutingMocks, StackState
from tests.harness.program import run_program
from tests.harness.random_emulator import emulate_random
from tests.harness.tls import emulate_tls
from tools.offline import unwrap_secrets

PASSWORD_FILE = "/etc/rancher/node/password"
BASE: dict[str, Any] = {"local": {
    "prefix": "cookbook-local", "subnet": "10.213.0.0/24",
    "etcd": {"image": "gcr.io/etcd-development/etcd:v3.6.14", "members": 3, "client_ports": [2379, 22379, 32379]},
    "kubernetes": {"enabled": False}, "registry": {"enabled": False},
}}


def emulate_engine(typ: str, inputs: dict[str, Any]) -> dict[str, Any]:
    """What the provider reports back, without an engine (the operations are what the tests look at)."""
    kind = typ.rsplit(":", 1)[-1]
    digest = hashlib.sha256(repr(sorted(inputs.items())).encode()).hexdigest()
    if kind == "Volume":
        return {"mountpoint": f"/var/lib/docker/volumes/{inputs['name']}/_data"}
    if kind == "RemoteImage":
        return {"imageId": f"sha256:{digest}", "repoDigest": ""}
    return {"id": digest}


def up(state: StackState, config: dict[str, Any], program: Any = None) -> ExecutingMocks:
    mocks = ExecutingMocks(state, emulators={"docker": emulate_engine, "tls": emulate_tls, "random": emulate_random,
                                             "pulumi-python": DynamicEmulator()})
    run_program(mocks, config, stack="local", program=program)
    mocks.finish()
    return mocks


def with_etcd(members: int) -> dict[str, Any]:
    config = copy.deepcopy(BASE)
    config["local"]["etcd"].update(members=members, client_ports=[2379 + 10000 * i for i in range(members)])
    return config


def docker_operations(mocks: ExecutingMocks) -> list[tuple[str, str]]:
    """The run's operations on Docker resources (registered in this run or kept in the state)."""
    types = {r.name: r.type for r in mocks.resources} | {s.name: s.type for s in mocks.state.resources.values()}
    return [(operation, name) for operation, name in mocks.operations if types.get(name, "").startswith("docker:")]


# --- local.etcd.members -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("changed", [5, 1])
def test_a_member_count_change_is_refused_before_anything_changes(changed: int) -> None:
    state = StackState()
    first = up(state, with_etcd(3))
    assert ("create", "local-etcd-container-cookbook-local-etcd-3") in first.operations
    before = copy.deepcopy(state.resources)

    refused = ExecutingMocks(state, emulators={"docker": emulate_engine, "tls": emulate_tls,
                                               "random": emulate_random, "pulumi-python": DynamicEmulator()})
    with pytest.raises(Exception) as raised:
        run_program(refused, with_etcd(changed), stack="local")
    message = str(raised.value)
    assert "local.etcd.members" in message and "created with 3 members" in message, message
    assert f"cannot change to {changed}" in message and "make destroy" in message, message
    # Nothing on the engine was created, replaced or deleted, and the record still says 3.
    assert docker_operations(refused) == []
    assert {urn: (s.inputs, s.outputs) for urn, s in state.resources.items() if s.type.startswith("docker:")} == \
        {urn: (s.inputs, s.outputs) for urn, s in before.items() if s.type.startswith("docker:")}
    again = up(state, with_etcd(3))
    assert again.operations == []


def test_after_a_destroy_any_member_count_starts_a_new_cluster() -> None:
    state = StackState()
    up(state, with_etcd(3))
    destroyed = up(state, with_etcd(3), program=lambda: None)
    assert ("delete", "local-etcd-membership") in destroyed.operations and state.resources == {}
    fresh = up(state, with_etcd(1))
    assert ("create", "local-etcd-container-cookbook-local-etcd-1") in fresh.operations


def test_an_unchanged_count_with_other_changes_goes_through() -> None:
    state = StackState()
    up(state, with_etcd(3))
    config = with_etcd(3)
    config["local"]["etcd"]["memory_mb"] = 320
    changed = up(state, config)
    assert ("replace-create", "local-etcd-container-cookbook-local-etcd-2") in changed.operations


# --- k3s node passwords -------------------------------------------------------------------------------------------
def with_kubernetes(agents: int = 1, agent_memory_mb: int = 3072) -> dict[str, Any]:
    config = copy.deepcopy(BASE)
    config["local"]["kubernetes"] = {"enabled": True, "agents": agents, "agent": {"memory_mb": agent_memory_mb}}
    return config


def node_passwords(mocks: ExecutingMocks) -> dict[str, str]:
    """Each k3s container's uploaded node password, as the provider receives it (from the state)."""
    found = {}
    for state in mocks.state.resources.values():
        if state.type == "docker:index/container:Container" and state.inputs["image"].startswith("rancher/k3s:"):
            uploads = {u["file"]: u["content"] for u in unwrap_secrets(state.inputs["uploads"])}
            found[state.inputs["name"]] = uploads[PASSWORD_FILE]
    return found


def test_a_replaced_agent_presents_the_password_the_server_already_holds() -> None:
    """An agent-only change (its memory limit) replaces the agent container; the new one gets the same node
    password, the server is not touched, and the replacement is awaited (its healthcheck: kubelet up, node Ready)."""
    state = StackState()
    first = up(state, with_kubernetes())
    passwords = node_passwords(first)
    assert sorted(passwords) == ["cookbook-local-agent-1", "cookbook-local-server"]
    changed = up(state, with_kubernetes(agent_memory_mb=4096))
    assert docker_operations(changed) == [("replace-delete", "local-kubernetes-agent-1"),
                                          ("replace-create", "local-kubernetes-agent-1")]
    assert node_passwords(changed) == passwords
    agent = changed.named("local-kubernetes-agent-1").inputs
    assert agent["memory"] == 4096 and agent["wait"] is True and agent["healthcheck"]["tests"][0] == "CMD-SHELL"


def test_an_agent_removed_and_added_back_presents_its_old_password() -> None:
    """The server keeps a removed agent's Node and password secret (the secret goes only with the Node object):
    an agent added back under the same name must present the same password, so it is derived from the cluster's
    secret and the name rather than drawn anew."""
    state = StackState()
    original = node_passwords(up(state, with_kubernetes(agents=2)))
    up(state, with_kubernetes(agents=1))
    readded = node_passwords(up(state, with_kubernetes(agents=2)))
    assert readded["cookbook-local-agent-2"] == original["cookbook-local-agent-2"]
    assert len(set(readded.values())) == 3  # one per node
