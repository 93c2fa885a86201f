"""Integration mocks: `command:*` resources really run (over SSH or locally), `tls:*` is emulated, and
state is kept between runs so a second run behaves like a second `pulumi up`.

Update rules follow pulumi-command's documentation and provider code:
- inputs unchanged: nothing runs, the previous outputs are returned;
- `triggers` changed: the resource is replaced: the new `create` runs, and the old `delete` waits for the
  engine's delete phase (after every create and update of the run succeeded, in `finish()`; after a failed
  run the old resource stays "pending delete" in the state until a later run completes), or runs first when
  `deleteBeforeReplace` is set (pulumi/pulumi pkg/resource/deploy/step_generator.go: for a
  create-before-delete replacement "the delete step is generated 'later' on", in the delete phase);
- other inputs changed: `update` runs, or `create` again when there is no `update`; `update` and `delete`
  see the previous stdout/stderr as PULUMI_COMMAND_STDOUT/STDERR unless `addPreviousOutputInEnv` is false;
- a resource gone from the program: its `delete` runs after the program finished successfully.
`command:remote:CopyToRemote` uploads a file asset over SFTP on create and update (assets compare by
path and content hash, as the engine compares them) and deletes nothing, like the provider.
Emulated resource types other than commands (tls, random) are replaced on any input change, as their
providers mark inputs "forces replacement"; an emulator with a `plan` method (see `Planner`) decides
instead, and may replace a resource whose inputs did not change (pulumi-tls renews a certificate that way).

Failures follow the engine's step executor (pulumi/pulumi pkg/resource/deploy/step_executor.go: without
--continue-on-error, the first failed step cancels the deployment; steps already executing finish and no new
step starts): once an operation has failed, operations already under way finish, and every resource
registered afterwards fails with `StepNotStarted` naming it, its state entry left as it was. `finish()` deletes
nothing after a failed run (a failed step, or the program raised). Use a new ExecutingMocks for each run.
"""

from __future__ import annotations

import functools
import hashlib
import os
import posixpath
import stat
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol, TypeVar, runtime_checkable

import paramiko
import pulumi

from tests.harness import ssh
from tests.harness.recording import RecordingMocks, mark_secret_outputs
from tools.offline import unwrap_secrets

T = TypeVar("T")
Emulator = Callable[[str, dict[str, Any]], dict[str, Any]]  # (type, inputs) -> outputs
Change = Literal["same", "update", "replace"]


@runtime_checkable
class Planner(Protocol):
    """An emulator that plans like its provider: (type, stored inputs, stored outputs, new inputs) -> change."""

    def plan(self, typ: str, old_inputs: dict[str, Any], old_outputs: dict[str, Any],
             inputs: dict[str, Any]) -> Change: ...


@runtime_checkable
class Updater(Protocol):
    """An emulator whose provider updates in place: (type, stored outputs, new inputs) -> new outputs."""

    def update(self, typ: str, old_outputs: dict[str, Any], inputs: dict[str, Any]) -> dict[str, Any]: ...


@runtime_checkable
class Deleter(Protocol):
    """An emulator whose provider deletes what it created: (type, stored outputs)."""

    def delete(self, typ: str, old_outputs: dict[str, Any]) -> None: ...


ID_KEY = "__id"  # an emulator's outputs may carry the provider's resource id under this key


class StepNotStarted(RuntimeError):
    """A resource registered after a step failed: the engine starts no new step then."""


@dataclass
class ResourceState:
    type: str
    name: str
    inputs: dict[str, Any]
    outputs: dict[str, Any]


@dataclass
class StackState:
    """What a Pulumi backend would keep for one stack: resources by URN, in creation order."""

    resources: dict[str, ResourceState] = field(default_factory=dict)
    # Replaced resources whose delete waits for a completed run (the engine keeps them as `delete: true`).
    pending_deletes: list[ResourceState] = field(default_factory=list)


def _previous_output_env(outputs: dict[str, Any], inputs: dict[str, Any]) -> dict[str, str]:
    if inputs.get("addPreviousOutputInEnv", True) is False:
        return {}
    env = {}
    if outputs.get("stdout"):
        env["PULUMI_COMMAND_STDOUT"] = outputs["stdout"]
    if outputs.get("stderr"):
        env["PULUMI_COMMAND_STDERR"] = outputs["stderr"]
    return env


def _run_remote(inputs: dict[str, Any], command: str, previous_output: dict[str, str]) -> dict[str, str]:
    result = ssh.run(inputs["connection"], command, inputs.get("environment"), inputs.get("stdin"),
                     previous_output=previous_output)
    return {"stdout": result.stdout, "stderr": result.stderr}


def _run_local(inputs: dict[str, Any], command: str, previous_output: dict[str, str]) -> dict[str, str]:
    interpreter = inputs.get("interpreter") or ["/bin/sh", "-c"]
    env = {**os.environ, **(inputs.get("environment") or {}), **previous_output}
    done = subprocess.run([*interpreter, command], input=inputs.get("stdin") or "", text=True,
                          capture_output=True, env=env, cwd=inputs.get("dir") or None, check=False)
    if done.returncode != 0:
        raise ssh.CommandFailed(f"exit status {done.returncode}: running {command!r}:\n"
                                f"{done.stdout}{done.stderr}")
    return {"stdout": done.stdout.removesuffix("\n"), "stderr": done.stderr.removesuffix("\n")}


