"""Is there a Docker engine to run the local stack on? Asked two ways, both before anything is created:

- the program (`require_engine`): one call through pulumi-docker's own provider (the `getNetwork` data source for
  `none`, a network every Linux engine has). It uses exactly the connection the stack's containers will use
  (DOCKER_HOST, DOCKER_CONTEXT, DOCKER_CERT_PATH, ssh://), and the provider checks the daemon answers when it is
  configured, so a missing or stopped engine fails here, with what to do, instead of at the first container.
- `make up` (`tools/deploy.py`, `ping`): before installing anything, a `GET /_ping` on the engine's Unix socket
  when DOCKER_HOST names one or is unset; other transports are left to the program's check.

With `local.mesos` switched on, the program then asks the engine its architecture (`require_amd64`): Apache
Mesos's images are amd64 only. The engine's own `GET /info` answers (`Architecture`, its kernel's `uname -m`): the
machine running Pulumi is not the engine's (Docker Desktop and Colima run the engine in a VM, which may be of
another architecture; DOCKER_HOST may name another machine), and pulumi-docker (5.2.0) has no data source for the
engine's info (its invokes: getLogs, getNetwork, getPlugin, getRegistryImage, getRegistryImageManifests,
getRemoteImage). Over the Unix socket when DOCKER_HOST names one (or is unset), as `ping`; otherwise (tcp://,
ssh://, a context) through `docker info`, which reads the same environment the provider does.
"""

from __future__ import annotations

import http.client
import json
import shutil
import socket
import subprocess
from collections.abc import Mapping
from pathlib import Path

import pulumi
import pulumi_docker as docker

from components.mesos.docker_hosts import RETIREMENT, SUPPORTED_ARCHITECTURE
from components.shared.validation import ConfigError

DEFAULT_SOCKET = "/var/run/docker.sock"
PROBE_NETWORK = "none"
HELP = ("start Docker (Docker Desktop, Colima, or `sudo systemctl start docker`), or point DOCKER_HOST at a running "
        "engine (e.g. unix:///run/user/1000/docker.sock for rootless Docker); `docker version` must show a Server")


# Docker's `Architecture` (uname -m) in the names Debian, Go and image platforms use.
ARCHITECTURE_NAMES = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64", "armv7l": "armhf",
                      "armv6l": "armel", "ppc64le": "ppc64el", "s390x": "s390x", "riscv64": "riscv64"}
MESOS_SWITCH = "local.mesos.enabled"


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


def _get(path: str, url: str, where: str, timeout: float) -> tuple[int, str]:
    """One GET on the engine's Unix socket: (status, body)."""
    if not Path(path).exists():
        raise EngineUnavailable(f"no Docker engine at {where} (no such socket). To fix: {HELP}.")
    connection = _UnixConnection(path, timeout)
    try:
        connection.request("GET", url)
        response = connection.getresponse()
        return response.status, response.read().decode(errors="replace").strip()
    except OSError as error:
        raise EngineUnavailable(f"the Docker engine at {where} does not answer ({error}). To fix: {HELP}.") from None
    finally:
        connection.close()


def ping(environ: Mapping[str, str], timeout: float = 5.0) -> None:
    """`GET /_ping` on the engine's Unix socket; raises EngineUnavailable saying what to do. Other transports
    (tcp://, ssh://, contexts) are not checked here."""
    path = socket_path(environ)
    if path is None:
        return
    where = describe(environ)
    status, body = _get(path, "/_ping", where, timeout)
    if status != 200 or body != "OK":
        raise EngineUnavailable(f"the Docker engine at {where} answered {status} {body!r} to /_ping. To fix: {HELP}.")


def engine_architecture(environ: Mapping[str, str], timeout: float = 10.0) -> str:
    """The engine's `Architecture` (`GET /info`: x86_64, aarch64, ...); EngineUnavailable when it cannot be
    asked."""
    where = describe(environ)
    path = socket_path(environ)
    if path is not None:
        status, body = _get(path, "/info", where, timeout)
        if status != 200:
            raise EngineUnavailable(f"the Docker engine at {where} answered {status} {body[:200]!r} to /info")
        answer = json.loads(body)
    else:
        cli = shutil.which("docker", path=environ.get("PATH"))
        if cli is None:
            raise EngineUnavailable(f"the Docker engine at {where} is reached without a Unix socket, and no `docker` "
                                    "CLI is on PATH to ask it (`docker info`)")
        try:
            done = subprocess.run([cli, "info", "--format", "{{json .}}"], env=dict(environ), capture_output=True,
                                  text=True, timeout=timeout, check=False)
        except subprocess.TimeoutExpired:
            raise EngineUnavailable(f"`docker info` did not answer within {timeout:g} s for {where}") from None
        if done.returncode != 0:
            raise EngineUnavailable(f"`docker info` failed for {where}: {' '.join(done.stderr.split())[:300]}")
        answer = json.loads(done.stdout)
    architecture = answer.get("Architecture") if isinstance(answer, dict) else None
    if not isinstance(architecture, str) or not architecture:
        raise EngineUnavailable(f"the Docker engine at {where} did not report its architecture")
    return architecture


def mesos_architecture_problem(architecture: str, where: str) -> str | None:
    """Why Mesos cannot run on an engine of `architecture` (None when it can)."""
    name = ARCHITECTURE_NAMES.get(architecture, architecture)
    if name == SUPPORTED_ARCHITECTURE:
        return None
    return (f"the Docker engine at {where} is {name} ({architecture}): {RETIREMENT}; set it false, or point "
            "DOCKER_HOST at an amd64 engine")


def require_amd64(environ: Mapping[str, str]) -> str:
    """The engine's architecture when Mesos can run there; else a ConfigError naming `local.mesos.enabled` (also
    when the engine cannot say)."""
    where = describe(environ)
    try:
        architecture = engine_architecture(environ)
        problem = mesos_architecture_problem(architecture, where)
    except (EngineUnavailable, ValueError) as error:  # ValueError: an answer that is not JSON
        problem = f"Mesos needs an amd64 Docker engine, and the architecture of {where} is unknown: {error}"
    if problem is not None:
        raise ConfigError([f"{MESOS_SWITCH}: {problem}"])
    return architecture
