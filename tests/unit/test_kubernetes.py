"""Kubernetes (k3s): the resource graph, secrets, facts checks, the pinned flag list, rendered text."""

from __future__ import annotations

import asyncio
import base64
import json
import shlex
import subprocess
from pathlib import Path
from typing import Any

import pulumi
import pytest
import yaml
from cryptography import x509
from cryptography.x509.oid import NameOID

from components.kubernetes import cluster as k8s
from components.kubernetes import render
from components.kubernetes.gate import GATE_FUNCTION, WORKER_GATE_FUNCTION, control_plane_gate, worker_gate
from components.nodes.gates import gate_params
from components.shared import pki
from tests.harness.fixtures import FAKE_PRIVATE_KEY, evaluate_stack
from tests.harness.program import ROOT, run_program
from tests.harness.recording import (
    FAKE_FACTS,
    FAKE_K3S_KUBECONFIG,
    RecordingMocks,
    plain_strings,
    unwrap_secrets,
    waits_for,
)
from tests.harness.tls import emulate_tls
from tests.harness.validators import shellcheck_findings, systemd_verify

FLAGS = json.loads((ROOT / "tests" / "data" / f"k3s-flags-{render.K3S_VERSION}.json").read_text())
ADDRESSES = {"cp-a": "10.9.0.1", "cp-b": "10.9.0.2", "cp-c": "10.9.0.3", "w-a": "10.9.0.4", "w-b": "10.9.0.5"}
SERVERS, AGENTS = ["cp-a", "cp-b", "cp-c"], ["w-a", "w-b"]
SECRET_MARKER = "FAKE-KEY-FOR-TESTS-ONLY"


class FactsMocks(RecordingMocks):
    """Recording mocks whose hosts report their own facts (by address), tls resources real keys and
    certificates, and whose random passwords carry the fake-secret marker."""

    def __init__(self, facts: dict[str, dict[str, Any]] | None = None):
        super().__init__()
        self.facts = facts or {}

    def fake_outputs(self, typ: str, inputs: dict[str, Any]) -> dict[str, Any]:
        if typ.startswith("tls:"):
            return emulate_tls(typ, unwrap_secrets(dict(inputs)))
        outputs = super().fake_outputs(typ, inputs)
        host = (unwrap_secrets(inputs.get("connection")) or {}).get("host")
        if typ.startswith("command:") and host in self.facts:
            facts = {**FAKE_FACTS, **self.facts[host]}
            outputs["stdout"] = outputs["stdout"].replace(f"COOKBOOK_FACTS={json.dumps(FAKE_FACTS)}",
                                                          f"COOKBOOK_FACTS={json.dumps(facts)}")
        return outputs

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str | None, dict[str, Any]]:
        resource_id, outputs = super().new_resource(args)
        if args.typ.startswith("random:"):
            outputs["result"] = f"{SECRET_MARKER}-{args.name}"
        return resource_id, outputs


def stack_config(roles: dict[str, list[str]] | None = None, kind: str = "linux", **kubernetes: Any) -> dict[str, Any]:
    roles = roles or {**{n: ["etcd", "control-plane"] for n in SERVERS}, **{n: ["worker"] for n in AGENTS}}
    return {
        "nodes": [{"name": name, "address": ADDRESSES[name], "roles": node_roles, "kind": kind}
                  for name, node_roles in roles.items()],
        "ssh_private_key": FAKE_PRIVATE_KEY,
        "etcd": {"bootstrap": [name for name, node_roles in roles.items() if "etcd" in node_roles]},
        "kubernetes": kubernetes,
    }


def evaluate(config: dict[str, Any], mocks: RecordingMocks | None = None, stack: str = "test") -> RecordingMocks:
    mocks = mocks or FactsMocks()
    run_program(mocks, config, stack=stack, secret_keys=["ssh_private_key"])
    return mocks


def dependencies(mocks: RecordingMocks) -> dict[str, set[str | None]]:
    by_urn = {r.urn: r.name for r in mocks.resources}
    return {r.name: {by_urn.get(d) for d in r.registration.dependencies} for r in mocks.resources}


def script_of(resource_inputs: dict[str, Any]) -> str:
    """The bash script a remote command runs (`[sudo -n] bash -c SCRIPT`)."""
    words = shlex.split(resource_inputs["create"])
    return words[words.index("-c") + 1]


def header_value(script: str, name: str) -> str:
    """A parameter of a rendered script, as bash sees it (the header is only assignments)."""
    header = script.split("\nreadonly ", 1)[0]
    done = subprocess.run(["bash", "-c", f'{header}\nprintf %s "${{{name}[*]}}"'], capture_output=True,
                          text=True, check=True)
    return done.stdout


