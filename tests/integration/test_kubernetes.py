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

import base64
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
from cryptography import x509

from components.kubernetes.render import (
    AGENT_KUBECONFIG,
    CONTROL_PLANE_TAINT,
    K3S_VERSION,
    STATE_DIR,
    TLS_DIR,
    UPLOAD_DIR,
    render_control_plane_gate,
    render_worker_gate,
)
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
    yield from boot_fleet(HOSTS, tmp_path_factory, pi_user=True)
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
    roles: dict[str, list[str]] = field(default_factory=dict)  # nodes whose roles differ from their group's
    removed: set[str] = field(default_factory=set)  # nodes left out of the stack

    def config(self) -> dict[str, Any]:
        nodes = [{"name": name, "address": self.fleet[name].address, "host_key": self.fleet[name].host_key,
                  "roles": self.roles.get(name, ["etcd", "control-plane"] if name in SERVERS else ["worker"])}
                 for name in HOSTS if name not in self.removed]
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
        mocks.finish()  # the engine's delete phase: what the program no longer declares is deleted
        return mocks

    def failing_delete(self) -> str:
        """A run whose program succeeds and whose delete phase fails: the error."""
        mocks = ExecutingMocks(self.state, emulators={"tls": emulate_tls, "random": emulate_random})
        self.outputs = run_program(mocks, self.config(), stack=STACK, secret_keys=["ssh_private_key"])
        with pytest.raises(Exception) as failure:
            mocks.finish()
        return str(failure.value)

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


SETTINGS_RECORD = f"{STATE_DIR}/cluster-settings"
TAINT = {"key": CONTROL_PLANE_TAINT.split(":")[0], "effect": "NoSchedule"}  # the API shows it so


def expected_uploads(stack: Stack, version: str) -> list[str]:
    binary, images = stack.artifacts.binaries[version], stack.artifacts.images[version]
    return sorted([f"{binary.sha256}-k3s", f"{images.sha256}-k3s-airgap-images-amd64.tar.zst"])


def uploads(stack: Stack, version: str) -> dict[str, list[str]]:
    return {name: stack.fleet[name].run(f"ls {UPLOAD_DIR}").stdout.split() for name in HOSTS}


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
    assert nodes["k1"]["spec"]["taints"] == [TAINT]
    assert nodes["k4"]["metadata"]["labels"] == {"cookbook.dev/worker": "true"}
    assert "taints" not in nodes["k4"]["spec"]
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


def test_airgap_uploads_stay_in_the_recipes_own_directory(stack: Stack) -> None:
    """Issue 8 audit, item 8: the uploads are named by their sha256 in the recipe's directory (not /var/tmp,
    which systemd-tmpfiles cleans after 30 days while CopyToRemote never copies again), owned by the login user."""
    assert uploads(stack, K3S_VERSION) == {name: expected_uploads(stack, K3S_VERSION) for name in HOSTS}
    for name in HOSTS:
        host = stack.fleet[name]
        assert host.run(f"stat -c '%U %a' {UPLOAD_DIR}").stdout.strip() == f"{LOGIN_USER} 700"
        assert host.run("ls /var/tmp | grep cookbook || true").stdout.split() == [], name


def test_the_kubeconfig_is_the_stacks_own_admin_certificate(stack: Stack) -> None:
    """Issue 8 audit, item 5: the servers run with the stack's CAs (placed before k3s's first start), and the
    kubeconfig output is built by the program from its own admin certificate: nothing is read back from a host,
    so nothing goes stale when k3s renews its own admin certificate."""
    kubeconfig = yaml.safe_load(stack.outputs["kubernetes"]["kubeconfig"])
    ca = base64.b64decode(kubeconfig["clusters"][0]["cluster"]["certificate-authority-data"]).decode()
    for name in SERVERS:
        assert stack.fleet[name].read_file(f"{TLS_DIR}/server-ca.crt").strip() == ca.strip(), name
    user = kubeconfig["users"][0]["user"]
    cert = x509.load_pem_x509_certificate(base64.b64decode(user["client-certificate-data"]))
    assert sorted(attribute.rfc4514_string() for attribute in cert.subject) == ["CN=cookbook-admin",
                                                                               "O=system:masters"]
    client_ca = x509.load_pem_x509_certificate(stack.fleet["k2"].read_file(f"{TLS_DIR}/client-ca.crt").encode())
    assert cert.issuer == client_ca.subject
    assert "kubernetes-admin" not in {r.name for r in stack.state.resources.values()}
    # The API (the stand-in authenticates client certificates against the client CA) takes it as admin.
    assert json.loads(stack.kubectl("get", "--raw", "/api/v1/nodes/k1"))["metadata"]["name"] == "k1"


