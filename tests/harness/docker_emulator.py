"""An emulator of pulumi-docker for `ExecutingMocks`: the resources run for real on a Docker engine.

pulumi-docker (terraform-provider-docker underneath) talks to the engine its provider names (`host`,
`ssh://user@host:port` for the Mesos recipe); here every host's engine is a `dockerd` on this machine in that
host's network namespace (`tests/infra/docker_engine.py`), reached over its unix socket instead of SSH. The
emulated behaviour, from the provider's documentation (registry docs for `docker.RemoteImage`, `docker.Volume`,
`docker.Container`):

- `RemoteImage`: makes sure `name` is on the engine (pulls when missing: offline here, so a missing image fails
  like a failed pull); outputs `imageId` and `repoDigest`. With `keepLocally` the image is never removed.
- `Volume`: `docker volume create` (`name`, `driver`, `labels`); outputs `name`, `driver`, `mountpoint`.
- `Network`: `docker network create` (`name`, `driver`, `ipamConfigs` subnet/gateway/ipRange, `options`,
  `labels`, `internal`, `attachable`); outputs `id`, `name`.
- `Container`: created through the Engine API as the provider creates it (terraform-provider-docker
  internal/provider/resource_docker_container_funcs.go, resourceDockerContainerCreate; the API because an
  exec-form healthcheck has no CLI flag) from `image` with `name`, `hostname`, `entrypoints`, `command`, `envs`,
  `labels`, `networkMode` (default `bridge`), `pidMode`, `privileged`, `restart`, `volumes` (`volumeName` or
  `hostPath` -> `containerPath`, `readOnly`), `ports` (`ip`, default 0.0.0.0), `tmpfs`, `memory`/`memorySwap`
  (MB), `cpus`, `ulimits`, `healthcheck` (`tests`, `interval`, `timeout`, `retries`, `startPeriod`); then, like
  the provider, disconnected from `bridge` and connected to each of `networksAdvanced` (`ipv4Address`,
  `aliases`), given its `uploads` (a tar at `/`: `file`, `content`, `permissions` octal or 0744 when
  `executable`, else 0644), started (`start`, default true), with `wait` polled each second until healthy
  (`waitTimeout`, default 60 s); with `mustRun` (default true) it must be running afterwards. Outputs `id`,
  `name`, `exitCode` and the inputs.
- Deleting (`delete`): a container is stopped with `destroyGraceSeconds` (default 0, as the provider), then
  removed with its anonymous volumes (`removeVolumes`, default true); a volume and a network are removed; an
  image is kept when `keepLocally`.
Anything else the provider supports (devices, capabilities, mounts, networks' IPv6...) is refused, not ignored.

`DockerMocks` routes each Docker resource to the engine of its provider's host: ExecutingMocks hands an emulator
only (type, inputs), so the engine's socket is added to the inputs as `__engine`.
"""

from __future__ import annotations

import base64
import http.client
import io
import json
import re
import socket
import subprocess
import tarfile
import time
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlparse

import pulumi

from tests.harness.dynamic_emulator import DynamicEmulator
from tests.harness.executing import Emulator, ExecutingMocks, ResourceState, StackState

DOCKER = "/usr/bin/docker"
ENGINE_KEY = "__engine"
PROVIDER = "pulumi:providers:docker"
_CONTAINER_FIELDS = {"name", "image", "entrypoints", "command", "envs", "labels", "networkMode", "pidMode",
                     "privileged", "restart", "volumes", "mustRun", "start", "removeVolumes", ENGINE_KEY,
                     "hostname", "networksAdvanced", "ports", "uploads", "tmpfs", "healthcheck", "wait", "waitTimeout",
                     "memory", "memorySwap", "cpus", "ulimits", "destroyGraceSeconds"}
_NETWORK_FIELDS = {"name", "driver", "ipamConfigs", "options", "labels", "internal", "attachable", ENGINE_KEY}
_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ns|us|ms|s|m|h)")
_DURATION_NS = {"ns": 1, "us": 10**3, "ms": 10**6, "s": 10**9, "m": 60 * 10**9, "h": 3600 * 10**9}


class DockerEmulationError(RuntimeError):
    pass


def _docker(engine: str, *args: str) -> str:
    done = subprocess.run([DOCKER, "-H", engine, *args], capture_output=True, text=True, timeout=300, check=False)
    if done.returncode != 0:
        raise DockerEmulationError(f"docker {' '.join(args[:2])}: {done.stderr.strip() or done.stdout.strip()}")
    return done.stdout.strip()


