"""The `local` stack (the cookbook on this machine's Docker engine) under mocks: the resource graph, every
container's settings (privileged only for k3s, tmpfs, restart policies, one network with fixed addresses, ports
published on 127.0.0.1 only, limits, healthchecks), secrets only in secret uploads, the policy pack, and the
engine check that runs before anything is declared.

k3s, Cassandra, Pithos and the registry are checked here only: their images cannot be pulled on this machine
(tests/integration/test_local_etcd.py runs the etcd members for real).
"""

from __future__ import annotations

import base64
import ipaddress
import json
import subprocess
from typing import Any

import grpc
import pulumi
import pytest
import yaml

from components.etcd import render as etcd_render
from components.kubernetes.render import K3S_VERSION
from components.local import render
from components.local.etcd import cluster_args
from policy import rules
from tests.harness.fixtures import FAKE_SECRETS, evaluate_stack
from tests.harness.program import ROOT, SECRET_SIG, Registration, load_stack_config, run_program
from tests.harness.recording import Recorded, RecordingMocks, plain_strings
from tests.harness.validators import shellcheck_findings

CONTAINER, NETWORK, VOLUME, IMAGE = ("docker:index/container:Container", "docker:index/network:Network",
                                     "docker:index/volume:Volume", "docker:index/remoteImage:RemoteImage")
FLAGS = json.loads((ROOT / "tests" / "data" / f"k3s-flags-{K3S_VERSION}.json").read_text())
KEY_PEM = "-----BEGIN EC PRIVATE KEY-----\nFAKE-KEY-FOR-TESTS-ONLY\n-----END EC PRIVATE KEY-----\n"
CERT_PEM = "-----BEGIN CERTIFICATE-----\nFAKE-CERT\n-----END CERTIFICATE-----\n"
MEMBERS = ["cookbook-local-etcd-1", "cookbook-local-etcd-2", "cookbook-local-etcd-3"]
SERVER, AGENT, REGISTRY = "cookbook-local-server", "cookbook-local-agent-1", "cookbook-local-registry"


class PemMocks(RecordingMocks):
    """Recording mocks that answer pulumi-tls with PEM text and pulumi-random with a marked token, so key material
    and tokens flow where a real run puts them."""

    def fake_outputs(self, typ: str, inputs: dict[str, Any]) -> dict[str, Any]:
        outputs = super().fake_outputs(typ, inputs)
        if typ == "tls:index/privateKey:PrivateKey":
            outputs["privateKeyPem"] = KEY_PEM
        elif typ.startswith("tls:") and typ.endswith("Cert"):
            outputs["certPem"] = CERT_PEM
        return outputs

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str | None, dict[str, Any]]:
        resource_id, outputs = super().new_resource(args)
        if args.typ.startswith("random:"):
            outputs["result"] = f"FAKE-TOKEN-{args.name}"
        return resource_id, outputs


def evaluate(extra: dict[str, Any] | None = None, stack: str = "local") -> PemMocks:
    mocks = PemMocks()
    config = {**load_stack_config("local"), **FAKE_SECRETS, **(extra or {})}
    run_program(mocks, config, stack=stack, secret_keys=list(FAKE_SECRETS))
    return mocks


@pytest.fixture(scope="module")
def stack() -> PemMocks:
    return evaluate()


def containers(mocks: RecordingMocks) -> dict[str, Recorded]:
    return {r.inputs["name"]: r for r in mocks.of_type(CONTAINER)}


def urn(mocks: RecordingMocks, name: str) -> str:
    return mocks.named(name).urn