def test_a_server_whose_ca_is_not_the_stacks_is_refused_and_nothing_changes(stack: Stack) -> None:
    """A cluster whose k3s made its own CA (created by an earlier version of the program) must not be broken:
    the server step finds the CA on the host, refuses naming kubernetes.ca, and changes nothing."""
    k2 = stack.fleet["k2"]
    k2.run(f"cp -p {TLS_DIR}/client-ca.crt /root/client-ca.crt.keep && openssl req -x509 -newkey ec -pkeyopt "
           f"ec_paramgen_curve:P-256 -nodes -keyout /dev/null -out {TLS_DIR}/client-ca.crt -days 30 "
           "-subj /CN=k3s-client-ca@1700000000 2>/dev/null")
    since = time.time()
    stack.settings["ready_timeout"] = 62
    try:
        error = stack.failing_up()
    finally:
        k2.run(f"mv -f /root/client-ca.crt.keep {TLS_DIR}/client-ca.crt")
    assert "kubernetes-server-k2" in error and "this cluster's CA is not the one this stack made" in error, error
    assert f"{TLS_DIR}/client-ca.crt differ" in error and "set kubernetes.ca to k3s" in error, error
    assert windows(stack, since) == {}
    stack.up()
    assert windows(stack, since) == {}
    assert stack.up().operations == []


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


def test_settings_k3s_cannot_change_are_refused_before_anything_restarts(stack: Stack) -> None:
    """Issue 8 audit, item 7: the servers recorded the cluster's network and DNS settings at k3s's first start;
    a change fails the first server's step naming every key and the recorded value, before anything is written
    or restarted. A server without a record (a cluster made by an earlier version) records its config.yaml."""
    k1 = stack.fleet["k1"]
    assert k1.read_file(SETTINGS_RECORD) == ("cluster-cidr=10.42.0.0/16\nservice-cidr=10.43.0.0/16\n"
                                             "cluster-dns=10.43.0.10\ncluster-domain=cluster.local\n")
    k1.run(f"rm {SETTINGS_RECORD}")  # as before this version of the program
    since = time.time()
    stack.settings.update(cluster_cidr="10.52.0.0/16", cluster_domain="home.cluster")
    try:
        error = stack.failing_up()
    finally:
        del stack.settings["cluster_cidr"], stack.settings["cluster_domain"]
    assert "kubernetes-server-k1" in error, error
    assert "kubernetes.cluster_cidr is 10.52.0.0/16 but the cluster was created with 10.42.0.0/16" in error, error
    assert "kubernetes.cluster_domain is home.cluster but the cluster was created with cluster.local" in error
    assert "kubernetes.service_cidr is" not in error and "Nothing was changed or restarted" in error
    assert windows(stack, since) == {}
    assert yaml.safe_load(k1.read_file("/etc/rancher/k3s/config.yaml"))["cluster-cidr"] == "10.42.0.0/16"
    assert "cluster-cidr=10.42.0.0/16" in k1.read_file(SETTINGS_RECORD).splitlines()
    assert stack.up().operations == []  # back to the recorded values: nothing to do


