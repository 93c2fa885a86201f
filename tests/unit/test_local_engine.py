"""`make up`'s Docker check (components/local/engine.py `ping`, tools/deploy.py): a local stack without a running
engine stops before the Pulumi CLI is looked for or installed, saying what to do."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from components.local import engine
from tools import deploy, pulumi_cli


class FakeEngine:
    """A Unix socket answering every HTTP request with `status` and `body` (Docker's /_ping answers 200 "OK")."""

    def __init__(self, path: Path, status: int = 200, body: str = "OK"):
        self.path = path
        self.requests: list[str] = []
        self.server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.server.bind(str(path))
        self.server.listen(4)
        self.response = (f"HTTP/1.1 {status} X\r\nContent-Type: text/plain\r\nContent-Length: {len(body)}\r\n\r\n"
                         f"{body}").encode()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                connection, _ = self.server.accept()
            except OSError:
                return
            with connection:
                self.requests.append(connection.recv(4096).decode().split("\r\n", 1)[0])
                connection.sendall(self.response)

    def close(self) -> None:
        self.server.close()


@pytest.fixture
def fake_engine(tmp_path: Path) -> Iterator[FakeEngine]:
    server = FakeEngine(tmp_path / "docker.sock")
    yield server
    server.close()


def test_a_running_engine_answers_the_ping(fake_engine: FakeEngine) -> None:
    engine.ping({"DOCKER_HOST": f"unix://{fake_engine.path}"})
    assert fake_engine.requests == ["GET /_ping HTTP/1.1"]


def test_no_socket_says_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(engine.EngineUnavailable) as raised:
        engine.ping({"DOCKER_HOST": f"unix://{tmp_path}/missing.sock"})
    assert str(raised.value).startswith(f"no Docker engine at unix://{tmp_path}/missing.sock (no such socket). "
                                        "To fix: start Docker")


def test_a_dead_socket_or_a_wrong_answer_is_refused(tmp_path: Path) -> None:
    dead = tmp_path / "dead.sock"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(dead))
    listener.close()  # the file stays, nothing listens: a stopped daemon
    with pytest.raises(engine.EngineUnavailable, match="does not answer"):
        engine.ping({"DOCKER_HOST": f"unix://{dead}"})
    wrong = FakeEngine(tmp_path / "wrong.sock", status=500, body="starting")
    try:
        with pytest.raises(engine.EngineUnavailable, match=r"answered 500 'starting' to /_ping"):
            engine.ping({"DOCKER_HOST": f"unix://{wrong.path}"})
    finally:
        wrong.close()


@pytest.mark.parametrize(("environ", "path"), [
    ({}, "/var/run/docker.sock"),
    ({"DOCKER_HOST": "unix:///run/user/1000/docker.sock"}, "/run/user/1000/docker.sock"),
    ({"DOCKER_HOST": "tcp://10.0.0.2:2376"}, None),
    ({"DOCKER_HOST": "ssh://me@box"}, None),
    ({"DOCKER_CONTEXT": "desktop-linux"}, None),
])
def test_only_unix_sockets_are_pinged_here(environ: dict[str, str], path: str | None) -> None:
    assert engine.socket_path(environ) == path
    if path is None:
        engine.ping(environ)  # left to the program's check through the Docker provider


def test_make_up_stops_before_the_cli_when_the_engine_is_missing(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    def no_cli() -> None:
        raise AssertionError("the CLI must not be looked for before the engine answered")

    monkeypatch.setattr(pulumi_cli, "locate", no_cli)
    environ = {"DOCKER_HOST": f"unix://{tmp_path}/missing.sock", "PULUMI_CONFIG_PASSPHRASE": "x"}
    for operation in ("up", "preview", "destroy"):
        with pytest.raises(deploy.DeployError) as raised:
            deploy.run(operation, "local", assume_yes=True, interactive=False, environ=environ)
        assert str(raised.value).startswith("stack 'local' runs on Docker: no Docker engine at unix://")


def test_other_stacks_and_init_do_not_need_docker(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []

    def no_cli() -> None:
        calls.append("locate")
        raise pulumi_cli.CliUnavailable("no CLI here")

    monkeypatch.setattr(pulumi_cli, "locate", no_cli)
    environ = {"DOCKER_HOST": f"unix://{tmp_path}/missing.sock", "PULUMI_CONFIG_PASSPHRASE": "x"}
    for operation, stack in (("preview", "pi-home"), ("init", "local")):
        with pytest.raises(deploy.DeployError, match="no CLI here"):
            deploy.run(operation, stack, interactive=False, environ=environ)
    assert calls == ["locate", "locate"]


def test_the_default_stack_is_local() -> None:
    assert deploy.DEFAULT_STACK == "local" and deploy.stack_file("local").exists()
