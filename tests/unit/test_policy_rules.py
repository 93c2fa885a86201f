"""The policy pack's rules: a violating and a clean case for every rule, the CrossGuard adapters (proxies,
unknown values, config, secret outputs), and every shipped stack evaluated under mocks passing every rule."""

from __future__ import annotations

import base64
import copy
import json
import shlex
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
from pulumi_policy import (
    PolicyConfigSchema,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    StackValidationArgs,
    StackValidationPolicy,
)
from pulumi_policy.policy import PolicyCustomTimeouts, PolicyResource, PolicyResourceOptions
from pulumi_policy.proxy import UNKNOWN_STRING_VALUE, unknown_checking_proxy

from components.shared.scripts import remote_invocation, render_script
from policy import rules
from policy.rules import Subject
from tests.harness.fixtures import FAKE_SECRETS
from tests.harness.program import load_stack_config, run_program, stack_names
from tests.harness.recording import RecordingMocks

STS = "kubernetes:apps/v1:StatefulSet"
DEPLOYMENT = "kubernetes:apps/v1:Deployment"
CONFIGMAP = "kubernetes:core/v1:ConfigMap"
SECRET = "kubernetes:core/v1:Secret"
PDB = "kubernetes:policy/v1:PodDisruptionBudget"
REMOTE = "command:remote:Command"
COPY = "command:remote:CopyToRemote"
CONTAINER = "docker:index/container:Container"
IMAGE = "docker:index/remoteImage:RemoteImage"
PRIVATE_KEY = "tls:index/privateKey:PrivateKey"
LEAF = "tls:index/locallySignedCert:LocallySignedCert"
PEM = "-----BEGIN EC PRIVATE KEY-----\nMHcCAQEEIFAKEFAKEFAKE\n-----END EC PRIVATE KEY-----\n"
CERT = "-----BEGIN CERTIFICATE-----\nMIIBFAKE\n-----END CERTIFICATE-----\n"


def workload(replicas: int = 3, **pod: Any) -> dict[str, Any]:
    """A StatefulSet that passes every rule; tests break one thing at a time."""
    container = {"name": "app", "image": "cassandra:4.1.7",
                 "resources": {"requests": {"cpu": "100m", "memory": "1Gi"},
                               "limits": {"cpu": "1", "memory": "1Gi"}},
                 "securityContext": {"allowPrivilegeEscalation": False},
                 "readinessProbe": {"tcpSocket": {"port": 9042}}}
    return {
        "apiVersion": "apps/v1", "kind": "StatefulSet",
        "metadata": {"name": "db", "namespace": "store"},
        "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": "db"}},
                 "template": {"metadata": {"labels": {"app": "db", "tier": "data"}},
                              "spec": {"securityContext": {"runAsNonRoot": True}, "containers": [container],
                                       **pod}}},
    }


def container(props: dict[str, Any]) -> dict[str, Any]:
    first: dict[str, Any] = props["spec"]["template"]["spec"]["containers"][0]
    return first


def broken(change: Any, props: dict[str, Any] | None = None) -> dict[str, Any]:
    props = copy.deepcopy(props if props is not None else workload())
    change(props)
    return props


def budget(labels: Mapping[str, str], namespace: str = "store") -> dict[str, Any]:
    return {"apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
            "metadata": {"name": "db", "namespace": namespace},
            "spec": {"maxUnavailable": 1, "selector": {"matchLabels": dict(labels)}}}


def remote(create: str = "hostname", *, stdin: str | None = None, logging: str | None = None,
           secret_outputs: tuple[str, ...] = (), host_key: str | None = "ssh-ed25519 AAAAC3Nz",
           **connection: Any) -> Subject:
    props: dict[str, Any] = {"create": create, "connection": {"host": "192.0.2.1", "user": "pi",
                                                              "hostKey": host_key, **connection}}
    if stdin is not None:
        props["stdin"] = stdin
    if logging is not None:
        props["logging"] = logging
    return Subject(REMOTE, props, "r", secret_outputs)


def docker(**props: Any) -> Subject:
    return Subject(CONTAINER, {"image": "quay.io/coreos/etcd:v3.5.17", "name": "etcd-0",
                               "ports": [{"internal": 2379, "external": 2379, "ip": "127.0.0.1"}], **props},
                   "etcd-0")


def kube(resource_type: str, props: dict[str, Any]) -> Subject:
    return Subject(resource_type, props, props.get("metadata", {}).get("name", "r"))


KUBECONFIG = ("apiVersion: v1\nkind: Config\nclusters: [{name: home, cluster: {server: 'https://192.0.2.10:6443'}}]\n"
              "users: [{name: u, user: {token: abcdef}}]\ncontexts: [{name: c, context: {cluster: home, user: u}}]\n")
