"""The Mesos recipe's ZooKeeper-in-Docker variant for real: the ZooKeeperContainers component (what MesosCluster
runs on the masters of a stack without a ZooKeeper ensemble) on three booted hosts, each with a Docker engine in
its network namespace (tests/infra/docker_engine.py), through one Docker provider per host, with an image built
here from Debian's zookeeper package behind the official image's documented interface. The nodes are prepared
over SSH for real and their architecture facts gate the providers. The Docker resources are emulated by
tests/harness/docker_emulator.py on those engines (Unix sockets instead of the provider's SSH transport).

Mesos and Marathon themselves cannot run here: their images cannot be pulled (tests/unit/test_mesos.py covers
their containers under mocks).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pulumi
import pytest
from kazoo.client import KazooClient

from components.mesos.docker_hosts import DockerHost, docker_provider
from components.mesos.zookeeper import ZooKeeperContainers, ZooKeeperContainersArgs
from components.nodes.host import Host, HostArgs
from components.shared.connection import SshConnection
from tests.harness.docker_emulator import DockerMocks
from tests.harness.executing import StackState
from tests.harness.program import run_program
from tests.infra.docker_engine import DOCKERD, DockerEngines
from tests.infra.hosts import HostFleet
from tests.integration.conftest import boot_fleet

pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(shutil.which(DOCKERD) is None, reason="needs dockerd (Debian docker.io)")]

HOSTS = ["d1", "d2", "d3"]
NUMBERS: dict[str, Any] = {}


@dataclass
class Setup:
    fleet: HostFleet
    engines: DockerEngines
    image: str
    state: StackState


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    for fleet in boot_fleet(HOSTS, tmp_path_factory):
        with DockerEngines(fleet, tmp_path_factory.mktemp("docker")) as engines:
            started = time.monotonic()
            image = engines.load_zookeeper_image()
            NUMBERS["image_build_or_load_seconds"] = round(time.monotonic() - started, 1)
            yield Setup(fleet, engines, image, StackState())
    print("\nzookeeper-in-docker numbers:", json.dumps(NUMBERS, indent=1))


def program(setup: Setup) -> Callable[[], None]:
    def run() -> None:
        key = pulumi.Output.secret(setup.fleet.private_key_pem)
        targets = []
        for test_host in setup.fleet:
            host = Host(test_host.name, HostArgs(
                connection=SshConnection(host=test_host.address, private_key=key, host_key=test_host.host_key,
                                         dial_error_limit=3, per_dial_timeout=5),
                hostname=test_host.name, packages=("jq",), kubernetes_networking=False))
            targets.append(DockerHost(host=host, user="root", host_key=test_host.host_key))
        providers = {t.host.hostname: docker_provider(f"docker-{t.host.hostname}", t, None) for t in targets}
        ensemble = ZooKeeperContainers("mesos-zookeeper", ZooKeeperContainersArgs(
            servers=targets, providers=providers, image=setup.image))
        pulumi.export("connect_string", ensemble.connect_string)
    return run


def up(setup: Setup) -> tuple[DockerMocks, dict[str, Any]]:
    mocks = DockerMocks(setup.state, {engine_host.address: setup.engines[engine_host.name].url
                                      for engine_host in setup.fleet})
    outputs = run_program(mocks, {}, stack="it-zookeeper-docker", program=program(setup))
    mocks.finish()
    return mocks, outputs


def mode(address: str) -> str:
    try:
        with socket.create_connection((address, 2181), timeout=2) as connection:
            connection.sendall(b"srvr")
            answer = connection.recv(4096).decode()
    except OSError:
        return ""
    return next((line[6:] for line in answer.splitlines() if line.startswith("Mode: ")), "")


def wait_serving(setup: Setup, timeout: float = 90) -> dict[str, str]:
    deadline = time.monotonic() + timeout
    while True:
        modes = {host.name: mode(host.address) for host in setup.fleet}
        if sorted(modes.values()) == ["follower", "follower", "leader"]:
            return modes
        assert time.monotonic() < deadline, modes
        time.sleep(0.5)


@pytest.fixture(scope="module")
def deployed(setup: Setup) -> dict[str, Any]:
    started = time.monotonic()
    mocks, outputs = up(setup)
    wait_serving(setup)
    NUMBERS["bring_up_3_containers_seconds"] = round(time.monotonic() - started, 1)
    NUMBERS["steps"] = [name for _, name in mocks.operations]
    return outputs


def test_the_containers_form_an_ensemble_a_client_uses(setup: Setup, deployed: dict[str, Any]) -> None:
    addresses = [host.address for host in setup.fleet]
    assert deployed["connect_string"] == ",".join(f"{a}:2181" for a in addresses)
    clients = {host.name: KazooClient(hosts=f"{host.address}:2181", timeout=10) for host in setup.fleet}
    try:
        for zk in clients.values():
            zk.start(timeout=30)
        for writer, zk in clients.items():
            zk.create(f"/docker/{writer}", writer.encode(), makepath=True)
        for reader, zk in clients.items():
            for writer in (w for w in clients if w != reader):
                zk.sync(f"/docker/{writer}")
                assert zk.get(f"/docker/{writer}")[0] == writer.encode()
    finally:
        for zk in clients.values():
            zk.stop()
            zk.close()


def test_the_containers_run_as_the_recipe_declares(setup: Setup, deployed: dict[str, Any]) -> None:
    for index, host in enumerate(setup.fleet, start=1):
        inspected = json.loads(setup.engines[host.name].docker("inspect", "cookbook-zookeeper").stdout)[0]
        config, host_config = inspected["Config"], inspected["HostConfig"]
        assert host_config["NetworkMode"] == "host"
        assert host_config["RestartPolicy"]["Name"] == "unless-stopped"
        assert f"ZOO_MY_ID={index}" in config["Env"]
        assert {m["Destination"]: m["Name"] for m in inspected["Mounts"]} == {
            "/data": "cookbook-zookeeper-data", "/datalog": "cookbook-zookeeper-datalog"}
        assert config["Labels"]["managed-by"] == "cluster-cookbook"
        # AdminServer off (its port 8080 is Marathon's on a master); only the whitelisted words answer.
        with pytest.raises(OSError):
            socket.create_connection((host.address, 8080), timeout=2).close()
        with socket.create_connection((host.address, 2181), timeout=2) as connection:
            connection.sendall(b"envi")
            assert b"not in the whitelist" in connection.recv(4096)


def test_a_killed_server_is_restarted_by_docker_and_keeps_its_data(setup: Setup, deployed: dict[str, Any]) -> None:
    leader = next(name for name, role in wait_serving(setup).items() if role == "leader")
    engine = setup.engines[leader]
    pid = int(engine.docker("inspect", "--format", "{{.State.Pid}}", "cookbook-zookeeper").stdout)
    killed_at = time.monotonic()
    os.kill(pid, signal.SIGKILL)
    modes = wait_serving(setup)
    NUMBERS["leader_container_kill_to_three_serving_seconds"] = round(time.monotonic() - killed_at, 1)
    NUMBERS["leader_container_kill"] = f"{leader} -> {next(n for n, r in modes.items() if r == 'leader')}"
    restarts = engine.docker("inspect", "--format", "{{.RestartCount}}", "cookbook-zookeeper").stdout
    assert int(restarts) >= 1
    zk = KazooClient(hosts=f"{setup.fleet[leader].address}:2181", timeout=10)
    zk.start(timeout=30)
    try:
        zk.sync("/docker")
        assert sorted(zk.get_children("/docker")) == HOSTS  # the volumes kept /data across the restart
    finally:
        zk.stop()
        zk.close()


def test_a_second_run_changes_nothing(setup: Setup, deployed: dict[str, Any]) -> None:
    mocks, _ = up(setup)
    assert mocks.operations == []


def test_report_numbers(setup: Setup) -> None:
    print("\nzookeeper-in-docker numbers:", json.dumps(NUMBERS, indent=1))
    assert NUMBERS
