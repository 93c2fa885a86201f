"""The program evaluated under mocks: every shipped stack, the resource graph, secrets and determinism."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.harness.fixtures import FAKE_PRIVATE_KEY, evaluate_stack
from tests.harness.program import ROOT, stack_names


@pytest.mark.parametrize("stack", stack_names())
def test_every_shipped_stack_evaluates(stack: str) -> None:
    mocks = evaluate_stack(stack)
    assert mocks.resources, f"stack {stack} declares no resources"


def test_pi_home_prepares_each_pi_in_two_steps() -> None:
    mocks = evaluate_stack("pi-home")
    pis = mocks.of_type("cookbook:node:RaspberryPi")
    assert sorted(p.name for p in pis) == ["pi-a", "pi-b", "pi-c"]
    for pi in pis:
        prepare, await_boot = mocks.named(f"{pi.name}-prepare"), mocks.named(f"{pi.name}-await-boot")
        assert prepare.parent == await_boot.parent == pi.urn
        connection = prepare.inputs["connection"]
        assert (connection["user"], connection["port"], connection["privateKey"]) == ("pi", 22, FAKE_PRIVATE_KEY)
        # Through `sudo -n`, after checking it asks for no password (tests/unit/test_node_graph.py has the rest).
        assert prepare.inputs["create"].startswith("if ! sudo -n true 2>/dev/null; then ")
        assert "; exit 1; fi; sudo -n bash -c " in prepare.inputs["create"]
        assert "cgroup_enable=memory" in prepare.inputs["create"]
        # Waiting for a reboot takes more dials than an ordinary connection.
        assert await_boot.inputs["connection"]["dialErrorLimit"] > connection["dialErrorLimit"]


@pytest.mark.parametrize("stack", stack_names())
def test_the_fake_key_reaches_the_ssh_steps_as_a_secret(stack: str) -> None:
    """The other half of tests/unit/test_graph_shapes.py's "no secret is ever plain": the key is really used."""
    mocks = evaluate_stack(stack)
    ssh_steps = [r for r in mocks.resources if r.type.startswith("command:remote:")]
    carriers = [r.name for r in ssh_steps if "FAKE-KEY-FOR-TESTS-ONLY" in repr(r.registration.raw_inputs)]
    assert len(carriers) == len(ssh_steps)


@pytest.mark.parametrize("stack", stack_names())
def test_inputs_are_identical_across_hash_seeds(stack: str) -> None:
    def dump(seed: str) -> str:
        env = {**os.environ, "PYTHONHASHSEED": seed}
        env.pop("SSH_AUTH_SOCK", None)
        return subprocess.run([sys.executable, "-m", "tests.harness.dump_inputs", stack], cwd=ROOT, env=env,
                              capture_output=True, text=True, check=True).stdout

    first, second = dump("1"), dump("4242")
    assert first == second
    assert len(first) > 1000