STRICT = render_script([], {"NAME": "x"}) + "echo one\necho two\n"

# One violating and one clean resource for every rule the pack runs (the stack rule has its own test).
RULE_CASES: dict[str, tuple[Subject, Subject]] = {
    "kubernetes-images-pinned": (
        kube(STS, broken(lambda p: container(p).update(image="cassandra:latest"))), kube(STS, workload())),
    "kubernetes-no-host-access": (kube(STS, workload(hostNetwork=True)), kube(STS, workload())),
    "kubernetes-resources-limited": (
        kube(STS, broken(lambda p: container(p).pop("resources"))), kube(STS, workload())),
    "kubernetes-non-root": (
        kube(STS, broken(lambda p: p["spec"]["template"]["spec"].pop("securityContext"))), kube(STS, workload())),
    "kubernetes-readiness-probes": (
        kube(STS, broken(lambda p: container(p).pop("readinessProbe"))), kube(STS, workload())),
    "kubernetes-no-secrets-in-configmaps": (
        kube(CONFIGMAP, {"metadata": {"name": "c"}, "data": {"db-password": "x"}}),
        kube(CONFIGMAP, {"metadata": {"name": "c"}, "data": {"log-level": "info"}})),
    "kubernetes-endpoints-https": (
        Subject("pulumi:providers:kubernetes", {"kubeconfig": KUBECONFIG.replace("https://", "http://")}, "k"),
        Subject("pulumi:providers:kubernetes", {"kubeconfig": KUBECONFIG}, "k")),
    "etcd-endpoints-https": (
        remote("etcdctl --endpoints=http://192.0.2.1:2379 endpoint health"),
        remote("etcdctl --endpoints=https://192.0.2.1:2379 endpoint health")),
    "no-example-credentials": (
        kube(SECRET, {"metadata": {"name": "s"}, "stringData": {"k": "AKIAIOSFODNN7EXAMPLE"}}),
        kube(SECRET, {"metadata": {"name": "s"}, "stringData": {"k": "KIYAI6F08WBUV27AOSPJ"}})),
    "no-plaintext-credentials": (remote(f"cat > /etc/key <<'EOF'\n{PEM}EOF"),
                                 remote("cat > /etc/key", stdin=PEM, logging="none",
                                        secret_outputs=("stdout", "stderr"))),
    "command-key-material-hidden": (remote("cat > /etc/key", stdin=PEM),
                                    remote("cat > /etc/key", stdin=PEM, logging="none",
                                           secret_outputs=("stdout", "stderr"))),
    "command-scripts-strict": (remote(remote_invocation("echo one\necho two\n", become=True)),
                               remote(remote_invocation(STRICT, become=True))),
    "ssh-host-keys-pinned": (remote(host_key=None), remote()),
    "tls-key-strength": (Subject(PRIVATE_KEY, {"algorithm": "ECDSA"}, "k"),
                         Subject(PRIVATE_KEY, {"algorithm": "ECDSA", "ecdsaCurve": "P256"}, "k")),
    "tls-leaf-certificates-not-ca": (
        Subject(LEAF, {"allowedUses": ["cert_signing", "client_auth"]}, "c"),
        Subject(LEAF, {"allowedUses": ["digital_signature", "client_auth"]}, "c")),
    "docker-images-pinned": (docker(image="quay.io/coreos/etcd"), docker()),
    "docker-no-host-access": (docker(privileged=True), docker(privileged=False)),
    "docker-ports-loopback": (docker(ports=[{"internal": 2379, "external": 2379}]), docker()),
}


def test_the_pack_has_at_least_15_policies_each_with_a_violating_and_a_clean_case() -> None:
    names = [rule.name for rule in rules.RESOURCE_RULES] + [rules.STACK_RULE_NAME]
    assert len(names) == len(set(names)) >= 15
    assert set(RULE_CASES) == {rule.name for rule in rules.RESOURCE_RULES}


@pytest.mark.parametrize("rule", rules.RESOURCE_RULES, ids=lambda rule: rule.name)
def test_each_rule_flags_its_violating_case_and_passes_its_clean_one(rule: rules.Rule) -> None:
    violating, clean = RULE_CASES[rule.name]
    assert rule.check(violating, rules.PolicyConfig()), f"{rule.name} missed its violating case"
    assert rule.check(clean, rules.PolicyConfig()) == []
    # The clean case passes every other resource rule too: it is clean, not merely outside this rule's reach.
    assert [message for other in rules.RESOURCE_RULES for message in other.check(clean, rules.PolicyConfig())] == []


# ------------------------------------------------------------------------------------- Kubernetes


