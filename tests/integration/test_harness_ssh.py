"""The harness's SSH connection against a real sshd (a booted Debian test host, default `AcceptEnv LANG LC_*`).

References: pulumi/pulumi-command v1.2.1 provider/pkg/provider/remote/commandOutputs.go (`run`,
`logAndWrapSetenvErr`), connection.go (`SSHConfig`, `Annotate`), connection_unix.go; golang.org/x/crypto
v0.48.0 ssh/session.go (`Session.Setenv` sends "env" with wantReply=true; a refusal is "ssh: setenv failed"),
ssh/client_auth.go (`clientAuthenticate`), ssh/client.go (`Dial`: `ClientConfig.Timeout` bounds the TCP dial).
"""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pulumi
import pulumi_command as command
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from tests.harness import ssh
from tests.harness.executing import ExecutingMocks, StackState
from tests.harness.program import run_program
from tests.infra.hosts import HostFleet
from tests.integration.conftest import boot_fleet

pytestmark = pytest.mark.integration
HOST = "hs1"


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HostFleet]:
    yield from boot_fleet([HOST], tmp_path_factory)


@pytest.fixture(autouse=True)
def no_ambient_agent(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SSH_AUTH_SOCK", raising=False)


def connection(fleet: HostFleet, **settings: Any) -> dict[str, Any]:
    host = fleet[HOST]
    conn: dict[str, Any] = {"host": host.address, "port": host.port, "hostKey": host.host_key, "dialErrorLimit": 0,
                            "privateKey": fleet.private_key_pem}
    conn.update(settings)
    return {key: value for key, value in conn.items() if value is not None}


def probe(fleet: HostFleet, **args: Any) -> Callable[[], None]:
    """A one-resource program: a remote command on the test host."""
    host = fleet[HOST]

    def program() -> None:
        command.remote.Command("probe", connection=command.remote.ConnectionArgs(
            host=host.address, port=host.port, host_key=host.host_key, private_key=fleet.private_key_pem,
            dial_error_limit=0), **args)

    return program


# --- environment (commandOutputs.go run) ------------------------------------------------------------
def test_a_refused_environment_variable_fails_the_step_before_its_command_runs(fleet: HostFleet) -> None:
    """commandOutputs.go `run`: `session.Setenv(k, v)` failing returns `logAndWrapSetenvErr(..., diag.Error,
    ...)`, i.e. `could not set environment variable %q: ssh: setenv failed`, before `session.Run`."""
    fleet[HOST].run("rm -f /root/ran")
    mocks = ExecutingMocks(StackState())
    with pytest.raises(Exception, match=r"'probe' .*could not set environment variable \"COOKBOOK_SETTING\": "
                                        r"ssh: setenv failed"):
        run_program(mocks, {}, program=probe(fleet, create="touch /root/ran", environment={"COOKBOOK_SETTING": "1"}))
    assert fleet[HOST].run("test -e /root/ran", check=False).returncode != 0
    assert mocks.state.resources == {}


def test_accepted_environment_variables_reach_the_command(fleet: HostFleet) -> None:
    """sshd's `AcceptEnv LANG LC_*` accepts these "env" requests (want-reply answered with success)."""
    result = ssh.run(connection(fleet), 'echo "$LANG|$LC_COOKBOOK"', {"LANG": "C.UTF-8", "LC_COOKBOOK": "yes"})
    assert result.stdout == "C.UTF-8|yes"


def test_previous_output_is_set_optimistically(fleet: HostFleet, caplog: pytest.LogCaptureFixture) -> None:
    """commandOutputs.go `run`: PULUMI_COMMAND_STDOUT is set "optimistically, but warn and continue on
    failure" (`logAndWrapSetenvErr(ctx, diag.Warning, ...)`): the refused variable is only a warning."""
    state = StackState()
    run_program(ExecutingMocks(state), {}, program=probe(fleet, create="echo first"))
    mocks = ExecutingMocks(state)
    with caplog.at_level(logging.WARNING, logger="tests.harness.ssh"):
        run_program(mocks, {}, program=probe(fleet, create="echo first", update='echo "second:$PULUMI_COMMAND_STDOUT"'))
    assert mocks.operations == [("update", "probe")]
    assert next(iter(state.resources.values())).outputs["stdout"] == "second:"  # sshd dropped it
    assert any("Unable to set 'PULUMI_COMMAND_STDOUT'" in record.getMessage() for record in caplog.records)


# --- dial timeout (connection.go Annotate, x/crypto/ssh Dial) -----------------------------------------
class SlowBanner:
    """A TCP forwarder to the host's sshd that holds the server's first bytes back for `delay` seconds."""

    def __init__(self, address: str, port: int, delay: float):
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.target, self.delay = (address, port), delay
        threading.Thread(target=self.serve, daemon=True).start()

    def serve(self) -> None:
        with self.listener:
            client, _ = self.listener.accept()
            server = socket.create_connection(self.target)
            threading.Thread(target=self.pump, args=(client, server, 0.0), daemon=True).start()
            self.pump(server, client, self.delay)

    @staticmethod
    def pump(source: socket.socket, sink: socket.socket, delay: float) -> None:
        try:
            while chunk := source.recv(65536):
                time.sleep(delay)
                delay = 0.0
                sink.sendall(chunk)
        except OSError:
            pass
        finally:
            sink.close()


@pytest.mark.parametrize("per_dial_timeout", [1, 0])
def test_the_per_dial_timeout_does_not_bound_the_handshake(fleet: HostFleet, per_dial_timeout: int) -> None:
    """connection.go sets `ClientConfig.Timeout` from perDialTimeout ("0 implies no maximum"); x/crypto/ssh
    `Dial` applies it to `net.DialTimeout` only, so a server slower than it to greet is still reached."""
    slow = SlowBanner(fleet[HOST].address, fleet[HOST].port, delay=2.0)
    result = ssh.run(connection(fleet, host="127.0.0.1", port=slow.port, perDialTimeout=per_dial_timeout),
                     "echo reached")
    assert result.stdout == "reached"


# --- authentication (connection.go SSHConfig, x/crypto/ssh clientAuthenticate) -------------------------
@pytest.fixture(scope="module")
def agent(fleet: HostFleet, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real ssh-agent holding the fleet's key; yields its socket path."""
    directory = tmp_path_factory.mktemp("agent")
    path = directory / "agent.sock"
    process = subprocess.Popen(["ssh-agent", "-D", "-a", str(path)], stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while not path.exists():
            assert time.monotonic() < deadline, "ssh-agent did not create its socket"
            time.sleep(0.05)
        subprocess.run(["ssh-add", str(fleet.private_key_path)], env={**os.environ, "SSH_AUTH_SOCK": str(path)},
                       check=True, capture_output=True)
        yield str(path)
    finally:
        process.terminate()
        process.wait(timeout=10)


def throwaway_key() -> str:
    key = ed25519.Ed25519PrivateKey.generate()
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
                             serialization.NoEncryption()).decode()


def test_agent_socket_path_authenticates_without_a_private_key(fleet: HostFleet, agent: str) -> None:
    """connection.go `SSHConfig`: `AgentSocketPath` -> `dialAgent` -> `ssh.PublicKeysCallback(agent.Signers)`."""
    result = ssh.run(connection(fleet, privateKey=None, agentSocketPath=agent), "echo via-agent")
    assert result.stdout == "via-agent"


def test_ssh_auth_sock_is_the_default_agent(fleet: HostFleet, agent: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """connection_unix.go `tryGetDefaultAgentSocket`: SSH_AUTH_SOCK when non-empty."""
    monkeypatch.setenv("SSH_AUTH_SOCK", agent)
    assert ssh.run(connection(fleet, privateKey=None), "echo via-default-agent").stdout == "via-default-agent"


def test_a_refused_private_key_is_not_rescued_by_the_agent(fleet: HostFleet, agent: str) -> None:
    """The agent is configured after the private key (connection.go `SSHConfig`), but both are "publickey";
    x/crypto/ssh `clientAuthenticate` skips a method name it already tried (`slices.Contains(tried, ...)`), so
    the provider fails here although the agent holds an authorised key."""
    with pytest.raises(ssh.CommandFailed, match=r"after 0 failed attempts: ssh: handshake failed: ssh: unable to "
                                                r"authenticate, attempted methods \[none publickey\], no supported "
                                                r"methods remain"):
        ssh.run(connection(fleet, privateKey=throwaway_key(), agentSocketPath=agent), "true")


def test_with_a_good_private_key_the_key_authenticates_and_the_agent_is_still_dialled(fleet: HostFleet,
                                                                                     agent: str,
                                                                                     tmp_path: Path) -> None:
    """connection.go `SSHConfig` dials the agent whenever one is configured or SSH_AUTH_SOCK is set."""
    assert ssh.run(connection(fleet, agentSocketPath=agent), "echo key").stdout == "key"
    with pytest.raises(ssh.CommandFailed, match=r"dial unix .*: connect: no such file or directory"):
        ssh.run(connection(fleet, agentSocketPath=str(tmp_path / "none.sock")), "true")


# --- CopyToRemote (copyController.go sftpCopy) -----------------------------------------------------------
def test_copy_to_remote_creates_parent_directories_and_copies_into_a_directory(fleet: HostFleet,
                                                                                tmp_path: Path) -> None:
    """pulumi-command v1.2.1 copyController.go `sftpCopy`: a file onto a missing path gets its parent
    directories (`MkdirAll`); onto an existing directory it lands inside it under its own name."""
    host = fleet[HOST]
    source = tmp_path / "artifact.bin"
    source.write_bytes(b"payload")
    host.run("rm -rf /srv/copied && mkdir -p /srv/existing")

    def program() -> None:
        args = command.remote.ConnectionArgs(host=host.address, port=host.port, host_key=host.host_key,
                                             private_key=fleet.private_key_pem, dial_error_limit=0)
        command.remote.CopyToRemote("deep", connection=args, source=pulumi.FileAsset(str(source)),
                                    remote_path="/srv/copied/a/b/artifact.bin")
        command.remote.CopyToRemote("into", connection=args, source=pulumi.FileAsset(str(source)),
                                    remote_path="/srv/existing")

    run_program(ExecutingMocks(StackState()), {}, program=program)
    assert host.read_file("/srv/copied/a/b/artifact.bin") == "payload"
    assert host.read_file("/srv/existing/artifact.bin") == "payload"
