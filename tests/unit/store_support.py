"""Shared helpers for the object-store and policy tests: evaluated stacks, cached, and their manifests."""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import cache
from typing import Any

import pulumi
from pulumi.runtime import mocks as pulumi_mocks
from pulumi.runtime import settings as pulumi_settings
from pulumi.runtime import stack as pulumi_stack

from tests.harness.fixtures import FAKE_SECRETS
from tests.harness.program import RecordingMonitor, load_stack_config
from tests.harness.recording import Recorded, RecordingMocks, fake_random
from tools.offline import run, unwrap_secrets
from tools.render import is_kubernetes_object, manifest

STORE_STACK = "s3-store"
# The smallest valid store section besides the image (no public Pithos image exists: one must be named).
IMAGE = "registry.test/pithos:0.7.5"


@dataclass(frozen=True)
class WireOptions:
    """Resource options the engine receives with a registration (RegisterResourceRequest)."""

    protect: bool
    retain_on_delete: bool
    custom_timeouts: dict[str, str]


class OptionsMonitor(RecordingMonitor):
    """Also hands each registration's protect/retainOnDelete/customTimeouts to the mocks (`options`)."""

    def RegisterResource(self, request: Any) -> Any:
        options = getattr(self.mocks, "options", None)
        if options is not None and request.type != "pulumi:pulumi:Stack":
            timeouts = request.customTimeouts
            options[request.name] = WireOptions(
                protect=bool(request.protect), retain_on_delete=bool(request.retainOnDelete),
                custom_timeouts={key: getattr(timeouts, key) for key in ("create", "update", "delete")
                                 if getattr(timeouts, key)})
        return super().RegisterResource(request)


def docker_build_ref(inputs: Mapping[str, Any]) -> str:
    """pulumi-docker-build's `ref` after a push: "a single fully-qualified tag including the build's digest"
    (the Image resource's documented output); the digest here is derived from the inputs."""
    digest = hashlib.sha256(json.dumps(inputs, sort_keys=True, default=str).encode()).hexdigest()
    return f"{inputs['tags'][0]}@sha256:{digest}"


@dataclass
class StoreMocks(RecordingMocks):
    options: dict[str, WireOptions] = field(default_factory=dict)

    def fake_outputs(self, typ: str, inputs: dict[str, Any]) -> dict[str, Any]:
        outputs = super().fake_outputs(typ, inputs)
        if typ == "docker-build:index:Image" and inputs.get("push"):
            outputs["ref"] = docker_build_ref(unwrap_secrets(inputs))
        return outputs

    def wire(self, name: str) -> WireOptions:
        return self.options[name]


@cache
def evaluated(stack: str) -> tuple[StoreMocks, dict[str, Any]]:
    """A shipped stack with the fake secrets, evaluated once per test session: (recording, exports)."""
    return run_with(stack)


def run_with(stack: str = STORE_STACK, store: dict[str, Any] | None = None,
             secrets: dict[str, Any] | None = None, mocks: StoreMocks | None = None,
             extra: dict[str, Any] | None = None) -> tuple[StoreMocks, dict[str, Any]]:
    """Evaluates a stack, optionally with its `store` section replaced (the image is added when the section
    names neither image nor build), other secrets and `extra` config values."""
    secrets = FAKE_SECRETS if secrets is None else secrets
    config = {**load_stack_config(stack), **secrets, **(extra or {})}
    if store is not None:
        pithos = store.get("pithos") or {}
        if "image" not in pithos and "build" not in pithos:
            store = {**store, "pithos": {**pithos, "image": IMAGE}}
        config["cluster-cookbook:store"] = store
    mocks = mocks or StoreMocks()
    secret_keys = [*secrets, *(key for key in (extra or {}) if key.endswith("_password"))]
    exports = run(mocks, config, stack=stack, secret_keys=secret_keys, monitor=OptionsMonitor(mocks))
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