# --- the resource graph -------------------------------------------------------------------------------------
def test_graph_servers_after_the_etcd_gate_agents_after_the_servers_gate_last() -> None:
    mocks = evaluate(stack_config())
    cluster = mocks.named("kubernetes")
    assert cluster.type == "cookbook:kubernetes:Cluster"
    commands = sorted(r.name for r in mocks.of_type("command:remote:Command") if r.name.startswith("kubernetes-"))
    assert commands == ["kubernetes-agent-w-a", "kubernetes-agent-w-b", "kubernetes-ready",
                        "kubernetes-server-cp-a", "kubernetes-server-cp-b", "kubernetes-server-cp-c"]
    for resource in mocks.resources:
        if resource.name.startswith("kubernetes-"):
            assert resource.parent == cluster.urn, resource.name
    deps = dependencies(mocks)
    for name in SERVERS:
        assert {"etcd-health", f"{name}-prepare", "kubernetes-token"} <= deps[f"kubernetes-server-{name}"], name
    assert "kubernetes-server-cp-a" in deps["kubernetes-server-cp-b"]  # one node at a time
    assert "kubernetes-server-cp-b" in deps["kubernetes-server-cp-c"]
    assert "kubernetes-server-cp-c" in deps["kubernetes-agent-w-a"]  # after every server
    assert "kubernetes-agent-w-a" in deps["kubernetes-agent-w-b"]
    # The gate comes after the last node step, which comes after all the others.
    assert "kubernetes-agent-w-b" in deps["kubernetes-ready"]
    for name in SERVERS:
        assert mocks.named(f"kubernetes-server-{name}").inputs["connection"]["host"] == ADDRESSES[name]
    assert mocks.named("kubernetes-ready").inputs["connection"]["host"] == ADDRESSES["cp-a"]


def test_no_k3s_step_runs_while_another_kubernetes_host_reboots() -> None:
    """Issue 8 audit, item 1: one `up` that adds a kernel flag and changes a k3s setting must finish every
    Kubernetes Pi's reboot (up to its await-boot) before any k3s node step runs on any node."""
    roles = {"cp-a": ["etcd", "control-plane"], "cp-b": ["control-plane"], "cp-c": ["etcd", "control-plane"],
             "w-a": ["etcd", "worker"], "w-b": ["worker"]}
    mocks = evaluate(stack_config(roles, kind="pi"))
    waited = waits_for(mocks)
    steps = [r.name for r in mocks.of_type("command:remote:Command")
             if r.name.startswith(("kubernetes-server-", "kubernetes-agent-"))]
    assert len(steps) == 5
    concurrent = sorted((step, host) for step in steps for host in roles
                        if not {f"{host}-reboot", f"{host}-await-boot"} <= waited[step])
    assert concurrent == []


def test_pi_home_puts_the_store_on_its_own_cluster_after_the_readiness_gate() -> None:
    mocks = evaluate_stack("pi-home")
    deps = dependencies(mocks)
    provider = mocks.named("store-target-provider")
    assert "kubernetes-ready" in deps["store-target-provider"]
    kubeconfig = yaml.safe_load(provider.inputs["kubeconfig"])
    assert kubeconfig["current-context"] == "pi-home"
    assert kubeconfig["clusters"][0]["cluster"]["server"] == "https://192.168.1.21:6443"
    cassandra = [r for r in mocks.resources if r.type == "kubernetes:apps/v1:StatefulSet"]
    assert cassandra and all(r.registration.dependencies for r in cassandra)
    assert [r.name for r in mocks.of_type("command:remote:Command") if r.name.startswith("kubernetes-server-")] == [
        "kubernetes-server-pi-a"]
    assert sorted(r.name for r in mocks.of_type("command:remote:Command")
                  if r.name.startswith("kubernetes-agent-")) == ["kubernetes-agent-pi-b", "kubernetes-agent-pi-c"]


def test_adding_or_removing_an_agent_leaves_every_server_step_untouched() -> None:
    """A server's inputs depend on the server and the cluster settings, never on the other nodes."""
    before = evaluate(stack_config())
    grown = stack_config()
    grown["nodes"] = [node for node in grown["nodes"] if node["name"] != "w-b"]
    smaller = evaluate(grown)
    inputs = {r.urn: r.registration.raw_inputs for r in smaller.resources}
    for name in SERVERS:
        resource = before.named(f"kubernetes-server-{name}")
        # (stdin differs here only because the emulated pulumi-tls makes new keys on every evaluation)
        for field in ("create", "connection", "logging"):
            assert inputs[resource.urn][field] == resource.registration.raw_inputs[field], (name, field)


def test_a_change_to_one_node_reruns_that_node_and_the_gate_only() -> None:
    before = evaluate(stack_config())
    changed = stack_config()
    changed["nodes"][2]["roles"] = ["etcd", "control-plane", "worker"]  # cp-c now also runs pods
    after = evaluate(changed)
    creates = {r.name: r.inputs.get("create") for r in after.resources if r.name.startswith("kubernetes-")}
    rerun = sorted(r.name for r in before.resources
                   if r.name.startswith("kubernetes-") and r.inputs.get("create") != creates.get(r.name))
    assert rerun == ["kubernetes-ready", "kubernetes-server-cp-c"]


