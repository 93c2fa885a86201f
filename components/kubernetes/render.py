"""Pure renderers of the Kubernetes (k3s) recipe: settings in, host-side text out.

`/etc/rancher/k3s/config.yaml` is built as data (`server_config`, `agent_config`) and serialised with
`yaml.safe_dump(sort_keys=True)`; every key is a flag of the pinned k3s version (tests/data holds the list).
Units, scripts and the control-plane gate fragment come from `templates/`. Nothing here talks to a host.
"""

from __future__ import annotations

import base64
import string
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import yaml

from components.shared.addresses import https_url, is_ip
from components.shared.scripts import ShellValue, render_script, shell_assignment, template

K3S_VERSION = "v1.34.7+k3s1"
# sha256 of k3s's install.sh at each tag the recipe knows (online mode downloads it and checks this).
INSTALL_SCRIPT_SHA256 = {
    "v1.34.7+k3s1": "40b487f0d8ef4f5d1bf422e7bb6228cc7789c40ecc66c5ab067d396bbee9816e",
}
INSTALL_MODES = ("online", "airgap", "preinstalled")
FLANNEL_BACKENDS = ("vxlan", "host-gw", "wireguard-native", "none")
ARCHITECTURES = ("amd64", "arm64", "armhf")
ROLES = ("control-plane", "worker")

CONFIG_DIR = "/etc/rancher/k3s"
CONFIG_FILE = f"{CONFIG_DIR}/config.yaml"
ADMIN_KUBECONFIG = f"{CONFIG_DIR}/k3s.yaml"  # written by k3s servers (write-kubeconfig-mode 0600)
SECRETS_DIR = f"{CONFIG_DIR}/cookbook"  # token files and the datastore client PKI, dir 0700, files 0600
STATE_DIR = "/var/lib/cookbook-k3s"  # what k3s last started with (version + config hash), immutable settings
UPLOAD_DIR = "/var/lib/cookbook-k3s-airgap"  # airgap uploads (owned by the login user CopyToRemote connects as)
IMAGES_DIR = "/var/lib/rancher/k3s/agent/images"
TLS_DIR = "/var/lib/rancher/k3s/server/tls"  # k3s uses CA files it finds here at its first start
CA_MODES = ("cookbook", "k3s")  # the stack's CAs (pulumi-tls, placed before the first start), or k3s's own
# The cluster CAs a server receives (cookbook mode): k3s's file names (pkg/daemons/control/deps/deps.go).
CA_FILES = ("server-ca.crt", "server-ca.key", "client-ca.crt", "client-ca.key")
# Server settings k3s cannot change once the cluster exists (config.yaml key, stack config key): each server
# records them at k3s's first start and refuses a change (k3s itself compares them only for a server that
# joins through another server's URL, pkg/cluster/bootstrap.go compareConfig, never with an external datastore).
IMMUTABLE_SETTINGS = (("cluster-cidr", "kubernetes.cluster_cidr"), ("service-cidr", "kubernetes.service_cidr"),
                      ("cluster-dns", "kubernetes.cluster_dns"), ("cluster-domain", "kubernetes.cluster_domain"))
DEFAULT_BIN_DIR = "/usr/local/bin"
READ_ONLY_USR_BIN_DIR = "/opt/bin"  # Fedora CoreOS, Flatcar: /usr is read-only
SERVICES = {"server": "k3s", "agent": "k3s-agent"}  # unit names as k3s's installer gives them
LABEL_PREFIX = "cookbook.dev"
CONTROL_PLANE_TAINT = "node-role.kubernetes.io/control-plane:NoSchedule"

# Files the node step receives on stdin (`==> NAME <==` blocks) and writes 0600 into SECRETS_DIR.
SERVER_SECRET_FILES = ("token", "agent-token", "datastore-ca.crt", "datastore-client.crt", "datastore-client.key")
AGENT_SECRET_FILES = ("agent-token",)
# Agents receive the cluster's admin kubeconfig too, for their own cordon/drain/uncordon and readiness
# checks; it is kept in a private temporary file for the step's duration only, never installed.
AGENT_TRANSIENT_FILES = ("admin.kubeconfig",)


@dataclass(frozen=True)
class Artifact:
    """A file on the machine running Pulumi, with the sha256 the node checks before using it."""

    path: str
    sha256: str


@dataclass(frozen=True)
class AirgapArtifacts:
    """k3s's release assets for one architecture: the `k3s` binary and `k3s-airgap-images-<arch>.tar.zst`."""

    binary: Artifact
    images: Artifact