# --- the graph ----------------------------------------------------------------------------------------------
def test_the_stack_is_etcd_k3s_a_registry_and_the_store_in_docker(stack: PemMocks) -> None:
    assert sorted(containers(stack)) == sorted([*MEMBERS, SERVER, AGENT, REGISTRY])
    assert sorted(r.inputs["name"] for r in stack.of_type(VOLUME)) == sorted(
        [*(f"{member}-data" for member in MEMBERS), f"{SERVER}-state", f"{AGENT}-state", f"{REGISTRY}-data"])
    assert [r.inputs["name"] for r in stack.of_type(NETWORK)] == ["cookbook-local"]
    assert sorted(r.inputs["name"] for r in stack.of_type(IMAGE)) == sorted(
        ["gcr.io/etcd-development/etcd:v3.6.14", "rancher/k3s:v1.34.7-k3s1", "registry:3.0.0"])
    assert all(r.inputs["keepLocally"] is True for r in stack.of_type(IMAGE))
    components = {r.name: r.type for r in stack.resources if not r.registration.custom}
    assert {components[n] for n in ("local", "local-etcd", "local-kubernetes")} == {
        "cookbook:local:Cluster", "cookbook:local:Etcd", "cookbook:local:Kubernetes"}
    local_types = {r.urn for r in stack.resources if r.type.startswith("cookbook:local:")}
    assert all(r.parent in local_types for r in stack.resources if r.type.startswith("docker:"))
    # Nothing outside the engine: no SSH, no hosts.
    assert not [r for r in stack.resources if r.type.startswith("command:")]


def test_what_waits_for_what(stack: PemMocks) -> None:
    def deps(name: str) -> set[str]:
        return set(stack.named(name).registration.dependencies)

    etcd = {urn(stack, f"local-etcd-container-{member}") for member in MEMBERS}
    network = urn(stack, "local-network")
    server = urn(stack, "local-kubernetes-server")
    # k3s's server starts on a healthy datastore; etcd members start together (each one's health needs quorum).
    assert etcd <= deps("local-kubernetes-server")
    for member in MEMBERS:
        name = f"local-etcd-container-{member}"
        assert not (deps(name) & etcd) and network in deps(name) and urn(stack, "local-image-etcd") in deps(name)
        assert urn(stack, f"local-etcd-data-{member}") in deps(name)
    assert network in deps("local-kubernetes-agent-1") and not (deps("local-kubernetes-agent-1") & etcd)
    # The store goes onto the cluster once the server reported every node Ready (its kubeconfig resolves then),
    # and the Pithos image is pushed once the registry runs.
    assert {server, urn(stack, "local-kubernetes-agent-1")} <= deps("store-target-provider")
    assert urn(stack, "local-registry") in deps("pithos-image")
    assert stack.named("pithos-image").inputs["tags"] == ["127.0.0.1:5001/pithos:0.7.5"]


def test_make_destroy_can_remove_everything(stack: PemMocks) -> None:
    """Nothing of the local stack is protected (the store's Namespace and StatefulSet are on a host cluster,
    where they still are), and what runs on the cluster goes before any node: `make destroy` removes it whole."""
    assert [r.name for r in stack.resources if r.registration.protect] == []
    assert [r.name for r in stack.resources if r.registration.retain_on_delete] == []
    protected = {r.name for r in evaluate_stack("s3-store").resources if r.registration.protect}
    assert {"cassandra-namespace", "cassandra-statefulset"} <= protected


# --- container settings ---------------------------------------------------------------------------------------
def test_only_k3s_runs_privileged_with_tmpfs_as_k3d_runs_it(stack: PemMocks) -> None:
    for name, container in containers(stack).items():
        k3s = container.inputs["image"].startswith("rancher/k3s:")
        assert bool(container.inputs.get("privileged")) is k3s, name
        assert container.inputs.get("tmpfs") == ({"/run": "", "/var/run": ""} if k3s else None), name
        assert container.inputs["command"] == (["server"] if name == SERVER else ["agent"] if k3s else
                                                ["etcd"] if name in MEMBERS else []), name
        if k3s:
            assert sorted((u["name"], u["soft"], u["hard"]) for u in container.inputs["ulimits"]) == [
                ("nofile", 65535, 65535), ("nproc", 65535, 65535)]
            volumes = {v["containerPath"]: v["volumeName"] for v in container.inputs["volumes"]}
            assert volumes == {"/var/lib/rancher/k3s": f"{name}-state"}