# --- secrets ------------------------------------------------------------------------------------------------
def test_token_etcd_client_key_and_kubeconfig_never_appear_in_plain_inputs() -> None:
    mocks = evaluate(stack_config())
    key = mocks.named("etcd-apiserver-key")  # the kube-apiserver's etcd client key (pulumi-tls, emulated)
    server = mocks.named("kubernetes-server-cp-a")
    key_body = server.inputs["stdin"].split("==> datastore-client.key <==\n", 1)[1].splitlines()[1]
    assert key.type == "tls:index/privateKey:PrivateKey" and len(key_body) > 40
    leaks = [r.name for r in mocks.resources
             if any(SECRET_MARKER in text or key_body in text for text in plain_strings(r.registration.raw_inputs))]
    assert leaks == []
    stdin = server.inputs["stdin"]
    assert "==> token <==\nFAKE-KEY-FOR-TESTS-ONLY-kubernetes-token\n" in stdin
    assert "==> datastore-client.key <==\n-----BEGIN EC PRIVATE KEY-----" in stdin
    agent = mocks.named("kubernetes-agent-w-a")
    assert "==> admin.kubeconfig <==" in agent.inputs["stdin"] and "datastore" not in agent.inputs["stdin"]
    # The cluster CAs' keys reach the servers on stdin only, never an agent.
    for ca in ("kubernetes-server-ca", "kubernetes-client-ca"):
        ca_key = mocks.named(f"{ca}-key").registration
        assert ca_key.protect and mocks.named(ca).registration.protect, ca
    assert "==> client-ca.key <==\n-----BEGIN EC PRIVATE KEY-----" in stdin
    assert "client-ca" not in agent.inputs["stdin"] and "server-ca" not in agent.inputs["stdin"]
    for name in ("kubernetes-server-cp-a", "kubernetes-agent-w-a"):
        resource = mocks.named(name)
        assert resource.inputs["logging"] == "none", name
        assert set(resource.registration.additional_secret_outputs) >= {"stdout", "stderr"}, name


def test_outputs_are_secret_where_they_carry_credentials() -> None:
    seen: dict[str, bool] = {}

    def program() -> None:
        import runpy

        from pulumi.runtime import settings as pulumi_settings

        runpy.run_path(str(ROOT / "__main__.py"), run_name="__main__")
        exports = pulumi_settings.get_root_resource().outputs  # type: ignore[union-attr]
        kubernetes = exports["kubernetes"]

        async def check() -> bool:
            for key in ("kubeconfig", "api_endpoint", "nodes"):
                seen[key] = await pulumi.Output.from_input(kubernetes[key]).is_secret()
            return True

        pulumi.export("checked", pulumi.Output.from_input(asyncio.ensure_future(check())))

    outputs = run_program(FactsMocks(), stack_config(), secret_keys=["ssh_private_key"], program=program)
    assert outputs["checked"] is True
    assert seen == {"kubeconfig": True, "api_endpoint": False, "nodes": False}
    user = yaml.safe_load(outputs["kubernetes"]["kubeconfig"])["users"][0]["user"]
    assert base64.b64decode(user["client-key-data"]).startswith(b"-----BEGIN EC PRIVATE KEY")  # (as a secret)


# --- facts checks at the node's step ------------------------------------------------------------------------
@pytest.mark.parametrize(("facts", "settings", "expected"), [
    ({"memory_cgroup": False}, {}, "kubernetes: node w-a: the memory cgroup is off, and k3s cannot start without "
                                   "it. Fix: add 'cgroup_memory=1 cgroup_enable=memory'"),
    ({"wireguard": False, "kernel": "5.4.0-old"}, {"flannel": {"backend": "wireguard-native"}},
     "kubernetes: node w-a: kubernetes.flannel.backend is wireguard-native but its kernel (5.4.0-old) has no "
     "WireGuard"),
])
def test_a_node_k3s_cannot_run_on_fails_at_its_step_naming_it(facts: dict[str, Any], settings: dict[str, Any],
                                                            expected: str) -> None:
    mocks = FactsMocks({ADDRESSES["w-a"]: facts})
    with pytest.raises(Exception, match="w-a") as failure:
        evaluate(stack_config(**settings), mocks)
    assert expected in str(failure.value)
    registered = {r.name for r in mocks.resources}
    assert "kubernetes-agent-w-a" not in registered and "kubernetes-agent-w-b" not in registered
    assert "kubernetes-server-cp-a" in registered  # the other nodes' steps are unaffected


def test_architectures_pick_their_airgap_assets(tmp_path: Path) -> None:
    assets = {}
    for arch in ("arm64", "armhf"):
        for kind in ("binary", "images"):
            (tmp_path / f"{kind}-{arch}").write_text(f"{kind} {arch}")
        assets[arch] = {"binary": {"path": str(tmp_path / f"binary-{arch}"), "sha256": "a" * 64},
                        "images": {"path": str(tmp_path / f"images-{arch}"), "sha256": "b" * 64}}
    mocks = FactsMocks({ADDRESSES["w-b"]: {"architecture": "armhf"}, ADDRESSES["cp-b"]: {"usr_read_only": True}})
    evaluate(stack_config(install="airgap", airgap=assets), mocks)
    uploads = {r.name: r.inputs for r in mocks.of_type("command:remote:CopyToRemote")}
    assert uploads["kubernetes-binary-w-b"]["source"].path == str(tmp_path / "binary-armhf")
    assert uploads["kubernetes-images-w-a"]["source"].path == str(tmp_path / "images-arm64")
    # Into the recipe's own upload directory (not /var/tmp, which systemd-tmpfiles cleans), named by sha256.
    assert uploads["kubernetes-binary-w-b"]["remotePath"] == f"/var/lib/cookbook-k3s-airgap/{'a' * 64}-k3s"
    assert uploads["kubernetes-images-w-b"]["remotePath"] == \
        f"/var/lib/cookbook-k3s-airgap/{'b' * 64}-k3s-airgap-images-armhf.tar.zst"
    deps = dependencies(mocks)
    assert {"kubernetes-binary-w-b", "kubernetes-images-w-b"} <= deps["kubernetes-agent-w-b"]
    for kind in ("binary", "images"):
        assert "kubernetes-upload-dir-w-b" in deps[f"kubernetes-{kind}-w-b"]
    upload_dir = script_of(mocks.named("kubernetes-upload-dir-w-b").inputs)
    assert header_value(upload_dir, "UPLOAD_DIR") == "/var/lib/cookbook-k3s-airgap"
    assert header_value(upload_dir, "UPLOAD_OWNER") == "root"  # the login user CopyToRemote connects as
    script = script_of(mocks.named("kubernetes-agent-w-b").inputs)
    assert header_value(script, "BINARY_SHA256") == "a" * 64 and header_value(script, "ARCH") == "armhf"
    # /usr read-only (Fedora CoreOS, Flatcar): the binary and the unit use /opt/bin.
    coreos = script_of(mocks.named("kubernetes-server-cp-b").inputs)
    assert header_value(coreos, "K3S_BIN") == "/opt/bin/k3s"
    assert "ExecStart=/opt/bin/k3s server" in header_value(coreos, "UNIT_CONTENT")