@dataclass(frozen=True)
class ClusterSettings:
    """Server settings k3s requires identical on every server: one config section, so they cannot differ."""

    cluster_cidr: str = "10.42.0.0/16"
    service_cidr: str = "10.43.0.0/16"
    cluster_dns: str = "10.43.0.10"
    cluster_domain: str = "cluster.local"
    flannel_backend: str = "vxlan"
    flannel_iface: str | None = None
    secrets_encryption: bool = True
    disable: tuple[str, ...] = ()
    prefer_bundled_bin: bool = True


@dataclass(frozen=True)
class NodePlan:
    """One node as the renderers see it: name, address and roles (control-plane, worker or both)."""

    name: str
    address: str
    roles: tuple[str, ...]

    @property
    def role(self) -> str:
        """k3s's command on the node: a control-plane node runs a server, a worker-only node an agent."""
        return "server" if "control-plane" in self.roles else "agent"

    @property
    def schedulable(self) -> bool:
        return "worker" in self.roles


@dataclass(frozen=True)
class InstallPlan:
    """How k3s gets onto a node (from `kubernetes.install`, the version and the node's facts)."""

    mode: str = "online"
    version: str = K3S_VERSION
    bin_dir: str = DEFAULT_BIN_DIR
    architecture: str = "amd64"
    airgap: AirgapArtifacts | None = None
    install_script_sha256: str = INSTALL_SCRIPT_SHA256[K3S_VERSION]

    @property
    def k3s_bin(self) -> str:
        return f"{self.bin_dir}/k3s"


@dataclass(frozen=True)
class Timeouts:
    ready: int = 300
    drain: int = 300


@dataclass(frozen=True)
class ApiAddress:
    """Where clients reach the API: `name` (a DNS name or VIP in front of the servers) when there is one,
    else the first server's address."""

    first_server: str
    port: int = 6443
    name: str | None = None

    @property
    def host(self) -> str:
        return self.name or self.first_server

    @property
    def url(self) -> str:
        return https_url(self.host, self.port)



def bin_dir_for(facts: Mapping[str, Any]) -> str:
    """`/opt/bin` where `/usr` is read-only (Fedora CoreOS, Flatcar), else `/usr/local/bin`."""
    return READ_ONLY_USR_BIN_DIR if facts.get("usr_read_only") else DEFAULT_BIN_DIR


def install_script_url(version: str) -> str:
    """k3s's install.sh at the release tag (`+` escaped in the path)."""
    return f"https://raw.githubusercontent.com/k3s-io/k3s/{quote(version, safe='')}/install.sh"


def upload_paths(airgap: AirgapArtifacts, architecture: str) -> tuple[str, str]:
    """Where CopyToRemote puts the airgap binary and images on the node: the recipe's upload directory, each
    file named by its sha256 (another artifact is another path, so it is copied; the node checks it again)."""
    return (f"{UPLOAD_DIR}/{airgap.binary.sha256}-k3s",
            f"{UPLOAD_DIR}/{airgap.images.sha256}-k3s-airgap-images-{architecture}.tar.zst")


def images_file(architecture: str) -> str:
    return f"{IMAGES_DIR}/k3s-airgap-images-{architecture}.tar.zst"


# --- config.yaml --------------------------------------------------------------------------------------
def _labels_and_taints(node: NodePlan) -> dict[str, list[str]]:
    labels = sorted(f"{LABEL_PREFIX}/{role}=true" for role in node.roles if role in ROLES)
    data: dict[str, list[str]] = {"node-label": labels}
    if not node.schedulable:
        data["node-taint"] = [CONTROL_PLANE_TAINT]
    return data


def _node_identity(node: NodePlan, settings: ClusterSettings) -> dict[str, Any]:
    data: dict[str, Any] = {"node-name": node.name, "prefer-bundled-bin": settings.prefer_bundled_bin,
                            **_labels_and_taints(node)}
    if is_ip(node.address):
        data["node-ip"] = node.address
    if settings.flannel_iface:
        data["flannel-iface"] = settings.flannel_iface
    return data