_RUNNERS = {"command:remote:Command": _run_remote, "command:local:Command": _run_local}
_COPY = "command:remote:CopyToRemote"


def _asset_identity(value: Any) -> Any:
    """A file asset as the engine sees it: its path and the hash of its content."""
    if isinstance(value, pulumi.FileAsset):
        path = str(value.path)
        return {"path": path, "sha256": hashlib.sha256(Path(path).read_bytes()).hexdigest()}
    return value


def _upload(inputs: dict[str, Any]) -> None:
    """CopyToRemote of a file asset, as pulumi-command v1.2.1 copyController.go `sftpCopy` does it: onto an
    existing directory -> into it under the file's name; onto a missing path -> its parent directories created
    (MkdirAll), then the file; onto an existing file -> overwritten."""
    source = inputs["source"]
    if not isinstance(source, dict) or "path" not in source:
        raise ssh.CommandFailed(f"CopyToRemote emulation handles file assets only, got {source!r}")
    transport = ssh.dial(inputs["connection"])
    try:
        sftp = paramiko.SFTPClient.from_transport(transport)
        if sftp is None:
            raise ssh.CommandFailed("ssh: cannot open an SFTP session")
        sftp.put(source["path"], _sftp_destination(sftp, source["path"], inputs["remotePath"]))
    finally:
        transport.close()


def _sftp_destination(sftp: paramiko.SFTPClient, source: str, remote: str) -> str:
    try:
        if stat.S_ISDIR(sftp.stat(remote).st_mode or 0):
            return posixpath.join(remote, Path(source).name)
        return remote
    except FileNotFoundError:
        missing: list[str] = []
        parent = posixpath.dirname(remote)
        while parent not in ("", "/"):
            try:
                sftp.stat(parent)
                break
            except FileNotFoundError:
                missing.append(parent)
                parent = posixpath.dirname(parent)
        for directory in reversed(missing):
            sftp.mkdir(directory)
        return remote


