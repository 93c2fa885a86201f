"""The node layer's resource graph over every shape the program can produce (Linux host, Pi, non-root user,
bastion, quorum Pis in a reboot chain, Pis outside it): exact children and parents, exact dependencies,
secrecy of every credential, sudo, dial limits and gates. Each assertion is exact, so a one-line mutation
(a dropped `parent=self`, a dropped dependency, a plain key, the chain broken or extended) fails a test.
Also: the `nodes` output keys are the code's, and the README documents exactly those.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

import pulumi
import pytest

from components.nodes.host import NODE_OUTPUTS
from tests.harness.fixtures import FAKE_PRIVATE_KEY
from tests.harness.program import ROOT, SECRET_SIG, run_program
from tests.harness.recording import FAKE_FACTS, Recorded, RecordingMocks, plain_strings

PASSPHRASE = "FAKE-PASSPHRASE-FOR-TESTS-ONLY"
NEW_BOOT_ID = "3d6f1c70-1111-4222-8333-444455556666"
COMMAND = "command:remote:Command"
HOST, PI = "cookbook:node:Host", "cookbook:node:RaspberryPi"


@dataclass(frozen=True)
class Shape:
    """A stack config and what the node layer must make of it."""

    config: dict[str, Any]
    users: dict[str, str]  # node -> login user
    chain: tuple[str, ...] = ()  # Pis that reboot one at a time, in this order
    gates: dict[str, tuple[str, ...]] = field(default_factory=dict)  # Pi -> the gates its reboot waits for
    bastion: str | None = None


def node(name: str, kind: str = "linux", *roles: str, **extra: Any) -> dict[str, Any]:
    return {"name": name, "address": f"10.1.0.{len(name) * 7 % 200 + int(name[-1])}", "kind": kind,
            "roles": list(roles), **extra}


SHAPES = {
    "linux-root": Shape({"nodes": [node("l1")]}, {"l1": "root"}),
    "pi-non-root": Shape({"ssh": {"user": "pi", "reboot_timeout": 600}, "nodes": [node("p1", "pi")]}, {"p1": "pi"}),
    "bastion-with-passphrase": Shape(
        {"ssh": {"proxy": {"host": "203.0.113.5", "user": "admin"}, "dial_error_limit": 3},
         "nodes": [node("l1"), node("p1", "pi", user="pi")], "ssh_private_key_passphrase": PASSPHRASE},
        {"l1": "root", "p1": "pi"}, bastion="203.0.113.5"),
    # Pis with a cluster role (etcd, control-plane, worker) reboot in node order, one at a time, each behind
    # the gates of what runs on it (a worker Pi behind the Kubernetes worker gate); the Linux etcd member never
    # reboots; the Pi without a role is outside the chain.
    "quorum-chain": Shape(
        {"nodes": [node("e1", "pi", "etcd"), node("l1", "linux", "etcd"), node("w1", "pi", "worker"),
                   node("e2", "pi", "etcd"), node("c1", "pi", "control-plane"), node("x1", "pi")]},
        {"e1": "root", "l1": "root", "w1": "root", "e2": "root", "c1": "root", "x1": "root"},
        chain=("e1", "w1", "e2", "c1"),
        gates={"e1": ("etcd",), "w1": ("kubernetes-worker",), "e2": ("etcd",), "c1": ("kubernetes",)}),
}


class RebootingMocks(RecordingMocks):
    """Every Pi's prepare step finds a flag missing from the running kernel, and its reboot step reports a
    scheduled reboot (the recording mocks' facts report none)."""

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str | None, dict[str, Any]]:
        resource_id, outputs = super().new_resource(args)
        if args.typ == COMMAND and args.name.endswith("-prepare"):
            outputs = {**outputs, "stdout": f"{outputs['stdout']}\nCOOKBOOK_PENDING_FLAGS=cgroup_enable=memory "}
        if args.typ == COMMAND and args.name.endswith("-reboot"):
            facts = {**FAKE_FACTS, "reboot_scheduled": True}
            outputs = {**outputs, "stdout": f"changed: reboot scheduled\nCOOKBOOK_FACTS={json.dumps(facts)}"}
        if args.typ == COMMAND and args.name.endswith("-await-boot"):
            facts = {**FAKE_FACTS, "boot_id": NEW_BOOT_ID, "kernel": "after-reboot"}
            outputs = {**outputs, "stdout": f"changed: host rebooted\nCOOKBOOK_FACTS={json.dumps(facts)}"}
        return resource_id, outputs