def server_config(node: NodePlan, settings: ClusterSettings, api: ApiAddress,
                  datastore_endpoints: Sequence[str]) -> dict[str, Any]:
    """The server's config.yaml as data. Token and datastore key material are files (stdin, 0600)."""
    data = {
        **_node_identity(node, settings),
        "tls-san": sorted({node.name, node.address, *([api.name] if api.name else [])}),
        "https-listen-port": api.port,
        "write-kubeconfig-mode": "0600",
        "token-file": f"{SECRETS_DIR}/token",
        "agent-token-file": f"{SECRETS_DIR}/agent-token",
        "datastore-endpoint": ",".join(datastore_endpoints),
        "datastore-cafile": f"{SECRETS_DIR}/datastore-ca.crt",
        "datastore-certfile": f"{SECRETS_DIR}/datastore-client.crt",
        "datastore-keyfile": f"{SECRETS_DIR}/datastore-client.key",
        "cluster-cidr": settings.cluster_cidr,
        "service-cidr": settings.service_cidr,
        "cluster-dns": settings.cluster_dns,
        "cluster-domain": settings.cluster_domain,
        "flannel-backend": settings.flannel_backend,
        "secrets-encryption": settings.secrets_encryption,
    }
    if settings.disable:
        data["disable"] = sorted(settings.disable)
    return data


def agent_config(node: NodePlan, settings: ClusterSettings, api: ApiAddress) -> dict[str, Any]:
    return {
        **_node_identity(node, settings),
        "server": api.url,
        "token-file": f"{SECRETS_DIR}/agent-token",
    }


def config_yaml(data: Mapping[str, Any]) -> str:
    return "# Written by cluster-cookbook (the kubernetes recipe); changes here are overwritten.\n" + \
        yaml.safe_dump(dict(data), sort_keys=True, default_flow_style=False)


# --- units and scripts --------------------------------------------------------------------------------
def render_unit(role: str, bin_dir: str) -> str:
    return string.Template(template("kubernetes/k3s.service")).substitute(
        role=role, service=SERVICES[role], bin_dir=bin_dir).rstrip("\n") + "\n"


def secret_bundle(files: Mapping[str, str]) -> str:
    """The node step's stdin: each file as a `==> NAME <==` line followed by its content."""
    return "".join(f"==> {name} <==\n{(content or '').rstrip(chr(10))}\n" for name, content in files.items())


def _stdin_files(node: NodePlan, ca: str) -> dict[str, tuple[str, ...]]:
    server = node.role == "server"
    return {"SECRET_FILES": SERVER_SECRET_FILES if server else AGENT_SECRET_FILES,
            "CA_FILES": CA_FILES if server and ca == "cookbook" else (),
            "TRANSIENT_FILES": () if server else AGENT_TRANSIENT_FILES}


def _role_metadata(node: NodePlan) -> dict[str, ShellValue]:
    return {"LABELS_WANTED": tuple(f"{LABEL_PREFIX}/{role}" for role in ROLES if role in node.roles),
            "LABELS_UNWANTED": tuple(f"{LABEL_PREFIX}/{role}" for role in ROLES if role not in node.roles),
            "CONTROL_PLANE_TAINT": CONTROL_PLANE_TAINT, "TAINTED": not node.schedulable}


def _immutable(config: Mapping[str, Any]) -> dict[str, ShellValue]:
    present = [(name, key) for name, key in IMMUTABLE_SETTINGS if name in config]
    return {"IMMUTABLE_NAMES": tuple(name for name, _ in present), "IMMUTABLE_KEYS": tuple(key for _, key in present),
            "IMMUTABLE_VALUES": tuple(str(config[name]) for name, _ in present)}


def render_node_script(node: NodePlan, install: InstallPlan, config: Mapping[str, Any],
                       timeouts: Timeouts = Timeouts(), wireguard: bool = False, ca: str = "cookbook",
                       print_kubeconfig_digest: bool = False) -> str:
    """The one step that installs, configures and (only when its state says so) restarts k3s on a node.
    `ca`: kubernetes.ca (a server in cookbook mode receives the cluster's CAs); `print_kubeconfig_digest`: the
    first server in k3s mode prints the digest of k3s's admin kubeconfig (the admin step re-reads it)."""
    role = node.role
    airgap = install.airgap if install.mode == "airgap" else None
    binary_upload, images_upload = upload_paths(airgap, install.architecture) if airgap else ("", "")
    return render_script(
        ["shared/common.sh", "shared/files.sh", "kubernetes/common.sh", "kubernetes/steps.sh",
         "kubernetes/install.sh", "kubernetes/node.sh"],
        {
            "NODE_NAME": node.name,
            "ROLE": role,
            "SERVICE": SERVICES[role],
            "OTHER_SERVICE": SERVICES["agent" if role == "server" else "server"],
            "K3S_VERSION": install.version,
            "INSTALL_MODE": install.mode,
            "ARCH": install.architecture,
            "BIN_DIR": install.bin_dir,
            "K3S_BIN": install.k3s_bin,
            "BINARY_UPLOAD": binary_upload,
            "BINARY_SHA256": airgap.binary.sha256 if airgap else "",
            "IMAGES_UPLOAD": images_upload,
            "IMAGES_SHA256": airgap.images.sha256 if airgap else "",
            "IMAGES_FILE": images_file(install.architecture) if airgap else "",
            "UPLOAD_DIR": UPLOAD_DIR,
            "INSTALL_SCRIPT_URL": install_script_url(install.version) if install.mode == "online" else "",
            "INSTALL_SCRIPT_SHA256": install.install_script_sha256 if install.mode == "online" else "",
            "CONFIG_FILE": CONFIG_FILE,
            "CONFIG_CONTENT": config_yaml(config).rstrip("\n"),
            "UNIT_CONTENT": render_unit(role, install.bin_dir).rstrip("\n"),
            "SECRETS_DIR": SECRETS_DIR,
            **_stdin_files(node, ca),
            "TLS_DIR": TLS_DIR,
            "STATE_DIR": STATE_DIR,
            "ADMIN_KUBECONFIG": ADMIN_KUBECONFIG,
            "NEEDS_WIREGUARD": wireguard,
            "READY_TIMEOUT": timeouts.ready,
            "DRAIN_TIMEOUT": timeouts.drain,
            **(_immutable(config) if role == "server" else _immutable({})),
            **_role_metadata(node),
            "PRINT_KUBECONFIG_DIGEST": print_kubeconfig_digest,
        },
    )