def test_every_container_restarts_has_limits_and_stops_cleanly(stack: PemMocks) -> None:
    limits = {SERVER: (2048, "2"), AGENT: (3072, "2"), REGISTRY: (256, "0.5"),
              **{member: (256, "0.5") for member in MEMBERS}}
    for name, container in containers(stack).items():
        inputs = container.inputs
        assert inputs["restart"] == "unless-stopped" and inputs["mustRun"] is True, name
        assert (inputs["memory"], inputs["cpus"]) == limits[name], name
        assert inputs["memorySwap"] == inputs["memory"], name  # no swap beyond the limit
        assert inputs["destroyGraceSeconds"] == 30, name
        assert container.registration.delete_before_replace, name  # fixed names and addresses
        assert inputs["labels"] == [{"label": "managed-by", "value": "cluster-cookbook"}], name
        assert inputs["hostname"] == name


def test_one_network_with_fixed_addresses(stack: PemMocks) -> None:
    (network,) = stack.of_type(NETWORK)
    assert network.inputs["driver"] == "bridge"
    assert network.inputs["ipamConfigs"] == [{"subnet": "10.213.0.0/24", "gateway": "10.213.0.1"}]
    assert network.inputs["options"] == {"com.docker.network.bridge.host_binding_ipv4": "127.0.0.1"}
    addresses = {name: c.inputs["networksAdvanced"] for name, c in containers(stack).items()}
    assert all(len(attached) == 1 and attached[0]["name"] == "cookbook-local" for attached in addresses.values())
    expected = {MEMBERS[0]: "10.213.0.11", MEMBERS[1]: "10.213.0.12", MEMBERS[2]: "10.213.0.13",
                SERVER: "10.213.0.21", AGENT: "10.213.0.31", REGISTRY: "10.213.0.5"}
    assert {name: attached[0]["ipv4Address"] for name, attached in addresses.items()} == expected
    assert all(ipaddress.ip_address(a) in ipaddress.ip_network("10.213.0.0/24") for a in expected.values())


def test_ports_are_published_on_loopback_only(stack: PemMocks) -> None:
    published = {name: sorted((p["ip"], p["external"], p["internal"], p["protocol"]) for p in c.inputs["ports"])
                 for name, c in containers(stack).items()}
    assert published == {
        MEMBERS[0]: [("127.0.0.1", 2379, 2379, "tcp")], MEMBERS[1]: [("127.0.0.1", 22379, 2379, "tcp")],
        MEMBERS[2]: [("127.0.0.1", 32379, 2379, "tcp")], SERVER: [("127.0.0.1", 6443, 6443, "tcp")],
        AGENT: [("127.0.0.1", 30080, 30080, "tcp")], REGISTRY: [("127.0.0.1", 5001, 5000, "tcp")]}


def test_healthchecks_gate_etcd_and_the_server_in_exec_form(stack: PemMocks) -> None:
    by_name = containers(stack)
    for member in MEMBERS:
        check = by_name[member].inputs["healthcheck"]
        assert check["tests"] == render.etcd_healthcheck(2379)
        assert check["tests"][0] == "CMD" and "endpoint" in check["tests"]  # the image has no shell
        assert by_name[member].inputs["wait"] is True
    server = by_name[SERVER].inputs
    assert server["healthcheck"]["tests"] == ["CMD", "k3s", "kubectl", "wait", "--for=condition=Ready",
                                              "--timeout=5s", f"node/{SERVER}", f"node/{AGENT}"]
    assert server["wait"] is True and server["waitTimeout"] == 600
    assert "healthcheck" not in by_name[REGISTRY].inputs and not by_name[REGISTRY].inputs.get("wait")


def test_an_agent_is_created_only_once_it_joined_and_its_node_is_ready(stack: PemMocks) -> None:
    """An agent whose node password the server rejects never gets its kubelet certificates, so neither its
    containerd nor its kubelet starts (k3s pkg/agent/run.go: config.Get first): without a readiness signal the run
    would "succeed" with the agent locked out. Its healthcheck asks this container's containerd (its socket is on
    the container's own tmpfs /run) and then the API for its node's Ready condition, and the run waits for it."""
    agent = containers(stack)[AGENT].inputs
    assert agent["healthcheck"]["tests"] == render.k3s_agent_healthcheck(AGENT)
    assert agent["healthcheck"]["tests"][0] == "CMD-SHELL"  # the k3s image has a shell (package/Dockerfile)
    assert agent["wait"] is True and agent["waitTimeout"] == 600


