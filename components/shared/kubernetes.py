"""A Kubernetes cluster to deploy onto, and the small Kubernetes vocabulary the recipes share.

`KubernetesTarget` wraps the one explicit `pulumi_kubernetes.Provider` a stack's workloads use: built from a
kubeconfig held in secret config, or (with `render_directory`) rendering manifests instead of applying them.
A cluster built in the same stack can hand its own Provider to the recipes instead; they only ever take a
Provider through `ResourceOptions(providers=...)`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import pulumi
import pulumi_kubernetes as kubernetes

_QUANTITY = re.compile(r"^(?P<number>[0-9]+(\.[0-9]+)?)(?P<suffix>Ki|Mi|Gi|Ti|Pi|k|M|G|T|P|m)?$")
_SUFFIX_FACTOR = {
    None: 1, "m": 0.001, "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12, "P": 10**15,
    "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50,
}
MEBIBYTE = 2**20


def quantity(text: str) -> float:
    """The value of a Kubernetes resource quantity such as `2Gi`, `500m` or `1.5`; ValueError otherwise."""
    match = _QUANTITY.match(text)
    if not match:
        raise ValueError(f"not a Kubernetes quantity: {text!r}")
    return float(match["number"]) * _SUFFIX_FACTOR[match["suffix"]]


def check_memory(value: str) -> str | None:
    """A memory quantity of at least 64Mi (a typo such as `2G` for `2Gi` is fine, `2` bytes is not)."""
    try:
        amount = quantity(value)
    except ValueError:
        return f"must be a memory quantity such as 512Mi or 2Gi, got {value!r}"
    return None if amount >= 64 * MEBIBYTE else f"must be at least 64Mi, got {value!r}"


def check_cpu(value: str) -> str | None:
    try:
        amount = quantity(value)
    except ValueError:
        return f"must be a CPU quantity such as 500m or 2, got {value!r}"
    if value.endswith(("Ki", "Mi", "Gi", "Ti", "Pi")) or amount < 0.001:
        return f"must be a CPU quantity such as 500m or 2, got {value!r}"
    return None


def check_storage(value: str) -> str | None:
    try:
        amount = quantity(value)
    except ValueError:
        return f"must be a storage quantity such as 10Gi, got {value!r}"
    return None if amount >= MEBIBYTE else f"must be at least 1Mi, got {value!r}"


def cpu_cores(value: str) -> int:
    """Whole cores a CPU quantity allows (at least one)."""
    return max(1, math.ceil(quantity(value)))


def resources(cpu_request: str, cpu_limit: str, memory: str) -> dict[str, dict[str, str]]:
    """Requests and limits; memory request equals its limit so a JVM sized from it is never OOM-killed early."""
    return {"requests": {"cpu": cpu_request, "memory": memory},
            "limits": {"cpu": cpu_limit, "memory": memory}}


def pod_security(uid: int) -> dict[str, Any]:
    """Pod-level settings meeting Pod Security "restricted" (so "baseline" too) for an image running as `uid`."""
    return {"run_as_non_root": True, "run_as_user": uid, "run_as_group": uid, "fs_group": uid,
            "seccomp_profile": {"type": "RuntimeDefault"}}


def container_security(uid: int, read_only_root: bool = False) -> dict[str, Any]:
    return {"allow_privilege_escalation": False, "privileged": False, "run_as_non_root": True,
            "run_as_user": uid, "run_as_group": uid, "read_only_root_filesystem": read_only_root,
            "capabilities": {"drop": ["ALL"]}}


def labels(app: str, instance: str, component: str) -> dict[str, str]:
    return {"app.kubernetes.io/name": app, "app.kubernetes.io/instance": instance,
            "app.kubernetes.io/component": component, "app.kubernetes.io/managed-by": "cluster-cookbook"}


def namespace_labels() -> Mapping[str, str]:
    """Pod Security admission: enforce "baseline", warn and audit against "restricted"."""
    return {"pod-security.kubernetes.io/enforce": "baseline",
            "pod-security.kubernetes.io/warn": "restricted",
            "pod-security.kubernetes.io/audit": "restricted"}


@dataclass(frozen=True)
class KubernetesTargetArgs:
    """Where manifests go: a cluster (kubeconfig text, optionally one of its contexts) or a render directory."""

    kubeconfig: pulumi.Input[str] | None = None
    context: str | None = None
    render_directory: str | None = None


class KubernetesTarget(pulumi.ComponentResource):
    """An explicit Kubernetes Provider; workloads never fall back to the ambient `~/.kube/config`."""

    TYPE: ClassVar[str] = "cookbook:kubernetes_target:Target"
    provider: kubernetes.Provider
    renders: bool

    def __init__(self, name: str, args: KubernetesTargetArgs, opts: pulumi.ResourceOptions | None = None):
        if args.kubeconfig is None and args.render_directory is None:
            raise ValueError("kubeconfig: a kubeconfig (as a secret) is required unless render_directory is set")
        super().__init__(self.TYPE, name, None, opts)
        self.renders = args.render_directory is not None
        self.provider = kubernetes.Provider(
            f"{name}-provider",
            kubeconfig=None if args.kubeconfig is None else pulumi.Output.secret(args.kubeconfig),
            context=args.context,
            render_yaml_to_directory=args.render_directory,
            opts=pulumi.ResourceOptions(parent=self, additional_secret_outputs=["kubeconfig"]),
        )
        self.register_outputs({"renders": self.renders})