def test_a_missing_architecture_fails_naming_the_node(tmp_path: Path) -> None:
    (tmp_path / "k3s").write_text("x")
    asset = {"path": str(tmp_path / "k3s"), "sha256": "a" * 64}
    mocks = FactsMocks({ADDRESSES["w-b"]: {"architecture": "armhf"}})
    with pytest.raises(Exception, match="no binary and images for architecture 'armhf' of node w-b"):
        evaluate(stack_config(install="airgap", airgap={"arm64": {"binary": asset, "images": asset}}), mocks)


# --- the pinned flag list -----------------------------------------------------------------------------------
def test_the_flag_list_is_the_pinned_versions_with_its_source() -> None:
    source = FLAGS["source"]
    assert source["tag"] == render.K3S_VERSION
    assert source["repository"] == "https://github.com/k3s-io/k3s" and len(source["commit"]) == 40
    assert {"datastore-endpoint", "flannel-backend", "secrets-encryption", "disable"} <= set(FLAGS["server"])
    assert "flannel-backend" not in FLAGS["agent"] and "server" in FLAGS["agent"]


def _flag_type_matches(kind: str, value: Any) -> bool:
    return {"Bool": isinstance(value, bool), "Int": isinstance(value, int) and not isinstance(value, bool),
            "String": isinstance(value, str),
            "StringSlice": isinstance(value, str) or (isinstance(value, list)
                                                      and all(isinstance(v, str) for v in value))}[kind]


def test_every_rendered_config_key_is_a_flag_of_the_pinned_version(tmp_path: Path) -> None:
    (tmp_path / "f").write_text("x")
    asset = {"path": str(tmp_path / "f"), "sha256": "a" * 64}
    config = stack_config({"cp-a": ["etcd", "control-plane", "worker"], "cp-b": ["etcd", "control-plane"],
                           "cp-c": ["etcd", "control-plane"], "w-a": ["worker"]},
                          install="airgap", airgap={"arm64": {"binary": asset, "images": asset}},
                          api={"name": "k8s.home.lan", "port": 6443}, flannel={"backend": "host-gw", "iface": "eth0"},
                          disable=["traefik", "servicelb"], secrets_encryption=True, prefer_bundled_bin=False)
    mocks = evaluate(config)
    checked = 0
    for resource in mocks.of_type("command:remote:Command"):
        if not resource.name.startswith(("kubernetes-server-", "kubernetes-agent-")):
            continue
        role = "server" if "-server-" in resource.name else "agent"
        rendered = yaml.safe_load(header_value(script_of(resource.inputs), "CONFIG_CONTENT"))
        unknown = sorted(set(rendered) - set(FLAGS[role]))
        assert unknown == [], (resource.name, unknown)
        wrong = [key for key, value in rendered.items() if not _flag_type_matches(FLAGS[role][key]["type"], value)]
        assert wrong == [], (resource.name, wrong)
        checked += 1
    assert checked == 4
    server = yaml.safe_load(header_value(script_of(mocks.named("kubernetes-server-cp-a").inputs), "CONFIG_CONTENT"))
    assert server["tls-san"] == ["10.9.0.1", "cp-a", "k8s.home.lan"]
    assert server["datastore-endpoint"] == ",".join(f"https://{ADDRESSES[n]}:2379" for n in SERVERS)
    assert server["node-label"] == ["cookbook.dev/control-plane=true", "cookbook.dev/worker=true"]
    assert "node-taint" not in server  # control-plane and worker: schedules work
    dedicated = yaml.safe_load(header_value(script_of(mocks.named("kubernetes-server-cp-b").inputs),
                                            "CONFIG_CONTENT"))
    assert dedicated["node-taint"] == [render.CONTROL_PLANE_TAINT]
    agent = yaml.safe_load(header_value(script_of(mocks.named("kubernetes-agent-w-a").inputs), "CONFIG_CONTENT"))
    assert agent["server"] == "https://k8s.home.lan:6443" and agent["flannel-iface"] == "eth0"


