"""Evaluates `__main__.py` under Pulumi mocks (via `tools.offline.run`), recording what the engine sees."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import pulumi
from google.protobuf import json_format
from pulumi.runtime import mocks as pulumi_mocks

from tools.offline import ROOT, SECRET_SIG, run, stack_config

__all__ = ["ROOT", "SECRET_SIG", "Registration", "load_stack_config", "run_program", "secret", "stack_names"]
SECRET_VALUE = "1b47061264138c4ac30d75fd1eb44270"  # the wire marker of a secret value (with SECRET_SIG as key)
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
    protect: bool = False
    retain_on_delete: bool = False
    custom_timeouts: tuple[tuple[str, str], ...] = ()  # (create|update|delete, duration) that were set
    ignore_changes: tuple[str, ...] = ()
    replace_on_changes: tuple[str, ...] = ()


def secret(value: Any) -> dict[str, Any]:
    """`value` as a secret on the wire, as the engine sends it."""
    return {SECRET_SIG: SECRET_VALUE, "value": value}


def stack_names() -> list[str]:
    return sorted(path.name[len("Pulumi."):-len(".yaml")] for path in STACKS.glob("Pulumi.*.yaml"))


def load_stack_config(stack: str) -> dict[str, Any]:
    """The `config:` block of a shipped stack file, keys with their namespace as in the file."""
    return stack_config(stack)


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
                protect=bool(request.protect),
                retain_on_delete=bool(request.retainOnDelete),
                custom_timeouts=tuple((key, getattr(request.customTimeouts, key))
                                      for key in ("create", "update", "delete")
                                      if getattr(request.customTimeouts, key)),
                ignore_changes=tuple(request.ignoreChanges),
                replace_on_changes=tuple(request.replaceOnChanges),
            ))
        return super().RegisterResource(request)


def run_program(mocks: pulumi.runtime.Mocks, config: Mapping[str, Any], *, stack: str = "test",
                secret_keys: Iterable[str] = (), preview: bool = False, workers: int = 64,
                program: Callable[[], None] | None = None) -> dict[str, Any]:
    """Runs the program (`__main__.py`, or `program` when given) once with `config` and returns the resolved
    stack outputs; the mocks see every registration (`record`) before `new_resource`. When the run raises, the
    mocks' `run_failed(error)` (if any) says what to raise instead; else raises what the program raised."""
    try:
        return run(mocks, config, stack=stack, secret_keys=secret_keys, preview=preview, workers=workers,
                   monitor=RecordingMonitor(mocks), program=program)
    except BaseException as error:
        run_failed = getattr(mocks, "run_failed", None)
        failure = run_failed(error) if run_failed is not None else error
        if failure is error or not isinstance(error, Exception):
            raise
        raise failure from None
