"""The local ZooKeeper part of the `local.mesos` switch for real: the ZooKeeperContainers MesosCluster builds on the
local engine, with the local stack's own Mesos targets (components/local/mesos.py `cluster_args`, three masters) on
the local stack's network (`local_network`), run under the executing mocks with its `docker:*` resources executed
by tests/harness/docker_emulator.py on a real Docker engine (Debian's docker.io in its own network namespace, its
default bridge kept like a user's engine), from the ZooKeeper image the tests build from Debian's `zookeeper`
package behind the official image's documented interface (tests/infra/docker_engine.py). The engine's own `/info`
answers the architecture check the program runs before the switch declares anything.

The Mesos master, Marathon and agent images cannot be pulled here: tests/unit/test_local_mesos.py checks their
containers under mocks only.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

import pulumi
import pytest

from components.local import engine as local_engine
from components.local import render
from components.local.cluster import local_network
from components.local.mesos import MARATHON_PORT, MASTER_PORT, LocalMesosArgs, cluster_args, default_ports
from components.mesos.cluster import Images, zookeeper_containers_args
from components.mesos.zookeeper import ZooKeeperContainers
from tests.harness.docker_emulator import DockerMocks
from tests.harness.program import run_program
from tests.infra.docker_engine import DOCKERD, ZOOKEEPER_IMAGE, DockerEngine
from tests.integration.local_engine import EngineSetup as Setup
from tests.integration.local_engine import engine_setup

pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(shutil.which(DOCKERD) is None, reason="needs dockerd (Debian docker.io)")]

ENGINE_HOST = "lmesos"  # the engine's network namespace: cN-lmesos in this test lane
PREFIX = "it-local"
SUBNET = "10.213.0.0/24"
ADDRESSES = ["10.213.0.41", "10.213.0.42", "10.213.0.43"]
CONTAINERS = [f"{PREFIX}-zookeeper-{n}" for n in (1, 2, 3)]
STACK = "it-local-mesos"
NUMBERS: dict[str, Any] = {}
# A kazoo client in the engine's network namespace, where the local network's addresses are reachable.
KAZOO = r"""
import json, sys
from kazoo.client import KazooClient
hosts, operations = sys.argv[1], json.loads(sys.argv[2])
zk = KazooClient(hosts=hosts, timeout=10)
zk.start(timeout=30)
try:
    out = []
    for op, path, value in operations:
        if op == "create":
            zk.create(path, value.encode(), makepath=True)
        elif op == "get":
            zk.sync(path)
            out.append(zk.get(path)[0].decode())
        elif op == "children":
            zk.sync(path)
            out.append(sorted(zk.get_children(path)))
    print(json.dumps(out))
finally:
    zk.stop()
    zk.close()
"""


def program() -> None:
    """The switch's ZooKeeper part: the local network and the ZooKeeper containers MesosCluster would build."""
    args = LocalMesosArgs(masters=3, agents=0, images=Images(zookeeper=ZOOKEEPER_IMAGE),
                          master_ports=default_ports(MASTER_PORT, 3), marathon_ports=default_ports(MARATHON_PORT, 3))
    fixed = render.addresses(SUBNET, 0, 0, args.masters, args.agents)
    net = local_network("local-network", PREFIX, SUBNET, fixed.gateway, None)
    mesos = cluster_args(PREFIX, args, net, fixed)
    ensemble = ZooKeeperContainers("local-mesos-zookeeper", zookeeper_containers_args(mesos, {"": None}))
    pulumi.export("connect_string", ensemble.connect_string)


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    yield from engine_setup(ENGINE_HOST, tmp_path_factory, DockerEngine.load_zookeeper_image, NUMBERS,
                            "local mesos (zookeeper)")


def up(setup: Setup, run: Callable[[], None] = program) -> tuple[DockerMocks, dict[str, Any]]:
    mocks = DockerMocks(setup.state, {"": setup.engine.url})
    outputs = run_program(mocks, {}, stack=STACK, program=run)
    mocks.finish()
    return mocks, outputs


def mode(setup: Setup, address: str) -> str:
    script = ("import socket,sys\ns=socket.create_connection((sys.argv[1],2181),timeout=2)\ns.sendall(b'srvr')\n"
              "print(s.recv(4096).decode())")
    done = setup.in_netns(sys.executable, "-c", script, address)
    return next((line[6:] for line in done.stdout.splitlines() if line.startswith("Mode: ")), "")


def wait_serving(setup: Setup, timeout: float = 120) -> dict[str, str]:
    deadline = time.monotonic() + timeout
    while True:
        modes = {address: mode(setup, address) for address in ADDRESSES}
        if sorted(modes.values()) == ["follower", "follower", "leader"]:
            return modes
        assert time.monotonic() < deadline, modes
        time.sleep(0.5)


def kazoo(setup: Setup, hosts: str, operations: list[tuple[str, str, str]]) -> list[Any]:
    done = setup.in_netns(sys.executable, "-c", KAZOO, hosts, json.dumps(operations))
    assert done.returncode == 0, done.stderr[-2000:]
    return list(json.loads(done.stdout.strip().splitlines()[-1]))


