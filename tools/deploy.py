"""`make up`, `make preview` and `make destroy`: one entry point that drives a stack through Pulumi's
Automation API.

    python -m tools.deploy preview [STACK]        # plan, with the policy pack
    python -m tools.deploy up [STACK] [--yes]     # plan with the policy pack, confirm, apply (pack again)
    python -m tools.deploy destroy [STACK] [--yes]
    python -m tools.deploy init [STACK]           # only create (or select) the stack, e.g. before
                                                  # `pulumi config set --secret ... --stack STACK`

What it does, in order:
1. the Pulumi CLI: the one on PATH when recent enough, else the pinned version installed into
   `.pulumi-cli/` (tools/pulumi_cli.py); no download possible -> one error naming what to install by hand;
2. the backend: the project's (`backend.url` in Pulumi.yaml, the local `.pulumi-state/`), or
   PULUMI_BACKEND_URL when set -- the same one every plain `pulumi` command uses;
3. the stack: created with the passphrase secrets provider when new (`up`/`preview`), selected otherwise;
   the passphrase comes from PULUMI_CONFIG_PASSPHRASE(_FILE), or is asked for on a terminal;
4. the policy pack (`policy/`, its own virtualenv `policy/venv` from policy/requirements.txt) on every
   preview and update, the engine's progress streamed as it runs;
5. after `up`, the stack outputs, secrets masked, and the command that shows them.
"""

from __future__ import annotations

import argparse
import getpass
import hashlib
import json
import os
import subprocess
import sys
import venv
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import yaml
from pulumi import automation as auto
from pulumi.automation.errors import CommandError, StackNotFoundError

from components.local import engine as docker_engine
from tools import pulumi_cli

ROOT = Path(__file__).resolve().parents[1]
POLICY_DIR = ROOT / "policy"
DEFAULT_STACK = "local"  # `make up`'s default (the Makefile's STACK): the cookbook on this machine's Docker
NAMESPACE = "cluster-cookbook"  # the project's config namespace (Pulumi.yaml's name)
PASSPHRASE_VARIABLES = ("PULUMI_CONFIG_PASSPHRASE", "PULUMI_CONFIG_PASSPHRASE_FILE")


class DeployError(Exception):
    """A problem the user can fix; the message says how. Printed without a traceback."""


def project_file() -> dict[str, Any]:
    return dict(yaml.safe_load((ROOT / "Pulumi.yaml").read_text(encoding="utf-8")))


def stack_file(stack: str) -> Path:
    return ROOT / str(project_file().get("stackConfigDir") or ".") / f"Pulumi.{stack}.yaml"


def shipped_stacks() -> list[str]:
    directory = stack_file("x").parent
    return sorted(path.name[len("Pulumi."):-len(".yaml")] for path in directory.glob("Pulumi.*.yaml"))


def backend_url(environ: Mapping[str, str]) -> str:
    """The backend every `pulumi` command here uses: PULUMI_BACKEND_URL, else Pulumi.yaml's backend.url."""
    return environ.get("PULUMI_BACKEND_URL") or str((project_file().get("backend") or {}).get("url") or "")


def ensure_local_backend(url: str) -> None:
    """A relative file:// backend resolves against the working directory (the repository root here); the
    directory must exist (it is in the clone; recreate it if someone removed it)."""
    if url.startswith("file://./"):
        (ROOT / url[len("file://./"):].split("?", 1)[0]).mkdir(parents=True, exist_ok=True)


def stack_settings(stack: str) -> dict[str, Any]:
    path = stack_file(stack)
    return dict(yaml.safe_load(path.read_text(encoding="utf-8")) or {}) if path.exists() else {}


def agent_env(stack: str) -> dict[str, str]:
    """`ssh.agent: false` in the stack file: hide the ssh-agent from the engine. pulumi-command offers the agent's
    keys whenever SSH_AUTH_SOCK is non-empty, whatever the connection says (provider/pkg/provider/remote/
    connection_unix.go), and the program refuses `agent: false` while it is set; empty counts as unset in both."""
    ssh = (stack_settings(stack).get("config") or {}).get(f"{project_file()['name']}:ssh")
    return {"SSH_AUTH_SOCK": ""} if isinstance(ssh, dict) and ssh.get("agent") is False else {}