@pytest.mark.parametrize(("image", "ok"), [
    ("cassandra:4.1.7", True), ("registry.local:5000/team/pithos:0.7.5", True),
    ("cassandra@sha256:" + "a" * 64, True), (UNKNOWN_STRING_VALUE, True),
    ("cassandra", False), ("cassandra:latest", False), ("registry.local:5000/pithos", False), ("", False),
])
def test_images_pinned(image: str, ok: bool) -> None:
    assert (rules.images_pinned(STS, broken(lambda p: container(p).update(image=image))) == []) is ok


def test_images_pinned_covers_init_containers_and_cronjobs() -> None:
    props = workload(initContainers=[{"name": "init", "image": "busybox"}])
    assert rules.images_pinned(STS, props) == ["store/db initContainers[0] 'init': image 'busybox' has no tag: "
                                               "pin a version (e.g. busybox:1.2.3) or a digest"]
    cronjob = {"metadata": {"name": "c"}, "spec": {"jobTemplate": {"spec": {"template": {"spec": {
        "containers": [{"name": "x", "image": "alpine:latest"}]}}}}}}
    assert len(rules.images_pinned("kubernetes:batch/v1:CronJob", cronjob)) == 1
    assert rules.images_pinned("kubernetes:core/v1:Service", {"spec": {}}) == []


@pytest.mark.parametrize("pod", [
    {"hostNetwork": True}, {"hostPID": True}, {"hostIPC": True},
    {"volumes": [{"name": "root", "hostPath": {"path": "/"}}]},
])
def test_no_host_access_pod_level(pod: dict[str, Any]) -> None:
    found = rules.no_host_access(STS, workload(**pod))
    assert found and "host_access_allow_list" in found[-1]
    assert rules.no_host_access(STS, workload(**pod), rules.PolicyConfig(("store/db",))) == []


def test_no_host_access_privileged_container() -> None:
    props = broken(lambda p: container(p)["securityContext"].update(privileged=True))
    assert rules.no_host_access(STS, props)[0] == "store/db containers[0] 'app': runs privileged"
    assert rules.no_host_access(STS, workload()) == []
    assert rules.no_host_access(STS, workload(volumes=[{"name": "d", "emptyDir": {}}])) == []


def test_resources_limited() -> None:
    assert rules.resources_limited(STS, workload()) == []

    def drop(props: dict[str, Any]) -> None:
        del container(props)["resources"]["limits"]["memory"]
        container(props)["resources"]["requests"].pop("cpu")

    assert rules.resources_limited(STS, broken(drop)) == [
        "store/db containers[0] 'app': no requests.cpu, limits.memory"]


def test_non_root_takes_the_container_setting_over_the_pod_one() -> None:
    root_container = broken(lambda p: container(p)["securityContext"].update(runAsNonRoot=False))
    assert rules.runs_as_non_root(STS, root_container) == [
        "store/db containers[0] 'app': may run as root (set securityContext.runAsNonRoot: true)"]
    escalating = broken(lambda p: container(p)["securityContext"].pop("allowPrivilegeEscalation"))
    assert rules.runs_as_non_root(STS, escalating) == [
        "store/db containers[0] 'app': may gain privileges (set allowPrivilegeEscalation: false)"]
    # A workload allowed host access (a CNI) may run as root.
    assert rules.runs_as_non_root(STS, root_container, rules.PolicyConfig(("store/db",))) == []


def test_readiness_probes_only_for_long_running_workloads() -> None:
    job = {"metadata": {"name": "j"}, "spec": {"template": {"spec": {"containers": [{"name": "x"}]}}}}
    assert rules.readiness_probes("kubernetes:batch/v1:Job", job) == []
    no_probe_init = workload(initContainers=[{"name": "init", "image": "busybox:1.36"}])
    assert rules.readiness_probes(STS, no_probe_init) == []


@pytest.mark.parametrize("credential", rules.EXAMPLE_CREDENTIALS)
def test_no_example_credentials_anywhere(credential: str) -> None:
    config = {"pithos.yaml": f"keystore:\n  keys:\n    {credential}:\n      master: true\n"}
    found = rules.no_example_credentials(SECRET, {"stringData": config})
    assert len(found) == 1 and credential not in found[0]  # the message does not repeat it whole
    encoded = {"data": {"key": base64.b64encode(credential.encode()).decode()}}
    assert rules.no_example_credentials(SECRET, encoded)
    assert rules.no_example_credentials(REMOTE, {"create": f"export K={credential}"})


def test_generated_credentials_are_clean() -> None:
    props = {"stringData": {"pithos.yaml": "keys:\n  KIYAI6F08WBUV27AOSPJ: {secret: Zq3x}\n"}}
    assert rules.no_example_credentials(SECRET, props) == []
    assert rules.no_example_credentials(SECRET, {"data": {"k": "not base64!"}}) == []