@pytest.fixture(scope="module")
def deployed(setup: Setup) -> dict[str, Any]:
    started = time.monotonic()
    mocks, outputs = up(setup)
    wait_serving(setup)
    NUMBERS["bring_up_3_servers_serving_seconds"] = round(time.monotonic() - started, 1)
    NUMBERS["first_run_operations"] = len(mocks.operations)
    return outputs


# --- tests ----------------------------------------------------------------------------------------------------
def test_the_engine_itself_says_it_is_amd64(setup: Setup) -> None:
    """The check the program runs before `local.mesos` declares anything, against a real dockerd's `/info`."""
    environ = {"DOCKER_HOST": setup.engine.url}
    assert local_engine.engine_architecture(environ) == "x86_64"
    assert local_engine.require_amd64(environ) == "x86_64"


def test_the_servers_form_one_ensemble_on_the_local_network(setup: Setup, deployed: dict[str, Any]) -> None:
    assert deployed["connect_string"] == ",".join(f"{address}:2181" for address in ADDRESSES)
    for index, writer in enumerate(ADDRESSES):
        kazoo(setup, f"{writer}:2181", [("create", f"/local/{index}", writer)])
    for index, writer in enumerate(ADDRESSES):
        for reader in (r for r in ADDRESSES if r != writer):
            assert kazoo(setup, f"{reader}:2181", [("get", f"/local/{index}", "")]) == [writer]


def test_the_containers_are_on_the_local_network_not_the_hosts(setup: Setup, deployed: dict[str, Any]) -> None:
    for index, (name, address) in enumerate(zip(CONTAINERS, ADDRESSES, strict=True), start=1):
        inspected = setup.inspect(name)
        host, config = inspected["HostConfig"], inspected["Config"]
        assert host["NetworkMode"] != "host"
        assert list(inspected["NetworkSettings"]["Networks"]) == [PREFIX]
        assert inspected["NetworkSettings"]["Networks"][PREFIX]["IPAddress"] == address
        assert host["PortBindings"] == {} and host["Privileged"] is False
        assert host["RestartPolicy"]["Name"] == "unless-stopped"
        assert (host["Memory"], host["MemorySwap"], host["NanoCpus"]) == (256 * 2**20, 256 * 2**20, 500_000_000)
        assert config["Hostname"] == name and config["Labels"]["managed-by"] == "cluster-cookbook"
        assert f"ZOO_MY_ID={index}" in config["Env"]
        assert {m["Destination"]: m["Name"] for m in inspected["Mounts"]} == {
            "/data": f"{name}-data", "/datalog": f"{name}-datalog"}
        volume = json.loads(setup.docker("volume", "inspect", f"{name}-data"))[0]
        assert volume["Labels"] == {"managed-by": "cluster-cookbook"}
    # Nothing listens in the engine's own namespace (no host networking, nothing published).
    listening = setup.in_netns("ss", "-Htln").stdout
    assert not [line for line in listening.splitlines()
                if line.split()[3].rsplit(":", 1)[-1] in {"2181", "2888", "3888", "8080"}], listening


def test_a_killed_leader_is_restarted_by_docker_and_keeps_its_data(setup: Setup, deployed: dict[str, Any]) -> None:
    leader = next(address for address, role in wait_serving(setup).items() if role == "leader")
    name = CONTAINERS[ADDRESSES.index(leader)]
    pid = int(setup.docker("inspect", "--format", "{{.State.Pid}}", name))
    killed = time.monotonic()
    subprocess.run(["kill", "-9", str(pid)], check=True)
    modes = wait_serving(setup)
    NUMBERS["leader_kill_to_three_serving_seconds"] = round(time.monotonic() - killed, 1)
    NUMBERS["leader"] = f"{leader} -> {next(a for a, r in modes.items() if r == 'leader')}"
    assert int(setup.docker("inspect", "--format", "{{.RestartCount}}", name)) >= 1
    assert kazoo(setup, f"{leader}:2181", [("children", "/local", "")]) == [["0", "1", "2"]]


def test_a_second_run_changes_nothing(setup: Setup, deployed: dict[str, Any]) -> None:
    ids = {name: setup.inspect(name)["Id"] for name in CONTAINERS}
    mocks, outputs = up(setup)
    assert mocks.operations == [] and outputs == deployed
    assert {name: setup.inspect(name)["Id"] for name in CONTAINERS} == ids


def test_destroy_leaves_nothing_on_the_engine(setup: Setup, deployed: dict[str, Any]) -> None:
    started = time.monotonic()
    up(setup, run=lambda: None)
    NUMBERS["destroy_seconds"] = round(time.monotonic() - started, 1)
    assert setup.state.resources == {}
    assert setup.docker("ps", "-aq") == "" and setup.docker("volume", "ls", "-q") == ""
    assert sorted(setup.docker("network", "ls", "--format", "{{.Name}}").split()) == ["bridge", "host", "none"]
    assert ZOOKEEPER_IMAGE in setup.docker("image", "ls", "--format", "{{.Repository}}:{{.Tag}}")  # kept