def test_every_k3s_node_keeps_a_fixed_node_password(stack: PemMocks) -> None:
    """k3s's agent generates /etc/rancher/node/password only when the file is missing (pkg/agent/config/config.go,
    ensureNodePassword), and the server keeps a hash of the first password it saw as the secret
    `<node>.node-password.k3s` (pkg/nodepassword), in etcd: a node whose container was replaced must present the
    same one. Each node gets its password uploaded before its first start, derived from one secret of the cluster
    and the node's name (the same after any replacement, or after the node is removed and added back)."""
    by_name = containers(stack)
    passwords = {}
    for node in (SERVER, AGENT):
        uploads = {u["file"]: u for u in by_name[node].inputs["uploads"]}
        password = uploads[render.K3S_NODE_PASSWORD_FILE]
        assert password["permissions"] == "0600"
        assert render.K3S_NODE_PASSWORD_FILE in _secret_paths(by_name[node].registration.raw_inputs["uploads"])
        passwords[node] = password["content"]
        assert password["content"] == render.node_password("FAKE-TOKEN-local-kubernetes-node-password-key", node)
    assert passwords[SERVER] != passwords[AGENT] and all(len(p) == 32 for p in passwords.values())
    assert stack.named("local-kubernetes-node-password-key").inputs["length"] == 64


def test_the_agent_healthcheck_passes_shellcheck() -> None:
    assert shellcheck_findings(render.k3s_agent_healthcheck(AGENT)[1]) == ""


FAKE_K3S = """#!/bin/sh
# k3s as the agent healthcheck calls it: this container's containerd, then the node's Ready condition.
printf '%s\\n' "$*" >>"$CALLS"
case "$*" in
  "ctr "*) [ "$STARTED" = yes ] && exit 0; echo "ctr: failed to dial: no such file or directory" >&2; exit 1 ;;
  *"wait --for=condition=Ready"*) [ "$READY" = yes ] && echo "node/$NODE condition met" && exit 0
    echo "error: timed out waiting for the condition on nodes/$NODE" >&2; exit 1 ;;
esac
exit 2
"""


@pytest.mark.parametrize(("started", "ready", "code", "says"), [
    ("no", "yes", 1, "Node password rejected"),  # a stale Ready node (the old container's) does not count
    ("yes", "no", 1, "timed out waiting for the condition"),
    ("yes", "yes", 0, "condition met"),
])
def test_the_agent_healthcheck_needs_its_own_containerd_and_a_ready_node(tmp_path: Any, started: str, ready: str,
                                                                         code: int, says: str) -> None:
    """The script's logic against a stand-in `k3s` (the real one cannot run here)."""
    fake = tmp_path / "k3s"
    fake.write_text(FAKE_K3S)
    fake.chmod(0o755)
    _shell, script = render.k3s_agent_healthcheck(AGENT)
    done = subprocess.run(["/bin/sh", "-c", script], capture_output=True, text=True, check=False, timeout=30,
                          env={"PATH": f"{tmp_path}:/usr/bin:/bin", "CALLS": str(tmp_path / "calls"),
                               "STARTED": started, "READY": ready, "NODE": AGENT})
    assert done.returncode == code, done
    assert says in done.stdout + done.stderr
    calls = (tmp_path / "calls").read_text().splitlines()
    assert calls[0] == "ctr --address=/run/k3s/containerd/containerd.sock --timeout=5s version"
    if started == "yes":
        assert calls[1] == ("kubectl --kubeconfig=/var/lib/rancher/k3s/agent/kubelet.kubeconfig wait "
                            f"--for=condition=Ready --timeout=5s node/{AGENT}")
    else:
        assert len(calls) == 1


def test_node_passwords_are_per_cluster_and_per_node() -> None:
    first = render.node_password("key-a", AGENT)
    assert first == render.node_password("key-a", AGENT)
    assert first != render.node_password("key-b", AGENT) and first != render.node_password("key-a", SERVER)
    assert int(first, 16) >= 0 and len(first) == 32  # the shape of k3s's own (hex of 16 random bytes)