def test_rendered_configs_are_sorted_yaml_built_from_data() -> None:
    node = render.NodePlan("n", "10.0.0.1", ("worker",))
    text = render.config_yaml(render.agent_config(node, render.ClusterSettings(), render.ApiAddress("10.0.0.2")))
    keys = [line.split(":")[0] for line in text.splitlines() if line and line[0].isalpha()]
    assert keys == sorted(keys)
    assert yaml.safe_load(text)["prefer-bundled-bin"] is True


# --- kubeconfig ---------------------------------------------------------------------------------------------
def test_the_kubeconfig_points_at_the_api_and_is_named_after_the_stack() -> None:
    text = render.rewrite_kubeconfig(FAKE_K3S_KUBECONFIG, render.ApiAddress("fd00::1").url, "pi-home")
    document = yaml.safe_load(text)
    assert document["clusters"] == [{"name": "pi-home", "cluster": {
        "certificate-authority-data": "RkFLRS1DQQ==", "server": "https://[fd00::1]:6443"}}]
    assert document["contexts"] == [{"name": "pi-home", "context": {"cluster": "pi-home", "user": "pi-home"}}]
    assert document["current-context"] == "pi-home"
    assert document["users"][0]["user"]["client-key-data"] == SECRET_MARKER
    assert text == yaml.safe_dump(document, sort_keys=True, default_flow_style=False)
    with pytest.raises(ValueError, match="not a kubeconfig"):
        render.rewrite_kubeconfig("just text", "https://x:6443", "s")


# --- scripts and units --------------------------------------------------------------------------------------
SERVER = render.NodePlan("cp-a", "10.9.0.1", ("control-plane",))
AGENT = render.NodePlan("w-a", "w-a.lan", ("worker",))
API = render.ApiAddress("10.9.0.1")
AIRGAP = render.AirgapArtifacts(render.Artifact("/tmp/k3s", "a" * 64), render.Artifact("/tmp/images", "b" * 64))
SERVER_CONFIG = render.server_config(SERVER, render.ClusterSettings(), API, ["https://10.9.0.1:2379"])
AGENT_CONFIG = render.agent_config(AGENT, render.ClusterSettings(), API)
SCRIPTS = {
    "server-online": render.render_node_script(SERVER, render.InstallPlan(), SERVER_CONFIG),
    "server-airgap-opt-bin": render.render_node_script(
        SERVER, render.InstallPlan(mode="airgap", airgap=AIRGAP, bin_dir="/opt/bin", architecture="arm64"),
        SERVER_CONFIG, wireguard=True),
    "agent-airgap": render.render_node_script(AGENT, render.InstallPlan(mode="airgap", airgap=AIRGAP), AGENT_CONFIG),
    "agent-preinstalled": render.render_node_script(AGENT, render.InstallPlan(mode="preinstalled"), AGENT_CONFIG),
    "admin": render.render_admin_script("/usr/local/bin", 300),
    "ready": render.render_ready_script("/usr/local/bin", ["cp-a", "w-a"], 300),
    "gate": "#!/usr/bin/env bash\nset -euo pipefail\n" + render.render_control_plane_gate("cp-a")
            + "kubernetes_control_plane_gate\n",
    "gate-with-other-servers": "#!/usr/bin/env bash\nset -euo pipefail\n"
            + render.render_control_plane_gate("cp-a", {"cp-b": "10.9.0.2", "cp-c": "fd00::3"})
            + "kubernetes_control_plane_gate\n",
    "worker-gate": "#!/usr/bin/env bash\nset -euo pipefail\n" + render.render_worker_gate("w-a")
                   + "kubernetes_worker_gate\n",
    "server-delete": render.render_delete_script(SERVER),
    "agent-delete": render.render_delete_script(AGENT),
    "upload-dir": render.render_upload_dir_script("pi"),
    "server-k3s-ca": render.render_node_script(SERVER, render.InstallPlan(), SERVER_CONFIG, ca="k3s",
                                               print_kubeconfig_digest=True),
}


@pytest.mark.parametrize("name", sorted(SCRIPTS))
def test_rendered_script_passes_shellcheck(name: str) -> None:
    assert shellcheck_findings(SCRIPTS[name]) == ""


@pytest.mark.parametrize("name", sorted(SCRIPTS))
def test_scripts_are_strict(name: str) -> None:
    assert SCRIPTS[name].startswith("#!/usr/bin/env bash\n") and "\nset -euo pipefail\n" in SCRIPTS[name]


def test_online_mode_runs_the_pinned_install_script_without_starting_anything() -> None:
    script = SCRIPTS["server-online"]
    assert header_value(script, "INSTALL_SCRIPT_URL") == \
        "https://raw.githubusercontent.com/k3s-io/k3s/v1.34.7%2Bk3s1/install.sh"
    assert header_value(script, "INSTALL_SCRIPT_SHA256") == render.INSTALL_SCRIPT_SHA256[render.K3S_VERSION]
    assert "INSTALL_K3S_SKIP_ENABLE=true INSTALL_K3S_SKIP_START=true" in script
    assert "INSTALL_K3S_VERSION=$K3S_VERSION INSTALL_K3S_EXEC=$ROLE" in script