class ExecutingMocks(RecordingMocks):
    def __init__(self, state: StackState, emulators: dict[str, Emulator] | None = None):
        super().__init__()
        self.state = state
        self.emulators = emulators or {}
        self.operations: list[tuple[str, str]] = []  # (operation, resource name) in the order they ran
        self.timings: dict[str, tuple[float, float]] = {}  # command creates: (start, end), monotonic
        self.errors: list[str] = []  # every error a resource got, in order; the first is the step that failed
        self._failed: str | None = None  # "type 'name'" of the first failed step
        self._failure: Exception | None = None  # its error
        self._program_failed = False
        self._seen: list[str] = []
        self._state_lock = threading.Lock()

    # --- what the engine does per registration -------------------------------------------------------
    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str | None, dict[str, Any]]:
        registration = self.remember(args)
        if not registration.custom:
            return None, dict(args.inputs)
        urn = registration.urn
        inputs = {key: _asset_identity(value) for key, value in unwrap_secrets(dict(args.inputs)).items()}
        with self._state_lock:
            if self._failed is not None:
                message = f"{args.typ} {args.name!r} not started: an earlier step failed ({self._failed})"
                self.errors.append(message)
                raise StepNotStarted(message)
            old = self.state.resources.get(urn)
            self._seen.append(urn)
        outputs = self._step(f"{args.typ} {args.name!r}", lambda: self._apply(args.typ, args.name, old, inputs,
                                                                            registration.delete_before_replace))
        with self._state_lock:
            self.state.resources[urn] = ResourceState(args.typ, args.name, inputs, outputs)
        # Inputs go back with their secret markers: a secret input stays a secret output; the outputs the
        # registration names in additionalSecretOutputs are wrapped, as the engine does.
        wire_outputs = {**outputs, **dict(args.inputs)}
        resource_id = str(outputs.get(ID_KEY) or f"{args.name}-id")
        return resource_id, mark_secret_outputs(wire_outputs, registration)

    def run_failed(self, error: BaseException) -> BaseException:
        """Called by `program.run_program` when the run raised `error`: the run has no delete phase. Returns
        what the run failed of: the first failed step's error (the SDK re-raises the last failed
        registration's), as the engine reports it."""
        self._program_failed = True
        return self._failure or error

    def finish(self) -> None:
        """After a successful run, the engine's delete phase: replaced resources (newest first), then what the
        program no longer declares, newest first. After a failed run nothing is deleted, like the engine (its
        delete phase follows a program that completed); replaced resources stay pending until then."""
        if self._failed is not None or self._program_failed:
            return
        while self.state.pending_deletes:
            replaced = self.state.pending_deletes[-1]
            self._step(f"{replaced.type} {replaced.name!r}",
                       functools.partial(self._delete, replaced, "replace-delete"))
            self.state.pending_deletes.pop()
        gone = [urn for urn in self.state.resources if urn not in self._seen]
        for urn in reversed(gone):
            old = self.state.resources[urn]
            self._step(f"{old.type} {old.name!r}", functools.partial(self._delete, old, "delete"))
            del self.state.resources[urn]

    # --- steps -------------------------------------------------------------------------------------
    def _step(self, step: str, operation: Callable[[], T]) -> T:
        try:
            return operation()
        except Exception as error:
            with self._state_lock:
                self.errors.append(str(error))
                if self._failed is None:
                    self._failed, self._failure = step, error
            raise

    def _apply(self, typ: str, name: str, old: ResourceState | None, inputs: dict[str, Any],
               delete_before_replace: bool) -> dict[str, Any]:
        if old is None:
            return self._create(typ, name, inputs, "create")
        change = self._plan(typ, old, inputs)
        if change == "same":
            return old.outputs
        if change == "update":
            return self._update(typ, name, old, inputs)
        if delete_before_replace:
            self._delete(old, "replace-delete")
            return self._create(typ, name, inputs, "replace-create")
        outputs = self._create(typ, name, inputs, "replace-create")
        with self._state_lock:
            self.state.pending_deletes.append(old)
        return outputs

    def _plan(self, typ: str, old: ResourceState, inputs: dict[str, Any]) -> Change:
        if typ in _RUNNERS or typ == _COPY:
            if old.inputs == inputs:
                return "same"
            return "replace" if old.inputs.get("triggers") != inputs.get("triggers") else "update"
        emulator = self._emulator(typ)
        if isinstance(emulator, Planner):
            return emulator.plan(typ, old.inputs, old.outputs, inputs)
        return "same" if old.inputs == inputs else "replace"

    def _emulator(self, typ: str) -> Emulator | None:
        return self.emulators.get(typ) or self.emulators.get(typ.split(":")[0])

    # --- operations --------------------------------------------------------------------------------
    def _log(self, operation: str, name: str) -> None:
        with self._state_lock:
            self.operations.append((operation, name))

    def _create(self, typ: str, name: str, inputs: dict[str, Any], operation: str) -> dict[str, Any]:
        self._log(operation, name)
        if typ == _COPY:
            self._guarded(typ, name, inputs, lambda: _upload(inputs))
            return dict(inputs)
        if typ in _RUNNERS:
            started = time.monotonic()
            result = self._run(typ, name, inputs, inputs.get("create"), {})
            self.timings[name] = (started, time.monotonic())
            return {**inputs, **result}
        emulator = self._emulator(typ)
        if emulator is None:
            raise RuntimeError(f"{name}: no emulation for resource type {typ}")
        return {**inputs, **self._guarded(typ, name, inputs, lambda: emulator(typ, inputs))}

    def _update(self, typ: str, name: str, old: ResourceState, inputs: dict[str, Any]) -> dict[str, Any]:
        self._log("update", name)
        if typ == _COPY:
            self._guarded(typ, name, inputs, lambda: _upload(inputs))
            return dict(inputs)
        if typ not in _RUNNERS:  # an emulated in-place update: the provider's, else new inputs + kept outputs
            emulator = self._emulator(typ)
            if isinstance(emulator, Updater):
                return {**inputs, **self._guarded(typ, name, inputs, lambda: emulator.update(typ, old.outputs, inputs))}
            return {**old.outputs, **inputs}
        command = inputs.get("update") or inputs.get("create")
        if not command:  # the provider keeps the previous outputs when there is nothing to run
            return {**inputs, "stdout": old.outputs.get("stdout", ""), "stderr": old.outputs.get("stderr", "")}
        return {**inputs, **self._run(typ, name, inputs, command, _previous_output_env(old.outputs, inputs))}

    def _delete(self, old: ResourceState, operation: str) -> None:
        self._log(operation, old.name)
        if old.type in _RUNNERS and old.outputs.get("delete"):
            self._run(old.type, old.name, old.outputs, old.outputs["delete"],
                      _previous_output_env(old.outputs, old.outputs))
        emulator = None if old.type in _RUNNERS or old.type == _COPY else self._emulator(old.type)
        if isinstance(emulator, Deleter):
            self._guarded(old.type, old.name, old.outputs, lambda: emulator.delete(old.type, old.outputs))

    def _run(self, typ: str, name: str, inputs: dict[str, Any], command: str | None,
             previous_output: dict[str, str]) -> dict[str, str]:
        if not command:
            return {"stdout": "", "stderr": ""}
        return self._guarded(typ, name, inputs, lambda: _RUNNERS[typ](inputs, command, previous_output))

    @staticmethod
    def _guarded(typ: str, name: str, inputs: dict[str, Any], operation: Callable[[], T]) -> T:
        try:
            return operation()
        except Exception as error:  # re-raised with the resource named, as the engine reports it
            target = inputs.get("connection", {}).get("host", "localhost")
            raise RuntimeError(f"{typ} {name!r} on {target} failed: {error}") from error