def test_etcd_members_run_the_etcd_recipes_settings(stack: PemMocks) -> None:
    settings = cluster_args("cookbook-local", load_args().etcd)
    addresses = {member: f"10.213.0.{11 + index}" for index, member in enumerate(MEMBERS)}
    membership = etcd_render.bootstrap_membership(settings, MEMBERS, addresses)
    for member, address in addresses.items():
        envs = containers(stack)[member].inputs["envs"]
        assert envs == render.etcd_member_env(settings, member, address, membership)
        env = dict(item.split("=", 1) for item in envs)
        assert env["ETCD_NAME"] == member and env["ETCD_CLIENT_CERT_AUTH"] == "true"
        assert env["ETCD_LISTEN_CLIENT_URLS"] == f"https://{address}:2379,https://127.0.0.1:2379"
        assert env["ETCD_INITIAL_CLUSTER"] == ",".join(f"{m}=https://{a}:2380" for m, a in addresses.items())
        assert env["ETCD_INITIAL_CLUSTER_STATE"] == "new"
        uploads = {u["file"]: u for u in containers(stack)[member].inputs["uploads"]}
        assert sorted(uploads) == ["/etc/cookbook-etcd/pki/ca.crt", "/etc/cookbook-etcd/pki/member.crt",
                                   "/etc/cookbook-etcd/pki/member.key"]
        assert uploads["/etc/cookbook-etcd/pki/member.key"]["permissions"] == "0600"
        assert env["ETCD_KEY_FILE"] == "/etc/cookbook-etcd/pki/member.key"
    certificate = stack.named(f"local-etcd-member-{MEMBERS[0]}-csr").inputs
    assert sorted(certificate["ipAddresses"]) == ["10.213.0.11", "127.0.0.1", "::1"]
    assert sorted(certificate["dnsNames"]) == [MEMBERS[0], "localhost"]


def load_args() -> Any:
    from components.local.config import parse_local_config
    from components.shared.validation import Problems

    problems = Problems()
    args = parse_local_config(load_stack_config("local")["cluster-cookbook:local"], [], problems)
    assert problems.items == [] and args is not None
    return args


def test_k3s_gets_the_kubernetes_recipes_config_with_the_local_etcd(stack: PemMocks) -> None:
    server = {u["file"]: u for u in containers(stack)[SERVER].inputs["uploads"]}
    agent = {u["file"]: u for u in containers(stack)[AGENT].inputs["uploads"]}
    server_config = yaml.safe_load(server["/etc/rancher/k3s/config.yaml"]["content"])
    agent_config = yaml.safe_load(agent["/etc/rancher/k3s/config.yaml"]["content"])
    assert server_config["datastore-endpoint"] == ",".join(f"https://10.213.0.{i}:2379" for i in (11, 12, 13))
    assert server_config["node-ip"] == "10.213.0.21" and server_config["node-name"] == SERVER
    assert server_config["node-taint"] == ["node-role.kubernetes.io/control-plane:NoSchedule"]
    assert server_config["disable"] == ["servicelb", "traefik"] and server_config["flannel-backend"] == "vxlan"
    assert agent_config["server"] == "https://10.213.0.21:6443" and agent_config["node-ip"] == "10.213.0.31"
    for role, config in (("server", server_config), ("agent", agent_config)):
        assert set(config) <= set(FLAGS[role]), sorted(set(config) - set(FLAGS[role]))
    assert sorted(server) == sorted([
        "/etc/rancher/k3s/config.yaml", "/etc/rancher/k3s/registries.yaml", "/etc/rancher/node/password",
        *(f"/etc/rancher/k3s/cookbook/{f}" for f in ("token", "agent-token", "datastore-ca.crt",
                                                      "datastore-client.crt", "datastore-client.key")),
        *(f"/var/lib/rancher/k3s/server/tls/{f}" for f in ("server-ca.crt", "server-ca.key", "client-ca.crt",
                                                            "client-ca.key"))])
    assert sorted(agent) == sorted(["/etc/rancher/k3s/cookbook/agent-token", "/etc/rancher/k3s/config.yaml",
                                    "/etc/rancher/k3s/registries.yaml", "/etc/rancher/node/password"])
    mirror = yaml.safe_load(server["/etc/rancher/k3s/registries.yaml"]["content"])
    assert mirror == {"mirrors": {"127.0.0.1:5001": {"endpoint": ["http://10.213.0.5:5000"]}}}
    assert agent["/etc/rancher/k3s/registries.yaml"] == server["/etc/rancher/k3s/registries.yaml"]
    # The agent joins with the agent-only token; the server's client certificate is the apiserver's one.
    assert agent["/etc/rancher/k3s/cookbook/agent-token"]["content"] == "FAKE-TOKEN-local-kubernetes-agent-token"
    admin = stack.named("local-kubernetes-admin-csr").inputs["subject"]
    assert admin == {"commonName": "cookbook-admin", "organization": "system:masters"}


