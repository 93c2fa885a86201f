"""The README's object store section says what the code does: output names, config keys, protected URNs."""

from __future__ import annotations

import re
from typing import Any

import pytest

from components.shared.validation import Section
from components.stack import parse_stack_config
from tests.harness.program import ROOT
from tests.unit.store_support import STORE_STACK, evaluated


def store_section() -> str:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    start = text.index("## S3 object store")
    return text[start:text.index("\n## ", start + 1)]


def test_documented_outputs_are_the_exported_ones() -> None:
    sentence = re.search(r"Stack outputs \(`store`\):(.*?)\n\n", store_section(), re.S)
    assert sentence is not None
    documented = set(re.findall(r"`([a-z0-9_]+)`", sentence[1]))
    _, exports = evaluated(STORE_STACK)
    inner = {"tenant", "config"}  # `{tenant: {access_key, secret_key}}` and boto3's `config` describe shapes
    assert documented - inner == set(exports["store"])


def read_keys(monkeypatch: pytest.MonkeyPatch, raw: dict[str, Any]) -> set[str]:
    """Every config key path the parser reads for `raw` (Section.finish sees what was asked for)."""
    seen: set[str] = set()
    original = Section.finish

    def finish(self: Section) -> None:
        seen.update(f"{self.path}.{name}" for name in self._seen)
        original(self)

    monkeypatch.setattr(Section, "finish", finish)
    parse_stack_config(raw, {"kubeconfig", "registry_password"})
    return seen


def test_documented_config_keys_are_the_parsed_ones(monkeypatch: pytest.MonkeyPatch) -> None:
    table = re.findall(r"^\| `([a-z_.]+)` \|", store_section(), re.M)
    documented = {key for key in table if key.startswith("store.")}
    raw = {"kubeconfig": "k", "registry_password": "p",
           "store": {"pithos": {"build": {"registry": "r.test", "username": "me"}}}}
    parsed = {key for key in read_keys(monkeypatch, raw) if key.startswith("store.")}
    sections = {key for key in parsed if any(other.startswith(key + ".") for other in parsed)}
    assert documented == parsed - sections
    assert {"kubeconfig", "registry_password"} <= set(table)


def test_the_documented_unprotect_commands_name_the_protected_resources() -> None:
    urns = set(re.findall(r"pulumi state unprotect --stack s3-store '([^']+)'", store_section()))
    mocks, _ = evaluated(STORE_STACK)
    protected = {mocks.named(name).urn for name, options in mocks.options.items() if options.protect}
    assert urns == protected and len(urns) == 2
