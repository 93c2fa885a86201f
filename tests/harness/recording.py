"""Mocks for unit tests: record every resource and answer with plausible provider outputs."""

from __future__ import annotations

import base64
import hashlib
import json
import string
import threading
from dataclasses import dataclass, field
from typing import Any

import pulumi

from tests.harness.program import SECRET_SIG, Registration, secret
from tools.offline import unwrap_secrets

FAKE_FACTS = {
    "architecture": "arm64", "os_id": "debian", "os_version_id": "12",
    "os_pretty_name": "Debian GNU/Linux 12 (bookworm)", "is_pi": True, "model": "Raspberry Pi 4 Model B",
    "memory_cgroup": True, "cgroup_version": 2, "kernel": "6.6.51+rpt-rpi-v8", "missing_kernel_modules": [],
    "wireguard": True, "usr_read_only": False, "boot_id": "00000000-0000-0000-0000-000000000000",
    "reboot_scheduled": False,
}

# amd64 servers, not Pis: the nodes of stacks/Pulumi.mesos.yaml (Mesos refuses any other architecture). Their
# prepare steps report these facts; every other host reports FAKE_FACTS.
AMD64_ADDRESSES = frozenset({"192.168.20.11", "192.168.20.12", "192.168.20.13", "192.168.20.21", "192.168.20.22"})
FAKE_AMD64_FACTS = {**FAKE_FACTS, "architecture": "amd64", "is_pi": False, "model": "", "kernel": "6.1.0-28-amd64"}

# Cloud VMs (the cloud recipe's `pulumi-python:dynamic/cloud:Node`) get an address in 198.18.0.0/16 derived from
# their name; their steps report the facts of a Flatcar VM (amd64, read-only /usr, no apt).
FAKE_CLOUD_NETWORK = "198.18."
FAKE_COREOS_FACTS = {**FAKE_AMD64_FACTS, "os_id": "flatcar", "os_version_id": "4152.2.3",
                     "os_pretty_name": "Flatcar Container Linux by Kinvolk 4152.2.3 (Oklo)",
                     "kernel": "6.6.95-flatcar", "usr_read_only": True}


def fake_cloud_address(name: str) -> str:
    digest = hashlib.sha256(name.encode()).digest()
    return f"{FAKE_CLOUD_NETWORK}{digest[0]}.{digest[1] % 254 + 1}"


def fake_ed25519(name: str) -> dict[str, Any]:
    """A pulumi-tls ED25519 PrivateKey's SSH outputs, derived from the resource name: a real key, and the same
    text in every run (OpenSSH's private key format has a random check number; here it comes from the name)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    seed = hashlib.sha256(name.encode()).digest()
    public = Ed25519PrivateKey.from_private_bytes(seed).public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw)

    def string(data: bytes) -> bytes:
        return len(data).to_bytes(4, "big") + data

    public_blob = string(b"ssh-ed25519") + string(public)
    check = seed[:4]
    private = check + check + public_blob + string(seed + public) + string(b"")
    private += bytes(range(1, 1 + (-len(private)) % 8))  # padding to the cipher block size (8 for "none")
    blob = (b"openssh-key-v1\0" + string(b"none") + string(b"none") + string(b"") + (1).to_bytes(4, "big")
            + string(public_blob) + string(private))
    encoded = base64.b64encode(blob).decode()
    lines = [encoded[i:i + 70] for i in range(0, len(encoded), 70)]
    text = "-----BEGIN OPENSSH PRIVATE KEY-----\n" + "\n".join(lines) + "\n-----END OPENSSH PRIVATE KEY-----\n"
    return {"privateKeyOpenssh": text,
            "publicKeyOpenssh": f"ssh-ed25519 {base64.b64encode(public_blob).decode()}\n"}

# What a k3s server writes to /etc/rancher/k3s/k3s.yaml (shape of k3s v1.34), for steps that print it after
# KUBECONFIG_MARKER (base64); its key carries the fake-secret marker the secrecy tests look for.
KUBECONFIG_MARKER = "COOKBOOK_KUBECONFIG="
ETCD_TARBALL_MARKER = "COOKBOOK_ETCD_TARBALL_SHA256="  # components/etcd/render.py DOWNLOADED_MARKER
FAKE_K3S_KUBECONFIG = """apiVersion: v1
clusters:
- cluster:
    certificate-authority-data: RkFLRS1DQQ==
    server: https://127.0.0.1:6443
  name: default