def _engine(inputs: Mapping[str, Any]) -> str:
    engine = inputs.get(ENGINE_KEY)
    if not engine:
        raise DockerEmulationError("no Docker engine for this resource (its provider's host has none)")
    return str(engine)


def emulate_docker(typ: str, inputs: dict[str, Any]) -> dict[str, Any]:
    kind = typ.rsplit(":", 1)[-1]
    if typ == PROVIDER:
        return {}
    handlers = {"RemoteImage": _remote_image, "Volume": _volume, "Container": _container, "Network": _network}
    if kind not in handlers:
        raise DockerEmulationError(f"the docker emulator does not implement {typ}")
    return handlers[kind](inputs)


def _remote_image(inputs: dict[str, Any]) -> dict[str, Any]:
    engine, name = _engine(inputs), str(inputs["name"])
    found = subprocess.run([DOCKER, "-H", engine, "image", "inspect", name], capture_output=True, text=True,
                           check=False)
    if found.returncode != 0:
        _docker(engine, "pull", name)  # fails offline, as the provider's pull would
        found = subprocess.run([DOCKER, "-H", engine, "image", "inspect", name], capture_output=True, text=True,
                               check=True)
    image = json.loads(found.stdout)[0]
    return {"imageId": image["Id"], "repoDigest": (image.get("RepoDigests") or [""])[0]}


def _volume(inputs: dict[str, Any]) -> dict[str, Any]:
    engine = _engine(inputs)
    labels = [f"--label={item['label']}={item['value']}" for item in inputs.get("labels") or []]
    name = _docker(engine, "volume", "create", f"--driver={inputs.get('driver') or 'local'}", *labels,
                   *([str(inputs["name"])] if inputs.get("name") else []))
    mountpoint = _docker(engine, "volume", "inspect", "--format", "{{.Mountpoint}}", name)
    return {"name": name, "driver": inputs.get("driver") or "local", "mountpoint": mountpoint}


def _container(inputs: dict[str, Any]) -> dict[str, Any]:
    unsupported = sorted(set(inputs) - _CONTAINER_FIELDS)
    if unsupported:
        raise DockerEmulationError(f"the docker emulator does not implement Container inputs {unsupported}")
    engine = _engine(inputs)
    container_id = str(_api(engine, "POST", f"/containers/create?name={inputs['name']}", _create_body(inputs))["Id"])
    if inputs.get("networksAdvanced"):
        done = subprocess.run([DOCKER, "-H", engine, "network", "disconnect", "bridge", container_id],
                              capture_output=True, text=True, check=False)
        if done.returncode != 0 and "is not connected to" not in done.stderr:
            raise DockerEmulationError(f"Unable to disconnect the default network: {done.stderr.strip()}")
        for network in inputs["networksAdvanced"]:
            options = [f"--ip={network['ipv4Address']}"] if network.get("ipv4Address") else []
            options += [f"--alias={alias}" for alias in network.get("aliases") or []]
            _docker(engine, "network", "connect", *options, str(network["name"]), container_id)
    for upload in inputs.get("uploads") or []:
        _api(engine, "PUT", f"/containers/{container_id}/archive?path=/", _upload_tar(upload))
    if inputs.get("start", True):
        _docker(engine, "start", container_id)
        if inputs.get("wait"):
            _wait_healthy(engine, container_id, int(inputs.get("waitTimeout") or 60))
    state = json.loads(_docker(engine, "inspect", "--format", "{{json .State}}", container_id))
    if inputs.get("mustRun", True) and not state.get("Running"):
        logs = subprocess.run([DOCKER, "-H", engine, "logs", "--tail", "20", container_id], capture_output=True,
                              text=True, check=False)
        raise DockerEmulationError(f"container {inputs['name']} is not running (exit code {state.get('ExitCode')}): "
                                   f"{logs.stdout}{logs.stderr}")
    return {"id": container_id, "exitCode": state.get("ExitCode")}


