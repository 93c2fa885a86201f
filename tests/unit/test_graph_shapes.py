"""Whole-graph rules over every graph shape the program can produce (tests/unit/graph_shapes.py) and every
shipped stack: each custom resource belongs to a component that names it, and no secret is ever plain.

Secrets checked: the fake credentials of the test config (SSH key, kubeconfig, cloud keys, registry password:
all carry FAKE_MARKER) and every value a generated-secret resource (pulumi-random) produced in the run.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.harness.fixtures import FAKE_SECRETS, evaluate_stack
from tests.harness.program import SECRET_SIG, run_program, stack_names
from tests.harness.recording import RecordingMocks, plain_strings
from tests.unit.graph_shapes import SHAPES

FAKE_MARKER = "FAKE-KEY-FOR-TESTS-ONLY"
EXTRA_SECRETS = {"registry_password": f"{FAKE_MARKER}-registry"}
CASES = [f"stack:{name}" for name in stack_names()] + [f"shape:{name}" for name in sorted(SHAPES)]


def evaluate(case: str, directory: Path) -> RecordingMocks:
    kind, name = case.split(":", 1)
    if kind == "stack":
        return evaluate_stack(name)
    config = SHAPES[name](directory)
    secrets = {**FAKE_SECRETS, **EXTRA_SECRETS}
    for key in ("kubeconfig", "cloud_api_key", "cloud_api_secret", "registry_password"):
        if not _uses(config, key):
            secrets.pop(key, None)
    mocks = RecordingMocks()
    run_program(mocks, {**config, **secrets}, stack=f"shape-{name}", secret_keys=list(secrets))
    return mocks


def _uses(config: dict[str, Any], key: str) -> bool:
    """Whether a shape's config calls for a credential (a store on an existing cluster, a cloud, a build)."""
    store = config.get("store") or {}
    return {
        "kubeconfig": bool(store) and "kubernetes" not in config and "local" not in config,
        "cloud_api_key": "cloud" in config,
        "cloud_api_secret": "cloud" in config,
        "registry_password": "build" in (store.get("pithos") or {}),
    }[key]


@pytest.fixture(params=CASES)
def graph(request: pytest.FixtureRequest, tmp_path: Path) -> RecordingMocks:
    return evaluate(request.param, tmp_path)


def test_every_custom_resource_belongs_to_a_component_that_names_it(graph: RecordingMocks) -> None:
    components = {r.urn: r for r in graph.resources if not r.registration.custom}
    assert components, "no component at all"
    orphans = [r.name for r in graph.resources if r.registration.custom and r.parent not in components]
    assert orphans == [], f"custom resources without a component parent: {orphans}"
    for resource in graph.resources:
        owner = components.get(resource.parent or "")
        if owner is None:
            continue  # a top-level component
        assert resource.name.startswith(f"{owner.name}-"), (resource.name, owner.name)
        assert owner.type in resource.urn and f"${resource.type}::" in resource.urn, resource.urn
        assert owner.type.startswith("cookbook:"), owner.type


def test_no_secret_is_ever_plain(graph: RecordingMocks) -> None:
    generated = [value for value in graph.generated_secrets if len(value) >= 8]
    leaks = []
    for resource in graph.resources:
        for text in plain_strings(resource.registration.raw_inputs):
            if FAKE_MARKER in text or any(value in text for value in generated):
                leaks.append(resource.name)
                break
    assert leaks == []


def test_commands_fed_on_stdin_log_nothing_and_keep_their_output_secret(graph: RecordingMocks) -> None:
    """stdin carries key material (certificates' keys, tokens, passwords): such a step's output may echo it."""
    for resource in graph.of_type("command:remote:Command"):
        stdin = resource.registration.raw_inputs.get("stdin")
        if not stdin:
            continue
        assert isinstance(stdin, dict) and SECRET_SIG in stdin, f"{resource.name}: stdin is not a secret"
        assert resource.inputs.get("logging") == "none", f"{resource.name} logs its output"
        assert {"stdout", "stderr"} <= set(resource.registration.additional_secret_outputs), resource.name


def test_the_shapes_are_really_different_graphs(tmp_path: Path) -> None:
    """A shape that silently evaluated to the same graph as its stack would check nothing new."""
    signatures = set()
    for name in sorted(SHAPES):
        (tmp_path / name).mkdir()
        mocks = evaluate(f"shape:{name}", tmp_path / name)
        signatures.add(tuple(sorted(r.name for r in mocks.resources)))
    assert len(signatures) == len(SHAPES)
