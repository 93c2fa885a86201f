"""Mesos on Docker hosts under mocks: quorum arithmetic, command lines, volumes, networks, restart policies, one
Docker provider per host with its SSH URL and options, the arm refusal (config and fact), port clashes across
recipes, secrets, the policy pack, and the shipped `mesos` stack."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pulumi
import pytest

from components.mesos import cluster as mesos
from components.shared.scripts import render_script
from components.shared.validation import ConfigError
from components.stack import parse_stack_config
from policy import rules
from tests.harness.fixtures import FAKE_PRIVATE_KEY, FAKE_SECRETS
from tests.harness.program import load_stack_config, run_program
from tests.harness.recording import AMD64_ADDRESSES, FAKE_AMD64_FACTS, RecordingMocks, plain_strings
from tools.offline import unwrap_secrets

AMD64 = sorted(AMD64_ADDRESSES)  # addresses whose fake facts say amd64 (the rest say arm64, like a Pi)
HOST_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIMM+G3MpZEEGxP59mC3fUQ+ZcER5EKTFd72GwAxp7fk7"


@dataclass
class ProviderMocks(RecordingMocks):
    """Recording mocks that also keep which provider each resource was registered with."""

    providers: dict[str, str] = field(default_factory=dict)

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str | None, dict[str, Any]]:
        if args.provider:
            self.providers[args.name] = args.provider
        return super().new_resource(args)


def nodes(masters: int, agents: int = 2, zookeeper: bool = True, addresses: list[str] | None = None,
          **extra: Any) -> list[dict[str, Any]]:
    addresses = addresses or AMD64
    found = []
    for index in range(masters):
        roles = ["zookeeper", "mesos-master"] if zookeeper else ["mesos-master"]
        found.append({"name": f"m{index + 1}", "address": addresses[index], "roles": roles, **extra})
    for index in range(agents):
        found.append({"name": f"a{index + 1}", "address": addresses[masters + index], "roles": ["mesos-agent"],
                      **extra})
    return found


def stack_config(masters: int = 3, agents: int = 2, zookeeper: bool = True, addresses: list[str] | None = None,
                 mesos_section: dict[str, Any] | None = None, **extra: Any) -> dict[str, Any]:
    config: dict[str, Any] = {"nodes": nodes(masters, agents, zookeeper, addresses, **extra),
                              "ssh_private_key": FAKE_PRIVATE_KEY, "mesos": mesos_section or {}}
    if zookeeper:
        config["zookeeper"] = {"ids": {f"m{i + 1}": i + 1 for i in range(masters)}}
    return config


def evaluate(config: dict[str, Any]) -> ProviderMocks:
    mocks = ProviderMocks()
    run_program(mocks, config, secret_keys=["ssh_private_key"])
    return mocks


def problems_of(raw: dict[str, Any]) -> list[str]:
    with pytest.raises(ConfigError) as failure:
        parse_stack_config(raw, {"ssh_private_key"})
    return failure.value.problems


def addresses_for(count: int) -> list[str]:
    return [f"10.20.0.{index}" for index in range(1, count + 1)]


# --- quorum arithmetic -----------------------------------------------------------------------------------
@pytest.mark.parametrize(("masters", "quorum"), [(1, 1), (3, 2), (5, 3), (7, 4)])
def test_quorum_is_a_majority_of_the_masters(masters: int, quorum: int) -> None:
    assert mesos.majority(masters) == quorum
    assert mesos.quorum_problem(masters, None) is None


@pytest.mark.parametrize("masters", [1, 3, 5])
def test_every_master_gets_the_majority_quorum_on_its_command_line(masters: int) -> None:
    mocks = evaluate(stack_config(masters, agents=0, zookeeper=False))
    commands = {name: inputs["command"] for name, inputs in containers(mocks).items() if "-master-" in name}
    assert sorted(commands) == [f"mesos-master-m{i}" for i in range(1, masters + 1)]
    connect = ",".join(f"{address}:2181" for address in AMD64[:masters])
    for index, command in enumerate(commands[f"mesos-master-m{i}"] for i in range(1, masters + 1)):
        assert f"--quorum={mesos.majority(masters)}" in command
        assert f"--zk=zk://{connect}/mesos" in command and f"--advertise_ip={AMD64[index]}" in command


@pytest.mark.parametrize(("masters", "quorum", "expected"), [
    (2, None, "nodes: 2 node(s) have role mesos-master; 2 masters: use an odd number up to 7 (1, 3, 5)"),
    (4, None, "nodes: 4 node(s) have role mesos-master; 4 masters: use an odd number"),
    (3, 1, "mesos.quorum: 3 node(s) have role mesos-master; --quorum 1 with 3 masters: two partitions could each "
           "elect a leader (split brain); use 2 (a majority)"),
    (5, 2, "mesos.quorum: 5 node(s) have role mesos-master; --quorum 2 with 5 masters"),
    (3, 4, "mesos.quorum: 3 node(s) have role mesos-master; --quorum 4 is more than the 3 masters"),
])
def test_master_counts_and_quorums_that_cannot_work_are_refused(masters: int, quorum: int | None,
                                                                expected: str) -> None:
    section = {} if quorum is None else {"quorum": quorum}
    raw = stack_config(masters, agents=1, zookeeper=False, addresses=addresses_for(masters + 1),
                       mesos_section=section)
    found = problems_of(raw)
    assert any(p.startswith(expected) for p in found), found


def test_an_explicit_majority_quorum_is_accepted() -> None:
    config = parse_stack_config(stack_config(5, zookeeper=False, addresses=addresses_for(7),
                                             mesos_section={"quorum": 4}), {"ssh_private_key"})
    assert config.mesos is not None and config.mesos.cluster.quorum == 4


# --- bad input, all at once ------------------------------------------------------------------------------
def test_agents_without_masters_are_refused() -> None:
    raw = stack_config(0, agents=2, zookeeper=False, addresses=addresses_for(2))
    assert any(p.startswith("nodes: 2 node(s) have role mesos-agent but none has role mesos-master: agents need "
                            "masters") for p in problems_of(raw))


def test_raspberry_pis_with_a_mesos_role_are_refused_naming_each_node() -> None:
    raw = stack_config(3, agents=1, zookeeper=False, addresses=addresses_for(4), kind="pi")
    found = problems_of(raw)
    for index, (name, role) in enumerate([("m1", "mesos-master"), ("m2", "mesos-master"), ("m3", "mesos-master"),
                                          ("a1", "mesos-agent")]):
        assert (f"nodes[{index}].roles: node {name} is a Raspberry Pi (arm) with role {role}: Apache Mesos is "
                "retired (Apache Attic, final release 1.11.0) and its images are built for amd64 only") in found


@pytest.mark.parametrize(("section", "expected"), [
    ({"images": {"master": "mesosphere/mesos-master"}}, "mesos.images.master: must name an image pinned by tag"),
    ({"images": {"agent": "mesosphere/mesos-slave:latest"}}, "mesos.images.agent: must name an image pinned"),
    ({"images": {"marathon": "x:1", "ui": "y:2"}}, "mesos.images.ui: unknown key"),
    ({"agent": {"cpus": 0}}, "mesos.agent.cpus: must be a number of CPUs above 0"),
    ({"agent": {"mem": 16}}, "mesos.agent.mem: must be at least 32"),
    ({"agent": {"ports": [32000, 31000]}}, "mesos.agent.ports: must be a range [first, last]"),
    ({"agent": {"containerizers": ["docker", "rkt"]}}, "mesos.agent.containerizers[1]: must be one of docker, mesos"),
    ({"marathon": {"port": 0}}, "mesos.marathon.port: must be a TCP port"),
    ({"cluster_name": "Home Lab"}, "mesos.cluster_name: must be a DNS label"),
    ({"ssh_identity_file": "/nonexistent/id_ed25519"}, "mesos.ssh_identity_file: no such file on this machine"),
    ({"zookeeper": {"client_port": 2182}}, "mesos.zookeeper: the stack has a ZooKeeper ensemble"),
    ({"qourum": 2}, "mesos.qourum: unknown key (did you mean 'quorum'?)"),
])
def test_settings_are_validated_naming_the_key(section: dict[str, Any], expected: str) -> None:
    found = problems_of(stack_config(mesos_section=section))
    assert any(p.startswith(expected) for p in found), found


def test_port_clashes_between_recipes_are_each_named_all_at_once() -> None:
    """One node runs etcd, ZooKeeper, a Mesos master with Marathon and a k3s server; another a k3s worker and a
    Mesos agent: every clash is reported, with the node and both users."""
    raw = {
        "ssh_private_key": FAKE_PRIVATE_KEY,
        "nodes": [
            {"name": "m1", "address": AMD64[0], "roles": ["etcd", "zookeeper", "mesos-master", "control-plane"]},
            {"name": "a1", "address": AMD64[1], "roles": ["mesos-agent", "worker"]},
        ],
        "zookeeper": {"ids": {"m1": 1}, "client_port": 2379},
        "mesos": {"marathon": {"port": 6443}, "master_port": 10250, "agent": {"ports": [30000, 31000]}},
        "store": {"pithos": {"service_type": "NodePort", "node_port": 30080}},
    }
    found = problems_of(raw)
    expected = [
        "nodes[0]: node m1: port 2379 is used by etcd client port and ZooKeeper client port",
        "nodes[0]: node m1: port 6443 is used by Kubernetes API server (k3s) and Marathon",
        "nodes[0]: node m1: port 10250 is used by kubelet (k3s) and Mesos master",
        "nodes[1]: node a1: Pithos NodePort (store.pithos.node_port) (30080) is in the port range the Mesos agent "
        "offers to tasks (mesos.agent.ports 30000-31000)",
    ]
    for line in expected:
        assert line in found, found


def test_zookeeper_containers_clash_with_a_marathon_on_their_ports() -> None:
    raw = stack_config(1, agents=0, zookeeper=False, mesos_section={"marathon": {"port": 2181}})
    assert "mesos: node m1: port 2181 is used by Marathon and ZooKeeper container client port" in problems_of(raw)


# --- the resource graph ----------------------------------------------------------------------------------
@dataclass
class FakeHost:
    hostname: str
    address: str

    def known_address(self, recipe: str) -> str:  # components/nodes/host.py Host.known_address
        return self.address


@dataclass
class FakeTarget:
    name: str
    address: str

    @property
    def host(self) -> FakeHost:
        return FakeHost(self.name, self.address)


def containers(mocks: RecordingMocks) -> dict[str, dict[str, Any]]:
    return {r.name: r.inputs for r in mocks.of_type("docker:index/container:Container")}


def test_containers_run_on_the_host_network_and_restart_unless_stopped() -> None:
    mocks = evaluate(stack_config())
    found = containers(mocks)
    assert sorted(found) == ["mesos-agent-a1", "mesos-agent-a2", "mesos-marathon-m1", "mesos-marathon-m2",
                             "mesos-marathon-m3", "mesos-master-m1", "mesos-master-m2", "mesos-master-m3"]
    for name, inputs in found.items():
        assert inputs["networkMode"] == "host", name
        assert inputs["restart"] == "unless-stopped", name
        assert inputs["mustRun"] is True, name
        # A fixed container name: the old container goes before its replacement is created.
        assert mocks.named(name).registration.delete_before_replace, name
    master = found["mesos-master-m2"]
    assert master["name"] == "cookbook-mesos-master" and master["image"] == "mesosphere/mesos-master:1.7.1"
    assert master["entrypoints"] == ["mesos-master"]
    connect = ",".join(f"{address}:2181" for address in AMD64[:3])
    assert master["command"] == [f"--zk=zk://{connect}/mesos", "--quorum=2", "--work_dir=/var/lib/mesos/master",
                                 "--port=5050", "--cluster=cookbook", f"--ip={AMD64[1]}", f"--advertise_ip={AMD64[1]}",
                                 f"--hostname={AMD64[1]}", "--no-hostname_lookup"]
    assert master["volumes"] == [{"volumeName": "cookbook-mesos-master", "containerPath": "/var/lib/mesos/master"}]
    assert "privileged" not in master or master["privileged"] is False
    marathon = found["mesos-marathon-m1"]
    assert marathon["command"] == ["--master", f"zk://{connect}/mesos", "--zk", f"zk://{connect}/marathon",
                                   "--hostname", AMD64[0], "--http_port", "8080"]
    agent = found["mesos-agent-a1"]
    assert agent["entrypoints"] == ["mesos-agent"] and agent["privileged"] is True and agent["pidMode"] == "host"
    assert agent["command"][:5] == [f"--master=zk://{connect}/mesos", "--work_dir=/var/lib/mesos/agent",
                                    "--containerizers=docker,mesos", "--port=5051",
                                    "--resources=cpus:2;mem:2048;disk:10240;ports:[31000-32000]"]
    assert "--docker_mesos_image=mesosphere/mesos-slave:1.7.1" in agent["command"]
    assert agent["volumes"] == [
        {"hostPath": "/var/run/docker.sock", "containerPath": "/var/run/docker.sock"},
        {"hostPath": "/sys/fs/cgroup", "containerPath": "/sys/fs/cgroup"},
        {"hostPath": "/var/lib/mesos/agent", "containerPath": "/var/lib/mesos/agent"},
    ]


@dataclass
class CgroupMocks(ProviderMocks):
    """Provider mocks whose hosts report the cgroup version given per address (FAKE_AMD64_FACTS otherwise)."""

    cgroups: dict[str, int] = field(default_factory=dict)

    def fake_outputs(self, typ: str, inputs: dict[str, Any]) -> dict[str, Any]:
        outputs = super().fake_outputs(typ, inputs)
        host = (unwrap_secrets(inputs.get("connection")) or {}).get("host")
        if typ.startswith("command:") and host in self.cgroups:
            facts = {**FAKE_AMD64_FACTS, "cgroup_version": self.cgroups[host]}
            outputs["stdout"] = f"COOKBOOK_FACTS={json.dumps(facts)}"
        return outputs


def test_agents_on_cgroup_v2_hosts_use_the_posix_launcher_and_v1_hosts_keep_the_default() -> None:
    """Mesos 1.x's Linux launcher needs a cgroup v1 freezer hierarchy (linux_launcher.cpp, LinuxLauncher::create):
    an agent whose host mounts cgroup v2 at /sys/fs/cgroup (the `cgroup_version` fact) runs `--launcher=posix`;
    a cgroup v1 host keeps Mesos's default (the Linux launcher when it is available) and its command line as it
    was. Masters and Marathon are the same on both."""
    config = stack_config(1, agents=2)
    a1, a2 = config["nodes"][1]["address"], config["nodes"][2]["address"]
    mocks = CgroupMocks(cgroups={config["nodes"][0]["address"]: 2, a1: 2, a2: 1})
    run_program(mocks, config, secret_keys=["ssh_private_key"])
    found = containers(mocks)
    v2, v1 = found["mesos-agent-a1"]["command"], found["mesos-agent-a2"]["command"]
    assert v2[-1] == "--launcher=posix" and v2.count("--launcher=posix") == 1
    assert not [flag for flag in v1 if flag.startswith("--launcher")]
    assert v2[:-1] == [flag.replace(a2, a1) for flag in v1]  # nothing else differs but the node's address
    assert not [flag for name, inputs in found.items() if "agent" not in name for flag in inputs["command"]
                if "launcher" in flag]


@pytest.mark.parametrize(("version", "flags"), [(1, []), (2, ["--launcher=posix"])])
def test_the_launcher_follows_the_cgroup_version(version: int, flags: list[str]) -> None:
    assert mesos.launcher_flags("a1", version) == flags


@pytest.mark.parametrize("version", [0, 3, "2", None])
def test_an_unknown_cgroup_version_is_an_error_naming_the_node(version: Any) -> None:
    with pytest.raises(ValueError, match=r"mesos: node a1 reports cgroup_version .*: expected 1 or 2"):
        mesos.launcher_flags("a1", version)


def test_one_docker_provider_per_host_over_ssh_and_every_resource_on_its_own() -> None:
    config = stack_config()
    config["nodes"][0].update(host_key=HOST_KEY, port=2222, user="ops")
    config["nodes"][3]["proxy"] = {"host": "bastion.lan", "user": "jump", "port": 22}
    mocks = evaluate(config)
    providers = {r.name: r for r in mocks.of_type("pulumi:providers:docker")}
    assert sorted(providers) == [f"mesos-docker-{n}" for n in ("a1", "a2", "m1", "m2", "m3")]
    assert providers["mesos-docker-m1"].inputs["host"] == f"ssh://ops@{AMD64[0]}:2222"
    assert providers["mesos-docker-m2"].inputs["host"] == f"ssh://root@{AMD64[1]}:22"
    pinned = providers["mesos-docker-m1"].inputs["sshOpts"]
    for option in ("BatchMode=yes", "StrictHostKeyChecking=yes", "UserKnownHostsFile=/dev/null",
                   f"KnownHostsCommand=/bin/echo %H {HOST_KEY}"):
        assert option in pinned, pinned
    assert "StrictHostKeyChecking" not in providers["mesos-docker-m2"].inputs["sshOpts"]
    assert "jump@bastion.lan:22" in providers["mesos-docker-a1"].inputs["sshOpts"]
    urn_of = {r.name: r.urn for r in mocks.resources}
    for resource in mocks.resources:
        if resource.type.startswith("docker:"):
            node = resource.name.rsplit("-", 1)[1]
            assert mocks.providers[resource.name].startswith(urn_of[f"mesos-docker-{node}"]), resource.name
            assert resource.parent == urn_of["mesos"], resource.name


def test_ssh_options_with_an_identity_file_and_an_ipv6_host() -> None:
    target = mesos.DockerHost(host=FakeHost("m1", "fd00::5"), user="admin", identity_file="/keys/id",  # type: ignore[arg-type]
                              connect_timeout=7)
    assert mesos.docker_url(target) == "ssh://admin@[fd00::5]:22"
    assert mesos.ssh_options(target) == ["-o", "BatchMode=yes", "-o", "ConnectTimeout=7", "-o", "IdentitiesOnly=yes",
                                         "-i", "/keys/id"]


def test_masters_wait_for_zookeeper_and_agents_for_the_masters() -> None:
    mocks = evaluate(stack_config())
    by_urn = {r.urn: r.name for r in mocks.resources}
    deps = {r.name: {by_urn.get(d) for d in r.registration.dependencies} for r in mocks.resources}
    assert "zookeeper-health" in deps["mesos-master-m1"]  # the connect string resolves after the gate
    assert {"mesos-master-m1", "mesos-master-m2", "mesos-master-m3"} <= deps["mesos-agent-a2"]
    assert {"mesos-master-m1", "mesos-master-m2", "mesos-master-m3"} <= deps["mesos-marathon-m1"]
    assert "mesos-master-image-m1" in deps["mesos-master-m1"]
    assert "m1-prepare" in deps["mesos-docker-m1"]  # the prepared host (Docker engine installed)


def test_without_an_ensemble_zookeeper_runs_in_a_container_on_every_master() -> None:
    mocks = evaluate(stack_config(3, zookeeper=False))
    found = containers(mocks)
    servers = " ".join(f"server.{i}={AMD64[i - 1]}:2888:3888;2181" for i in (1, 2, 3))
    for index in (1, 2, 3):
        zk = found[f"mesos-zookeeper-m{index}"]
        assert zk["image"] == "zookeeper:3.8.4" and zk["networkMode"] == "host"
        assert zk["envs"] == sorted([f"ZOO_MY_ID={index}", f"ZOO_SERVERS={servers}", "ZOO_ADMINSERVER_ENABLED=false",
                                     "ZOO_4LW_COMMANDS_WHITELIST=srvr,ruok,mntr", "ZOO_STANDALONE_ENABLED=false",
                                     "ZOO_AUTOPURGE_SNAPRETAINCOUNT=3", "ZOO_AUTOPURGE_PURGEINTERVAL=1"])
        assert zk["volumes"] == [{"volumeName": "cookbook-zookeeper-data", "containerPath": "/data"},
                                 {"volumeName": "cookbook-zookeeper-datalog", "containerPath": "/datalog"}]
    by_urn = {r.urn: r.name for r in mocks.resources}
    master = next(r for r in mocks.resources if r.name == "mesos-master-m2")
    assert {f"mesos-zookeeper-m{i}" for i in (1, 2, 3)} <= {by_urn.get(d) for d in master.registration.dependencies}
    connect = ",".join(f"{address}:2181" for address in AMD64[:3])
    assert found["mesos-master-m2"]["command"][0] == f"--zk=zk://{connect}/mesos"
    assert not [r for r in mocks.resources if r.type == "cookbook:zookeeper:Ensemble"]


def test_outputs_name_the_uis_and_the_zookeeper_url() -> None:
    exports = run_program(ProviderMocks(), stack_config(), secret_keys=["ssh_private_key"])
    assert exports["mesos"] == {
        "master_urls": [f"http://{address}:5050" for address in AMD64[:3]],
        "marathon_urls": [f"http://{address}:8080" for address in AMD64[:3]],
        "zookeeper_url": "zk://" + ",".join(f"{address}:2181" for address in AMD64[:3]) + "/mesos",
    }


def test_an_arm_host_is_refused_naming_it_once_its_architecture_is_known() -> None:
    """A `linux` node's architecture is a fact: the Docker provider's host is computed from it, so the refusal
    comes when the fact resolves (at preview when the node's prepare step ran before; else right after it),
    before anything reaches Docker on that host."""
    config = stack_config(1, agents=1, zookeeper=False, addresses=[AMD64[0], "10.20.9.9"])  # a1: arm64 facts
    mocks = ProviderMocks()
    with pytest.raises(Exception, match=r"mesos: node a1 is arm64: Apache Mesos is retired \(Apache Attic, final "
                                        r"release 1\.11\.0\) and its images are built for amd64 only"):
        run_program(mocks, config, secret_keys=["ssh_private_key"])
    assert not [r for r in mocks.resources if r.name.endswith("-a1") and r.type.startswith("docker:")]


@pytest.mark.parametrize(("architecture", "refused"), [("amd64", False), ("arm64", True), ("armhf", True),
                                                       ("riscv64", True)])
def test_the_architecture_check(architecture: str, refused: bool) -> None:
    if refused:
        with pytest.raises(ValueError, match=f"node n1 is {architecture}"):
            mesos.check_architecture("n1", architecture)
    else:
        assert mesos.check_architecture("n1", architecture) == architecture


# --- secrets, policy, the shipped stack ------------------------------------------------------------------
def test_no_secret_reaches_a_docker_input_and_none_is_plain() -> None:
    mocks = evaluate(stack_config())
    marker = "FAKE-KEY-FOR-TESTS-ONLY"
    for resource in mocks.resources:
        assert not any(marker in text for text in plain_strings(resource.registration.raw_inputs)), resource.name
        if resource.type.startswith(("docker:", "pulumi:providers:docker")):
            assert marker not in repr(resource.inputs), resource.name  # the Docker provider gets no key at all


def test_the_policy_pack_allows_only_the_mesos_containers_on_the_host() -> None:
    agent = rules.Subject(rules.DOCKER_CONTAINER, {
        "name": "cookbook-mesos-agent", "image": "mesosphere/mesos-slave:1.7.1", "privileged": True,
        "networkMode": "host", "pidMode": "host", "volumes": [{"hostPath": "/var/run/docker.sock"}]})
    other = rules.Subject(rules.DOCKER_CONTAINER, {**agent.props, "name": "my-agent"})
    assert rules.docker_no_host_access(agent) == []
    assert len(rules.docker_no_host_access(other)) == 4
    narrowed = rules.PolicyConfig(host_access_container_allow_list=())
    assert len(rules.docker_no_host_access(agent, narrowed)) == 4


def test_the_shipped_stack_evaluates_quickly_and_passes_the_policy_pack() -> None:
    started = time.perf_counter()
    mocks = RecordingMocks()
    exports = run_program(mocks, {**load_stack_config("mesos"), **FAKE_SECRETS}, stack="mesos",
                          secret_keys=list(FAKE_SECRETS))
    seconds = time.perf_counter() - started
    print(f"\nmesos stack evaluation: {seconds:.2f} s for {len(mocks.resources)} resources")
    assert seconds < 30
    subjects = [rules.Subject(r.type, r.inputs, r.name, r.registration.additional_secret_outputs)
                for r in mocks.resources]
    assert rules.all_violations(subjects) == []
    assert len(exports["mesos"]["master_urls"]) == 3 and len(exports["zookeeper"]["servers"]) == 3
    assert len(mocks.of_type("pulumi:providers:docker")) == 5


# --- the node layer installs the Docker engine ------------------------------------------------------------
FAKES = {
    # Each fake records its command line in $STATE/calls and keeps its state in files under $STATE.
    "dpkg-query": 'echo "dpkg-query $*" >>"$STATE/calls"; p=${!#}; [ -e "$STATE/pkg-$p" ] && printf installed\n',
    "apt-get": 'echo "apt-get $*" >>"$STATE/calls"\ncase "$*" in *install*docker.io*) touch "$STATE/pkg-docker.io"; '
               'printf "#!/bin/sh\\n" >"$BIN/dockerd"; chmod +x "$BIN/dockerd" ;; esac\n',
    "systemctl": 'echo "systemctl $*" >>"$STATE/calls"\nunit=${!#}\ncase "$*" in\n'
                 '  *is-enabled*) [ -e "$STATE/enabled-$unit" ] ;;\n  *is-active*) [ -e "$STATE/active-$unit" ] ;;\n'
                 '  enable*) touch "$STATE/enabled-$unit" ;;\n  start*) touch "$STATE/active-$unit" ;;\nesac\n',
    "id": 'echo "id $*" >>"$STATE/calls"; cat "$STATE/groups" 2>/dev/null || echo admin\n',
    "usermod": 'echo "usermod $*" >>"$STATE/calls"; echo "admin docker" >"$STATE/groups"\n',
}


def run_install_docker(tmp_path: Path, install: bool, user: str = "admin") -> list[str]:
    bin_dir, state = tmp_path / "bin", tmp_path / "state"
    bin_dir.mkdir(exist_ok=True)
    state.mkdir(exist_ok=True)
    for name, body in FAKES.items():
        (bin_dir / name).write_text(f"#!/bin/bash\n{body}")
        (bin_dir / name).chmod(0o755)
    script = render_script(["shared/common.sh", "shared/files.sh", "nodes/docker.sh"],
                           {"INSTALL_DOCKER": install, "DOCKER_USER": user}) + "install_docker\n"
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "STATE": str(state), "BIN": str(bin_dir)}
    done = subprocess.run(["bash", "-c", script], capture_output=True, text=True, env=env, check=True)
    return [line for line in done.stdout.splitlines() if line.startswith("changed: ")]


def test_the_node_layer_installs_docker_once_and_then_changes_nothing(tmp_path: Path) -> None:
    assert run_install_docker(tmp_path, install=True) == [
        "changed: installed docker.io", "changed: enabled docker.service", "changed: started docker.service",
        "changed: added admin to group docker"]
    assert run_install_docker(tmp_path, install=True) == []  # a second run: nothing to change
    calls = (tmp_path / "state" / "calls").read_text()
    assert calls.count("apt-get -o DPkg::Lock::Timeout=600 install") == 1


def test_an_existing_engine_is_kept_and_root_needs_no_group(tmp_path: Path) -> None:
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "dockerd").write_text("#!/bin/sh\n")  # e.g. docker-ce, installed by hand
    (tmp_path / "bin" / "dockerd").chmod(0o755)
    assert run_install_docker(tmp_path, install=True, user="root") == [
        "changed: enabled docker.service", "changed: started docker.service"]
    assert "apt-get" not in (tmp_path / "state" / "calls").read_text()


def test_nodes_without_containers_get_no_docker(tmp_path: Path) -> None:
    assert run_install_docker(tmp_path, install=False) == []
    assert not (tmp_path / "state" / "calls").exists()


def test_only_nodes_with_a_mesos_role_install_docker() -> None:
    mocks = evaluate(stack_config(1, agents=1))
    header = {r.name: shlex.split(r.inputs["create"])[-1].splitlines() for r in mocks.of_type("command:remote:Command")
              if r.name.endswith("-prepare")}
    assert "INSTALL_DOCKER=1" in header["m1-prepare"] and "INSTALL_DOCKER=1" in header["a1-prepare"]
    plain = evaluate({"nodes": [{"name": "n1", "address": AMD64[0]}], "ssh_private_key": FAKE_PRIVATE_KEY})
    assert "INSTALL_DOCKER=0" in shlex.split(plain.named("n1-prepare").inputs["create"])[-1].splitlines()


def test_the_docker_emulator_refuses_what_it_does_not_implement() -> None:
    from tests.harness.docker_emulator import DockerEmulationError, emulate_docker

    with pytest.raises(DockerEmulationError, match=r"does not implement Container inputs \['devices'\]"):
        emulate_docker("docker:index/container:Container", {"name": "x", "image": "i:1",
                                                            "devices": [{"hostPath": "/dev/kvm"}]})
    with pytest.raises(DockerEmulationError, match="does not implement docker:index/secret:Secret"):
        emulate_docker("docker:index/secret:Secret", {"name": "n"})
    with pytest.raises(DockerEmulationError, match="no Docker engine"):
        emulate_docker("docker:index/volume:Volume", {"name": "v"})


# --- the README tells the truth ---------------------------------------------------------------------------
def documented_keys(section: str) -> set[str]:
    """The keys in the first column of the README's `### Config keys (`cluster-cookbook:<section>`)` table;
    `.name` after `a.b` means `a.name`."""
    text = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    body = text[text.index(f"### Config keys (`cluster-cookbook:{section}`)"):]
    rows = [line for line in body.split("\n\n", 2)[1].splitlines() if line.startswith("| `")]
    keys = set()
    for row in rows:
        prefix = ""
        for item in re.findall(r"`([^`]+)`", row.split("|")[1]):
            key = prefix + item[1:] if item.startswith(".") else item
            prefix = key.rsplit(".", 1)[0] + "." if "." in key else ""
            keys.add(key)
    return keys


def parsed_keys(section: str, nested: tuple[str, ...]) -> set[str]:
    """Every key the section's parser accepts, read from its "unknown key" message."""
    def valid(path: list[str]) -> set[str]:
        raw: dict[str, Any] = {"zz_not_a_key": 1}
        for part in reversed(path):
            raw = {part: raw}
        config = stack_config(mesos_section=raw.get("mesos")) if section == "mesos" else stack_config()
        if section == "zookeeper":
            config["zookeeper"] = {**config["zookeeper"], **raw["zookeeper"]}
        found = [p for p in problems_of(config) if ".zz_not_a_key: unknown key" in p]
        return set(found[0].split("valid keys: ")[1].split(", "))

    keys = valid([section]) - set(nested)
    for name in nested:
        keys |= {f"{name}.{key}" for key in valid([section, name])}
    return keys


@pytest.mark.parametrize(("section", "nested"), [("zookeeper", ("autopurge",)),
                                                 ("mesos", ("images", "marathon", "agent", "zookeeper"))])
def test_documented_config_keys_are_the_parsed_ones(section: str, nested: tuple[str, ...]) -> None:
    assert documented_keys(section) == parsed_keys(section, nested)