def _network(inputs: dict[str, Any]) -> dict[str, Any]:
    unsupported = sorted(set(inputs) - _NETWORK_FIELDS)
    if unsupported:
        raise DockerEmulationError(f"the docker emulator does not implement Network inputs {unsupported}")
    engine = _engine(inputs)
    argv = ["network", "create", f"--driver={inputs.get('driver') or 'bridge'}"]
    for ipam in inputs.get("ipamConfigs") or []:
        argv += [f"--{flag}={ipam[key]}" for key, flag in (("subnet", "subnet"), ("gateway", "gateway"),
                                                            ("ipRange", "ip-range")) if ipam.get(key)]
    argv += [f"--opt={key}={value}" for key, value in sorted((inputs.get("options") or {}).items())]
    argv += [f"--label={item['label']}={item['value']}" for item in inputs.get("labels") or []]
    argv += [flag for key, flag in (("internal", "--internal"), ("attachable", "--attachable")) if inputs.get(key)]
    network_id = _docker(engine, *argv, str(inputs["name"]))
    return {"id": network_id, "name": inputs["name"]}


def _api(engine: str, method: str, path: str, body: Any = None) -> Any:
    """One Docker Engine API request over the engine's Unix socket (what the provider's Go client sends)."""
    connection = http.client.HTTPConnection("localhost", timeout=300)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.connect(engine.removeprefix("unix://"))
    connection.sock = sock
    try:
        if isinstance(body, bytes):
            connection.request(method, path, body=body, headers={"Content-Type": "application/x-tar"})
        else:
            connection.request(method, path, body=None if body is None else json.dumps(body),
                               headers={"Content-Type": "application/json"})
        response = connection.getresponse()
        text = response.read().decode(errors="replace")
    finally:
        connection.close()
    if response.status >= 300:
        raise DockerEmulationError(f"{method} {path.split('?')[0]}: {response.status} {text.strip()}")
    return json.loads(text) if text.strip() else None


def _duration_ns(text: str) -> int:
    """A Go duration (`5s`, `1m30s`, `500ms`) in nanoseconds, as the provider's time.ParseDuration reads it."""
    parts = _DURATION.findall(text)
    if not parts or "".join(number + unit for number, unit in parts) != text:
        raise DockerEmulationError(f"not a duration: {text!r}")
    return int(sum(float(number) * _DURATION_NS[unit] for number, unit in parts))


def _create_body(inputs: Mapping[str, Any]) -> dict[str, Any]:
    """The ContainerCreate request the provider builds from these inputs (config, host config)."""
    host: dict[str, Any] = {"NetworkMode": inputs.get("networkMode") or "bridge",
                            "RestartPolicy": {"Name": inputs.get("restart") or "no"}}
    config: dict[str, Any] = {"Image": inputs["image"], "HostConfig": host}
    for key, field in (("Entrypoint", "entrypoints"), ("Cmd", "command"), ("Env", "envs")):
        if inputs.get(field):
            config[key] = list(inputs[field])
    if inputs.get("hostname"):
        config["Hostname"] = inputs["hostname"]
    config["Labels"] = {item["label"]: item["value"] for item in inputs.get("labels") or []}
    if inputs.get("healthcheck"):
        check = inputs["healthcheck"]
        config["Healthcheck"] = {"Test": list(check["tests"]), "Retries": int(check.get("retries") or 0),
                                 **{key: _duration_ns(check[field]) for key, field in
                                    (("Interval", "interval"), ("Timeout", "timeout"), ("StartPeriod", "startPeriod"))
                                    if check.get(field)}}
    if inputs.get("pidMode"):
        host["PidMode"] = inputs["pidMode"]
    if inputs.get("privileged"):
        host["Privileged"] = True
    host["Binds"] = [f"{volume.get('hostPath') or volume.get('volumeName')}:{volume['containerPath']}"
                     + (":ro" if volume.get("readOnly") else "") for volume in inputs.get("volumes") or []]
    ports = inputs.get("ports") or []  # numbers arrive as floats (protobuf Struct)
    config["ExposedPorts"] = {f"{int(port['internal'])}/{port.get('protocol') or 'tcp'}": {} for port in ports}
    host["PortBindings"] = {f"{int(port['internal'])}/{port.get('protocol') or 'tcp'}": [
        {"HostIp": port.get("ip") or "0.0.0.0", "HostPort": str(int(port["external"])) if port.get("external")
         else ""}] for port in ports}
    if inputs.get("tmpfs"):
        host["Tmpfs"] = dict(inputs["tmpfs"])
    if inputs.get("memory"):
        host["Memory"] = int(inputs["memory"]) * 1024 * 1024
    if inputs.get("memorySwap"):
        swap = int(inputs["memorySwap"])
        host["MemorySwap"] = swap * 1024 * 1024 if swap > 0 else swap
    if inputs.get("cpus"):
        host["NanoCpus"] = int(float(inputs["cpus"]) * 1e9)
    host["Ulimits"] = [{"Name": limit["name"], "Soft": int(limit["soft"]), "Hard": int(limit["hard"])}
                       for limit in inputs.get("ulimits") or []]
    return config


