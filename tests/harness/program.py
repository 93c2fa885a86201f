"""Evaluates `__main__.py` under Pulumi mocks, the way `pulumi up` would run it, and waits for it to finish."""

from __future__ import annotations

import asyncio
import json
import runpy
from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pulumi
import yaml
from google.protobuf import json_format
from pulumi.runtime import mocks as pulumi_mocks
from pulumi.runtime import settings as pulumi_settings
from pulumi.runtime import stack as pulumi_stack

SECRET_SIG = "4dabf18193072939515e22adb298388d"
ROOT = Path(__file__).resolve().parents[2]
PROJECT = "cluster-cookbook"
STACKS = ROOT / "stacks"


@dataclass(frozen=True)
class Registration:
    """What the engine learns from one RegisterResource call."""

    type: str
    name: str
    urn: str
    parent: str | None
    custom: bool
    dependencies: tuple[str, ...]
    additional_secret_outputs: tuple[str, ...]
    delete_before_replace: bool
    raw_inputs: dict[str, Any]  # as sent on the wire: secret values stay wrapped in SECRET_SIG objects


def stack_names() -> list[str]:
    return sorted(path.name[len("Pulumi."):-len(".yaml")] for path in STACKS.glob("Pulumi.*.yaml"))


def load_stack_config(stack: str) -> dict[str, Any]:
    """The `config:` block of a shipped stack file, keys with their namespace as in the file."""
    document = yaml.safe_load((STACKS / f"Pulumi.{stack}.yaml").read_text())
    return dict(document.get("config") or {})


def namespaced(config: Mapping[str, Any]) -> dict[str, Any]:
    return {key if ":" in key else f"{PROJECT}:{key}": value for key, value in config.items()}


def _config_strings(config: Mapping[str, Any]) -> dict[str, str]:
    """What the Pulumi engine hands a program: scalars as text, objects as JSON text."""
    return {key: value if isinstance(value, str) else json.dumps(value) for key, value in config.items()}


def run_program(mocks: pulumi.runtime.Mocks, config: Mapping[str, Any], *, stack: str = "test",
                secret_keys: Iterable[str] = (), preview: bool = False, workers: int = 64) -> dict[str, Any]:
    """Runs the program once with `config` (keys with or without namespace) and returns the stack's
    exported outputs, resolved (secrets unwrapped). Raises what the program raised."""
    full_config = namespaced(config)
    secrets = [key if ":" in key else f"{PROJECT}:{key}" for key in secret_keys]
    pulumi.runtime.set_all_config(_config_strings(full_config), secrets)
    pulumi_settings.set_root_resource(None)  # type: ignore[arg-type]
    pulumi_settings.SETTINGS.rpc_manager.clear()  # leftovers of an earlier failed run
    pulumi_settings.SETTINGS.outputs.clear()
    loop = asyncio.new_event_loop()
    # RPCs (and so mock calls) run in the loop's default executor: hosts must not queue behind a small pool.
    executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="pulumi-rpc")
    loop.set_default_executor(executor)
    asyncio.set_event_loop(loop)
    try:
        pulumi_mocks.set_mocks(mocks, project=PROJECT, stack=stack, preview=preview,
                               monitor=RecordingMonitor(mocks))
        loop.run_until_complete(pulumi_stack.run_pulumi_func(lambda: _run_main()))
        root = pulumi_settings.get_root_resource()
        exports = getattr(root, "outputs", {}) or {}
        resolved: Any = loop.run_until_complete(pulumi.Output.from_input(exports).future())
        return dict(resolved or {})
    finally:
        # Like the engine after a failed step: operations already under way finish before the run ends.
        executor.shutdown(wait=True)
        pulumi_settings.set_root_resource(None)  # type: ignore[arg-type]
        loop.close()
        asyncio.set_event_loop(None)


class RecordingMonitor(pulumi_mocks.MockMonitor):
    """Hands each registration's URN, parent, dependencies and raw (secret-marked) inputs to the mocks."""

    def RegisterResource(self, request: Any) -> Any:
        record = getattr(self.mocks, "record", None)
        if record is not None and request.type != "pulumi:pulumi:Stack":
            record(Registration(
                type=request.type,
                name=request.name,
                urn=self.make_urn(request.parent, request.type, request.name),
                parent=request.parent or None,
                custom=bool(request.custom),
                dependencies=tuple(request.dependencies),
                additional_secret_outputs=tuple(request.additionalSecretOutputs),
                delete_before_replace=bool(request.deleteBeforeReplace),
                raw_inputs=json_format.MessageToDict(request.object),
            ))
        return super().RegisterResource(request)


def _run_main() -> None:
    runpy.run_path(str(ROOT / "__main__.py"), run_name="__main__")
