"""Shared helpers for the object-store and policy tests: evaluated stacks, cached, and their manifests."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import cache
from typing import Any

import pulumi
from pulumi.runtime import mocks as pulumi_mocks
from pulumi.runtime import settings as pulumi_settings
from pulumi.runtime import stack as pulumi_stack

from tests.harness.fixtures import FAKE_SECRETS
from tests.harness.program import load_stack_config, run_program
from tests.harness.recording import Recorded, RecordingMocks, fake_random
from tools.render import is_kubernetes_object, manifest

STORE_STACK = "s3-store"


@cache
def evaluated(stack: str) -> tuple[RecordingMocks, dict[str, Any]]:
    """A shipped stack with the fake secrets, evaluated once per test session: (recording, exports)."""
    return run_with(stack)


def run_with(stack: str = STORE_STACK, store: dict[str, Any] | None = None,
             secrets: dict[str, Any] | None = None,
             mocks: RecordingMocks | None = None) -> tuple[RecordingMocks, dict[str, Any]]:
    """Evaluates a stack, optionally with its `store` section replaced and other secrets."""
    secrets = FAKE_SECRETS if secrets is None else secrets
    config = {**load_stack_config(stack), **secrets}
    if store is not None:
        config["cluster-cookbook:store"] = store
    mocks = mocks or RecordingMocks()
    exports = run_program(mocks, config, stack=stack, secret_keys=list(secrets))
    return mocks, exports


def kubernetes_objects(mocks: RecordingMocks) -> list[tuple[Recorded, dict[str, Any]]]:
    """Every Kubernetes object a run declared, as the manifest a cluster (or `make render`) would get."""
    return [(r, manifest(r.type, r.inputs, redact=False)) for r in mocks.resources if is_kubernetes_object(r.type)]


def kinds(mocks: RecordingMocks) -> dict[str, dict[str, Any]]:
    """`Kind/name` -> manifest."""
    return {f"{doc['kind']}/{doc['metadata']['name']}": doc for _, doc in kubernetes_objects(mocks)}


def pod_template(doc: dict[str, Any]) -> dict[str, Any]:
    template: dict[str, Any] = doc["spec"]["template"]["spec"]
    return template


@dataclass
class ComponentMocks(pulumi.runtime.Mocks):
    """Records each resource's MockResourceArgs (type, name, inputs, provider) for component-level tests."""

    resources: list[pulumi.runtime.MockResourceArgs] = field(default_factory=list)

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str | None, dict[str, Any]]:
        self.resources.append(args)
        outputs = dict(args.inputs)
        if args.typ.startswith("random:"):
            outputs.update(fake_random(args.name, args.inputs))
        return f"{args.name}-id", outputs

    def call(self, args: pulumi.runtime.MockCallArgs) -> tuple[dict[str, Any], list[tuple[str, str]] | None]:
        return {}, None

    def named(self, name: str) -> pulumi.runtime.MockResourceArgs:
        matches = [r for r in self.resources if r.name == name]
        assert len(matches) == 1, f"expected one resource named {name!r}, found {len(matches)}"
        return matches[0]


def run_components(build: Callable[[], Mapping[str, pulumi.Output[Any]]]
                   ) -> tuple[ComponentMocks, dict[str, tuple[Any, bool]]]:
    """Runs `build` as a program under mocks; returns the recording and each returned Output's
    (value, is_secret)."""
    mocks = ComponentMocks()
    pulumi.runtime.set_all_config({}, [])
    pulumi_settings.set_root_resource(None)  # type: ignore[arg-type]
    pulumi_settings.SETTINGS.rpc_manager.clear()
    pulumi_settings.SETTINGS.outputs.clear()
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    built: dict[str, pulumi.Output[Any]] = {}
    try:
        pulumi_mocks.set_mocks(mocks, project="cluster-cookbook", stack="unit", preview=False)
        loop.run_until_complete(pulumi_stack.run_pulumi_func(lambda: built.update(build())))

        async def resolve() -> dict[str, tuple[Any, bool]]:
            return {key: (await output.future(), await output.is_secret()) for key, output in built.items()}

        return mocks, loop.run_until_complete(resolve())
    finally:
        pulumi_settings.set_root_resource(None)  # type: ignore[arg-type]
        loop.close()
        asyncio.set_event_loop(None)
