"""A stand-in `pulumi` executable for tests of tools.deploy: it records every call (argv, working directory,
the environment variables that matter) and answers the calls the Automation API makes the way the CLI does.

What it reproduces, from pulumi's Python Automation API (pulumi/automation, SDK 3.272):
- `pulumi version` prints `v<version>` (PulumiCommand checks it against the minimum it was given);
- every other call starts with `--non-interactive` (PulumiCommand.run) and ends with `--stack NAME`;
- `stack select --stack NAME` of a missing stack fails with "no stack named 'NAME' found" on stderr (errors.py
  maps that text to StackNotFoundError, which create_or_select answers with `stack init`);
- preview and `destroy --preview-only` must deliver a summary event to `--event-log` (a `tcp://` address of
  the gRPC Events service for CLIs newer than 3.205, else a file), or the SDK raises "summary event never
  found";
- `up` is followed by `stack output --json` with and without `--show-secrets` and by `stack history`.
State (existing stacks, their outputs) lives in the JSON file $FAKE_PULUMI_STATE; $FAKE_PULUMI_CHANGES sets the
planned resource changes, $FAKE_PULUMI_FAIL names a subcommand that fails.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

RECORDED_ENV = ("PULUMI_CONFIG_PASSPHRASE", "PULUMI_CONFIG_PASSPHRASE_FILE", "PULUMI_BACKEND_URL",
                "PULUMI_AUTOMATION_API", "PULUMI_SKIP_UPDATE_CHECK", "SSH_AUTH_SOCK")
OUTPUTS = {"nodes": {"pi-a": {"address": "192.0.2.21"}}, "etcd": {"client_key": "FAKE-SECRET-KEY"}}
SECRET_OUTPUTS = ("etcd",)


def install(directory: Path, log: Path, state: Path, version: str = "3.272.0") -> Path:
    """Writes `directory/pulumi` (running this module with the current interpreter); returns `directory`."""
    directory.mkdir(parents=True, exist_ok=True)
    script = directory / "pulumi"
    script.write_text(f"""#!/bin/sh
FAKE_PULUMI_LOG={log} FAKE_PULUMI_STATE={state} FAKE_PULUMI_VERSION={version} \\
exec {sys.executable} {Path(__file__).resolve()} "$@"
""")
    script.chmod(0o755)
    return directory


def calls(log: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


def _option(args: list[str], name: str) -> str | None:
    return args[args.index(name) + 1] if name in args and args.index(name) + 1 < len(args) else None


def _send_events(target: str, events: list[dict[str, Any]]) -> None:
    if target.startswith("tcp://"):
        import grpc
        from pulumi.runtime.proto import events_pb2, events_pb2_grpc

        with grpc.insecure_channel(target[len("tcp://"):]) as channel:
            stub = events_pb2_grpc.EventsStub(channel)
            stub.StreamEvents(iter([events_pb2.EventRequest(event=json.dumps(event)) for event in events]))
    else:
        with open(target, "a", encoding="utf-8") as file:
            file.writelines(json.dumps(event) + "\n" for event in events)


def _summary(changes: dict[str, int]) -> dict[str, Any]:
    return {"sequence": 1, "timestamp": 0, "summaryEvent": {
        "maybeCorrupt": False, "durationSeconds": 0, "resourceChanges": changes, "PolicyPacks": {}}}


def main(argv: list[str]) -> int:
    log, state_path = Path(os.environ["FAKE_PULUMI_LOG"]), Path(os.environ["FAKE_PULUMI_STATE"])
    with log.open("a", encoding="utf-8") as file:
        file.write(json.dumps({"argv": argv, "cwd": os.getcwd(),
                               "env": {k: os.environ[k] for k in RECORDED_ENV if k in os.environ}}) + "\n")
    if argv == ["version"]:
        print(f"v{os.environ['FAKE_PULUMI_VERSION']}")
        return 0
    args = argv[1:] if argv[:1] == ["--non-interactive"] else argv
    state = json.loads(state_path.read_text()) if state_path.exists() else {"stacks": {}}
    stacks: dict[str, Any] = state["stacks"]
    stack = _option(args, "--stack")
    changes = json.loads(os.environ.get("FAKE_PULUMI_CHANGES", '{"create": 2}'))
    verb = " ".join(args[:2])
    if os.environ.get("FAKE_PULUMI_FAIL") and os.environ["FAKE_PULUMI_FAIL"] in (args[0], verb):
        print(f"error: {args[0]} failed: the fake was told to fail", file=sys.stderr)
        return 255
    if verb == "stack select":
        if stack not in stacks:
            print(f"error: no stack named '{stack}' found", file=sys.stderr)
            return 255
        return 0
    if verb == "stack init":
        name = args[2]
        if name in stacks:
            print(f"error: stack '{name}' already exists", file=sys.stderr)
            return 255
        stacks[name] = {"outputs": {}}
    elif verb == "stack output":
        outputs = stacks[str(stack)]["outputs"]
        shown = outputs if "--show-secrets" in args else {
            key: "[secret]" if key in SECRET_OUTPUTS else value for key, value in outputs.items()}
        print(json.dumps(shown))
    elif verb == "stack history":
        print(json.dumps([{"kind": "update", "startTime": "2026-11-25T10:00:00.000Z", "message": "",
                           "environment": {}, "config": {}, "result": "succeeded",
                           "endTime": "2026-11-25T10:01:00.000Z", "version": 1, "resourceChanges": changes}]))
    elif args[0] == "preview" or (args[0] == "destroy" and "--preview-only" in args):
        print(f"Previewing {'destroy' if args[0] == 'destroy' else 'update'} ({stack}):")
        print(f"Resources: {changes}")
        _send_events(str(_option(args, "--event-log")), [_summary(changes)])
    elif args[0] == "up":
        print(f"Updating ({stack}):")
        stacks[str(stack)]["outputs"] = OUTPUTS
    elif args[0] == "destroy":
        print(f"Destroying ({stack}):")
        stacks[str(stack)]["outputs"] = {}
    else:
        print(f"fake pulumi: unhandled call {argv}", file=sys.stderr)
        return 2
    state_path.write_text(json.dumps(state))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
