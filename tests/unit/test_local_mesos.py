"""The `local.mesos` switch under mocks: the Mesos recipe's MesosCluster on the local engine through LocalMesosNode
targets (components/local/mesos.py): the graph, every container's settings (the local network with fixed
addresses, never the host network; published ports on 127.0.0.1 only and no clash with the rest of the local
stack; limits; restart policies), the recipe's own command lines and quorum, volumes, the engine's architecture
(asked of the engine: a Unix socket answering `/info`, or `docker info` for other transports) and the refusal of a
non-amd64 engine naming `local.mesos.enabled`, the policy pack, secrets, and the config keys.

Mesos and Marathon images cannot be pulled on this machine: their containers are checked here only
(tests/integration/test_local_mesos.py runs the local ZooKeeper part for real).
"""

from __future__ import annotations

import ipaddress
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pulumi
import pytest

from components.local import engine
from components.local.config import parse_local_config
from components.local.mesos import LOCAL_AGENT_RESOURCES, LocalMesosArgs
from components.mesos import cluster as mesos
from components.shared.validation import ConfigError, Problems
from components.stack import parse_stack_config
from policy import rules
from tests.harness.fixtures import FAKE_SECRETS
from tests.harness.program import load_stack_config, run_program
from tests.harness.recording import Recorded, RecordingMocks, plain_strings
from tests.unit.test_local import PemMocks
from tests.unit.test_local_engine import FakeEngine

CONTAINER, VOLUME, IMAGE = ("docker:index/container:Container", "docker:index/volume:Volume",
                            "docker:index/remoteImage:RemoteImage")
SUBNET = ipaddress.ip_network("10.213.0.0/24")
P = "cookbook-local"


class MountpointMocks(PemMocks):
    """Also answers a volume's `mountpoint` as the engine's `local` driver reports it (`docker volume inspect`)."""

    def fake_outputs(self, typ: str, inputs: dict[str, Any]) -> dict[str, Any]:
        outputs = super().fake_outputs(typ, inputs)
        if typ == VOLUME:
            outputs["mountpoint"] = f"/var/lib/docker/volumes/{inputs['name']}/_data"
        return outputs


def info(architecture: str) -> str:
    return json.dumps({"Architecture": architecture, "OSType": "linux", "CgroupVersion": "2"})


@pytest.fixture
def amd64_engine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeEngine]:
    """An engine answering `/info` as an amd64 machine's dockerd does (`Architecture` is its `uname -m`)."""
    fake = FakeEngine(tmp_path / "docker.sock", body=info("x86_64"))
    monkeypatch.setenv("DOCKER_HOST", f"unix://{fake.path}")
    monkeypatch.delenv("DOCKER_CONTEXT", raising=False)
    yield fake
    fake.close()


def local_config(mesos: dict[str, Any] | None = None, **local: Any) -> dict[str, Any]:
    config = {**load_stack_config("local"), **FAKE_SECRETS}
    section = {**config["cluster-cookbook:local"], **local}
    section.pop("mesos", None)
    if mesos is not None:
        section["mesos"] = mesos
    config["cluster-cookbook:local"] = section
    return config


def evaluate(mesos: dict[str, Any] | None = None, **local: Any) -> tuple[MountpointMocks, dict[str, Any]]:
    mocks = MountpointMocks()
    outputs = run_program(mocks, local_config(mesos, **local), stack="local", secret_keys=list(FAKE_SECRETS))
    return mocks, outputs


def containers(mocks: RecordingMocks) -> dict[str, Recorded]:
    return {r.inputs["name"]: r for r in mocks.of_type(CONTAINER)}


@pytest.fixture
def switched_on(amd64_engine: FakeEngine) -> tuple[MountpointMocks, dict[str, Any]]:
    return evaluate({"enabled": True, "masters": 3, "agents": 2})