@pytest.mark.parametrize(("data", "ok"), [
    ({"cassandra.yaml": "cluster_name: cookbook\nnum_tokens: 16\n"}, True),
    ({"log-level": "info", "endpoint": "http://s3:8080"}, True),
    ({"db-password": "x"}, False),
    ({"id_ed25519.key": "x"}, False),
    ({"s3cfg": "[default]\n"}, False),
    ({"app.ini": "[db]\npassword = hunter2\n"}, False),
    ({"client.conf": "secret_key: abc\n"}, False),
    ({"tls": "-----BEGIN RSA PRIVATE KEY-----\nMIIE\n"}, False),
])
def test_no_secrets_in_configmaps(data: dict[str, str], ok: bool) -> None:
    props = {"metadata": {"name": "cfg", "namespace": "store"}, "data": data}
    assert (rules.no_secrets_in_configmaps(CONFIGMAP, props) == []) is ok
    assert rules.no_secrets_in_configmaps(SECRET, props) == []


def test_replicated_statefulsets_have_a_pdb() -> None:
    sts = workload(replicas=3)
    missing = rules.replicated_statefulsets_have_pdb([(STS, sts)])
    assert missing == ["StatefulSet store/db runs 3 replicas but no PodDisruptionBudget selects its pods: "
                       "a node drain could stop several at once"]
    assert rules.replicated_statefulsets_have_pdb([(STS, sts), (PDB, budget({"app": "db"}))]) == []
    # A budget elsewhere, or for other pods, does not count; a single replica needs none.
    assert rules.replicated_statefulsets_have_pdb([(STS, sts), (PDB, budget({"app": "db"}, "other"))])
    assert rules.replicated_statefulsets_have_pdb([(STS, sts), (PDB, budget({"app": "web"}))])
    assert rules.replicated_statefulsets_have_pdb([(STS, workload(replicas=1))]) == []


# ------------------------------------------------------------------------------------- endpoints


@pytest.mark.parametrize(("text", "bad"), [
    ("ETCD_LISTEN_CLIENT_URLS=http://0.0.0.0:2379", ["http://0.0.0.0:2379"]),
    ("ETCD_INITIAL_CLUSTER=a=http://10.0.0.1:12380,b=https://10.0.0.2:12380", ["http://10.0.0.1:12380"]),
    ("etcdctl --endpoints='http://[fd00::1]:4001' get /", ["http://[fd00::1]:4001"]),
    ("datastore-endpoint: http://10.0.0.5:2379", ["http://10.0.0.5:2379"]),
    ("PEER_URL=http://10.0.0.7:2380", ["http://10.0.0.7:2380"]),
    ("ETCD_LISTEN_CLIENT_URLS=https://0.0.0.0:2379", []),
    ("ETCD_LISTEN_METRICS_URLS=http://127.0.0.1:2381", []),  # metrics only, no data
    ("curl -fsS http://deb.debian.org/debian/", []),
])
def test_etcd_endpoints(text: str, bad: list[str]) -> None:
    found = rules.etcd_endpoints_https(remote(text))
    assert [message.split("etcd endpoint ")[1].split(" is plain")[0] for message in found] == bad


@pytest.mark.parametrize(("text", "ok"), [
    (KUBECONFIG, True),
    (KUBECONFIG.replace("'https://192.0.2.10:6443'}", "'https://192.0.2.10:6443', insecure-skip-tls-verify: true}"),
     False),
    ("K3S_URL=http://192.0.2.10:6443", False),
    ("k3s agent --server http://server.lan:443", False),
    ("server: https://127.0.0.1:6443", True),
    ("curl http://192.0.2.10:8080/healthz", True),
    ("curl http://192.0.2.10:6443/healthz", False),
])
def test_kubernetes_endpoints(text: str, ok: bool) -> None:
    assert (rules.kubernetes_endpoints_https(remote(text)) == []) is ok


# ------------------------------------------------------------------------------------- credentials


@pytest.mark.parametrize(("props", "bad"), [
    ({"create": "install -m 600 /dev/stdin /etc/k3s/token", "environment": {"K3S_TOKEN": "s3cr3t-value"}},
     "environment.K3S_TOKEN is a literal credential"),
    ({"create": "printf 'password: hunter2\\n' > /etc/app.yaml", "triggers": []}, "holds a literal 'password'"),
    ({"create": "x", "triggers": [PEM]}, "triggers holds a PEM private key"),
    ({"create": "x", "connection": {"host": "h", "hostKey": PEM}}, "connection.hostKey holds a PEM private key"),
])
def test_credentials_outside_their_carriers(props: dict[str, Any], bad: str) -> None:
    found = rules.no_plaintext_credentials(Subject(REMOTE, props, "r"))
    assert len(found) == 1 and bad in found[0]