def test_the_outputs_give_a_kubeconfig_etcdctl_env_and_s3cfg() -> None:
    mocks = PemMocks()
    outputs = run_program(mocks, {**load_stack_config("local"), **FAKE_SECRETS}, stack="local",
                          secret_keys=list(FAKE_SECRETS))
    kubeconfig = yaml.safe_load(outputs["kubernetes"]["kubeconfig"])
    assert kubeconfig["current-context"] == "local"  # the stack's name
    cluster = kubeconfig["clusters"][0]["cluster"]
    assert cluster["server"] == "https://127.0.0.1:6443"
    assert base64.b64decode(cluster["certificate-authority-data"]).decode() == CERT_PEM
    assert base64.b64decode(kubeconfig["users"][0]["user"]["client-key-data"]).decode() == KEY_PEM
    env = outputs["etcd"]["etcdctl_env"]
    assert "export ETCDCTL_ENDPOINTS=https://127.0.0.1:2379,https://127.0.0.1:22379,https://127.0.0.1:32379" in env
    assert outputs["etcd"]["client_endpoints"] == ["https://127.0.0.1:2379", "https://127.0.0.1:22379",
                                                   "https://127.0.0.1:32379"]
    assert "host_base = 127.0.0.1:30080" in outputs["store"]["s3cfg"]
    assert outputs["local"]["registry"] == "127.0.0.1:5001"
    assert outputs["local"]["docker"] == {
        "network": ["cookbook-local"],
        "containers": sorted([*MEMBERS, SERVER, AGENT, REGISTRY]),
        "volumes": sorted([*(f"{m}-data" for m in MEMBERS), f"{SERVER}-state", f"{AGENT}-state",
                           f"{REGISTRY}-data"])}


def test_without_agents_the_server_runs_the_workloads_and_publishes_the_node_ports() -> None:
    local = load_stack_config("local")["cluster-cookbook:local"]
    mocks = evaluate({"cluster-cookbook:local": {**local, "kubernetes": {**local["kubernetes"], "agents": 0}}})
    by_name = containers(mocks)
    assert AGENT not in by_name
    ports = sorted((p["external"], p["internal"]) for p in by_name[SERVER].inputs["ports"])
    assert ports == [(6443, 6443), (30080, 30080)]
    config = yaml.safe_load({u["file"]: u for u in by_name[SERVER].inputs["uploads"]}[
        "/etc/rancher/k3s/config.yaml"]["content"])
    assert "node-taint" not in config
    assert by_name[SERVER].inputs["healthcheck"]["tests"][-1] == f"node/{SERVER}"


# --- secrets ----------------------------------------------------------------------------------------------------
def _secret_paths(raw_uploads: list[Any]) -> set[str]:
    """Files of wire-format uploads whose content is wrapped as a secret."""
    return {str(upload["file"]) for upload in raw_uploads
            if isinstance(upload, dict) and isinstance(upload.get("content"), dict) and SECRET_SIG in upload["content"]}