# --- the switch -----------------------------------------------------------------------------------------------
def test_the_shipped_local_stack_keeps_mesos_off_and_never_asks_the_engine(tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeEngine(tmp_path / "docker.sock", body=info("aarch64"))
    monkeypatch.setenv("DOCKER_HOST", f"unix://{fake.path}")
    try:
        mocks = MountpointMocks()
        outputs = run_program(mocks, {**load_stack_config("local"), **FAKE_SECRETS}, stack="local",
                              secret_keys=list(FAKE_SECRETS))
    finally:
        fake.close()
    assert load_stack_config("local")["cluster-cookbook:local"]["mesos"]["enabled"] is False
    assert not [r for r in mocks.resources if "mesos" in r.name or r.type.startswith("cookbook:mesos:")]
    assert "mesos" not in outputs and fake.requests == []  # an arm engine is fine while Mesos is off


def test_the_shipped_mesos_settings_are_the_defaults() -> None:
    problems = Problems()
    section = {**load_stack_config("local")["cluster-cookbook:local"]}
    section["mesos"] = {**section["mesos"], "enabled": True}
    args = parse_local_config(section, [], problems)
    assert problems.items == [] and args is not None and args.mesos == LocalMesosArgs()


def test_switched_on_it_is_the_mesos_recipe_under_the_local_cluster(switched_on: tuple[MountpointMocks, Any],
                                                                    amd64_engine: FakeEngine) -> None:
    mocks, outputs = switched_on
    assert amd64_engine.requests == ["GET /info HTTP/1.1"]  # asked once, before anything was declared
    by_name = {r.name: r for r in mocks.resources}
    assert by_name["local-mesos"].type == "cookbook:mesos:Cluster"
    assert by_name["local-mesos"].parent == by_name["local"].urn
    assert by_name["local-mesos-zookeeper"].type == "cookbook:mesos:ZooKeeperContainers"
    mesos_containers = sorted(name for name in containers(mocks) if "mesos" in name or "marathon" in name
                              or "zookeeper" in name)
    assert mesos_containers == sorted([*(f"{P}-{role}-{n}" for role in ("zookeeper", "mesos-master", "marathon")
                                         for n in (1, 2, 3)), f"{P}-mesos-agent-1", f"{P}-mesos-agent-2"])
    # One engine: no provider resource, every image pulled once, every Docker resource under the local cluster.
    assert mocks.of_type("pulumi:providers:docker") == []
    images = sorted(r.name for r in mocks.of_type(IMAGE) if r.name.startswith("local-mesos"))
    assert images == ["local-mesos-agent-image", "local-mesos-marathon-image", "local-mesos-master-image",
                      "local-mesos-zookeeper-image"]
    assert all(r.inputs["keepLocally"] is True for r in mocks.of_type(IMAGE))
    local_components = {r.urn for r in mocks.resources if r.type.startswith(("cookbook:local:", "cookbook:mesos:"))}
    assert all(r.parent in local_components for r in mocks.resources if r.type.startswith("docker:"))
    assert outputs["mesos"] == {
        "master_urls": ["http://127.0.0.1:5050", "http://127.0.0.1:15050", "http://127.0.0.1:25050"],
        "marathon_urls": ["http://127.0.0.1:8080", "http://127.0.0.1:18080", "http://127.0.0.1:28080"],
        "zookeeper_url": "zk://10.213.0.41:2181,10.213.0.42:2181,10.213.0.43:2181/mesos"}


def test_what_waits_for_what(switched_on: tuple[MountpointMocks, Any]) -> None:
    mocks, _ = switched_on
    by_urn = {r.urn: r.name for r in mocks.resources}

    def deps(name: str) -> set[str]:
        return {by_urn.get(d, d) for d in mocks.named(name).registration.dependencies}

    zookeepers = {f"local-mesos-zookeeper-{n}" for n in (1, 2, 3)}
    masters = {f"local-mesos-master-{n}" for n in (1, 2, 3)}
    assert zookeepers <= deps("local-mesos-master-2") and "local-network" in deps("local-mesos-master-2")
    assert masters <= deps("local-mesos-marathon-1") and masters <= deps("local-mesos-agent-2")
    assert {"local-mesos-agent-work-2", "local-mesos-agent-image"} <= deps("local-mesos-agent-2")
    assert not (deps("local-mesos-zookeeper-1") & (zookeepers | masters))  # the servers start together


# --- container settings -------------------------------------------------------------------------------------------
def test_nothing_on_the_host_network_and_every_address_fixed_and_distinct(
        switched_on: tuple[MountpointMocks, Any]) -> None:
    mocks, _ = switched_on
    found = containers(mocks)
    assert all("networkMode" not in c.inputs for c in found.values())
    attached = {name: c.inputs["networksAdvanced"] for name, c in found.items()}
    assert all(len(a) == 1 and a[0]["name"] == P for a in attached.values())
    addresses = {name: a[0]["ipv4Address"] for name, a in attached.items()}
    assert len(set(addresses.values())) == len(addresses)  # no two containers share an address
    assert all(ipaddress.ip_address(a) in SUBNET for a in addresses.values())
    expected = {f"{P}-zookeeper-1": "10.213.0.41", f"{P}-zookeeper-3": "10.213.0.43",
                f"{P}-mesos-master-1": "10.213.0.44", f"{P}-mesos-master-3": "10.213.0.46",
                f"{P}-marathon-1": "10.213.0.47", f"{P}-marathon-3": "10.213.0.49",
                f"{P}-mesos-agent-1": "10.213.0.51", f"{P}-mesos-agent-2": "10.213.0.52"}
    assert {name: addresses[name] for name in expected} == expected


def test_published_ports_are_on_loopback_only_and_never_clash(switched_on: tuple[MountpointMocks, Any]) -> None:
    mocks, _ = switched_on
    published = [(name, p["ip"], int(p["external"]), int(p["internal"]))
                 for name, c in containers(mocks).items() for p in c.inputs["ports"]]
    assert all(ip == "127.0.0.1" for _, ip, _, _ in published)
    host_ports = [port for _, _, port, _ in published]
    assert len(host_ports) == len(set(host_ports)), sorted(host_ports)  # across the whole local stack
    mesos_ports = sorted((name, port, inside) for name, _, port, inside in published
                         if "mesos" in name or "marathon" in name or "zookeeper" in name)
    assert mesos_ports == sorted([(f"{P}-mesos-master-1", 5050, 5050), (f"{P}-mesos-master-2", 15050, 5050),
                                  (f"{P}-mesos-master-3", 25050, 5050), (f"{P}-marathon-1", 8080, 8080),
                                  (f"{P}-marathon-2", 18080, 8080), (f"{P}-marathon-3", 28080, 8080)])


def test_every_mesos_container_is_limited_restarts_and_stops_cleanly(switched_on: tuple[MountpointMocks, Any]) -> None:
    mocks, _ = switched_on
    limits = {"zookeeper": (256, "0.5"), "mesos-master": (512, "1"), "marathon": (1024, "1"),
              "mesos-agent": (LOCAL_AGENT_RESOURCES.mem + 512, "1")}
    for name, container in containers(mocks).items():
        role = next((role for role in limits if name.startswith(f"{P}-{role}-")), None)
        if role is None:
            continue
        inputs, (memory, cpus) = container.inputs, limits[role]
        assert (inputs["memory"], inputs["memorySwap"], inputs["cpus"]) == (memory, memory, cpus), name
        assert inputs["restart"] == "unless-stopped" and inputs["mustRun"] is True, name
        assert inputs["destroyGraceSeconds"] == 30 and inputs["hostname"] == name, name
        assert inputs["labels"] == [{"label": "managed-by", "value": "cluster-cookbook"}], name
        assert container.registration.delete_before_replace, name
        assert bool(inputs.get("privileged")) is (role == "mesos-agent"), name


def test_the_recipes_command_lines_with_the_local_addresses(switched_on: tuple[MountpointMocks, Any]) -> None:
    """The command lines are the recipe's renderers' (components/mesos/cluster.py) given the containers' own
    addresses: `--quorum` a majority, ZooKeeper the per-master containers; only the agent's launcher is added."""
    mocks, _ = switched_on
    found = containers(mocks)
    connect = "10.213.0.41:2181,10.213.0.42:2181,10.213.0.43:2181"
    recipe = mesos.MesosClusterArgs(masters=[object()] * 3, cluster_name=P,  # type: ignore[list-item]
                                    resources=LOCAL_AGENT_RESOURCES)
    for n, address in ((1, "10.213.0.44"), (3, "10.213.0.46")):
        master = found[f"{P}-mesos-master-{n}"].inputs
        assert master["entrypoints"] == ["mesos-master"]
        assert master["command"] == mesos.master_command(recipe, address, connect)
        assert "--quorum=2" in master["command"] and f"--advertise_ip={address}" in master["command"]
        assert master["volumes"] == [{"volumeName": f"{P}-mesos-master-{n}-work",
                                      "containerPath": "/var/lib/mesos/master"}]
    assert found[f"{P}-marathon-2"].inputs["command"] == mesos.marathon_command(recipe, "10.213.0.48", connect)
    agent = found[f"{P}-mesos-agent-2"].inputs
    work = f"/var/lib/docker/volumes/{P}-mesos-agent-2-work/_data"
    assert agent["command"] == [*mesos.agent_command(recipe, "10.213.0.52", connect, work), "--launcher=posix"]
    assert agent["entrypoints"] == ["mesos-agent"] and agent["pidMode"] == "host"
    # The work directory is the volume, at its own mountpoint: the same path on the engine's host and inside.
    assert agent["volumes"] == [
        {"hostPath": "/var/run/docker.sock", "containerPath": "/var/run/docker.sock"},
        {"hostPath": "/sys/fs/cgroup", "containerPath": "/sys/fs/cgroup"},
        {"volumeName": f"{P}-mesos-agent-2-work", "containerPath": work}]
    zookeeper = found[f"{P}-zookeeper-2"].inputs
    servers = " ".join(f"server.{n}=10.213.0.{40 + n}:2888:3888;2181" for n in (1, 2, 3))
    assert "ZOO_MY_ID=2" in zookeeper["envs"] and f"ZOO_SERVERS={servers}" in zookeeper["envs"]


@pytest.mark.parametrize(("masters", "quorum"), [(1, 1), (3, 2)])
def test_quorum_for_one_and_three_local_masters(amd64_engine: FakeEngine, masters: int, quorum: int) -> None:
    mocks, _ = evaluate({"masters": masters, "agents": 0})
    commands = [c.inputs["command"] for name, c in containers(mocks).items() if name.startswith(f"{P}-mesos-master-")]
    assert len(commands) == masters and all(f"--quorum={quorum}" in command for command in commands)
    assert not [name for name in containers(mocks) if name.startswith(f"{P}-mesos-agent-")]


def test_volumes_are_named_labelled_and_listed_for_destroy(switched_on: tuple[MountpointMocks, Any]) -> None:
    mocks, outputs = switched_on
    volumes = {r.inputs["name"]: r.inputs for r in mocks.of_type(VOLUME)}
    mesos_volumes = sorted(name for name in volumes if "mesos" in name or "zookeeper" in name)
    assert mesos_volumes == sorted([*(f"{P}-zookeeper-{n}-{what}" for n in (1, 2, 3) for what in ("data", "datalog")),
                                    *(f"{P}-mesos-master-{n}-work" for n in (1, 2, 3)),
                                    f"{P}-mesos-agent-1-work", f"{P}-mesos-agent-2-work"])
    assert all(volumes[name]["labels"] == [{"label": "managed-by", "value": "cluster-cookbook"}]
               for name in mesos_volumes)
    docker = outputs["local"]["docker"]
    assert set(mesos_volumes) <= set(docker["volumes"]) and set(volumes) == set(docker["volumes"])
    assert set(containers(mocks)) == set(docker["containers"])


# --- the engine's architecture ----------------------------------------------------------------------------------
@pytest.mark.parametrize(("architecture", "name"), [("aarch64", "arm64"), ("armv7l", "armhf"), ("ppc64le", "ppc64el")])
def test_a_non_amd64_engine_is_refused_naming_the_switch_before_any_resource(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, architecture: str, name: str) -> None:
    fake = FakeEngine(tmp_path / "docker.sock", body=info(architecture))
    monkeypatch.setenv("DOCKER_HOST", f"unix://{fake.path}")
    mocks = MountpointMocks()
    try:
        with pytest.raises(pulumi.RunError) as raised:
            run_program(mocks, local_config({"enabled": True}), stack="local", secret_keys=list(FAKE_SECRETS))
    finally:
        fake.close()
    assert str(raised.value) == (
        "invalid stack configuration (1 problem(s)):\n  - local.mesos.enabled: the Docker engine at "
        f"unix://{fake.path} is {name} ({architecture}): Apache Mesos is retired (Apache Attic, final release "
        "1.11.0) and its images are built for amd64 only; set it false, or point DOCKER_HOST at an amd64 engine")
    assert mocks.resources == []


def test_an_engine_that_cannot_say_is_refused_too(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCKER_HOST", "tcp://192.0.2.7:2376")
    monkeypatch.setenv("PATH", str(tmp_path))  # no docker CLI to ask over TCP
    with pytest.raises(ConfigError) as raised:
        engine.require_amd64(dict(os.environ))
    assert raised.value.problems == [
        "local.mesos.enabled: Mesos needs an amd64 Docker engine, and the architecture of tcp://192.0.2.7:2376 is "
        "unknown: the Docker engine at tcp://192.0.2.7:2376 is reached without a Unix socket, and no `docker` CLI "
        "is on PATH to ask it (`docker info`)"]


def test_other_transports_are_asked_through_docker_info_with_the_same_environment(tmp_path: Path) -> None:
    cli = tmp_path / "docker"
    cli.write_text('#!/bin/sh\nprintf "%s|%s|%s\\n" "$*" "$DOCKER_HOST" "$DOCKER_CONTEXT" >>"$0.calls"\n'
                   'printf \'{"Architecture":"x86_64","ServerVersion":"27.5.1"}\\n\'\n')
    cli.chmod(0o755)
    for environ in ({"DOCKER_HOST": "ssh://me@box"}, {"DOCKER_CONTEXT": "colima"}):
        assert engine.require_amd64({**environ, "PATH": str(tmp_path)}) == "x86_64"
    assert (tmp_path / "docker.calls").read_text().splitlines() == [
        "info --format {{json .}}|ssh://me@box|", "info --format {{json .}}||colima"]


@pytest.mark.parametrize(("architecture", "problem"), [("x86_64", False), ("amd64", False), ("aarch64", True),
                                                       ("arm64", True), ("s390x", True)])
def test_the_architecture_rule(architecture: str, problem: bool) -> None:
    assert (engine.mesos_architecture_problem(architecture, "unix:///x.sock") is not None) is problem


# --- policy and secrets -------------------------------------------------------------------------------------------
def test_the_policy_pack_is_clean_with_the_switch_on(switched_on: tuple[MountpointMocks, Any]) -> None:
    mocks, _ = switched_on
    subjects = [rules.Subject(r.type, r.inputs, r.name, r.registration.additional_secret_outputs)
                for r in mocks.resources]
    assert rules.all_violations(subjects) == []
    # Only the agents need the allow-list entry: without it, exactly their host access is reported.
    narrowed = rules.PolicyConfig(host_access_container_allow_list=())
    found = {s.props["name"]: rules.docker_no_host_access(s, narrowed) for s in subjects
             if s.type == CONTAINER and s.props["name"].startswith((f"{P}-mesos", f"{P}-marathon", f"{P}-zookeeper"))}
    assert {name for name, violations in found.items() if violations} == {f"{P}-mesos-agent-1", f"{P}-mesos-agent-2"}
    assert len(found[f"{P}-mesos-agent-1"]) == 3  # privileged, the host's PID namespace, the Docker socket
    # The entry matches the local stack's numbered agents, not any container with a similar name.
    assert rules.docker_no_host_access(rules.Subject(CONTAINER, {"name": "my-mesos-agent", "privileged": True}))


def test_no_secret_in_any_plain_input_with_the_switch_on(switched_on: tuple[MountpointMocks, Any]) -> None:
    mocks, _ = switched_on
    for resource in mocks.resources:
        leaked = [text for text in plain_strings(resource.registration.raw_inputs)
                  if "PRIVATE KEY" in text or "FAKE-TOKEN" in text or "FAKE-KEY" in text]
        assert leaked == [], resource.name
    for name, container in containers(mocks).items():
        assert rules.credential_findings("\n".join(container.inputs.get("envs") or [])) == [], name


# --- config -------------------------------------------------------------------------------------------------------
def parse(mesos: Any, **local: Any) -> tuple[Any, list[str]]:
    problems = Problems()
    args = parse_local_config({"mesos": mesos, **local}, [], problems)
    return args, problems.items


def test_absent_or_switched_off_is_no_mesos_and_present_is_on() -> None:
    assert parse(None)[0].mesos is None
    off, problems = parse({"enabled": False, "agents": 2})
    assert problems == [] and off.mesos is None
    on, problems = parse({"agents": 2})
    assert problems == [] and on.mesos == LocalMesosArgs(agents=2)


def test_three_masters_get_three_ports_each_by_default() -> None:
    args, problems = parse({"masters": 3})
    assert problems == []
    assert args.mesos.master_ports == (5050, 15050, 25050) and args.mesos.marathon_ports == (8080, 18080, 28080)


@pytest.mark.parametrize(("mesos", "expected"), [
    ({"masters": 2}, "local.mesos.masters: must be 1 or 3 (an odd count: `--quorum` is a majority; at most 3 in "
                     "the local network's address plan), got 2"),
    ({"masters": 5}, "local.mesos.masters: must be 1 or 3"),
    ({"agents": 9}, "local.mesos.agents: must be between 0 and 8, got 9"),
    ({"masters": 3, "master_ports": [5050]}, "local.mesos.master_ports: one port per master (3), got [5050]"),
    ({"marathon_ports": [0]}, "local.mesos.marathon_ports: must be a list of TCP ports"),
    ({"images": {"master": "mesosphere/mesos-master:latest"}}, "local.mesos.images.master: must name an image pinned"),
    ({"images": {"ui": "x:1"}}, "local.mesos.images.ui: unknown key"),
    ({"agent": {"mem": 16}}, "local.mesos.agent.mem: must be at least 32"),
    ({"agent": {"containerizers": ["rkt"]}}, "local.mesos.agent.containerizers[0]: must be one of docker, mesos"),
    ({"agent": {"ports": [30000, 33000]}}, "local.mesos.agent.ports: 30000-33000 includes port 30080, published on "
                                           "127.0.0.1 by a Kubernetes NodePort: a task given it would clash"),
    ({"marathon": {"memory_mb": 128}}, "local.mesos.marathon.memory_mb: must be at least 256 (MiB), got 128"),
    ({"zookeeper": {"cpus": "all"}}, "local.mesos.zookeeper.cpus: must be a number of CPUs"),
    ({"master": {"heap": 1}}, "local.mesos.master.heap: unknown key"),
    ({"enabeld": True}, "local.mesos.enabeld: unknown key (did you mean 'enabled'?)"),
    ({"marathon_ports": [6443]}, "local: port 6443 on 127.0.0.1 is published by the Kubernetes API and Marathon 1"),
    ({"master_ports": [5001]}, "local: port 5001 on 127.0.0.1 is published by the registry and Mesos master 1"),
])
def test_every_problem_names_its_key(mesos: dict[str, Any], expected: str) -> None:
    _, problems = parse(mesos, kubernetes={}, registry={})
    assert any(problem.startswith(expected) for problem in problems), problems


def test_a_top_level_mesos_section_points_at_the_switch() -> None:
    with pytest.raises(ConfigError) as raised:
        parse_stack_config({"local": {}, "mesos": {"quorum": 1}}, set())
    assert ("mesos: the local stack runs Mesos from its own `local.mesos` section (a switch): move these settings "
            "there, or remove `local` to run Mesos on nodes") in raised.value.problems


def test_the_component_refuses_what_the_parser_refuses() -> None:
    from components.local.cluster import LocalClusterArgs, validate

    bad = LocalClusterArgs(mesos=LocalMesosArgs(masters=2, agents=9, master_ports=(5050,), marathon_ports=(2379,)))
    assert validate(bad) == [
        "mesos.masters: one of [1, 3], got 2",
        "mesos.agents: between 0 and 8, got 9",
        "mesos.master_ports: one port per master (2), got [5050]",
        "mesos.marathon_ports: one port per master (2), got [2379]",
        "port 2379 on 127.0.0.1 is published by etcd member 1 and Marathon 1"]