def test_credentials_in_kubernetes_objects() -> None:
    env: dict[str, Any] = {"name": "app", "image": "a:1", "env": [{"name": "DB_PASSWORD", "value": "hunter2"}]}
    deployment: dict[str, Any] = {"metadata": {"name": "d"}, "spec": {"template": {"spec": {"containers": [env]}}}}
    assert rules.no_plaintext_credentials(kube(DEPLOYMENT, deployment)) == [
        f"{DEPLOYMENT} default/d: spec.template.spec.containers.env sets DB_PASSWORD to a literal value in plain "
        f"text: {rules._CARRIER_HINT}"]
    from_secret = copy.deepcopy(deployment)
    from_secret["spec"]["template"]["spec"]["containers"][0]["env"] = [
        {"name": "DB_PASSWORD", "valueFrom": {"secretKeyRef": {"name": "db", "key": "password"}}}]
    assert rules.no_plaintext_credentials(kube(DEPLOYMENT, from_secret)) == []
    assert rules.no_plaintext_credentials(kube(SECRET, {"metadata": {"name": "s"},
                                                        "stringData": {"kubeconfig": KUBECONFIG}})) == []


@pytest.mark.parametrize("text", [
    'TOKEN="$1"', "password: ${PASSWORD}", "ETCD_INITIAL_CLUSTER_TOKEN=cookbook-etcd", "secret: <generated>",
    "ETCD_KEY_FILE=/etc/cookbook-etcd/pki/member.key", 'password=""', "token: null",
])
def test_references_and_names_are_not_credentials(text: str) -> None:
    assert rules.credential_findings(text) == []


def test_carriers_take_credentials() -> None:
    connection = {"host": "h", "hostKey": "ssh-ed25519 AAAA", "privateKey": PEM, "privateKeyPassword": "pw",
                  "proxy": {"host": "b", "privateKey": PEM, "password": "pw"}}
    assert rules.no_plaintext_credentials(Subject(REMOTE, {"create": "x", "stdin": PEM,
                                                           "connection": connection}, "r")) == []
    assert rules.no_plaintext_credentials(Subject(COPY, {"connection": connection, "remotePath": "/x"}, "c")) == []
    assert rules.no_plaintext_credentials(Subject(CONTAINER, {"image": "a:1", "uploads": [
        {"file": "/etc/etcd/member.key", "content": PEM}]}, "c")) == []
    assert rules.no_plaintext_credentials(Subject(CONTAINER, {"image": "a:1", "envs": [
        f"KEY={PEM}"]}, "c")), "Docker envs show in `docker inspect`"


# ------------------------------------------------------------------------------------- host commands


def test_key_material_on_stdin_needs_logging_off_and_secret_outputs() -> None:
    found = rules.command_key_material_hidden(remote("cat", stdin=PEM, logging="stdoutAndStderr",
                                                     secret_outputs=("stdout",)))
    assert found == ["command:remote:Command r: stdin carries a private key but logging is stdoutAndStderr "
                     "(set logging: none)",
                     "command:remote:Command r: stdin carries a private key but stderr are not in "
                     "additional_secret_outputs"]
    assert rules.command_key_material_hidden(remote("cat", stdin=CERT)) == []  # a certificate is public
    assert rules.command_key_material_hidden(remote("cat", stdin=UNKNOWN_STRING_VALUE)) == []
    local = Subject("command:local:Command", {"create": "cat", "stdin": PEM}, "l")
    assert len(rules.command_key_material_hidden(local)) == 2


@pytest.mark.parametrize(("script", "missing"), [
    ("#!/bin/bash\nset -euo pipefail\necho a\necho b\n", ""),
    ("#!/bin/bash\n# comment\nset -e\nset -o nounset -o pipefail\necho a\necho b\n", ""),
    ("set -eu\necho a\necho b\n", "pipefail"),
    ("echo a\nset -euo pipefail\necho b\n", "errexit, nounset, pipefail"),
])
def test_scripts_strict_mode(script: str, missing: str) -> None:
    found = rules.command_scripts_strict(remote(remote_invocation(script, become=False)))
    assert found == ([] if not missing else [
        f"command:remote:Command r: the create script does not start with set -euo pipefail (missing {missing})"])


def double_quoted(text: str) -> str:
    return '"' + "".join("\\" + char if char in '"\\$`' else char for char in text) + '"'


@pytest.mark.parametrize("script", ["echo 'a'\n", 'x="$1" \\\n  && printf "%s\\n" "$x"\n', "a=\"'\"\n",
                                    "set -e; a=`b`\n"])