def test_keys_and_tokens_travel_only_as_secret_uploads(stack: PemMocks) -> None:
    by_name = containers(stack)
    for name, container in by_name.items():
        registration: Registration = container.registration
        leaked = [text for text in plain_strings(registration.raw_inputs)
                  if "PRIVATE KEY" in text or "FAKE-TOKEN" in text or "FAKE-KEY" in text]
        assert leaked == [], name
        if container.inputs.get("uploads"):
            assert registration.additional_secret_outputs == ("uploads",), name
        assert rules.credential_findings("\n".join(container.inputs.get("envs") or [])) == [], name
    secret = _secret_paths(by_name[SERVER].registration.raw_inputs["uploads"])
    assert {"/etc/rancher/k3s/cookbook/token", "/etc/rancher/k3s/cookbook/agent-token",
            "/etc/rancher/k3s/cookbook/datastore-client.key", "/var/lib/rancher/k3s/server/tls/server-ca.key",
            "/var/lib/rancher/k3s/server/tls/client-ca.key"} <= secret
    assert "/etc/cookbook-etcd/pki/member.key" in _secret_paths(by_name[MEMBERS[0]].registration.raw_inputs["uploads"])
    assert _secret_paths(by_name[AGENT].registration.raw_inputs["uploads"]) >= {"/etc/rancher/k3s/cookbook/agent-token"}


def test_the_policy_pack_passes_and_would_stop_unsafe_containers(stack: PemMocks) -> None:
    subjects = [rules.Subject(r.type, r.inputs, r.name, r.registration.additional_secret_outputs)
                for r in stack.resources]
    assert rules.all_violations(subjects) == []
    etcd = next(s for s in subjects if s.name == f"local-etcd-container-{MEMBERS[0]}")
    unsafe = rules.Subject(etcd.type, {**etcd.props, "privileged": True, "image": "gcr.io/etcd-development/etcd",
                                       "ports": [{"internal": 2379, "external": 2379, "ip": "0.0.0.0"}],
                                       "envs": [*etcd.props["envs"], f"ETCD_PRIVATE_KEY={KEY_PEM}"]}, etcd.name)
    names = {line.split(":")[0] for line in rules.all_violations([unsafe])}
    assert names == {"docker-images-pinned", "docker-no-host-access", "docker-ports-loopback",
                     "no-plaintext-credentials"}


# --- the engine check -----------------------------------------------------------------------------------------
class _ProviderError(grpc.RpcError):
    """What the engine's gRPC answer to a failed invoke looks like to the SDK (pulumi/runtime/invoke.py
    do_invoke: a grpc.RpcError becomes the invoke's error)."""

    def __init__(self, details: str):
        self._details = details

    def code(self) -> grpc.StatusCode:
        return grpc.StatusCode.UNKNOWN

    def details(self) -> str:
        return self._details


class NoEngineMocks(RecordingMocks):
    calls: list[str]

    def call(self, args: pulumi.runtime.MockCallArgs) -> tuple[dict[str, Any], list[tuple[str, str]] | None]:
        self.calls = [*getattr(self, "calls", []), f"{args.token} {dict(args.args)}"]
        raise _ProviderError("Error pinging Docker server, please make sure that unix:///var/run/docker.sock is "
                             "reachable and has a '_ping' endpoint. Error: Cannot connect to the Docker daemon at "
                             "unix:///var/run/docker.sock. Is the docker daemon running?")


def test_a_missing_engine_is_one_clear_error_before_any_resource(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DOCKER_HOST", raising=False)
    monkeypatch.delenv("DOCKER_CONTEXT", raising=False)
    mocks = NoEngineMocks()
    with pytest.raises(pulumi.RunError) as raised:
        run_program(mocks, {**load_stack_config("local"), **FAKE_SECRETS}, stack="local",
                    secret_keys=list(FAKE_SECRETS))
    message = str(raised.value)
    assert message.startswith("the local stack needs a running Docker engine, and unix:///var/run/docker.sock does "
                              "not answer: ")
    assert "Is the docker daemon running?" in message and "DOCKER_HOST" in message
    assert mocks.calls == ["docker:index/getNetwork:getNetwork {'name': 'none'}"]
    assert mocks.resources == []  # nothing was declared


def test_stacks_without_a_local_section_never_ask_for_docker() -> None:
    mocks = NoEngineMocks()
    run_program(mocks, {**load_stack_config("pi-home"), **FAKE_SECRETS}, stack="pi-home",
                secret_keys=list(FAKE_SECRETS))
    assert getattr(mocks, "calls", []) == [] and mocks.resources