def test_a_role_change_reconciles_labels_and_the_control_plane_taint(stack: Stack) -> None:
    """Issue 8 audit, item 6: k3s applies node-taint only when a node registers, and a restart only adds the
    configured labels; the step brings the role labels and the control-plane taint in line once the node is
    Ready, and only what differs."""
    since = time.time()
    stack.roles["k3"] = ["etcd", "control-plane", "worker"]  # k3 now also runs workloads
    stack.up()
    k3 = stack.nodes()["k3"]
    assert k3["metadata"]["labels"] == {"cookbook.dev/control-plane": "true", "cookbook.dev/worker": "true"}
    assert "taints" not in k3["spec"]
    assert kubectl_verbs(stack, "k3", since) == ["taint"]  # k3s itself added the label at its restart

    since = time.time()
    del stack.roles["k3"]
    stack.up()
    k3 = stack.nodes()["k3"]
    assert k3["metadata"]["labels"] == {"cookbook.dev/control-plane": "true"}
    assert k3["spec"]["taints"] == [TAINT]
    assert kubectl_verbs(stack, "k3", since) == ["label", "taint"]
    assert stack.up().operations == []


def kubectl_verbs(stack: Stack, name: str, since: float) -> list[str]:
    return [e["verb"] for e in stack.events(name) if e["time"] > since and e["event"] == "kubectl"]


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
    assert not any(n["spec"].get("unschedulable") for n in nodes.values())
    # The previous version's uploads are gone; this version's stay (a later run reinstalls from them).
    assert uploads(stack, UPGRADE) == {name: expected_uploads(stack, UPGRADE) for name in HOSTS}


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
    assert not nodes["k5"]["spec"].get("unschedulable") and ready_flag(nodes["k5"]) == "True"  # uncordoned
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


def run_gate(stack: Stack, name: str) -> subprocess.CompletedProcess[str]:
    """The node layer's health gate of `name`, as its reboot step would call it."""
    if name in SERVERS:
        others = {other: stack.fleet[other].address for other in SERVERS if other != name}
        text, function = render_control_plane_gate(name, others), "kubernetes_control_plane_gate"
    else:
        text, function = render_worker_gate(name), "kubernetes_worker_gate"
    return stack.fleet[name].run(["bash", "-c", f"set -euo pipefail\n{text}{function}\n"], check=False)


def wait_for_gate(stack: Stack, name: str) -> None:
    deadline = time.monotonic() + 30
    while run_gate(stack, name).returncode != 0:
        assert time.monotonic() < deadline, f"{name} did not pass its gate again: {run_gate(stack, name)}"
        time.sleep(1)


def test_the_control_plane_gate_requires_the_api_and_every_other_server(stack: Stack) -> None:
    """Issue 8 audit, item 2: a control-plane node may go down only while the API answers and every other
    server is Ready, like the etcd gate requires the whole cluster; after its own restart it waits for itself
    through another server's API while its own is not back."""
    passed = run_gate(stack, "k1")
    assert passed.returncode == 0, passed
    assert passed.stdout.strip() == "k3s API ready, node k1 Ready, other servers Ready: k2 k3"
    stack.fleet["k2"].run("systemctl stop k3s")
    try:
        waiting = run_gate(stack, "k1")
        assert waiting.returncode == 1, waiting
        assert waiting.stdout.strip() == "waiting for the other servers to be Ready: k2 (Ready=False)", waiting
        own = run_gate(stack, "k2")  # its own API is down: asked through k1's or k3's
        assert own.returncode == 1 and own.stdout.startswith("waiting for node k2 to be Ready since this boot"), own
    finally:
        stack.fleet["k2"].run("systemctl start k3s")
    wait_for_gate(stack, "k2")
    wait_for_gate(stack, "k1")


