"""A paramiko rendering of pulumi-command's remote connection, for the integration harness.

Faithful to pulumi-command 1.2.1 (provider/pkg/provider/remote) and golang.org/x/crypto/ssh v0.48.0, which it
uses:
- connection.go `Annotate`: user root, port 22, dialErrorLimit 10 (-1: unlimited), perDialTimeout 15 s when
  absent and 0 for no limit; the timeout bounds the TCP dial only (x/crypto/ssh `ClientConfig.Timeout`).
- connection.go `SSHConfig`, built before dialling (its errors are not retried): auth methods in the provider's
  order: privateKey (with privateKeyPassword), password then keyboard-interactive answering the password, then
  the agent at agentSocketPath or else at a non-empty SSH_AUTH_SOCK, added even when a key is configured; an
  agent socket that cannot be dialled is an error. x/crypto/ssh `clientAuthenticate` tries "none" first, then
  each configured method whose name the server allows and that was not tried yet: the agent, also
  "publickey", is never tried after a configured private key was refused.
- connection.go `Dial`/`dialWithRetry`: every dial and handshake error is retried with the Pulumi SDK's
  `retry.Until` backoff (100 ms, x1.5, capped at 5 s), then reported as "after N failed attempts: ...";
  `hostKey` checked when given; a bastion via `proxy`.
- commandOutputs.go `run`: each `environment` variable is an SSH "env" request that wants a reply; a refusal
  (a default sshd accepts only `AcceptEnv LANG LC_*`) fails the command before it runs with
  `could not set environment variable "NAME": ssh: setenv failed`. PULUMI_COMMAND_STDOUT/STDERR (previous
  output) are set optimistically: a refusal is logged as a warning and the command runs. stdin streamed then
  closed, stdout/stderr with one trailing newline trimmed, a non-zero exit reported as
  "Process exited with status N: running <cmd>:\\n<output>".
"""

from __future__ import annotations

import base64
import io
import logging
import os
import queue
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar

import paramiko
import paramiko.agent
from paramiko.common import MSG_CHANNEL_FAILURE, MSG_CHANNEL_SUCCESS, cMSG_CHANNEL_REQUEST

log = logging.getLogger(__name__)
T = TypeVar("T")

# SSH sessions opened per target host, for the benchmark and for tests asserting round trips.
SESSIONS: Counter[str] = Counter()
_sessions_lock = threading.Lock()
RETRY_DELAY, RETRY_BACKOFF, RETRY_MAX_DELAY = 0.1, 1.5, 5.0
DEFAULT_PER_DIAL_TIMEOUT = 15.0
_KEY_TYPES: tuple[type[paramiko.PKey], ...] = (paramiko.Ed25519Key, paramiko.ECDSAKey, paramiko.RSAKey)


class CommandFailed(RuntimeError):
    pass


@dataclass(frozen=True)
class Result:
    stdout: str
    stderr: str


# --- the client config (connection.go SSHConfig) -----------------------------------------------------
@dataclass(frozen=True)
class _AuthMethod:
    name: str  # the RFC 4252 method name
    attempt: Callable[[paramiko.Transport, str], object]  # raises paramiko.AuthenticationException when refused


@dataclass(frozen=True)
class _ClientConfig:
    user: str
    methods: tuple[_AuthMethod, ...]
    agent: paramiko.Agent | None

    def close(self) -> None:
        if self.agent is not None:
            self.agent.close()


class _Agent(paramiko.Agent):
    """An ssh-agent client on a given socket (paramiko.Agent itself reads only SSH_AUTH_SOCK)."""

    def __init__(self, path: str):
        paramiko.agent.AgentSSH.__init__(self)
        connection = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            connection.connect(path)
        except OSError as error:  # connection_unix.go dialAgent: net.Dial("unix", path)
            connection.close()
            raise CommandFailed(f"dial unix {path}: connect: {(error.strerror or str(error)).lower()}") from error
        self._connect(connection)  # type: ignore[attr-defined]


def _load_key(text: str, password: str | None) -> paramiko.PKey:
    errors = []
    for key_type in _KEY_TYPES:
        try:
            return key_type.from_private_key(io.StringIO(text), password=password)
        except (paramiko.SSHException, ValueError) as error:
            errors.append(str(error))
    raise CommandFailed(f"ssh: cannot parse private key: {errors}")