def test_units_pass_systemd_analyze_verify(tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "k3s").write_text("#!/bin/sh\n")
    (bin_dir / "k3s").chmod(0o755)
    units = {"k3s.service": render.render_unit("server", str(bin_dir)),
             "k3s-agent.service": render.render_unit("agent", str(bin_dir))}
    assert systemd_verify(units, tmp_path) == ""
    # Rendered for a node, the only complaint here is the binary this machine does not have.
    assert systemd_verify({"k3s.service": render.render_unit("server", "/usr/local/bin")}, tmp_path) == \
        "k3s.service: Command /usr/local/bin/k3s is not executable: No such file or directory"


def test_units_are_the_installers() -> None:
    unit = render.render_unit("agent", "/usr/local/bin").splitlines()
    for line in ("Type=notify", "KillMode=process", "Delegate=yes", "User=root", "LimitNOFILE=1048576",
                 "LimitNPROC=infinity", "LimitCORE=infinity", "TasksMax=infinity", "TimeoutStartSec=0",
                 "Restart=always", "RestartSec=5s", "EnvironmentFile=-/etc/systemd/system/k3s-agent.service.env",
                 "ExecStartPre=-/sbin/modprobe br_netfilter", "ExecStart=/usr/local/bin/k3s agent"):
        assert line in unit, line


def test_the_control_plane_gate_is_a_node_health_gate() -> None:
    gate = control_plane_gate("cp-a", timeout=120)
    assert (gate.name, gate.function, gate.timeout) == ("kubernetes", GATE_FUNCTION, 120)
    params = gate_params([gate], {"NODE_HOSTNAME": "cp-a"})
    assert params["KUBERNETES_GATE_NODE"] == "cp-a" and params["GATE_FUNCTIONS"] == (GATE_FUNCTION,)
    text = render.render_control_plane_gate("cp-a")
    assert f"{GATE_FUNCTION}()" in text and "KUBERNETES_GATE_NODE=cp-a" in text


def test_the_worker_gate_is_a_node_health_gate() -> None:
    gate = worker_gate("w-a", timeout=90)
    assert (gate.name, gate.function, gate.timeout) == ("kubernetes-worker", WORKER_GATE_FUNCTION, 90)
    params = gate_params([gate], {"NODE_HOSTNAME": "w-a"})
    # The node's own kubelet credentials (k3s's agent kubeconfig), never the admin's.
    assert params["KUBERNETES_WORKER_GATE_KUBECONFIG"] == "/var/lib/rancher/k3s/agent/kubelet.kubeconfig"
    assert f"{WORKER_GATE_FUNCTION}()" in render.render_worker_gate("w-a")


def test_a_control_plane_pis_gate_asks_every_other_server() -> None:
    """Issue 8 audit, item 2: the control-plane gate of a Pi knows the other servers (their names and APIs),
    so it can require the API through another server and every other server Ready."""
    roles = {"cp-a": ["etcd", "control-plane"], "cp-b": ["etcd", "control-plane"], "cp-c": ["etcd", "control-plane"],
             "w-a": ["worker"]}
    mocks = evaluate(stack_config(roles, kind="pi", api={"port": 6444}))
    reboot = script_of(mocks.named("cp-b-reboot").inputs)
    assert header_value(reboot, "KUBERNETES_GATE_NODE") == "cp-b"
    assert header_value(reboot, "KUBERNETES_GATE_SERVERS") == "cp-a cp-c"
    assert header_value(reboot, "KUBERNETES_GATE_APIS") == "https://10.9.0.1:6444 https://10.9.0.3:6444"
    worker = script_of(mocks.named("w-a-reboot").inputs)
    assert header_value(worker, "GATE_FUNCTIONS") == WORKER_GATE_FUNCTION
    assert header_value(worker, "KUBERNETES_WORKER_GATE_NODE") == "w-a"


def test_every_node_step_can_take_its_node_out_of_the_cluster() -> None:
    """Issue 8 audit, item 4: each node step has a `delete` (run with its last inputs, stdin included) that
    drains the node, stops k3s, deletes the Node object and removes what the step wrote. It needs no facts,
    so a change of facts never makes the step run again for its sake."""
    mocks = evaluate(stack_config())
    other = evaluate(stack_config(), FactsMocks({ADDRESSES["w-a"]: {"usr_read_only": True, "architecture": "armhf"},
                                                 ADDRESSES["cp-a"]: {"usr_read_only": True}}))
    for node, role in (("cp-a", "server"), ("w-a", "agent")):
        step = mocks.named(f"kubernetes-{role}-{node}")
        delete = script_of({"create": step.inputs["delete"]})
        assert delete == render.render_delete_script(render.NodePlan(node, ADDRESSES[node], (
            ("etcd", "control-plane") if role == "server" else ("worker",))))
        assert header_value(delete, "NODE_NAME") == node and header_value(delete, "ROLE") == role
        assert header_value(delete, "SERVICE") == render.SERVICES[role]
        assert other.named(f"kubernetes-{role}-{node}").inputs["delete"] == step.inputs["delete"]
        for part in ("drain \"its removal from the cluster\"", "delete_node_object", "stop_service", "remove_files"):
            assert part in delete, (node, part)
    # An agent reaches the API with the admin kubeconfig it receives on stdin (also at delete time).
    assert header_value(script_of({"create": mocks.named("kubernetes-agent-w-a").inputs["delete"]}),
                        "TRANSIENT_FILES") == "admin.kubeconfig"


