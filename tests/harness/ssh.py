"""A paramiko rendering of pulumi-command's remote connection, for the integration harness.

Faithful to pulumi-command 1.x (provider/pkg/provider/remote): connection defaults (user root, port 22,
dialErrorLimit 10, perDialTimeout 15 s), dials retried with the Pulumi SDK's `retry.Until` backoff
(100 ms, x1.5, capped at 5 s), ssh-agent from SSH_AUTH_SOCK, `hostKey` checked when given, a bastion via
`proxy`, environment sent as SSH "env" requests (a default sshd drops them: AcceptEnv allows only
locale variables), stdin streamed then closed, stdout/stderr with one trailing newline trimmed, and a
non-zero exit reported as "Process exited with status N: running <cmd>:\\n<output>".
"""

from __future__ import annotations

import base64
import io
import os
import socket
import threading
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any

import paramiko

# SSH sessions opened per target host, for the benchmark and for tests asserting round trips.
SESSIONS: Counter[str] = Counter()
_sessions_lock = threading.Lock()
RETRY_DELAY, RETRY_BACKOFF, RETRY_MAX_DELAY = 0.1, 1.5, 5.0
_KEY_TYPES: tuple[type[paramiko.PKey], ...] = (paramiko.Ed25519Key, paramiko.ECDSAKey, paramiko.RSAKey)


class CommandFailed(RuntimeError):
    pass


@dataclass(frozen=True)
class Result:
    stdout: str
    stderr: str


def _load_key(text: str, password: str | None) -> paramiko.PKey:
    errors = []
    for key_type in _KEY_TYPES:
        try:
            return key_type.from_private_key(io.StringIO(text), password=password)
        except (paramiko.SSHException, ValueError) as error:
            errors.append(str(error))
    raise CommandFailed(f"ssh: cannot parse private key: {errors}")


def _check_host_key(transport: paramiko.Transport, expected: str | None, address: str) -> None:
    if not expected:
        return  # pulumi-command ignores host keys unless one is pinned
    key_type, _, encoded = expected.strip().partition(" ")
    served = transport.get_remote_server_key()
    if served.get_name() != key_type or served.asbytes() != base64.b64decode(encoded.split()[0]):
        raise CommandFailed(f"ssh: handshake failed: host key mismatch for {address}")


def _open(sock: Any, address: str, conn: dict[str, Any]) -> paramiko.Transport:
    transport = paramiko.Transport(sock)
    transport.start_client(timeout=float(conn.get("perDialTimeout") or 15))
    _check_host_key(transport, conn.get("hostKey"), address)
    user = conn.get("user") or "root"
    if conn.get("privateKey"):
        key = _load_key(conn["privateKey"], conn.get("privateKeyPassword"))
        transport.auth_publickey(user, key)
    elif conn.get("password"):
        transport.auth_password(user, conn["password"])
    else:
        agent_keys = paramiko.Agent().get_keys() if (conn.get("agentSocketPath") or os.environ.get(
            "SSH_AUTH_SOCK")) else ()
        for key in agent_keys:
            try:
                transport.auth_publickey(user, key)
                break
            except paramiko.AuthenticationException:
                continue
    if not transport.is_authenticated():
        transport.close()
        raise CommandFailed(f"ssh: unable to authenticate as {user}@{address}")
    return transport


def _dial_once(conn: dict[str, Any]) -> paramiko.Transport:
    host, port = conn["host"], int(conn.get("port") or 22)
    address = f"{host}:{port}"
    timeout = float(conn.get("perDialTimeout") or 15) or None
    proxy = conn.get("proxy")
    if proxy:
        bastion = _dial_once(proxy)
        channel = bastion.open_channel("direct-tcpip", (host, port), ("127.0.0.1", 0), timeout=timeout)
        return _open(channel, address, conn)
    sock = socket.create_connection((host, port), timeout=timeout)
    return _open(sock, address, conn)


def dial(conn: dict[str, Any]) -> paramiko.Transport:
    configured = conn.get("dialErrorLimit")
    limit = 10 if configured is None else int(configured)
    delay, dials = RETRY_DELAY, 0
    while True:
        try:
            return _dial_once(conn)
        except CommandFailed:
            raise
        except (OSError, paramiko.SSHException, EOFError) as error:
            dials += 1
            if limit != -1 and dials > limit:
                raise CommandFailed(f"dial tcp {conn['host']}:{int(conn.get('port') or 22)}: {error}") from error
        time.sleep(delay)
        delay = min(delay * RETRY_BACKOFF, RETRY_MAX_DELAY)


def run(conn: dict[str, Any], command: str, environment: dict[str, str] | None = None,
        stdin: str | None = None) -> Result:
    transport = dial(conn)
    try:
        channel = transport.open_session()
        with _sessions_lock:
            SESSIONS[conn["host"]] += 1
        for name, value in (environment or {}).items():
            channel.set_environment_variable(name, value)  # "env" request; sshd may drop it
        channel.exec_command(command)
        out, err, both = io.BytesIO(), io.BytesIO(), io.BytesIO()
        lock = threading.Lock()

        def pump(read: Any, sink: io.BytesIO) -> None:
            while chunk := read(65536):
                with lock:
                    sink.write(chunk)
                    both.write(chunk)

        readers = [threading.Thread(target=pump, args=(channel.recv, out)),
                   threading.Thread(target=pump, args=(channel.recv_stderr, err))]
        for reader in readers:
            reader.start()
        if stdin:
            channel.sendall(stdin.encode())
        channel.shutdown_write()
        for reader in readers:
            reader.join()
        status = channel.recv_exit_status()
    finally:
        transport.close()
    if status != 0:
        raise CommandFailed(f"Process exited with status {status}: running {command!r}:\n"
                            f"{both.getvalue().decode(errors='replace')}")
    return Result(out.getvalue().decode(errors="replace").removesuffix("\n"),
                  err.getvalue().decode(errors="replace").removesuffix("\n"))