def test_scripts_are_read_back_as_bash_reads_them(script: str) -> None:
    for command in (f"bash -c {shlex.quote(script)}", f"sudo -n bash -c {shlex.quote(script)} && true",
                    f"bash -c {double_quoted(script)}"):
        assert rules.scripts_of(command) == [script], command  # bash unescapes \\$ and \\` in "...", shlex does not
    assert rules.scripts_of("hostname") == ["hostname"]


def test_every_rendered_script_is_strict() -> None:
    assert rules.scripts_of(remote_invocation(STRICT, become=True)) == [STRICT]
    guarded = "if ! sudo -n true 2>/dev/null; then echo 'no sudo' >&2; exit 1; fi; sudo -n bash -c " + \
        shlex.quote("echo a\necho b\n")
    assert rules.scripts_of(guarded) == ["echo a\necho b\n"]
    assert len(rules.command_scripts_strict(remote(guarded))) == 1
    assert rules.command_scripts_strict(Subject(REMOTE, {"create": "rm -f /etc/x", "delete": "true"}, "r")) == []


def test_host_keys_for_the_bastion_too() -> None:
    bastion = remote(proxy={"host": "bastion.lan", "user": "pi"})
    assert rules.ssh_host_keys_pinned(bastion) == [
        "command:remote:Command r: the bastion bastion.lan is reached without a pinned host key "
        "(set nodes[].host_key from `ssh-keyscan -t ed25519 HOST`)"]
    copy_to_remote = Subject(COPY, {"connection": {"host": "h"}, "remotePath": "/x"}, "c")
    assert len(rules.ssh_host_keys_pinned(copy_to_remote)) == 1
    (rule,) = [r for r in rules.RESOURCE_RULES if r.name == "ssh-host-keys-pinned"]
    assert rule.enforcement == "advisory"


# ------------------------------------------------------------------------------------- PKI


@pytest.mark.parametrize(("props", "ok"), [
    ({"algorithm": "ECDSA", "ecdsaCurve": "P384"}, True), ({"algorithm": "RSA"}, True),
    ({"algorithm": "RSA", "rsaBits": 4096}, True), ({"algorithm": "ED25519"}, True),
    ({"algorithm": "ECDSA"}, False), ({"algorithm": "ECDSA", "ecdsaCurve": "P224"}, False),
    ({"algorithm": "RSA", "rsaBits": 1024}, False), ({"algorithm": "DSA"}, False),
])
def test_tls_key_strength(props: dict[str, Any], ok: bool) -> None:
    assert (rules.tls_key_strength(Subject(PRIVATE_KEY, props, "k")) == []) is ok


def test_leaf_certificates_are_not_cas() -> None:
    ca_leaf = Subject(LEAF, {"isCaCertificate": True, "allowedUses": ["server_auth"]}, "c")
    assert rules.tls_leaf_not_ca(ca_leaf) == [f"{LEAF} c: a certificate signed by the cluster CA is itself a CA"]


# ------------------------------------------------------------------------------------- Docker


@pytest.mark.parametrize(("image", "ok"), [
    ("quay.io/coreos/etcd:v3.5.17", True), ("rancher/k3s@sha256:" + "b" * 64, True), ("sha256:" + "c" * 64, True),
    ("quay.io/coreos/etcd", False), ("rancher/k3s:latest", False),
])
def test_docker_images_pinned(image: str, ok: bool) -> None:
    assert (rules.docker_images_pinned(docker(image=image)) == []) is ok
    assert (rules.docker_images_pinned(Subject(IMAGE, {"name": image}, "i")) == []) is ok


def test_privileged_only_for_allow_listed_images_or_names() -> None:
    assert rules.docker_no_host_access(docker(image="rancher/k3s:v1.31.4-k3s1", privileged=True)) == []
    assert rules.docker_no_host_access(docker(image="docker.io/rancher/k3s:v1.31.4-k3s1", privileged=True)) == []
    by_id = docker(image="sha256:" + "d" * 64, privileged=True, name="cookbook-k3s-server")
    assert "privileged_container_allow_list" in rules.docker_no_host_access(by_id)[0]
    assert rules.docker_no_host_access(by_id, rules.PolicyConfig(privileged_container_allow_list=("*-k3s-*",))) == []
    # The allow-list comes from the policy config, with k3s as the default.
    assert rules.PolicyConfig.from_mapping({"privileged_image_allow_list": []}).privileged_image_allow_list == ()
    assert rules.PolicyConfig.from_mapping(None).privileged_image_allow_list == ("rancher/k3s",)


