"""The parts of the Docker emulator the local stack added (tests/harness/docker_emulator.py), against what
terraform-provider-docker sends for the same inputs (internal/provider/resource_docker_container_funcs.go):
the ContainerCreate request, Go durations, and the upload tar."""

from __future__ import annotations

import io
import tarfile

import pytest

from tests.harness.docker_emulator import DockerEmulationError, _create_body, _duration_ns, _upload_tar


@pytest.mark.parametrize(("text", "nanoseconds"), [
    ("5s", 5 * 10**9), ("500ms", 5 * 10**8), ("1m30s", 90 * 10**9), ("1.5h", 5400 * 10**9), ("0s", 0)])
def test_go_durations(text: str, nanoseconds: int) -> None:
    assert _duration_ns(text) == nanoseconds


@pytest.mark.parametrize("text", ["5", "5 s", "s", "5x", "-5s"])
def test_what_is_not_a_duration_is_refused(text: str) -> None:
    with pytest.raises(DockerEmulationError, match="not a duration"):
        _duration_ns(text)


def test_the_create_request_is_the_providers() -> None:
    body = _create_body({  # wire-format inputs: numbers arrive as floats
        "name": "c", "image": "etcd:1", "hostname": "c", "command": ["etcd"], "envs": ["A=1"],
        "labels": [{"label": "managed-by", "value": "cluster-cookbook"}],
        "ports": [{"internal": 2379.0, "external": 22379.0, "ip": "127.0.0.1", "protocol": "tcp"}],
        "volumes": [{"volumeName": "data", "containerPath": "/data"}], "tmpfs": {"/run": ""},
        "memory": 256.0, "memorySwap": 256.0, "cpus": "0.5", "restart": "unless-stopped", "privileged": True,
        "ulimits": [{"name": "nofile", "soft": 65535.0, "hard": 65535.0}],
        "healthcheck": {"tests": ["CMD", "etcdctl", "endpoint", "health"], "interval": "5s", "timeout": "10s",
                        "retries": 3.0},
    })
    host = body.pop("HostConfig")
    assert body == {"Image": "etcd:1", "Cmd": ["etcd"], "Env": ["A=1"], "Hostname": "c",
                    "Labels": {"managed-by": "cluster-cookbook"}, "ExposedPorts": {"2379/tcp": {}},
                    "Healthcheck": {"Test": ["CMD", "etcdctl", "endpoint", "health"], "Retries": 3,
                                    "Interval": 5 * 10**9, "Timeout": 10 * 10**9}}
    assert host == {"NetworkMode": "bridge", "RestartPolicy": {"Name": "unless-stopped"}, "Privileged": True,
                    "Binds": ["data:/data"], "PortBindings": {"2379/tcp": [{"HostIp": "127.0.0.1",
                                                                           "HostPort": "22379"}]},
                    "Tmpfs": {"/run": ""}, "Memory": 256 * 2**20, "MemorySwap": 256 * 2**20,
                    "NanoCpus": 500_000_000, "Ulimits": [{"Name": "nofile", "Soft": 65535, "Hard": 65535}]}
    # The provider's defaults: the default bridge, no restart, a port on every address.
    plain = _create_body({"name": "c", "image": "i:1", "ports": [{"internal": 80.0}]})
    assert plain["HostConfig"]["NetworkMode"] == "bridge" and plain["HostConfig"]["RestartPolicy"] == {"Name": "no"}
    assert plain["HostConfig"]["PortBindings"] == {"80/tcp": [{"HostIp": "0.0.0.0", "HostPort": ""}]}


@pytest.mark.parametrize(("upload", "mode"), [
    ({"file": "/etc/x/key", "content": "secret", "permissions": "0600"}, 0o600),
    ({"file": "/usr/local/bin/run", "content": "#!/bin/sh", "executable": True}, 0o744),
    ({"file": "/etc/x/conf", "content": "a: 1"}, 0o644),
])
def test_an_upload_is_one_tar_entry_at_its_path(upload: dict[str, object], mode: int) -> None:
    with tarfile.open(fileobj=io.BytesIO(_upload_tar(upload))) as archive:
        (entry,) = archive.getmembers()
        assert (entry.name, entry.mode) == (upload["file"], mode)  # the name as given, as the provider writes it
        extracted = archive.extractfile(entry)
        assert extracted is not None and extracted.read() == str(upload["content"]).encode()