def _upload_tar(upload: Mapping[str, Any]) -> bytes:
    """The provider's upload: one tar entry named `file`, mode from `permissions` (octal), else 0744 when
    `executable`, else 0644; copied into the container at `/` (missing directories are created)."""
    content = upload.get("content")
    data = base64.b64decode(upload["contentBase64"]) if upload.get("contentBase64") else str(content or "").encode()
    mode = int(upload["permissions"], 8) if upload.get("permissions") else (
        0o744 if upload.get("executable") else 0o644)
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        entry = tarfile.TarInfo(str(upload["file"]))
        entry.size, entry.mode, entry.mtime = len(data), mode, int(time.time())
        archive.addfile(entry, io.BytesIO(data))
    return buffer.getvalue()


def _wait_healthy(engine: str, container_id: str, timeout: int) -> None:
    """The provider's `wait`: inspect every second until healthy; an error after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        state = json.loads(_docker(engine, "inspect", "--format", "{{json .State}}", container_id))
        if not state.get("Health"):
            raise DockerEmulationError("you have supplied a 'wait' argument, but the container does not have a "
                                       "healthcheck defined")
        if state["Health"].get("Status") == "healthy":
            return
        if time.monotonic() > deadline:
            log = (state["Health"].get("Log") or [{}])[-1].get("Output", "").strip()
            raise DockerEmulationError(f"container failed to be in healthy state (last check: {log[-500:]})")
        time.sleep(1)


def delete_docker(typ: str, outputs: Mapping[str, Any]) -> None:
    """What the provider's delete does for each emulated type."""
    kind = typ.rsplit(":", 1)[-1]
    if kind == "Container":
        grace = str(int(outputs.get("destroyGraceSeconds") or 0))
        subprocess.run([DOCKER, "-H", _engine(outputs), "stop", "-t", grace, str(outputs["id"])],
                       capture_output=True, check=False, timeout=int(grace) + 60)
        _docker(_engine(outputs), "rm", "--force", *(["--volumes"] if outputs.get("removeVolumes", True) else []),
                str(outputs["id"]))
    elif kind == "Network":
        _docker(_engine(outputs), "network", "rm", str(outputs["id"]))
    elif kind == "Volume":
        _docker(_engine(outputs), "volume", "rm", str(outputs["name"]))
    elif kind == "RemoteImage" and not outputs.get("keepLocally"):
        _docker(_engine(outputs), "image", "rm", str(outputs["name"]))


class DockerMocks(ExecutingMocks):
    """ExecutingMocks whose Docker resources run on the engine of their provider's host: `engines` maps a host
    address to its engine (`unix:///.../docker.sock`)."""

    def __init__(self, state: StackState, engines: Mapping[str, str],
                 emulators: dict[str, Emulator] | None = None):
        # Dynamic providers (the local stack's etcd membership guard) run as the engine runs them.
        super().__init__(state, emulators={"docker": emulate_docker, PROVIDER: emulate_docker,
                                           "pulumi-python": DynamicEmulator(), **(emulators or {})})
        self.engines = dict(engines)
        self.provider_hosts: dict[str, str] = {}  # provider resource name -> its host's address

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str | None, dict[str, Any]]:
        if args.typ == PROVIDER:
            self.provider_hosts[args.name] = urlparse(str(args.inputs.get("host"))).hostname or ""
        elif args.typ.startswith("docker:"):
            # A provider reference is "<provider URN>::<id>"; the URN ends with the provider's name.
            provider = args.provider.split("::")[-2] if args.provider else ""
            args.inputs = {**args.inputs, ENGINE_KEY: self.engines.get(self.provider_hosts.get(provider, ""), "")}
        return super().new_resource(args)

    def _delete(self, old: ResourceState, operation: str) -> None:
        super()._delete(old, operation)  # logs the operation (and runs a command's delete)
        if old.type.startswith("docker:"):
            self._guarded(old.type, old.name, old.outputs, lambda: delete_docker(old.type, old.outputs))