def test_role_labels_and_the_control_plane_taint_are_reconciled_from_roles() -> None:
    """Issue 8 audit, item 6: the step knows which role labels the node must carry, which it must not, and
    whether it carries the control-plane taint (k3s applies node-taint only at registration)."""
    roles = {"cp-a": ["etcd", "control-plane", "worker"], "cp-b": ["etcd", "control-plane"],
             "cp-c": ["etcd", "control-plane"], "w-a": ["worker"]}
    mocks = evaluate(stack_config(roles))
    expected = {"cp-a": ("cookbook.dev/control-plane cookbook.dev/worker", "", "0"),
                "cp-b": ("cookbook.dev/control-plane", "cookbook.dev/worker", "1"),
                "w-a": ("cookbook.dev/worker", "cookbook.dev/control-plane", "0")}
    for node, (wanted, unwanted, tainted) in expected.items():
        step = next(r for r in mocks.of_type("command:remote:Command") if r.name.endswith(f"-{node}")
                    and r.name.startswith(("kubernetes-server-", "kubernetes-agent-")))
        script = script_of(step.inputs)
        assert (header_value(script, "LABELS_WANTED"), header_value(script, "LABELS_UNWANTED"),
                header_value(script, "TAINTED")) == (wanted, unwanted, tainted), node
        assert header_value(script, "CONTROL_PLANE_TAINT") == render.CONTROL_PLANE_TAINT


def test_servers_carry_the_settings_k3s_cannot_change() -> None:
    """Issue 8 audit, item 7: each server step carries the immutable settings (config key, stack key, value)
    its host records at k3s's first start and compares before anything changes; agents carry none."""
    mocks = evaluate(stack_config(cluster_cidr="10.52.0.0/16", cluster_domain="home.cluster"))
    server = script_of(mocks.named("kubernetes-server-cp-b").inputs)
    assert header_value(server, "IMMUTABLE_NAMES") == "cluster-cidr service-cidr cluster-dns cluster-domain"
    assert header_value(server, "IMMUTABLE_KEYS") == ("kubernetes.cluster_cidr kubernetes.service_cidr "
                                                      "kubernetes.cluster_dns kubernetes.cluster_domain")
    assert header_value(server, "IMMUTABLE_VALUES") == "10.52.0.0/16 10.43.0.0/16 10.43.0.10 home.cluster"
    agent = script_of(mocks.named("kubernetes-agent-w-a").inputs)
    assert header_value(agent, "IMMUTABLE_NAMES") == ""


def _certificate(pem_base64: str) -> x509.Certificate:
    return x509.load_pem_x509_certificate(base64.b64decode(pem_base64))


def test_the_kubeconfig_is_the_stacks_admin_certificate_renewed_early() -> None:
    """Issue 8 audit, item 5: the admin credential is minted in Pulumi (client CA -> O=system:masters), the
    kubeconfig trusts the server CA the servers get before k3s's first start, and the certificate is re-issued
    by an `up` in its last 90 days; nothing is read back from a host."""
    mocks = FactsMocks()
    outputs = run_program(mocks, stack_config(), secret_keys=["ssh_private_key"])
    kubeconfig = yaml.safe_load(outputs["kubernetes"]["kubeconfig"])
    user = kubeconfig["users"][0]["user"]
    cert = _certificate(user["client-certificate-data"])
    subject = {attribute.oid: attribute.value for attribute in cert.subject}
    assert subject == {NameOID.ORGANIZATION_NAME: "system:masters", NameOID.COMMON_NAME: "cookbook-admin"}
    assert base64.b64decode(user["client-key-data"]).startswith(b"-----BEGIN EC PRIVATE KEY-----")
    client_ca = mocks.named("kubernetes-client-ca").inputs
    assert cert.issuer.rfc4514_string() == f"O={client_ca['subject']['organization']},CN=kubernetes k3s client CA"
    server = mocks.named("kubernetes-server-cp-b")
    stdin = server.inputs["stdin"]
    server_ca_pem = stdin.split("==> server-ca.crt <==\n", 1)[1].split("==> ", 1)[0]
    assert base64.b64decode(kubeconfig["clusters"][0]["cluster"]["certificate-authority-data"]).decode().strip() \
        == server_ca_pem.strip()
    assert kubeconfig["clusters"][0]["cluster"]["server"] == "https://10.9.0.1:6443"
    admin = mocks.named("kubernetes-admin-cert").inputs
    assert (admin["validityPeriodHours"], admin["earlyRenewalHours"]) == (365 * 24, 90 * 24)
    # `expires` says when (users alert on it); the next `up` after it is less than 90 days away re-issues it.
    assert pki.parse_time(outputs["kubernetes"]["expires"]).replace(microsecond=0) == cert.not_valid_after_utc
    assert set(admin["allowedUses"]) == {"digital_signature", "key_encipherment", "client_auth"}
    assert not [r.name for r in mocks.resources if r.name == "kubernetes-admin"]  # nothing read back
    for name in SERVERS:
        assert header_value(script_of(mocks.named(f"kubernetes-server-{name}").inputs), "CA_FILES") == \
            "server-ca.crt server-ca.key client-ca.crt client-ca.key"
    assert header_value(script_of(mocks.named("kubernetes-agent-w-a").inputs), "CA_FILES") == ""