def passphrase_env(stack: str, environ: Mapping[str, str], interactive: bool,
                   ask: Callable[[str], str] = getpass.getpass) -> dict[str, str]:
    """What the CLI needs to open the stack's secrets: nothing when a passphrase variable is set or the stack
    uses another secrets provider; else a passphrase typed on the terminal (twice for a new stack)."""
    settings = stack_settings(stack)
    provider = str(settings.get("secretsprovider") or "passphrase")
    if not provider.startswith("passphrase") or any(environ.get(name) for name in PASSPHRASE_VARIABLES):
        return {}
    if not interactive:
        raise DeployError(f"stack {stack!r} keeps its secrets encrypted with a passphrase: set "
                          "PULUMI_CONFIG_PASSPHRASE or PULUMI_CONFIG_PASSPHRASE_FILE (not a terminal, so it cannot "
                          "be asked for)")
    new = "encryptionsalt" not in settings
    passphrase = ask(f"Passphrase for stack {stack}'s secrets" + (" (new stack: choose one)" if new else "") + ": ")
    if new and ask("The same passphrase again: ") != passphrase:
        raise DeployError("the two passphrases differ; nothing was changed")
    return {"PULUMI_CONFIG_PASSPHRASE": passphrase}


def ensure_policy_venv(pack: Path = POLICY_DIR, log: Callable[[str], None] = print) -> None:
    """`pack`/venv (PulumiPolicy.yaml's virtualenv) with the pack's requirements.txt installed; rebuilt when
    that file changes."""
    requirements = pack / "requirements.txt"
    target = pack / "venv"
    stamp = target / ".requirements-sha256"
    digest = hashlib.sha256(requirements.read_bytes()).hexdigest()
    if stamp.exists() and stamp.read_text(encoding="utf-8") == digest:
        return
    log(f"Installing the policy pack's dependencies into {target} (once) ...")
    try:
        venv.EnvBuilder(with_pip=True, clear=True).create(target)
        subprocess.run([str(target / "bin" / "python"), "-m", "pip", "install", "--quiet",
                        "--disable-pip-version-check", "-r", str(requirements)], check=True)
    except (OSError, subprocess.CalledProcessError) as error:
        raise DeployError(f"could not install the policy pack's dependencies ({error}); run "
                          f"`python3 -m venv policy/venv && policy/venv/bin/pip install -r policy/requirements.txt`"
                          ) from error
    stamp.write_text(digest, encoding="utf-8")


def print_line(line: str) -> None:
    print(line, flush=True)


