"""The harness's SSH connection follows pulumi-command 1.2.1's connection code before any host is involved.

References: pulumi/pulumi-command provider/pkg/provider/remote/connection.go (`Annotate`, `SSHConfig`, `Dial`,
`dialWithRetry`) and connection_unix.go (`tryGetDefaultAgentSocket`, `dialAgent`); golang.org/x/crypto v0.48.0
ssh/client.go (`Dial`, `ClientConfig.Timeout`).
"""

from __future__ import annotations

import socket
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from tests.harness import ssh


def throwaway_key() -> str:
    key = ed25519.Ed25519PrivateKey.generate()
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
                             serialization.NoEncryption()).decode()


def refusing_dials(monkeypatch: pytest.MonkeyPatch) -> list[float | None]:
    """Every TCP dial is refused at once; returns the timeouts the dials asked for."""
    timeouts: list[float | None] = []

    def refuse(address: tuple[str, int], timeout: float | None = None, *args: Any, **kwargs: Any) -> socket.socket:
        timeouts.append(timeout)
        raise ConnectionRefusedError(111, "Connection refused")

    monkeypatch.setattr(ssh.socket, "create_connection", refuse)
    monkeypatch.delenv("SSH_AUTH_SOCK", raising=False)
    return timeouts


@pytest.mark.parametrize(("configured", "expected"), [(None, 15.0), (0, None), (4, 4.0)])
def test_per_dial_timeout_bounds_the_tcp_dial_and_zero_means_no_limit(
        monkeypatch: pytest.MonkeyPatch, configured: int | None, expected: float | None) -> None:
    """connection.go `Annotate`: perDialTimeout "0 implies no maximum. Default value is 15 seconds"
    (`SetDefault(&c.PerDialTimeout, 15)`: the default applies only when absent). `SSHConfig` sets
    `ClientConfig.Timeout`, which x/crypto/ssh uses for `net.DialTimeout` only ("A Timeout of zero means no
    timeout")."""
    timeouts = refusing_dials(monkeypatch)
    conn: dict[str, Any] = {"host": "192.0.2.1", "dialErrorLimit": 0}
    if configured is not None:
        conn["perDialTimeout"] = configured
    with pytest.raises(ssh.CommandFailed):
        ssh.dial(conn)
    assert timeouts == [expected]


def test_dial_errors_read_like_the_provider_s(monkeypatch: pytest.MonkeyPatch) -> None:
    """connection.go `dialWithRetry`: after the limit, `after %d failed attempts: %w` (the retry index,
    which equals the limit), wrapping Go's `dial tcp HOST:PORT: ...` error."""
    timeouts = refusing_dials(monkeypatch)
    with pytest.raises(ssh.CommandFailed, match=r"^after 2 failed attempts: dial tcp 192\.0\.2\.1:2222: "):
        ssh.dial({"host": "192.0.2.1", "port": 2222, "dialErrorLimit": 2})
    assert len(timeouts) == 3


def test_an_agent_socket_that_cannot_be_dialled_is_an_error_before_any_dial(monkeypatch: pytest.MonkeyPatch,
                                                                            tmp_path: Any) -> None:
    """connection.go `SSHConfig`: `dialAgent(*sshAgentSocketPath)` failing returns the error; `Dial` returns
    `SSHConfig`'s error before dialling (nothing retried)."""
    timeouts = refusing_dials(monkeypatch)
    missing = tmp_path / "no-agent.sock"
    with pytest.raises(ssh.CommandFailed, match=f"^dial unix {missing}: connect: no such file or directory$"):
        ssh.dial({"host": "192.0.2.1", "agentSocketPath": str(missing)})
    assert timeouts == []


def test_ssh_auth_sock_is_dialled_even_with_a_private_key(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    """connection.go `SSHConfig` appends the agent from SSH_AUTH_SOCK (connection_unix.go
    `tryGetDefaultAgentSocket`: when non-empty) after the private key: a program cannot switch it off."""
    timeouts = refusing_dials(monkeypatch)
    missing = tmp_path / "gone.sock"
    monkeypatch.setenv("SSH_AUTH_SOCK", str(missing))
    key = throwaway_key()  # it never reaches a server here
    with pytest.raises(ssh.CommandFailed, match=f"dial unix {missing}"):
        ssh.dial({"host": "192.0.2.1", "privateKey": key})
    assert timeouts == []
    monkeypatch.setenv("SSH_AUTH_SOCK", "")  # empty: no agent
    with pytest.raises(ssh.CommandFailed, match="dial tcp"):
        ssh.dial({"host": "192.0.2.1", "privateKey": key, "dialErrorLimit": 0})