def evaluate(shape: Shape, mocks: RecordingMocks | None = None) -> tuple[RecordingMocks, dict[str, Any]]:
    mocks = mocks or RecordingMocks()
    secrets = ["ssh_private_key", *(["ssh_private_key_passphrase"] if "ssh_private_key_passphrase" in shape.config
                                    else [])]
    outputs = run_program(mocks, {"ssh_private_key": FAKE_PRIVATE_KEY, **shape.config}, secret_keys=secrets)
    return mocks, outputs


def children(mocks: RecordingMocks, component: Recorded) -> dict[str, Recorded]:
    return {r.name: r for r in mocks.resources if r.parent == component.urn}


def is_secret(value: Any) -> bool:
    return isinstance(value, dict) and SECRET_SIG in value


@pytest.mark.parametrize("shape_name", sorted(SHAPES))
def test_every_node_child_is_exactly_where_it_belongs(shape_name: str) -> None:
    shape = SHAPES[shape_name]
    mocks, _ = evaluate(shape)
    stack_urn = next(r.parent for r in mocks.resources if r.name in shape.users)
    assert stack_urn is not None and stack_urn.endswith("::pulumi:pulumi:Stack::cluster-cookbook-test")
    for config in shape.config["nodes"]:
        name, is_pi = config["name"], config["kind"] == "pi"
        component = mocks.named(name)
        assert (component.type, component.parent, component.registration.custom) == (PI if is_pi else HOST,
                                                                                     stack_urn, False)
        expected = [f"{name}-prepare", f"{name}-reboot", f"{name}-await-boot"] if is_pi else [f"{name}-prepare"]
        owned = children(mocks, component)
        assert sorted(owned) == sorted(expected)
        for child in owned.values():
            assert child.type == COMMAND and child.registration.custom
            assert child.urn.endswith(f"::{component.type}${COMMAND}::{child.name}")
            # pulumi-command keeps the connection secret; the node steps touch no key, so nothing else is.
            assert child.registration.additional_secret_outputs == ("connection",)


@pytest.mark.parametrize("shape_name", sorted(SHAPES))
def test_credentials_are_secret_in_every_node_step(shape_name: str) -> None:
    shape = SHAPES[shape_name]
    mocks, _ = evaluate(shape)
    steps = [r for r in mocks.resources if r.type == COMMAND and r.parent in {c.urn for c in mocks.resources
                                                                              if c.name in shape.users}]
    assert steps
    for step in steps:
        raw = step.registration.raw_inputs
        leaks = [text for text in plain_strings(raw) if "FAKE-" in text]
        assert leaks == [], step.name
        # The key (and passphrase) are secret Outputs, so the whole connection travels as a secret.
        assert is_secret(raw["connection"]), step.name
        connection = step.inputs["connection"]
        assert connection["privateKey"] == FAKE_PRIVATE_KEY
        with_passphrase = "ssh_private_key_passphrase" in shape.config
        assert connection.get("privateKeyPassword") == (PASSPHRASE if with_passphrase else None), step.name
        if shape.bastion:
            proxy = connection["proxy"]
            assert (proxy["host"], proxy["user"], proxy["port"]) == (shape.bastion, "admin", 22)
            assert (proxy["privateKey"], proxy["privateKeyPassword"]) == (FAKE_PRIVATE_KEY, PASSPHRASE), step.name
        else:
            assert "proxy" not in connection, step.name


@pytest.mark.parametrize("shape_name", sorted(SHAPES))
def test_steps_run_as_root_through_sudo_only_for_other_users(shape_name: str) -> None:
    shape = SHAPES[shape_name]
    mocks, _ = evaluate(shape, RebootingMocks())
    for name, user in shape.users.items():
        for step in children(mocks, mocks.named(name)).values():
            create = step.inputs["create"]
            assert step.inputs["connection"]["user"] == user
            if user == "root":
                assert create.startswith("bash -c '#!/usr/bin/env bash"), step.name
                assert "sudo" not in create.split("bash -c", 1)[0]
            else:
                assert create.startswith("if ! sudo -n true 2>/dev/null; then printf "), step.name
                assert "; exit 1; fi; sudo -n bash -c '#!/usr/bin/env bash" in create, step.name
                assert f"error: {user} cannot run sudo without a password" in create