def print_error_line(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def confirm(question: str, assume_yes: bool, interactive: bool, ask: Callable[[str], str] = input) -> bool:
    if assume_yes:
        return True
    if not interactive:
        raise DeployError("not a terminal, so no one can confirm: pass --yes (`make up YES=1`) to apply")
    return ask(f"{question} [y/N] ").strip().lower() in ("y", "yes")


def has_changes(change_summary: Mapping[Any, int]) -> bool:
    return any(count for op, count in change_summary.items() if op != "same")


def masked_outputs(command: auto.PulumiCommand, stack: str, env: Mapping[str, str]) -> dict[str, Any]:
    """The stack's outputs as `pulumi stack output --json` prints them: every secret, also one nested in a
    structure, replaced by "[secret]"."""
    result = command.run(["stack", "output", "--json", "--stack", stack], str(ROOT), dict(env))
    return dict(json.loads(result.stdout or "{}"))


def format_outputs(stack: str, outputs: Mapping[str, Any], cli: str) -> str:
    if not outputs:
        return f"Stack {stack} has no outputs."
    lines = [f"Outputs of stack {stack} (secrets masked):"]
    for key in sorted(outputs):
        value = outputs[key]
        text = value if isinstance(value, str) else json.dumps(value, indent=2, sort_keys=True)
        lines.append(f"  {key}: " + text.replace("\n", "\n  "))
    lines.append(f"Show the secrets with: {cli} stack output --show-secrets --stack {stack}")
    return "\n".join(lines)


def check_docker_engine(stack: str, environ: Mapping[str, str]) -> None:
    """A stack on this machine's Docker engine (a `local` section) needs the engine before anything is installed
    or planned: its Unix socket answers `/_ping` (the program checks every transport again, through the Docker
    provider, before it declares anything)."""
    if f"{NAMESPACE}:local" not in (stack_settings(stack).get("config") or {}):
        return
    try:
        docker_engine.ping(environ)
    except docker_engine.EngineUnavailable as error:
        raise DeployError(f"stack {stack!r} runs on Docker: {error}") from None


def run(operation: str, stack_name: str, *, assume_yes: bool = False, interactive: bool | None = None,
        environ: Mapping[str, str] | None = None) -> int:
    environ = os.environ if environ is None else environ
    interactive = sys.stdin.isatty() if interactive is None else interactive
    if operation != "destroy" and not stack_file(stack_name).exists():
        raise DeployError(f"no stack file {stack_file(stack_name).relative_to(ROOT)} for stack {stack_name!r}; "
                          f"shipped stacks: {', '.join(shipped_stacks())}")
    if operation != "init":  # creating the stack needs no engine
        check_docker_engine(stack_name, environ)
    env = {"PULUMI_SKIP_UPDATE_CHECK": "true", **agent_env(stack_name),
           **passphrase_env(stack_name, environ, interactive)}
    try:
        command = pulumi_cli.locate()
    except pulumi_cli.CliUnavailable as error:
        raise DeployError(str(error)) from None
    cli = pulumi_cli.command_line(command)
    url = backend_url(environ)
    ensure_local_backend(url)
    print_line(f"Pulumi CLI: {cli} (v{command.version}); backend: {url or 'your `pulumi login`'}; "
               f"stack: {stack_name}")
    options = auto.LocalWorkspaceOptions(work_dir=str(ROOT), pulumi_command=command, env_vars=env,
                                         secrets_provider="passphrase")
    color = "always" if sys.stdout.isatty() else "never"
    streaming = False
    try:
        if operation == "destroy":
            try:
                stack = auto.select_stack(stack_name, work_dir=str(ROOT), opts=options)
            except StackNotFoundError:
                raise DeployError(f"stack {stack_name!r} does not exist in {url or 'the backend'}: nothing to "
                                  "destroy") from None
            streaming = True
            plan = stack.preview_destroy(on_output=print_line, on_error=print_error_line, color=color)
            if not has_changes(plan.change_summary):
                print_line(f"Stack {stack_name} holds no resources: nothing to destroy.")
                return 0
            if not confirm(f"Destroy every resource of stack {stack_name}?", assume_yes, interactive):
                print_line("Nothing was destroyed.")
                return 1
            stack.destroy(on_output=print_line, on_error=print_error_line, color=color)
            print_line(f"Stack {stack_name}'s resources are gone; its (empty) state remains "
                       f"(`{cli} stack rm {stack_name}` removes it).")
            return 0
        stack = auto.create_or_select_stack(stack_name, work_dir=str(ROOT), opts=options)
        if operation == "init":
            print_line(f"Stack {stack_name} is ready: `{cli} config set [--secret] KEY VALUE --stack {stack_name}` "
                       "stores its config.")
            return 0
        ensure_policy_venv()
        policy = [str(POLICY_DIR)]
        streaming = True
        preview = stack.preview(diff=True, policy_packs=policy, on_output=print_line, on_error=print_error_line,
                                color=color)
        if operation == "preview":
            return 0
        if not has_changes(preview.change_summary):
            print_line(f"Stack {stack_name} is up to date: nothing to apply.")
        elif not confirm(f"Apply these changes to stack {stack_name}?", assume_yes, interactive):
            print_line("Nothing was applied.")
            return 1
        else:
            stack.up(policy_packs=policy, on_output=print_line, on_error=print_error_line, color=color)
        print_line(format_outputs(stack_name, masked_outputs(command, stack_name, env), cli))
        return 0
    except CommandError as error:
        # Engine operations stream their output; stack selection and init do not, so show what they said.
        said = "" if streaming else ": " + " ".join(str(error).split(" stderr:", 1)[-1].split())
        step = operation if streaming else "stack select/init"
        raise DeployError(f"`pulumi {step}` failed for stack {stack_name}"
                          + (said or "; the output above says why")) from None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.deploy", description=__doc__.split("\n\n")[0])
    parser.add_argument("operation", choices=("up", "preview", "destroy", "init"))
    parser.add_argument("stack", nargs="?", default=DEFAULT_STACK, help=f"stack name (default: {DEFAULT_STACK})")
    parser.add_argument("--yes", action="store_true", help="apply or destroy without asking")
    args = parser.parse_args(argv)
    try:
        return run(args.operation, args.stack or DEFAULT_STACK, assume_yes=args.yes)
    except DeployError as error:
        print_error_line(f"error: {error}")
        return 1
    except KeyboardInterrupt:
        print_error_line("interrupted")
        return 130


if __name__ == "__main__":
    sys.exit(main())
