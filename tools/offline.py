"""Evaluates the real program (`__main__.py`) offline, under Pulumi mocks, and returns every resource it declares.

No Pulumi CLI, provider plugin, cluster or credential is involved: resources are recorded with their inputs.
It runs like `pulumi preview`: what only a deployment would know (command output, say) stays unknown, and
generated values (pulumi-random) are placeholders. Secret config values the stack file cannot hold are
passed in explicitly (for rendering, placeholders are enough: nothing is applied anywhere).
"""

from __future__ import annotations

import asyncio
import json
import runpy
import threading
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pulumi
import yaml
from pulumi.runtime import mocks as pulumi_mocks
from pulumi.runtime import settings as pulumi_settings
from pulumi.runtime import stack as pulumi_stack

ROOT = Path(__file__).resolve().parents[1]
SECRET_SIG = "4dabf18193072939515e22adb298388d"  # marks a secret value on the wire


def unwrap_secrets(value: Any) -> Any:
    if isinstance(value, dict):
        if value.get(SECRET_SIG) is not None and "value" in value:
            return unwrap_secrets(value["value"])
        return {key: unwrap_secrets(item) for key, item in value.items()}
    if isinstance(value, list):
        return [unwrap_secrets(item) for item in value]
    return value


def project_name() -> str:
    document = yaml.safe_load((ROOT / "Pulumi.yaml").read_text(encoding="utf-8"))
    return str(document["name"])


def stack_file(stack: str) -> Path:
    document = yaml.safe_load((ROOT / "Pulumi.yaml").read_text(encoding="utf-8"))
    return ROOT / str(document.get("stackConfigDir") or ".") / f"Pulumi.{stack}.yaml"


def stack_config(stack: str) -> dict[str, Any]:
    """The stack file's `config:` block; raises FileNotFoundError naming the file for an unknown stack."""
    path = stack_file(stack)
    if not path.exists():
        raise FileNotFoundError(f"no stack file {path.relative_to(ROOT)} for stack {stack!r}")
    document = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    return dict(document.get("config") or {})


@dataclass(frozen=True)
class OfflineResource:
    type: str
    name: str
    inputs: dict[str, Any]


@dataclass
class OfflineMocks(pulumi.runtime.Mocks):
    resources: list[OfflineResource] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str | None, dict[str, Any]]:
        with self._lock:
            self.resources.append(OfflineResource(args.typ, args.name, unwrap_secrets(dict(args.inputs))))
        outputs = dict(args.inputs)
        if args.typ.startswith("random:"):
            outputs["result"] = f"generated-at-deploy-{args.name}"
        return f"{args.name}-id", outputs

    def call(self, args: pulumi.runtime.MockCallArgs) -> tuple[dict[str, Any], list[tuple[str, str]] | None]:
        return {}, []  # no failures (Pulumi's mock monitor iterates this list)


def namespaced(config: Mapping[str, Any], project: str) -> dict[str, Any]:
    return {key if ":" in key else f"{project}:{key}": value for key, value in config.items()}


def run(mocks: pulumi.runtime.Mocks, config: Mapping[str, Any], *, stack: str,
        secret_keys: Iterable[str] = (), preview: bool = False, workers: int = 64,
        monitor: pulumi_mocks.MockMonitor | None = None,
        program: Callable[[], None] | None = None) -> dict[str, Any]:
    """Runs `__main__.py` (or `program`, a small Pulumi program for the harness's own tests) once under
    `mocks` with `config` (keys with or without namespace, `secret_keys` marked secret), waits for every
    RPC like the language host, and returns the resolved stack outputs. Raises what the program raised."""
    project = project_name()
    text = {key: value if isinstance(value, str) else json.dumps(value)
            for key, value in namespaced(config, project).items()}
    pulumi.runtime.set_all_config(text, [key if ":" in key else f"{project}:{key}" for key in secret_keys])
    pulumi_settings.set_root_resource(None)  # type: ignore[arg-type]
    pulumi_settings.SETTINGS.rpc_manager.clear()  # leftovers of an earlier failed run
    pulumi_settings.SETTINGS.outputs.clear()
    loop = asyncio.new_event_loop()
    # RPCs (and so mock calls) run in the loop's default executor: hosts must not queue behind a small pool.
    executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="pulumi-rpc")
    loop.set_default_executor(executor)
    asyncio.set_event_loop(loop)
    failed = False

    def report(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        # After a failed run, every output waiting on the failed resource holds the same error: it was
        # raised once already, so asyncio's "never retrieved" echoes of it are noise.
        if not (failed and str(context.get("message", "")).startswith("Future exception was never retrieved")):
            loop.default_exception_handler(context)

    loop.set_exception_handler(report)
    try:
        pulumi_mocks.set_mocks(mocks, project=project, stack=stack, preview=preview, monitor=monitor)
        loop.run_until_complete(pulumi_stack.run_pulumi_func(program or _run_program))
        exports = getattr(pulumi_settings.get_root_resource(), "outputs", {}) or {}
        resolved: Any = loop.run_until_complete(pulumi.Output.from_input(exports).future())
        return dict(resolved or {})
    except BaseException:
        failed = True
        raise
    finally:
        # Like the engine after a failed step: operations already under way finish before the run ends.
        executor.shutdown(wait=True)
        if failed:
            _cancel_leftovers(loop)
        pulumi_settings.set_root_resource(None)  # type: ignore[arg-type]
        loop.close()
        asyncio.set_event_loop(None)


def _cancel_leftovers(loop: asyncio.AbstractEventLoop) -> None:
    """After a failed run, outputs still waiting on the failed resource never resolve: cancel them before the
    loop closes (else asyncio reports each as "Task was destroyed but it is pending!")."""
    pending = [task for task in asyncio.all_tasks(loop) if not task.done()]
    for task in pending:
        task.cancel()
    if pending:
        loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))


def _run_program() -> None:
    runpy.run_path(str(ROOT / "__main__.py"), run_name="__main__")


def evaluate(stack: str, secrets: Mapping[str, str] | None = None,
             overrides: Mapping[str, Any] | None = None) -> list[OfflineResource]:
    """Runs the program for `stack` once, like a preview; `secrets` are set as secret config."""
    mocks = OfflineMocks()
    run(mocks, {**stack_config(stack), **(overrides or {}), **(secrets or {})}, stack=stack,
        secret_keys=list(secrets or {}), preview=True)
    return sorted(mocks.resources, key=lambda r: (r.type, r.name))
