"""Shared ways to evaluate shipped stacks in unit tests (fake credentials, fixed environment)."""

from __future__ import annotations

from typing import Any

from tests.harness.program import load_stack_config, run_program
from tests.harness.recording import RecordingMocks

# A recognisable fake credential: tests assert it never appears outside a secret.
FAKE_PRIVATE_KEY = "-----BEGIN OPENSSH PRIVATE KEY-----\nFAKE-KEY-FOR-TESTS-ONLY\n-----END OPENSSH PRIVATE KEY-----\n"
# A kubeconfig for stacks that deploy onto Kubernetes (unused by the others); it carries the same marker.
FAKE_KUBECONFIG = """apiVersion: v1
kind: Config
clusters: [{name: fake, cluster: {server: "https://192.0.2.10:6443"}}]
users: [{name: fake, user: {token: FAKE-KEY-FOR-TESTS-ONLY}}]
contexts: [{name: fake, context: {cluster: fake, user: fake}}]
current-context: fake
"""
FAKE_SECRETS: dict[str, Any] = {"ssh_private_key": FAKE_PRIVATE_KEY, "kubeconfig": FAKE_KUBECONFIG}
# Cloud API credentials for stacks with a cloud section (the cloud providers read them from config).
FAKE_SECRETS |= {"cloud_api_key": "FAKE-KEY-FOR-TESTS-ONLY-api-key",
                 "cloud_api_secret": "FAKE-KEY-FOR-TESTS-ONLY-secret"}


def evaluate_stack(stack: str, extra: dict[str, Any] | None = None,
                   extra_secrets: dict[str, Any] | None = None) -> RecordingMocks:
    """Evaluates a shipped stack's config plus fake secrets (as secret config) under recording mocks."""
    secrets = {**FAKE_SECRETS, **(extra_secrets or {})}
    config = {**load_stack_config(stack), **secrets, **(extra or {})}
    mocks = RecordingMocks()
    run_program(mocks, config, stack=stack, secret_keys=list(secrets))
    return mocks