@pytest.mark.parametrize("shape_name", sorted(SHAPES))
def test_dependencies_are_exact(shape_name: str) -> None:
    """prepare depends on nothing (hosts in parallel); reboot on its prepare and, in the chain, on the
    previous chain Pi's await-boot; await-boot on its reboot (through its input)."""
    shape = SHAPES[shape_name]
    mocks, _ = evaluate(shape, RebootingMocks())
    urn = {r.name: r.urn for r in mocks.resources}
    for config in shape.config["nodes"]:
        name = config["name"]
        assert mocks.named(f"{name}-prepare").registration.dependencies == ()
        if config["kind"] != "pi":
            continue
        expected = {urn[f"{name}-prepare"]}
        if name in shape.chain and shape.chain.index(name) > 0:
            expected.add(urn[f"{shape.chain[shape.chain.index(name) - 1]}-await-boot"])
        assert set(mocks.named(f"{name}-reboot").registration.dependencies) == expected, name
        assert set(mocks.named(f"{name}-await-boot").registration.dependencies) == {urn[f"{name}-reboot"]}, name


@pytest.mark.parametrize("shape_name", sorted(SHAPES))
def test_reboot_and_await_steps(shape_name: str) -> None:
    shape = SHAPES[shape_name]
    ssh = shape.config.get("ssh", {})
    dials, reboot_timeout = ssh.get("dial_error_limit", 10), ssh.get("reboot_timeout", 300)
    quiet, _ = evaluate(shape)
    rebooting, outputs = evaluate(shape, RebootingMocks())
    for config in shape.config["nodes"]:
        name = config["name"]
        assert rebooting.named(f"{name}-prepare").inputs["connection"]["dialErrorLimit"] == dials
        if config["kind"] != "pi":
            continue
        reboot = rebooting.named(f"{name}-reboot")
        assert reboot.inputs["connection"]["dialErrorLimit"] == dials
        expected_gates = shape.gates.get(name, ())
        functions = {"etcd": "etcd_gate", "kubernetes": "kubernetes_control_plane_gate",
                     "kubernetes-worker": "kubernetes_worker_gate"}
        gates = (f"GATE_NAMES=({' '.join(expected_gates)})\n"
                 f"GATE_FUNCTIONS=({' '.join(functions[gate] for gate in expected_gates)})\n")
        assert gates in reboot.inputs["create"]
        # What the prepare step saw missing is in the reboot step's input: it runs again when that changes.
        assert f"\nPENDING_AT_PREPARE=(cgroup_enable=memory)\nPENDING_IN_BOOT={FAKE_FACTS['boot_id']}\n" in \
            reboot.inputs["create"]
        quiet_reboot = quiet.named(f"{name}-reboot").inputs["create"]
        assert "\nPENDING_AT_PREPARE=()\nPENDING_IN_BOOT=" in quiet_reboot and FAKE_FACTS["boot_id"] not in quiet_reboot
        # No reboot scheduled: the await step has nothing to run (no SSH session).
        assert quiet.named(f"{name}-await-boot").inputs.get("create") is None
        await_boot = rebooting.named(f"{name}-await-boot")
        assert f"PREVIOUS_BOOT_ID={FAKE_FACTS['boot_id']}\n" in await_boot.inputs["create"]
        assert gates in await_boot.inputs["create"]
        assert await_boot.inputs["connection"]["dialErrorLimit"] == max(dials, reboot_timeout // 5)
        # The node's facts are the new boot's when it rebooted.
        assert outputs["nodes"][name]["kernel"] == "after-reboot"


def test_node_outputs_are_the_codes_and_the_readme_lists_exactly_them() -> None:
    _, outputs = evaluate(SHAPES["quorum-chain"])
    for name, exported in outputs["nodes"].items():
        assert list(exported) == list(NODE_OUTPUTS), name
        for key, fact in NODE_OUTPUTS.items():
            assert exported[key] == (FAKE_FACTS[fact] if fact else next(
                n["address"] for n in SHAPES["quorum-chain"].config["nodes"] if n["name"] == name))
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    table = readme.split("<!-- node-outputs:start -->", 1)[1].split("<!-- node-outputs:end -->", 1)[0]
    documented = re.findall(r"^\| `([a-z_]+)` \|", table, flags=re.MULTILINE)
    assert documented == list(NODE_OUTPUTS)
