"""Is there a Docker engine to run the local stack on? Asked two ways, both before anything is created:

- the program (`require_engine`): one call through pulumi-docker's own provider (the `getNetwork` data source for
  `none`, a network every Linux engine has). It uses exactly the connection the stack's containers will use
  (DOCKER_HOST, DOCKER_CONTEXT, DOCKER_CERT_PATH, ssh://), and the provider checks the daemon answers when it is
  configured, so a missing or stopped engine fails here, with what to do, instead of at the first container.
- `make up` (`tools/deploy.py`, `ping`): before installing anything, a `GET /_ping` on the engine's Unix socket
  when DOCKER_HOST names one or is unset; other transports are left to the program's check.
"""

from __future__ import annotations

import http.client
import socket
from collections.abc import Mapping
from pathlib import Path

import pulumi
import pulumi_docker as docker

DEFAULT_SOCKET = "/var/run/docker.sock"
PROBE_NETWORK = "none"
HELP = ("start Docker (Docker Desktop, Colima, or `sudo systemctl start docker`), or point DOCKER_HOST at a running "
        "engine (e.g. unix:///run/user/1000/docker.sock for rootless Docker); `docker version` must show a Server")


class EngineUnavailable(RuntimeError):
    pass


def describe(environ: Mapping[str, str]) -> str:
    """Which engine the provider will use, in words."""
    if environ.get("DOCKER_CONTEXT"):
        return f"Docker context {environ['DOCKER_CONTEXT']!r}"
    return environ.get("DOCKER_HOST") or f"unix://{DEFAULT_SOCKET}"


def require_engine(environ: Mapping[str, str]) -> None:
    """Raises `pulumi.RunError` saying what to do when the provider cannot reach a Docker engine."""
    try:
        docker.get_network(name=PROBE_NETWORK)
    except Exception as error:  # the provider's error text says why (no socket, permission, TLS...)
        cause = " ".join(str(error).split())
        raise pulumi.RunError(f"the local stack needs a running Docker engine, and {describe(environ)} does not "
                              f"answer: {cause}. To fix: {HELP}.") from None


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float):
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self._path)


def socket_path(environ: Mapping[str, str]) -> str | None:
    """The Unix socket the engine listens on, or None when DOCKER_HOST/DOCKER_CONTEXT choose something else."""
    if environ.get("DOCKER_CONTEXT"):
        return None
    host = environ.get("DOCKER_HOST") or f"unix://{DEFAULT_SOCKET}"
    return host[len("unix://"):] if host.startswith("unix://") else None


def ping(environ: Mapping[str, str], timeout: float = 5.0) -> None:
    """`GET /_ping` on the engine's Unix socket; raises EngineUnavailable saying what to do. Other transports
    (tcp://, ssh://, contexts) are not checked here."""
    path = socket_path(environ)
    if path is None:
        return
    where = describe(environ)
    if not Path(path).exists():
        raise EngineUnavailable(f"no Docker engine at {where} (no such socket). To fix: {HELP}.")
    connection = _UnixConnection(path, timeout)
    try:
        connection.request("GET", "/_ping")
        response = connection.getresponse()
        body = response.read().decode(errors="replace").strip()
    except OSError as error:
        raise EngineUnavailable(f"the Docker engine at {where} does not answer ({error}). To fix: {HELP}.") from None
    finally:
        connection.close()
    if response.status != 200 or body != "OK":
        raise EngineUnavailable(f"the Docker engine at {where} answered {response.status} {body!r} to /_ping. "
                                f"To fix: {HELP}.")