def render_delete_script(node: NodePlan, timeouts: Timeouts = Timeouts(), ca: str = "cookbook") -> str:
    """The node step's `delete`: drains the node, stops and disables k3s, deletes its Node object and removes
    what the step wrote. It needs no facts (k3s is looked up in /usr/local/bin and /opt/bin), so it changes only
    with the node's name, role and the timeouts."""
    role = node.role
    return render_script(
        ["shared/common.sh", "kubernetes/common.sh", "kubernetes/steps.sh", "kubernetes/delete.sh"],
        {
            "NODE_NAME": node.name,
            "ROLE": role,
            "SERVICE": SERVICES[role],
            "OTHER_SERVICE": SERVICES["agent" if role == "server" else "server"],
            "CONFIG_FILE": CONFIG_FILE,
            "SECRETS_DIR": SECRETS_DIR,
            **_stdin_files(node, ca),
            "STATE_DIR": STATE_DIR,
            "ADMIN_KUBECONFIG": ADMIN_KUBECONFIG,
            "READY_TIMEOUT": timeouts.ready,
            "DRAIN_TIMEOUT": timeouts.drain,
        },
    )


def render_upload_dir_script(owner: str) -> str:
    """Makes the airgap upload directory, owned by `owner` (the login user CopyToRemote connects as)."""
    return render_script(["shared/common.sh", "kubernetes/upload-dir.sh"],
                         {"UPLOAD_DIR": UPLOAD_DIR, "UPLOAD_OWNER": owner})


def render_admin_script(bin_dir: str, timeout: int) -> str:
    """Prints the admin kubeconfig k3s wrote on this server (once it exists); changes nothing."""
    return render_script(
        ["shared/common.sh", "kubernetes/common.sh", "kubernetes/admin.sh"],
        {"K3S_BIN": f"{bin_dir}/k3s", "ADMIN_KUBECONFIG": ADMIN_KUBECONFIG, "READY_TIMEOUT": timeout},
    )


def render_ready_script(bin_dir: str, nodes: Sequence[str], timeout: int) -> str:
    """The readiness gate: waits until the API answers and every configured node is Ready."""
    return render_script(
        ["shared/common.sh", "kubernetes/common.sh", "kubernetes/ready.sh"],
        {"K3S_BIN": f"{bin_dir}/k3s", "KUBECONFIG_FILE": ADMIN_KUBECONFIG, "EXPECTED_NODES": tuple(nodes),
         "READY_TIMEOUT": timeout},
    )


AGENT_KUBECONFIG = "/var/lib/rancher/k3s/agent/kubelet.kubeconfig"  # k3s agent: the kubelet's own credentials


def gate_params(node: str, other_servers: Mapping[str, str] | None = None, port: int = 6443) -> dict[str, ShellValue]:
    """Parameters of `kubernetes/gate.sh` (the control-plane health gate) for `node`; `other_servers`: the
    cluster's other servers, name -> address (their APIs stand in while this one is down)."""
    others = dict(sorted((other_servers or {}).items()))
    return {"KUBERNETES_GATE_NODE": node, "KUBERNETES_GATE_KUBECONFIG": ADMIN_KUBECONFIG,
            "KUBERNETES_GATE_SERVERS": tuple(others),
            "KUBERNETES_GATE_APIS": tuple(https_url(address, port) for address in others.values())}