def _public_keys(keys: Sequence[paramiko.PKey]) -> Callable[[paramiko.Transport, str], object]:
    """x/crypto/ssh `publicKeyCallback.auth`: each key in turn; the method fails when none is accepted."""

    def attempt(transport: paramiko.Transport, user: str) -> None:
        for key in keys:
            try:
                transport.auth_publickey(user, key)
                return
            except paramiko.BadAuthenticationType:
                raise
            except paramiko.AuthenticationException:
                continue
        raise paramiko.AuthenticationException("no key accepted")

    return attempt


def _client_config(conn: dict[str, Any]) -> _ClientConfig:
    methods = []
    if conn.get("privateKey") is not None:
        key = _load_key(conn["privateKey"], conn.get("privateKeyPassword"))
        methods.append(_AuthMethod("publickey", _public_keys([key])))
    if conn.get("password") is not None:
        password = conn["password"]
        methods.append(_AuthMethod("password", lambda t, user: t.auth_password(user, password, fallback=False)))
        methods.append(_AuthMethod("keyboard-interactive", lambda t, user: t.auth_interactive(
            user, lambda title, instructions, prompts: [password for _ in prompts])))
    path = conn.get("agentSocketPath")
    if path is None:
        path = os.environ.get("SSH_AUTH_SOCK") or None  # connection_unix.go tryGetDefaultAgentSocket
    agent = _Agent(path) if path is not None else None
    if agent is not None:
        methods.append(_AuthMethod("publickey", _public_keys(agent.get_keys())))
    return _ClientConfig(conn.get("user") or "root", tuple(methods), agent)


def _authenticate(transport: paramiko.Transport, config: _ClientConfig) -> None:
    """x/crypto/ssh client_auth.go `clientAuthenticate`."""
    tried = ["none"]
    try:
        transport.auth_none(config.user)
        return
    except paramiko.BadAuthenticationType as refusal:
        allowed = list(refusal.allowed_types)
    while not transport.is_authenticated():
        method = next((m for m in config.methods if m.name not in tried and m.name in allowed), None)
        if method is None:
            raise paramiko.AuthenticationException(
                f"ssh: unable to authenticate, attempted methods [{' '.join(tried)}], no supported methods remain")
        try:
            method.attempt(transport, config.user)
        except paramiko.BadAuthenticationType as refusal:
            allowed = list(refusal.allowed_types)
        except paramiko.AuthenticationException:
            pass
        if not transport.is_authenticated() and method.name not in tried:
            tried.append(method.name)


# --- the transport ---------------------------------------------------------------------------------
def _reply(ok: bool) -> Callable[[paramiko.Channel, paramiko.Message], None]:
    """Go's `Channel.SendRequest(name, wantReply=true, ...)` returns the server's answer; paramiko closes the
    channel when a request fails. While an "env" request waits, its answer goes to the waiting caller."""
    default = vars(paramiko.Transport)["_channel_handler_table"][MSG_CHANNEL_SUCCESS if ok else MSG_CHANNEL_FAILURE]

    def handle(channel: paramiko.Channel, message: paramiko.Message) -> None:
        transport = channel.transport
        if isinstance(transport, _Transport) and transport.awaiting_reply:
            transport.replies.put(ok)
        else:
            default(channel, message)

    return handle


class _Transport(paramiko.Transport):
    """A paramiko Transport whose "env" requests get their answer, as with x/crypto/ssh."""

    _channel_handler_table: ClassVar[dict[int, Any]] = {**vars(paramiko.Transport)["_channel_handler_table"],
                                                         MSG_CHANNEL_SUCCESS: _reply(True),
                                                         MSG_CHANNEL_FAILURE: _reply(False)}

    def __init__(self, sock: Any):
        super().__init__(sock)
        self.awaiting_reply = False
        self.replies: queue.SimpleQueue[bool] = queue.SimpleQueue()

    def setenv(self, channel: paramiko.Channel, name: str, value: str) -> bool:
        """x/crypto/ssh `Session.Setenv`: an "env" request with want-reply; True when the server accepted it."""
        message = paramiko.Message()
        message.add_byte(cMSG_CHANNEL_REQUEST)
        message.add_int(channel.remote_chanid)
        message.add_string("env")
        message.add_boolean(True)
        message.add_string(name)
        message.add_string(value)
        self.awaiting_reply = True
        try:
            self._send_user_message(message)  # type: ignore[attr-defined]
            while True:
                try:
                    return self.replies.get(timeout=0.1)
                except queue.Empty:
                    if channel.closed or not self.is_active():
                        raise paramiko.SSHException("EOF") from None
        finally:
            self.awaiting_reply = False


