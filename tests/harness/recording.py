"""Mocks for unit tests: record every resource and answer with plausible provider outputs."""

from __future__ import annotations

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
    "boot_id": "00000000-0000-0000-0000-000000000000", "reboot_scheduled": False,
}


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
        return {}, None

    def fake_outputs(self, typ: str, inputs: dict[str, Any]) -> dict[str, Any]:
        if typ.startswith("command:"):
            return {"stdout": f"COOKBOOK_FACTS={json.dumps(FAKE_FACTS)}", "stderr": ""}
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
