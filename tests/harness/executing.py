"""Integration mocks: `command:*` resources really run (over SSH or locally), `tls:*` is emulated, and
state is kept between runs so a second run behaves like a second `pulumi up`.

Update rules follow pulumi-command's documentation and provider code:
- inputs unchanged: nothing runs, the previous outputs are returned;
- `triggers` changed: the resource is replaced (new `create` runs, then the old `delete`;
  old `delete` first when `deleteBeforeReplace` is set);
- other inputs changed: `update` runs, or `create` again when there is no `update`;
- a resource gone from the program: its `delete` runs after the program finished successfully
  (nothing is deleted after a failed run, like the engine).
`command:remote:CopyToRemote` uploads a file asset over SFTP on create and update (assets compare by
path and content hash, as the engine compares them) and deletes nothing, like the provider.
Emulated resource types other than commands (tls, random) are replaced on any input change, as their
providers mark every input "forces replacement".
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import paramiko
import pulumi

from tests.harness import ssh
from tests.harness.recording import RecordingMocks
from tools.offline import unwrap_secrets

T = TypeVar("T")
Emulator = Callable[[str, dict[str, Any]], dict[str, Any]]  # (type, inputs) -> outputs


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


def _previous_output_env(outputs: dict[str, Any], inputs: dict[str, Any]) -> dict[str, str]:
    if inputs.get("addPreviousOutputInEnv", True) is False:
        return {}
    env = {}
    if outputs.get("stdout"):
        env["PULUMI_COMMAND_STDOUT"] = outputs["stdout"]
    if outputs.get("stderr"):
        env["PULUMI_COMMAND_STDERR"] = outputs["stderr"]
    return env


def _run_remote(inputs: dict[str, Any], command: str, extra_env: dict[str, str]) -> dict[str, str]:
    environment = {**(inputs.get("environment") or {}), **extra_env}
    result = ssh.run(inputs["connection"], command, environment, inputs.get("stdin"))
    return {"stdout": result.stdout, "stderr": result.stderr}


def _run_local(inputs: dict[str, Any], command: str, extra_env: dict[str, str]) -> dict[str, str]:
    interpreter = inputs.get("interpreter") or ["/bin/sh", "-c"]
    env = {**os.environ, **(inputs.get("environment") or {}), **extra_env}
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
    source = inputs["source"]
    if not isinstance(source, dict) or "path" not in source:
        raise ssh.CommandFailed(f"CopyToRemote emulation handles file assets only, got {source!r}")
    transport = ssh.dial(inputs["connection"])
    try:
        sftp = paramiko.SFTPClient.from_transport(transport)
        if sftp is None:
            raise ssh.CommandFailed("ssh: cannot open an SFTP session")
        sftp.put(source["path"], inputs["remotePath"])
    finally:
        transport.close()


class ExecutingMocks(RecordingMocks):
    def __init__(self, state: StackState, emulators: dict[str, Emulator] | None = None):
        super().__init__()
        self.state = state
        self.emulators = emulators or {}
        self.operations: list[tuple[str, str]] = []  # (operation, resource name) in the order they ran
        self.timings: dict[str, tuple[float, float]] = {}  # command creates: (start, end), monotonic
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
            old = self.state.resources.get(urn)
            self._seen.append(urn)
        if old is not None and old.inputs == inputs:
            outputs = old.outputs
        elif old is None:
            outputs = self._create(args.typ, args.name, inputs, "create")
        elif self._replaces(args.typ, old.inputs, inputs):
            if registration.delete_before_replace:
                self._delete(old, "replace-delete")
                outputs = self._create(args.typ, args.name, inputs, "replace-create")
            else:
                outputs = self._create(args.typ, args.name, inputs, "replace-create")
                self._delete(old, "replace-delete")
        else:
            outputs = self._update(args.typ, args.name, old, inputs)
        with self._state_lock:
            self.state.resources[urn] = ResourceState(args.typ, args.name, inputs, outputs)
        # Inputs go back with their secret markers: a secret input stays a secret output.
        wire_outputs = {**outputs, **dict(args.inputs)}
        return f"{args.name}-id", wire_outputs

    def finish(self) -> None:
        """After a successful run: delete what the program no longer declares, newest first."""
        gone = [urn for urn in self.state.resources if urn not in self._seen]
        for urn in reversed(gone):
            self._delete(self.state.resources[urn], "delete")
            del self.state.resources[urn]

    # --- operations --------------------------------------------------------------------------------
    def _log(self, operation: str, name: str) -> None:
        with self._state_lock:
            self.operations.append((operation, name))

    @staticmethod
    def _replaces(typ: str, old: dict[str, Any], new: dict[str, Any]) -> bool:
        if typ in _RUNNERS or typ == _COPY:
            return old.get("triggers") != new.get("triggers")
        return True

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
        emulator = self.emulators.get(typ) or self.emulators.get(typ.split(":")[0])
        if emulator is None:
            raise RuntimeError(f"{name}: no emulation for resource type {typ}")
        return {**inputs, **emulator(typ, inputs)}

    def _update(self, typ: str, name: str, old: ResourceState, inputs: dict[str, Any]) -> dict[str, Any]:
        self._log("update", name)
        if typ == _COPY:
            self._guarded(typ, name, inputs, lambda: _upload(inputs))
            return dict(inputs)
        command = inputs.get("update") or inputs.get("create")
        if not command:  # the provider keeps the previous outputs when there is nothing to run
            return {**inputs, "stdout": old.outputs.get("stdout", ""), "stderr": old.outputs.get("stderr", "")}
        return {**inputs, **self._run(typ, name, inputs, command, _previous_output_env(old.outputs, inputs))}

    def _delete(self, old: ResourceState, operation: str) -> None:
        self._log(operation, old.name)
        if old.type in _RUNNERS and old.outputs.get("delete"):
            self._run(old.type, old.name, old.outputs, old.outputs["delete"],
                      _previous_output_env(old.outputs, old.outputs))

    def _run(self, typ: str, name: str, inputs: dict[str, Any], command: str | None,
             extra_env: dict[str, str]) -> dict[str, str]:
        if not command:
            return {"stdout": "", "stderr": ""}
        return self._guarded(typ, name, inputs, lambda: _RUNNERS[typ](inputs, command, extra_env))

    @staticmethod
    def _guarded(typ: str, name: str, inputs: dict[str, Any], operation: Callable[[], T]) -> T:
        try:
            return operation()
        except Exception as error:  # re-raised with the resource named, as the engine reports it
            target = inputs.get("connection", {}).get("host", "localhost")
            raise RuntimeError(f"{typ} {name!r} on {target} failed: {error}") from error
