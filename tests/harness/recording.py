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

from tests.harness.program import SECRET_SIG, Registration
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

# What a k3s server writes to /etc/rancher/k3s/k3s.yaml (shape of k3s v1.34), for steps that print it after
# KUBECONFIG_MARKER (base64); its key carries the fake-secret marker the secrecy tests look for.
KUBECONFIG_MARKER = "COOKBOOK_KUBECONFIG="
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
        if args.typ.startswith("random:"):
            outputs.update(fake_random(args.name, args.inputs))
        return (f"{args.name}-id" if registration.custom else None), outputs

    def call(self, args: pulumi.runtime.MockCallArgs) -> tuple[dict[str, Any], list[tuple[str, str]] | None]:
        return {}, []  # no failures (Pulumi's mock monitor iterates this list)

    def fake_outputs(self, typ: str, inputs: dict[str, Any]) -> dict[str, Any]:
        if typ.startswith("command:"):
            connection = unwrap_secrets(inputs.get("connection")) or {}
            facts = FAKE_AMD64_FACTS if connection.get("host") in AMD64_ADDRESSES else FAKE_FACTS
            stdout = f"COOKBOOK_FACTS={json.dumps(facts)}"
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