def per_dial_timeout(conn: dict[str, Any]) -> float | None:
    configured = conn.get("perDialTimeout")
    if configured is None:
        return DEFAULT_PER_DIAL_TIMEOUT
    return float(configured) or None


def _handshake(sock: Any, conn: dict[str, Any], config: _ClientConfig) -> _Transport:
    """x/crypto/ssh `NewClientConn`: key exchange, host key check, authentication (no time limit of its own;
    paramiko's banner and handshake timeouts of 15 s remain)."""
    transport = _Transport(sock)
    try:
        transport.start_client()
        expected = conn.get("hostKey")
        if expected:  # connection.go: ssh.FixedHostKey, else InsecureIgnoreHostKey
            key_type, _, encoded = expected.strip().partition(" ")
            served = transport.get_remote_server_key()
            if served.get_name() != key_type or served.asbytes() != base64.b64decode(encoded.split()[0]):
                raise paramiko.SSHException("ssh: host key mismatch")
        _authenticate(transport, config)
    except BaseException:
        transport.close()
        raise
    return transport


def _retry(conn: dict[str, Any], attempt: Callable[[], T], describe: Callable[[Exception], str]) -> T:
    """connection.go `dialWithRetry` with its `reachedDialingErrorLimit` (a negative limit: unlimited)."""
    configured = conn.get("dialErrorLimit")
    limit = 10 if configured is None else int(configured)
    delay, dials = RETRY_DELAY, 0
    while True:
        try:
            return attempt()
        except (OSError, EOFError, paramiko.SSHException) as error:
            dials += 1
            if limit > -1 and dials > limit:
                raise CommandFailed(f"after {dials - 1} failed attempts: {describe(error)}") from error
        time.sleep(delay)
        delay = min(delay * RETRY_BACKOFF, RETRY_MAX_DELAY)


def dial(conn: dict[str, Any]) -> _Transport:
    """connection.go `Dial`: the client config first (its errors end the dial), then dials with retries."""
    host, port = conn["host"], int(conn.get("port") or 22)
    address = f"{host}:{port}"

    def handshake_failed(error: Exception) -> str:
        return f"dial tcp {address}: {error}" if isinstance(error, OSError) else f"ssh: handshake failed: {error}"

    config = _client_config(conn)
    try:
        proxy = conn.get("proxy")
        if not proxy:
            return _retry(conn, lambda: _handshake(
                socket.create_connection((host, port), timeout=per_dial_timeout(conn)), conn, config),
                handshake_failed)
        try:
            bastion = dial(proxy)
            channel = _retry(conn, lambda: bastion.open_channel("direct-tcpip", (host, port), ("127.0.0.1", 0)),
                             str)
            return _retry(conn, lambda: _handshake(channel, conn, config), handshake_failed)
        except CommandFailed as error:
            raise CommandFailed(f"proxy: {error}") from error
    finally:
        config.close()


def run(conn: dict[str, Any], command: str, environment: dict[str, str] | None = None,
        stdin: str | None = None, previous_output: dict[str, str] | None = None) -> Result:
    """commandOutputs.go `run`: `environment` must be accepted; `previous_output` (PULUMI_COMMAND_STDOUT and
    PULUMI_COMMAND_STDERR) is set optimistically."""
    transport = dial(conn)
    try:
        channel = transport.open_session()
        with _sessions_lock:
            SESSIONS[conn["host"]] += 1
        for name, value in (environment or {}).items():
            if not transport.setenv(channel, name, value):
                raise CommandFailed(f'could not set environment variable "{name}": ssh: setenv failed')
        for name, value in (previous_output or {}).items():
            if not transport.setenv(channel, name, value):
                log.warning("Unable to set '%s'. This only works if your SSH server is configured to accept "
                            "these variables via AcceptEnv.", name)
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