def worker_gate_params(node: str) -> dict[str, ShellValue]:
    """Parameters of `kubernetes/worker-gate.sh` (the worker health gate) for `node`."""
    return {"KUBERNETES_WORKER_GATE_NODE": node, "KUBERNETES_WORKER_GATE_KUBECONFIG": AGENT_KUBECONFIG}


def _rendered_gate(params: Mapping[str, ShellValue], fragment: str) -> str:
    header = "\n".join(shell_assignment(name, value) for name, value in params.items())
    return f"{header}\n{template(fragment).rstrip(chr(10))}\n"


def render_control_plane_gate(node: str, other_servers: Mapping[str, str] | None = None, port: int = 6443) -> str:
    """The control-plane health gate for the node layer's one-at-a-time reboots, rendered: its parameter
    assignments, then the definition of `kubernetes_control_plane_gate` (a one-shot check, see
    components/nodes/gates.py): 0 when the API answers /readyz (this server's or another's), this node is Ready
    with a status reported since this boot and every other registered server is Ready, or when no k3s server is
    set up on the node yet; 1 (saying what it waits for) otherwise. It needs bash, coreutils and awk; `k3s` is
    looked up in /usr/local/bin and /opt/bin."""
    return _rendered_gate(gate_params(node, other_servers, port), "kubernetes/gate.sh")


def render_worker_gate(node: str) -> str:
    """The worker health gate, rendered like `render_control_plane_gate`: `kubernetes_worker_gate` is 0 when
    this node is Ready with a status its kubelet reported since this boot (asked with the node's own kubelet
    credentials), or when no k3s agent is set up on the node yet."""
    return _rendered_gate(worker_gate_params(node), "kubernetes/worker-gate.sh")


# --- kubeconfig ---------------------------------------------------------------------------------------
KUBECONFIG_MARKER = "COOKBOOK_KUBECONFIG"


def printed_kubeconfig(stdout: str) -> str:
    """The kubeconfig the admin step printed (base64 after `COOKBOOK_KUBECONFIG=`)."""
    encoded = parse_marker(stdout, KUBECONFIG_MARKER)
    if not encoded:
        raise ValueError("the admin step printed no kubeconfig")
    return base64.b64decode(encoded).decode()


def admin_kubeconfig(name: str, server_url: str, ca_cert_pem: str, client_cert_pem: str,
                     client_key_pem: str) -> str:
    """The admin kubeconfig of a cluster whose server CA is `ca_cert_pem`, with the client certificate the
    stack issued (O=system:masters); cluster, user and context named `name`. Built as data, serialised sorted."""

    def data(pem: str) -> str:
        return base64.b64encode(pem.encode()).decode()

    document = {
        "apiVersion": "v1",
        "kind": "Config",
        "preferences": {},
        "clusters": [{"name": name, "cluster": {"server": server_url,
                                                "certificate-authority-data": data(ca_cert_pem)}}],
        "users": [{"name": name, "user": {"client-certificate-data": data(client_cert_pem),
                                          "client-key-data": data(client_key_pem)}}],
        "contexts": [{"name": name, "context": {"cluster": name, "user": name}}],
        "current-context": name,
    }
    return yaml.safe_dump(document, sort_keys=True, default_flow_style=False)


def rewrite_kubeconfig(text: str, server_url: str, name: str) -> str:
    """The admin kubeconfig k3s wrote (server https://127.0.0.1:6443, everything named `default`) with the
    API address clients use and cluster, user and context named `name`; built as data, serialised sorted."""
    document = yaml.safe_load(text)
    if not isinstance(document, dict) or not document.get("clusters") or not document.get("users"):
        raise ValueError("the server's k3s.yaml is not a kubeconfig with a cluster and a user")
    cluster = dict(document["clusters"][0]["cluster"])
    cluster["server"] = server_url
    user = dict(document["users"][0]["user"])
    rewritten = {
        "apiVersion": "v1",
        "kind": "Config",
        "preferences": {},
        "clusters": [{"name": name, "cluster": cluster}],
        "users": [{"name": name, "user": user}],
        "contexts": [{"name": name, "context": {"cluster": name, "user": name}}],
        "current-context": name,
    }
    return yaml.safe_dump(rewritten, sort_keys=True, default_flow_style=False)


def parse_marker(stdout: str, marker: str) -> str:
    """The value of the last `marker=VALUE` line a step printed ('' when there is none)."""
    prefix = f"{marker}="
    for line in reversed(stdout.splitlines()):
        if line.startswith(prefix):
            return line[len(prefix):].strip()
    return ""
