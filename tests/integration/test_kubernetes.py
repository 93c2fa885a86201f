"""The real program brings up etcd and Kubernetes on booted hosts. etcd is real (Debian's package, installed by
the etcd recipe from the hosts' offline apt repository); k3s cannot be downloaded here, so the `k3s` binary the
program installs (airgap mode) is the TEST-ONLY stand-in of tests/standins/k3s: it refuses config keys the
pinned k3s does not accept, keeps its node records in the real etcd through the datastore credentials the
program wrote, serves /readyz and node objects, reports readiness and drains (see its docstring). Everything
around it is the recipe's real flow: install, checksum checks, files, units, restarts, cordon/drain/uncordon.

One fleet of five hosts for the module; the tests run in order and build on each other: k1-k3 run an etcd
member and a k3s server each, k4 and k5 a k3s agent. Numbers are printed (`-s`) and collected in NUMBERS.
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from components.kubernetes.render import K3S_VERSION, render_control_plane_gate
from tests.harness import ssh
from tests.harness.executing import ExecutingMocks, StackState
from tests.harness.program import run_program
from tests.harness.random_emulator import emulate_random
from tests.harness.tls import emulate_tls
from tests.infra.hosts import HostFleet, TestHost
from tests.integration.conftest import boot_fleet
from tests.standins import File, airgap_images, k3s_binary

pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(shutil.which("etcdctl") is None, reason="needs etcdctl (Debian etcd-client)")]

SERVERS = ["k1", "k2", "k3"]
AGENTS = ["k4", "k5"]
HOSTS = SERVERS + AGENTS
STACK = "it-kubernetes"
UPGRADE = "v1.34.8+k3s1"  # the stand-in reporting another version: a version bump
SECOND_UPGRADE = "v1.34.9+k3s1"
LOG = "/var/log/cookbook-standin.jsonl"
NUMBERS: dict[str, Any] = {}
LOGIN_USER = "pi"  # like Raspberry Pi OS: every step runs through `sudo -n`
ADD_LOGIN_USER = (
    "useradd --create-home --shell /bin/bash pi && install -d -m 0700 -o pi -g pi /home/pi/.ssh && "
    "install -m 0600 -o pi -g pi /root/.ssh/authorized_keys /home/pi/.ssh/authorized_keys && "
    "echo 'pi ALL=(ALL) NOPASSWD: ALL' > /etc/sudoers.d/010_pi-nopasswd && chmod 0440 /etc/sudoers.d/010_pi-nopasswd"
)




@dataclass
class Artifacts:
    binaries: dict[str, File]  # version -> the stand-in reporting it
    images: dict[str, File]


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory: pytest.TempPathFactory) -> Artifacts:
    directory = tmp_path_factory.mktemp("k3s-artifacts")
    versions = (K3S_VERSION, UPGRADE, SECOND_UPGRADE)
    return Artifacts({v: k3s_binary(v, directory) for v in versions},
                     {v: airgap_images(directory, v.replace("+", "-")) for v in versions})


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HostFleet]:
    for fleet in boot_fleet(HOSTS, tmp_path_factory):
        for host in fleet:
            host.run(ADD_LOGIN_USER)
        yield fleet
    print("\nkubernetes numbers:", json.dumps(NUMBERS, indent=1))


@dataclass
class Stack:
    fleet: HostFleet
    artifacts: Artifacts
    workdir: Path
    state: StackState = field(default_factory=StackState)
    version: str = K3S_VERSION
    settings: dict[str, Any] = field(default_factory=dict)
    binary_sha256: str | None = None  # to give a wrong checksum
    outputs: dict[str, Any] = field(default_factory=dict)

    def config(self) -> dict[str, Any]:
        nodes = [{"name": name, "address": self.fleet[name].address, "host_key": self.fleet[name].host_key,
                  "roles": ["etcd", "control-plane"] if name in SERVERS else ["worker"]} for name in HOSTS]
        binary, images = self.artifacts.binaries[self.version], self.artifacts.images[self.version]
        return {
            "ssh": {"user": LOGIN_USER, "dial_error_limit": 2, "per_dial_timeout": 3},
            "prepare": {"packages": ["jq"], "kubernetes_networking": False},
            "nodes": nodes,
            "ssh_private_key": self.fleet.private_key_pem,
            "etcd": {"install": "package", "bootstrap": SERVERS, "health_timeout": 120},
            "kubernetes": {
                "version": self.version, "install": "airgap",
                "airgap": {"amd64": {"binary": {"path": binary.path, "sha256": self.binary_sha256 or binary.sha256},
                                     "images": {"path": images.path, "sha256": images.sha256}}},
                "disable": ["traefik"], "ready_timeout": 60, "drain_timeout": 20, **self.settings,
            },
        }

    def up(self) -> ExecutingMocks:
        mocks = ExecutingMocks(self.state, emulators={"tls": emulate_tls, "random": emulate_random})
        self.outputs = run_program(mocks, self.config(), stack=STACK, secret_keys=["ssh_private_key"])
        mocks.finish()
        return mocks

    def failing_up(self) -> str:
        mocks = ExecutingMocks(self.state, emulators={"tls": emulate_tls, "random": emulate_random})
        with pytest.raises(Exception) as failure:
            run_program(mocks, self.config(), stack=STACK, secret_keys=["ssh_private_key"])
        return f"{failure.value}\n" + "\n".join(mocks.errors)

    # --- what the hosts say ----------------------------------------------------------------------------
    def events(self, name: str) -> list[dict[str, Any]]:
        text = self.fleet[name].run(f"cat {LOG} 2>/dev/null || true").stdout
        return [json.loads(line) for line in text.splitlines() if line.strip()]

    def kubeconfig(self) -> Path:
        path = self.workdir / "kubeconfig"
        path.write_text(self.outputs["kubernetes"]["kubeconfig"])
        path.chmod(0o600)
        return path

    def kubectl(self, *args: str) -> str:
        """The machine's real kubectl with the stack's kubeconfig output, against the stand-in API."""
        done = subprocess.run(["kubectl", f"--kubeconfig={self.kubeconfig()}", "--request-timeout=10s", *args],
                              capture_output=True, text=True, timeout=60, check=False)
        assert done.returncode == 0, done.stderr
        return done.stdout

    def nodes(self) -> dict[str, dict[str, Any]]:
        items = json.loads(self.kubectl("get", "--raw", "/api/v1/nodes"))["items"]
        return {item["metadata"]["name"]: item for item in items}

    def etcdctl(self, *args: str) -> str:
        etcd = self.outputs["etcd"]
        pki = self.workdir / "pki"
        pki.mkdir(exist_ok=True)
        for file, key in (("ca.crt", "ca_cert"), ("client.crt", "client_cert"), ("client.key", "client_key")):
            (pki / file).write_text(etcd[key])
            (pki / file).chmod(0o600)
        done = subprocess.run(["etcdctl", f"--endpoints={','.join(etcd['client_endpoints'])}",
                               f"--cacert={pki}/ca.crt", f"--cert={pki}/client.crt", f"--key={pki}/client.key",
                               "--dial-timeout=3s", "--command-timeout=5s", *args], capture_output=True, text=True,
                              env={**os.environ, "ETCDCTL_API": "3"}, timeout=60, check=False)
        assert done.returncode == 0, done.stderr
        return done.stdout


def ready_flag(node: dict[str, Any]) -> str:
    return next(c["status"] for c in node["status"]["conditions"] if c["type"] == "Ready")


def windows(stack: Stack, since: float) -> dict[str, tuple[float, float]]:
    """Per node: (time its k3s was stopped or first started, time the new process reported ready) after `since`."""
    found = {}
    for name in HOSTS:
        events = [e for e in stack.events(name) if e["time"] > since]
        starts = [e for e in events if e["event"] in ("stop", "start")]
        readies = [e for e in events if e["event"] == "ready"]
        if starts:
            found[name] = (starts[0]["time"], readies[-1]["time"])
    return found


def assert_one_at_a_time(found: dict[str, tuple[float, float]], expected: list[str]) -> None:
    """Each node's window (down -> ready) ends before the next node's begins, in node order."""
    assert sorted(found) == sorted(expected), found
    ordered = sorted(expected, key=lambda name: found[name][0])
    assert ordered == expected, f"order {ordered}, expected servers first then agents: {expected}"
    for before, after in itertools.pairwise(ordered):
        assert found[before][1] < found[after][0], f"{after} went down before {before} was ready again: {found}"


@pytest.fixture(scope="module")
def stack(fleet: HostFleet, artifacts: Artifacts, tmp_path_factory: pytest.TempPathFactory) -> Stack:
    return Stack(fleet, artifacts, tmp_path_factory.mktemp("kubernetes-stack"))


def test_a_binary_that_does_not_match_its_checksum_is_refused(stack: Stack) -> None:
    stack.binary_sha256 = stack.artifacts.binaries[UPGRADE].sha256  # the checksum of another file
    error = stack.failing_up()
    stack.binary_sha256 = None
    assert "kubernetes-server-k1" in error and "does not match kubernetes.airgap.amd64.binary" in error, error
    assert stack.fleet["k1"].run("test -e /usr/local/bin/k3s", check=False).returncode != 0
    # The first server failed, so no other node step started.
    started = [r.name for r in stack.state.resources.values()
               if r.type == "command:remote:Command" and r.name.startswith(("kubernetes-server-", "kubernetes-agent-"))]
    assert started == []


def test_bring_up_from_bare_hosts(stack: Stack) -> None:
    ssh.SESSIONS.clear()
    started = time.monotonic()
    mocks = stack.up()
    NUMBERS["bring_up_seconds_after_checksum_refusal"] = round(time.monotonic() - started, 1)
    NUMBERS["ssh_sessions_per_node_bring_up"] = {name: ssh.SESSIONS[stack.fleet[name].address] for name in HOSTS}
    ran = [name for _, name in mocks.operations if name.startswith("kubernetes-")]
    assert {f"kubernetes-server-{n}" for n in SERVERS} | {f"kubernetes-agent-{n}" for n in AGENTS} <= set(ran)
    outputs = stack.outputs["kubernetes"]
    assert outputs["api_endpoint"] == f"https://{stack.fleet['k1'].address}:6443"
    assert outputs["nodes"] == HOSTS and outputs["servers"] == SERVERS and outputs["agents"] == AGENTS
    kubeconfig = yaml.safe_load(outputs["kubeconfig"])
    assert kubeconfig["current-context"] == STACK
    assert kubeconfig["clusters"][0]["cluster"]["server"] == outputs["api_endpoint"]
    # The machine's real kubectl, with the kubeconfig output, talks to the (stand-in) API over verified TLS.
    assert stack.kubectl("get", "--raw", "/readyz").strip() == "ok"
    nodes = stack.nodes()
    assert sorted(nodes) == sorted(HOSTS)
    assert all(ready_flag(node) == "True" for node in nodes.values()), nodes
    assert {n["status"]["nodeInfo"]["kubeletVersion"] for n in nodes.values()} == {K3S_VERSION}
    # Labels and taints from roles.
    assert nodes["k1"]["metadata"]["labels"] == {"cookbook.dev/control-plane": "true"}
    assert nodes["k1"]["spec"]["taints"] == ["node-role.kubernetes.io/control-plane:NoSchedule"]
    assert nodes["k4"]["metadata"]["labels"] == {"cookbook.dev/worker": "true"} and not nodes["k4"]["spec"]["taints"]
    # Each node started once, one at a time: servers in order, then agents.
    assert_one_at_a_time(windows(stack, 0), HOSTS)
    for name in HOSTS:
        assert [e["event"] for e in stack.events(name)] == ["start", "ready"], name


def test_files_units_and_modes_on_the_hosts(stack: Stack) -> None:
    server, agent = stack.fleet["k1"], stack.fleet["k4"]
    assert server.run("stat -c '%a' /etc/rancher/k3s/cookbook /etc/rancher/k3s/config.yaml "
                      "/etc/rancher/k3s/cookbook/token /etc/rancher/k3s/cookbook/datastore-client.key "
                      "/etc/rancher/k3s/k3s.yaml").stdout.split() == ["700", "600", "600", "600", "600"]
    assert server.run("ls /etc/rancher/k3s/cookbook").stdout.split() == [
        "agent-token", "datastore-ca.crt", "datastore-client.crt", "datastore-client.key", "token"]
    assert agent.run("ls /etc/rancher/k3s/cookbook").stdout.split() == ["agent-token"]  # no datastore key
    assert agent.run("ls /tmp /run | grep -c kubeconfig || true").stdout.strip() == "0"  # nothing left behind
    unit = server.read_file("/etc/systemd/system/k3s.service")
    for line in ("Type=notify", "KillMode=process", "Delegate=yes", "LimitNOFILE=1048576", "Restart=always",
                 "ExecStart=/usr/local/bin/k3s server"):
        assert line in unit.splitlines()
    assert "ExecStart=/usr/local/bin/k3s agent" in agent.read_file("/etc/systemd/system/k3s-agent.service")
    assert server.run("systemctl is-enabled k3s; systemctl is-active k3s").stdout.split() == ["enabled", "active"]
    assert agent.run("systemctl is-active k3s-agent").stdout.strip() == "active"
    assert agent.run("test -e /etc/systemd/system/k3s.service", check=False).returncode != 0
    images = "/var/lib/rancher/k3s/agent/images/k3s-airgap-images-amd64.tar.zst"
    assert agent.run(f"sha256sum {images}").stdout.split()[0] == stack.artifacts.images[K3S_VERSION].sha256
    config = yaml.safe_load(server.read_file("/etc/rancher/k3s/config.yaml"))
    assert config["datastore-endpoint"] == ",".join(stack.outputs["etcd"]["client_endpoints"])
    assert config["disable"] == ["traefik"] and config["secrets-encryption"] is True
    assert config["node-ip"] == server.address and server.address in config["tls-san"]


def test_datastore_credentials_read_and_write_under_registry_on_the_real_etcd(stack: Stack) -> None:
    """(a) From each server host, the files the program wrote for k3s reach the real etcd cluster."""
    for name in SERVERS:
        host: TestHost = stack.fleet[name]
        config = yaml.safe_load(host.read_file("/etc/rancher/k3s/config.yaml"))
        etcdctl = (f"ETCDCTL_API=3 etcdctl --endpoints={config['datastore-endpoint']} "
                   f"--cacert={config['datastore-cafile']} --cert={config['datastore-certfile']} "
                   f"--key={config['datastore-keyfile']} --dial-timeout=3s --command-timeout=5s")
        host.run(f"{etcdctl} put /registry/cookbook-it/{name} written-by-{name}")
        assert host.run(f"{etcdctl} get /registry/cookbook-it/ --prefix --keys-only").stdout.split() == [
            f"/registry/cookbook-it/{n}" for n in SERVERS[:SERVERS.index(name) + 1]]
        # Without the client certificate, etcd refuses.
        plain = host.run(f"ETCDCTL_API=3 etcdctl --endpoints={config['datastore-endpoint']} "
                         f"--cacert={config['datastore-cafile']} --dial-timeout=2s --command-timeout=3s "
                         "get /registry/cookbook-it/k1", check=False)
        assert plain.returncode != 0
    # The operator (the etcd outputs) sees what the stand-in servers keep there: every node's record.
    keys = stack.etcdctl("get", "/registry/minions/", "--prefix", "--keys-only").split()
    assert keys == [f"/registry/minions/{n}" for n in HOSTS]


def test_a_run_without_changes_opens_no_ssh_session(stack: Stack) -> None:
    ssh.SESSIONS.clear()
    mocks = stack.up()
    assert mocks.operations == []
    NUMBERS["ssh_sessions_noop_up"] = sum(ssh.SESSIONS.values())
    assert sum(ssh.SESSIONS.values()) == 0


def test_rerunning_every_step_restarts_nothing(stack: Stack) -> None:
    """A changed input that changes nothing on the hosts (a timeout) re-runs every node step: no restart, no
    cordon, every node still Ready."""
    since = time.time()
    stack.settings["ready_timeout"] = 61
    mocks = stack.up()
    reran = {name for op, name in mocks.operations if op == "update"}
    assert {f"kubernetes-server-{n}" for n in SERVERS} | {f"kubernetes-agent-{n}" for n in AGENTS} <= reran
    assert windows(stack, since) == {}
    assert not [e for n in HOSTS for e in stack.events(n) if e["time"] > since]


def test_a_config_change_restarts_nodes_one_at_a_time_without_draining(stack: Stack) -> None:
    since = time.time()
    started = time.monotonic()
    stack.settings["prefer_bundled_bin"] = False
    stack.up()
    NUMBERS["rolling_restart_5_nodes_seconds"] = round(time.monotonic() - started, 1)
    assert_one_at_a_time(windows(stack, since), HOSTS)
    assert not [e for n in HOSTS for e in stack.events(n) if e["time"] > since and e["event"] == "kubectl"]
    assert all(ready_flag(node) == "True" for node in stack.nodes().values())


def upgrade_events(stack: Stack, name: str, since: float) -> list[str]:
    return [e.get("verb") or e["event"] for e in stack.events(name) if e["time"] > since
            and e["event"] in ("kubectl", "stop", "start", "ready")]


def test_a_version_bump_drains_and_upgrades_one_node_at_a_time(stack: Stack) -> None:
    since = time.time()
    started = time.monotonic()
    stack.version = UPGRADE
    stack.up()
    NUMBERS["rolling_upgrade_5_nodes_seconds"] = round(time.monotonic() - started, 1)
    assert_one_at_a_time(windows(stack, since), HOSTS)
    for name in HOSTS:
        # Cordon and drain before the restart, uncordon once the new version is Ready.
        assert upgrade_events(stack, name, since) == ["cordon", "drain", "stop", "start", "ready", "uncordon"], name
        drain = next(e for e in stack.events(name) if e["time"] > since and e.get("verb") == "drain")
        assert {"--ignore-daemonsets", "--delete-emptydir-data", "--timeout=20s"} <= set(drain["args"])
        start = next(e for e in stack.events(name) if e["time"] > since and e["event"] == "start")
        assert start["version"] == UPGRADE
    nodes = stack.nodes()
    assert {n["status"]["nodeInfo"]["kubeletVersion"] for n in nodes.values()} == {UPGRADE}
    assert not any(n["spec"]["unschedulable"] for n in nodes.values())


def test_a_drain_blocked_by_a_disruption_budget_fails_naming_node_and_pod(stack: Stack) -> None:
    stack.etcdctl("put", "/registry/cookbook-standin/pdb-block/k5", "object-store/cassandra-1")
    since = time.time()
    stack.version = SECOND_UPGRADE
    error = stack.failing_up()
    assert "kubernetes-agent-k5" in error and "k5: draining for the upgrade" in error, error
    assert "pod object-store/cassandra-1 cannot be evicted" in error, error
    nodes = stack.nodes()
    versions = {name: node["status"]["nodeInfo"]["kubeletVersion"] for name, node in nodes.items()}
    assert versions == {**dict.fromkeys([*SERVERS, "k4"], SECOND_UPGRADE), "k5": UPGRADE}
    assert not nodes["k5"]["spec"]["unschedulable"] and ready_flag(nodes["k5"]) == "True"  # uncordoned, running
    assert "stop" not in upgrade_events(stack, "k5", since)

    # Once the budget allows it, a re-run converges: k5 is upgraded, nothing else restarts.
    stack.etcdctl("del", "/registry/cookbook-standin/pdb-block/k5")
    since = time.time()
    stack.up()
    assert set(windows(stack, since)) == {"k5"}
    assert upgrade_events(stack, "k5", since) == ["cordon", "drain", "stop", "start", "ready", "uncordon"]
    assert {n["status"]["nodeInfo"]["kubeletVersion"] for n in stack.nodes().values()} == {SECOND_UPGRADE}
    assert stack.up().operations == []


def test_an_unreachable_agent_fails_the_run_naming_it_and_a_rerun_converges(stack: Stack) -> None:
    k4 = stack.fleet["k4"]
    k4.block()
    try:
        since = time.time()
        stack.settings["prefer_bundled_bin"] = True
        error = stack.failing_up()
    finally:
        k4.unblock()
    assert "kubernetes-agent-k4" in error and k4.address in error, error
    assert set(windows(stack, since)) == set(SERVERS)  # servers rolled; k5 waits behind k4
    since = time.time()
    stack.up()
    assert_one_at_a_time(windows(stack, since), AGENTS)
    assert all(ready_flag(node) == "True" for node in stack.nodes().values())
    assert stack.up().operations == []


def test_the_control_plane_gate_for_node_reboots(stack: Stack) -> None:
    def gate(name: str) -> subprocess.CompletedProcess[str]:
        script = ("set -euo pipefail\n" + render_control_plane_gate(name) + "kubernetes_control_plane_gate\n")
        return stack.fleet[name].run(["bash", "-c", script], check=False)

    passed = gate("k1")
    assert passed.returncode == 0 and "k3s API ready and node k1 Ready" in passed.stdout, passed
    assert gate("k4").stdout.strip() == "no k3s server on this host: nothing to wait for"
    stack.fleet["k2"].run("systemctl stop k3s")
    try:
        waiting = gate("k2")
        assert waiting.returncode == 1 and "waiting for the k3s API" in waiting.stdout, waiting
    finally:
        stack.fleet["k2"].run("systemctl start k3s")
    deadline = time.monotonic() + 30
    while gate("k2").returncode != 0:
        assert time.monotonic() < deadline, "k2 did not pass its gate again after its restart"
        time.sleep(1)