@pytest.mark.parametrize("props", [
    {"networkMode": "host"}, {"pidMode": "host"}, {"ipcMode": "host"},
    {"volumes": [{"hostPath": "/var/run/docker.sock", "containerPath": "/var/run/docker.sock"}]},
    {"mounts": [{"type": "bind", "source": "/", "target": "/host"}]},
])
def test_docker_host_namespaces_and_socket(props: dict[str, Any]) -> None:
    assert len(rules.docker_no_host_access(docker(**props))) == 1
    assert rules.docker_no_host_access(docker(mounts=[{"type": "tmpfs", "target": "/run"}])) == []


@pytest.mark.parametrize(("ip", "ok"), [("127.0.0.1", True), ("::1", True), ("0.0.0.0", False),
                                        ("192.0.2.4", False), (None, False)])
def test_docker_ports_loopback(ip: str | None, ok: bool) -> None:
    port = {"internal": 6443, "external": 6443, **({"ip": ip} if ip else {})}
    assert (rules.docker_ports_loopback(docker(ports=[port])) == []) is ok


# ------------------------------------------------------------------------------------- CrossGuard adapters


def options(secret_outputs: tuple[str, ...] = ()) -> PolicyResourceOptions:
    return PolicyResourceOptions(False, [], None, [], PolicyCustomTimeouts(0, 0, 0), list(secret_outputs))


def policy_args(subject: Subject, config: Mapping[str, Any] | None = None) -> ResourceValidationArgs:
    """What the pack's analyzer builds: props behind pulumi-policy's unknown-checking proxy."""
    return ResourceValidationArgs(subject.type, unknown_checking_proxy(copy.deepcopy(dict(subject.props))),
                                  f"urn:pulumi:t::p::{subject.type}::{subject.name}", subject.name,
                                  options(subject.secret_outputs), None, config)


def run_resource_rule(rule: rules.Rule, args: ResourceValidationArgs) -> list[str]:
    reported: list[str] = []
    rules.validate_resource(rule)(args, lambda message, urn=None: reported.append(message))
    return reported


def rule_named(name: str) -> rules.Rule:
    (rule,) = [r for r in rules.RESOURCE_RULES if r.name == name]
    return rule


def test_adapters_pass_config_and_secret_outputs() -> None:
    host_rule = rule_named("kubernetes-no-host-access")
    props = workload(hostNetwork=True)
    assert run_resource_rule(host_rule, policy_args(kube(STS, props)))
    assert run_resource_rule(host_rule, policy_args(kube(STS, props), {"host_access_allow_list": ["store/db"]})) == []
    hidden = rule_named("command-key-material-hidden")
    assert run_resource_rule(hidden, policy_args(remote("cat", stdin=PEM, logging="none",
                                                        secret_outputs=("stdout", "stderr")))) == []
    assert len(run_resource_rule(hidden, policy_args(remote("cat", stdin=PEM, logging="none")))) == 1
    resources = [PolicyResource(STS, unknown_checking_proxy(workload()), "urn:sts", "db", options(), None, None,
                                [], {})]
    reported: list[str] = []
    rules.validate_stack(StackValidationArgs(resources), lambda message, urn=None: reported.append(message))
    assert len(reported) == 1 and "PodDisruptionBudget" in reported[0]


def test_unknown_values_during_a_preview_are_skipped_not_fatal() -> None:
    """pulumi-policy's proxy raises on reading an unknown; the rules see the sentinel and judge it later."""
    unknown = remote(UNKNOWN_STRING_VALUE, stdin=UNKNOWN_STRING_VALUE, host_key=UNKNOWN_STRING_VALUE,
                     privateKey=UNKNOWN_STRING_VALUE)
    for rule in rules.RESOURCE_RULES:
        assert run_resource_rule(rule, policy_args(unknown)) == []
    container_args = policy_args(kube(STS, broken(lambda p: container(p).update(image=UNKNOWN_STRING_VALUE))))
    assert run_resource_rule(rule_named("kubernetes-images-pinned"), container_args) == []
    # A known flaw next to an unknown value is still reported.
    half_known = remote(f"set -eu\n{UNKNOWN_STRING_VALUE}\n", stdin=PEM, logging=UNKNOWN_STRING_VALUE)
    assert len(run_resource_rule(rule_named("command-key-material-hidden"), policy_args(half_known))) == 1