def test_the_worker_gate_waits_for_the_node_with_its_own_credentials(stack: Stack) -> None:
    """Issue 8 audit, item 3: a worker Pi's gate (it reboots in the one-at-a-time chain) waits until its node is
    Ready after the boot, asked with the node's own kubelet credentials, which may read its own Node object only
    and cannot drain it (the README says why)."""
    passed = run_gate(stack, "k4")
    assert passed.returncode == 0 and passed.stdout.strip() == "node k4 Ready since this boot", passed
    k1 = stack.fleet["k1"].run(["bash", "-c", f"set -euo pipefail\n{render_worker_gate('k1')}kubernetes_worker_gate\n"])
    assert k1.stdout.strip() == "no k3s agent on this host: nothing to wait for"
    kubelet = f"/usr/local/bin/k3s kubectl --kubeconfig={AGENT_KUBECONFIG}"
    k4 = stack.fleet["k4"]
    for command, refused in (
            (f"{kubelet} get node k5", 'Error from server (Forbidden): nodes "k5" is forbidden: User "system:node:k4"'),
            (f"{kubelet} get nodes", 'User "system:node:k4" cannot list resource "nodes"'),
            (f"{kubelet} taint node k4 x=y:NoSchedule", 'node "k4" is not allowed to modify taints'),
            # kubectl drain reads the DaemonSet of each DaemonSet pod; a kubelet may not (it cordoned, though).
            (f"{kubelet} drain k4 --ignore-daemonsets --delete-emptydir-data",
             'cannot delete daemonsets.apps "svclb-traefik" is forbidden: User "system:node:k4" cannot get')):
        done = k4.run(command, check=False)
        assert done.returncode != 0 and refused in done.stderr, done
    k4.run(f"{kubelet} uncordon k4")  # its own Node's spec.unschedulable: NodeRestriction allows it
    k4.run("systemctl stop k3s-agent")
    try:
        waiting = run_gate(stack, "k4")
        assert waiting.returncode == 1 and waiting.stdout.startswith("waiting for node k4 to be Ready"), waiting
    finally:
        k4.run("systemctl start k3s-agent")
    wait_for_gate(stack, "k4")


def test_removing_an_agent_drains_it_stops_k3s_and_deletes_its_node(stack: Stack) -> None:
    """Issue 8 audit, item 4: a node left out of the stack is drained (a PodDisruptionBudget that allows no
    disruption fails the run naming the pod, and the node is left as it was), k3s stops, its Node object is
    deleted and the files the step wrote are removed; the servers are not touched. Added back, it rejoins."""
    k5 = stack.fleet["k5"]
    stack.etcdctl("put", "/registry/cookbook-standin/pdb-block/k5", "object-store/cassandra-2")
    since = time.time()
    stack.removed.add("k5")
    try:
        error = stack.failing_delete()
    finally:
        stack.etcdctl("del", "/registry/cookbook-standin/pdb-block/k5")
    assert "kubernetes-agent-k5" in error and "k5: draining for its removal from the cluster did not finish" in error
    assert "pod object-store/cassandra-2 cannot be evicted" in error and "k5 was uncordoned" in error, error
    node = stack.nodes()["k5"]
    assert not node["spec"].get("unschedulable") and ready_flag(node) == "True"
    assert k5.run("systemctl is-active k3s-agent").stdout.strip() == "active"

    mocks = stack.up()  # the delete phase runs the delete again
    assert ("delete", "kubernetes-agent-k5") in mocks.operations
    assert [e.get("verb") or e["event"] for e in stack.events("k5") if e["time"] > since
            and e["event"] in ("kubectl", "stop", "start")] == ["cordon", "drain", "uncordon", "cordon", "drain",
                                                               "stop", "delete"]
    assert "k5" not in stack.nodes()
    assert k5.run("systemctl is-active k3s-agent", check=False).stdout.strip() == "inactive"
    assert k5.run("systemctl is-enabled k3s-agent", check=False).returncode != 0
    for path in ("/etc/rancher/k3s/cookbook", "/etc/rancher/k3s/config.yaml", "/etc/systemd/system/k3s-agent.service",
                 "/var/lib/cookbook-k3s/k3s-agent.started"):
        assert k5.run(f"test -e {path}", check=False).returncode != 0, path
    assert not [e for n in HOSTS if n != "k5" for e in stack.events(n) if e["time"] > since]  # servers untouched
    assert all(ready_flag(node) == "True" for node in stack.nodes().values())
    assert stack.up().operations == []

    since = time.time()
    stack.removed.discard("k5")
    stack.up()
    k5_node = stack.nodes()["k5"]
    assert ready_flag(k5_node) == "True" and k5_node["metadata"]["labels"] == {"cookbook.dev/worker": "true"}
    assert set(windows(stack, since)) == {"k5"}
    assert stack.up().operations == []