def test_a_cluster_with_k3s_own_ca_keeps_reading_k3s_admin_kubeconfig() -> None:
    """kubernetes.ca: k3s (clusters created before the stack made its own CAs): no CAs are placed, and the
    kubeconfig output is k3s's admin kubeconfig as before, read back from the first server."""
    mocks = FactsMocks()
    outputs = run_program(mocks, stack_config(ca="k3s"), secret_keys=["ssh_private_key"])
    names = {r.name for r in mocks.resources}
    assert "kubernetes-admin" in names and not {"kubernetes-server-ca", "kubernetes-client-ca"} & names
    assert "kubernetes-admin" in dependencies(mocks)["kubernetes-agent-w-a"]
    first = script_of(mocks.named("kubernetes-server-cp-a").inputs)
    assert header_value(first, "CA_FILES") == "" and header_value(first, "PRINT_KUBECONFIG_DIGEST") == "1"
    assert header_value(script_of(mocks.named("kubernetes-server-cp-b").inputs), "PRINT_KUBECONFIG_DIGEST") == "0"
    kubeconfig = yaml.safe_load(outputs["kubernetes"]["kubeconfig"])
    assert kubeconfig["users"][0]["user"]["client-key-data"] == SECRET_MARKER


def test_component_arguments_are_validated() -> None:
    problems = k8s.validate(k8s.KubernetesClusterArgs(install="airgap"))
    assert "nodes: no node has role control-plane; k3s needs at least one server" in problems
    assert "datastore: k3s servers need the etcd datastore" in problems
    assert any(p.startswith("airgap: the airgap install mode needs") for p in problems)
    assert "ca: must be one of cookbook, k3s, got 'mine'" in k8s.validate(k8s.KubernetesClusterArgs(ca="mine"))


def test_the_flag_extractor_reads_urfave_cli_flag_lists() -> None:
    """tests/data/extract_k3s_flags.py on a small piece of Go in k3s's style: named flag variables, inline
    flags with aliases, hidden flags and comments inside the list."""
    from tests.data.extract_k3s_flags import list_items, named_flags

    source = '''
var (
	NodeIPFlag = &cli.StringSliceFlag{
		Name:    "node-ip",
		Aliases: []string{"i"},
		Usage:   "(agent/networking) IPv4/IPv6 addresses {to advertise}",
	}
)
var ServerFlags = []cli.Flag{
	NodeIPFlag,
	// a comment with a brace {
	&cli.BoolFlag{
		Name:   "secrets-encryption",
		Hidden: true,
	},
	&cli.IntFlag{Name: "https-listen-port", Value: 6443},
}
'''
    flags = list_items(source, "var ServerFlags", named_flags({"server.go": source}))
    assert flags == [
        {"name": "node-ip", "type": "StringSlice", "aliases": ["i"], "hidden": False},
        {"name": "secrets-encryption", "type": "Bool", "aliases": [], "hidden": True},
        {"name": "https-listen-port", "type": "Int", "aliases": [], "hidden": False},
    ]


def test_servers_keep_the_admin_kubeconfig_private_and_encrypt_secrets() -> None:
    """k3s writes /etc/rancher/k3s/k3s.yaml (cluster-admin credentials) with this mode: readable by root only."""
    assert SERVER_CONFIG["write-kubeconfig-mode"] == "0600"
    assert SERVER_CONFIG["secrets-encryption"] is True
    assert yaml.safe_load(render.config_yaml(SERVER_CONFIG))["write-kubeconfig-mode"] == "0600"


# A k3s whose `kubectl` answers the readiness gate: /readyz "ok", and the nodes' Ready condition from FAKE_NODES
# ("name=True name=False ...").
FAKE_K3S_FOR_READY = """#!/bin/bash
case "$*" in
  *--raw=/readyz*) echo ok ;;
  *"get nodes"*) tr ' ' '\\n' <<<"$FAKE_NODES" ;;
  *) exit 2 ;;
esac
"""


@pytest.mark.parametrize(("nodes", "passes"), [
    ("cp-a=True w-a=True", True),
    ("cp-a=True w-a=False", False),  # a NotReady node
    ("cp-a=True w-a=Unknown", False),  # a node whose kubelet stopped reporting
    ("cp-a=True", False),  # a configured node that never registered
    ("cp-a=True w-a=True w-b=False", True),  # a node the stack does not configure does not count
])
def test_the_readiness_gate_passes_only_when_every_configured_node_is_ready(tmp_path: Path, nodes: str,
                                                                          passes: bool) -> None:
    (tmp_path / "k3s").write_text(FAKE_K3S_FOR_READY)
    (tmp_path / "k3s").chmod(0o755)
    script = render.render_ready_script(str(tmp_path), ["cp-a", "w-a"], 1)
    done = subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=30, check=False,
                          env={"PATH": "/usr/bin:/bin", "FAKE_NODES": nodes})
    assert (done.returncode == 0) == passes, done.stdout + done.stderr
    if passes:
        assert done.stdout == "ready: 2 nodes: cp-a w-a\n"
    else:
        assert "timed out after 1s waiting for every node to be Ready (cp-a w-a)" in done.stderr
        assert "not Ready: w-a" in done.stderr