contexts:
- context:
    cluster: default
    user: default
  name: default
current-context: default
kind: Config
preferences: {}
users:
- name: default
  user:
    client-certificate-data: RkFLRS1DRVJU
    client-key-data: FAKE-KEY-FOR-TESTS-ONLY
"""


@dataclass(frozen=True)
class Recorded:
    registration: Registration
    inputs: dict[str, Any]  # resolved values, secrets unwrapped

    @property
    def type(self) -> str:
        return self.registration.type

    @property
    def name(self) -> str:
        return self.registration.name

    @property
    def urn(self) -> str:
        return self.registration.urn

    @property
    def parent(self) -> str | None:
        return self.registration.parent


@dataclass
class RecordingMocks(pulumi.runtime.Mocks):
    registrations: dict[str, Registration] = field(default_factory=dict)
    resources: list[Recorded] = field(default_factory=list)
    generated_secrets: list[str] = field(default_factory=list)  # fake random results: must never be plain
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, registration: Registration) -> None:
        with self._lock:
            self.registrations[registration.name + "|" + registration.type] = registration

    def remember(self, args: pulumi.runtime.MockResourceArgs) -> Registration:
        """Records the resource with its resolved inputs; returns what its registration told the engine."""
        with self._lock:
            registration = self.registrations[args.name + "|" + args.typ]
            self.resources.append(Recorded(registration, unwrap_secrets(dict(args.inputs))))
        return registration

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str | None, dict[str, Any]]:
        registration = self.remember(args)
        outputs = dict(args.inputs)  # secret markers kept, so secret inputs stay secret outputs
        outputs.update(self.fake_outputs(args.typ, args.inputs))
        if args.typ == "tls:index/privateKey:PrivateKey" and args.inputs.get("algorithm") == "ED25519":
            outputs.update(fake_ed25519(args.name))  # an SSH host key (the cloud recipe's): valid and stable
        if args.typ == "pulumi-python:dynamic/cloud:Node":
            address = fake_cloud_address(args.name)
            outputs.update({"vm_id": f"{args.name}-vm", "state": "Running", "address": address,
                            "public_ips": [address], "private_ips": []})
        if args.typ.startswith("random:"):
            generated = fake_random(args.name, args.inputs)
            with self._lock:
                self.generated_secrets.append(generated["result"])
            outputs.update(generated)
        return (f"{args.name}-id" if registration.custom else None), mark_secret_outputs(outputs, registration)

    def call(self, args: pulumi.runtime.MockCallArgs) -> tuple[dict[str, Any], list[tuple[str, str]] | None]:
        return {}, []  # no failures (Pulumi's mock monitor iterates this list)

    def fake_outputs(self, typ: str, inputs: dict[str, Any]) -> dict[str, Any]:
        if typ.startswith("command:"):
            connection = unwrap_secrets(inputs.get("connection")) or {}
            facts = FAKE_AMD64_FACTS if connection.get("host") in AMD64_ADDRESSES else FAKE_FACTS
            if str(connection.get("host")).startswith(FAKE_CLOUD_NETWORK):
                facts = FAKE_COREOS_FACTS
            stdout = f"COOKBOOK_FACTS={json.dumps(facts)}"
            create = str(unwrap_secrets(inputs.get("create")))
            if ETCD_TARBALL_MARKER in create:  # etcd's download step: the sha256 of the tarball it fetched
                stdout += f"\n{ETCD_TARBALL_MARKER}{hashlib.sha256(create.encode()).hexdigest()}"
            if KUBECONFIG_MARKER in str(unwrap_secrets(inputs.get("create"))):  # a step printing k3s's kubeconfig
                stdout += f"\n{KUBECONFIG_MARKER}{base64.b64encode(FAKE_K3S_KUBECONFIG.encode()).decode()}"
            return {"stdout": stdout, "stderr": ""}
        if typ == "docker-build:index:Image" and inputs.get("push"):
            # `ref` after a push: "a single fully-qualified tag including the build's digest" (the resource's
            # documented output); the digest here is derived from the inputs.
            plain = unwrap_secrets(inputs)
            digest = hashlib.sha256(json.dumps(plain, sort_keys=True, default=str).encode()).hexdigest()
            return {"ref": f"{plain['tags'][0]}@sha256:{digest}"}
        return {}

    def of_type(self, typ: str) -> list[Recorded]:
        return [r for r in self.resources if r.type == typ]

    def named(self, name: str) -> Recorded:
        matches = [r for r in self.resources if r.name == name]
        assert len(matches) == 1, f"expected one resource named {name!r}, found {len(matches)}"
        return matches[0]


def waits_for(mocks: RecordingMocks) -> dict[str, set[str]]:
    """Per resource name: every resource it waits for, directly or through others. Waiting for a component
    means waiting for everything under it (the SDK expands a component in `depends_on` to its children)."""
    by_urn = {r.urn: r for r in mocks.resources}
    children: dict[str, list[str]] = {}
    for r in mocks.resources:
        if r.parent in by_urn:
            children.setdefault(r.parent, []).append(r.urn)
    done: dict[str, set[str]] = {}

    def under(urn: str) -> set[str]:
        return {urn}.union(*(under(child) for child in children.get(urn, [])))

    def reach(urn: str) -> set[str]:
        if urn not in done:
            done[urn] = set()  # a cycle would show up as a missing dependency, never as a hang
            found: set[str] = set()
            for dependency in by_urn[urn].registration.dependencies:
                for waited in under(dependency) if dependency in by_urn else ():
                    found |= {waited} | reach(waited)
            done[urn] = found
        return done[urn]

    return {by_urn[urn].name: {by_urn[d].name for d in reach(urn)} for urn in by_urn}


def mark_secret_outputs(outputs: dict[str, Any], registration: Registration) -> dict[str, Any]:
    """The engine wraps the outputs a registration names in `additionalSecretOutputs` as secrets (SDKs such as
    pulumi-random's mark `result` that way); mocks must too, or a leak of such a value would look harmless."""
    marked = dict(outputs)
    for key in registration.additional_secret_outputs:
        if key in marked and not (isinstance(marked[key], dict) and SECRET_SIG in marked[key]):
            marked[key] = secret(marked[key])
    return marked


def fake_random(name: str, inputs: dict[str, Any]) -> dict[str, Any]:
    """A stable, name-derived `result` honouring length and character classes (distinct per resource)."""
    alphabet = "".join(chars for flag, chars in (("upper", string.ascii_uppercase), ("lower", string.ascii_lowercase),
                                                 ("numeric", string.digits)) if inputs.get(flag, True))
    digest = hashlib.sha512(name.encode()).digest() * 4
    length = int(inputs.get("length", 16))
    return {"result": "".join(alphabet[byte % len(alphabet)] for byte in digest[:length])}


def plain_strings(raw: Any) -> list[str]:
    """Every string in wire-format inputs that is NOT inside a secret wrapper."""
    if isinstance(raw, dict):
        if SECRET_SIG in raw:
            return []
        return [text for value in raw.values() for text in plain_strings(value)]
    if isinstance(raw, list):
        return [text for value in raw for text in plain_strings(value)]
    return [raw] if isinstance(raw, str) else []