def test_every_rule_builds_a_crossguard_policy() -> None:
    """What policy/__main__.py assembles (building the PolicyPack itself would block)."""
    policies: list[ResourceValidationPolicy | StackValidationPolicy] = [
        ResourceValidationPolicy(rule.name, rule.description, rules.validate_resource(rule),
                                 config_schema=None if rules.rule_schema(rule) is None
                                 else PolicyConfigSchema(rules.rule_schema(rule) or {}))
        for rule in rules.RESOURCE_RULES]
    policies.append(StackValidationPolicy(rules.STACK_RULE_NAME, rules.STACK_RULE_DESCRIPTION, rules.validate_stack))
    assert len({policy.name for policy in policies}) == len(rules.RESOURCE_RULES) + 1
    assert {rule.enforcement for rule in rules.RESOURCE_RULES} == {"mandatory", "advisory"}


# ------------------------------------------------------------------------------------- shipped stacks


class PolicyMocks(RecordingMocks):
    """Recording mocks that also answer pulumi-tls with PEM text, so key material flows where a real run
    puts it (the etcd members' stdin) and the rules see it."""

    def fake_outputs(self, typ: str, inputs: dict[str, Any]) -> dict[str, Any]:
        outputs = super().fake_outputs(typ, inputs)
        if typ == PRIVATE_KEY:
            outputs["privateKeyPem"] = PEM
        elif typ.startswith("tls:") and typ.endswith("Cert"):
            outputs["certPem"] = CERT
        return outputs


def stack_subjects(stack: str) -> list[Subject]:
    mocks = PolicyMocks()
    run_program(mocks, {**load_stack_config(stack), **FAKE_SECRETS}, stack=stack, secret_keys=list(FAKE_SECRETS))
    return [Subject(r.type, r.inputs, r.name, r.registration.additional_secret_outputs) for r in mocks.resources]


@pytest.mark.parametrize("stack", stack_names())
def test_every_shipped_stack_passes_every_mandatory_rule(stack: str) -> None:
    subjects = stack_subjects(stack)
    assert subjects
    assert rules.all_violations(subjects) == []
    # Advisory findings are only unpinned host keys, one per SSH resource without one.
    advisory = rules.all_violations(subjects, enforcement="advisory")
    unpinned = [s for s in subjects if s.type in rules.SSH_TYPES and not s.props["connection"].get("hostKey")]
    assert len(advisory) == len(unpinned) and all(a.startswith("ssh-host-keys-pinned: ") for a in advisory)
    # The same verdict through the pack's adapters, with props behind pulumi-policy's proxies.
    reported = [message for subject in subjects for rule in rules.RESOURCE_RULES
                for message in run_resource_rule(rule, policy_args(subject))]
    assert sorted(reported) == sorted(line.split(": ", 1)[1] for line in advisory)


def test_the_rules_see_the_key_material_a_real_run_sends() -> None:
    """pi-home's etcd members read their keys on stdin: the key-material rule really runs on them."""
    subjects = stack_subjects("pi-home")
    with_keys = [s for s in subjects if s.type in rules.COMMAND_TYPES and rules._PEM_PRIVATE_KEY.search(
        str(s.props.get("stdin") or ""))]
    assert sorted(s.name for s in with_keys) == ["etcd-member-pi-a", "etcd-member-pi-b", "etcd-member-pi-c",
                                                 "kubernetes-server-pi-a"]
    exposed = [Subject(s.type, {**s.props, "logging": "stdoutAndStderr"}, s.name, ()) for s in with_keys]
    assert len(rules.all_violations(exposed)) == 2 * len(exposed)


def test_a_violating_store_would_be_stopped() -> None:
    """The shipped store, with each safety setting broken in turn, trips the matching rule."""
    subjects = stack_subjects("s3-store")
    sts = next(s for s in subjects if s.type == STS)
    bad = copy.deepcopy(dict(sts.props))
    container(bad)["image"] = "cassandra"
    container(bad)["securityContext"]["privileged"] = True
    container(bad).pop("resources")
    container(bad).pop("readinessProbe")
    without_pdb = [s for s in subjects if s.type not in (PDB, STS)] + [Subject(STS, bad, sts.name)]
    names = {line.split(":")[0] for line in rules.all_violations(without_pdb)}
    assert names == {"kubernetes-images-pinned", "kubernetes-no-host-access", "kubernetes-resources-limited",
                     "kubernetes-readiness-probes", "kubernetes-statefulset-pdb"}


def test_the_example_config_names_real_policies_and_keys() -> None:
    """`--policy-pack-config policy/example-config.json` must not silently configure nothing."""
    config = json.loads((Path(rules.__file__).parent / "example-config.json").read_text())
    by_name = {rule.name: rule for rule in rules.RESOURCE_RULES}
    for policy, settings in config.items():
        assert policy in by_name, policy
        keys = set(settings) - {"enforcementLevel"}
        assert keys <= set(by_name[policy].config_keys), (policy, keys)
        parsed = rules.PolicyConfig.from_mapping(settings)
        assert all(getattr(parsed, key) == tuple(settings[key]) for key in keys)
