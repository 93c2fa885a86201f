"""cluster-cookbook's policy rules as pure functions: (resource type, properties) in, violation messages out.

`policy/__main__.py` only assembles them into a CrossGuard `PolicyPack`; tests call them directly and through
`validate_resource` / `validate_stack` with objects shaped like pulumi-policy's validation args.
Properties are the engine's view of a resource: Kubernetes fields in camelCase, as in a manifest.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

# Example credentials from AWS's documentation and test suites, and well-known default logins: never real.
EXAMPLE_CREDENTIALS = (
    "AKIAIOSFODNN7EXAMPLE", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
    "AKIAI44QH8DHBEXAMPLE", "je7MtGbClwBF/2Zp9Utk/h3yCo8nvbEXAMPLEKEY",
    "AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
    "minioadmin",
)
_POD_SPEC_PATH = {
    "Pod": ("spec",),
    "Deployment": ("spec", "template", "spec"),
    "StatefulSet": ("spec", "template", "spec"),
    "DaemonSet": ("spec", "template", "spec"),
    "ReplicaSet": ("spec", "template", "spec"),
    "ReplicationController": ("spec", "template", "spec"),
    "Job": ("spec", "template", "spec"),
    "CronJob": ("spec", "jobTemplate", "spec", "template", "spec"),
}
_SECRET_NAME = re.compile(r"(?i)(passw(or)?d|secret|token|private[-_.]?key|credential|access[-_.]?key|"
                          r"s3cfg|kubeconfig|\.pem$|\.key$)")
_SECRET_TEXT = (
    re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----"),
    re.compile(r"(?im)^\s*[\"']?(secret[_-]?key|aws_secret_access_key|password|passwd|token)[\"']?\s*[:=]\s*\S+"),
)


@dataclass(frozen=True)
class PolicyConfig:
    """`host_access_allow_list`: workloads ("namespace/name") that may use privileged mode, hostPath volumes
    or the host's network/PID/IPC namespaces (a CNI or storage driver, say)."""

    host_access_allow_list: tuple[str, ...] = ()

    @staticmethod
    def from_mapping(raw: Mapping[str, Any] | None) -> PolicyConfig:
        allow = (raw or {}).get("host_access_allow_list") or ()
        return PolicyConfig(host_access_allow_list=tuple(str(item) for item in allow))


def kind_of(resource_type: str) -> str | None:
    """`kubernetes:apps/v1:StatefulSet` -> `StatefulSet`; None for anything not a Kubernetes object."""
    parts = resource_type.split(":")
    if len(parts) != 3 or parts[0] != "kubernetes" or "/" not in parts[1]:
        return None
    return parts[2]


def _get(mapping: Any, path: Iterable[str]) -> Any:
    for key in path:
        if not isinstance(mapping, Mapping):
            return None
        mapping = mapping.get(key)
    return mapping


def object_name(props: Mapping[str, Any]) -> str:
    metadata = props.get("metadata") or {}
    return f"{metadata.get('namespace') or 'default'}/{metadata.get('name') or '<generated>'}"


def pod_spec(resource_type: str, props: Mapping[str, Any]) -> Mapping[str, Any] | None:
    kind = kind_of(resource_type)
    spec = _get(props, _POD_SPEC_PATH[kind]) if kind in _POD_SPEC_PATH else None
    return spec if isinstance(spec, Mapping) else None


def containers(spec: Mapping[str, Any]) -> Iterator[tuple[str, Mapping[str, Any]]]:
    """(`containers[0] name`-like label, container) for regular, init and ephemeral containers."""
    for section in ("initContainers", "containers", "ephemeralContainers"):
        for index, container in enumerate(spec.get(section) or []):
            if isinstance(container, Mapping):
                yield f"{section}[{index}] {container.get('name', '?')!r}", container


def image_problem(image: Any) -> str | None:
    """Why an image reference is not pinned: no tag and no digest, or the moving `latest` tag."""
    if not isinstance(image, str) or not image:
        return "has no image"
    if "@sha256:" in image:
        return None
    last = image.rsplit("/", 1)[-1]
    if ":" not in last:
        return f"image {image!r} has no tag: pin a version (e.g. {image}:1.2.3) or a digest"
    if last.rsplit(":", 1)[1] == "latest":
        return f"image {image!r} uses the moving tag 'latest': pin a version or a digest"
    return None


def images_pinned(resource_type: str, props: Mapping[str, Any]) -> list[str]:
    spec = pod_spec(resource_type, props)
    if spec is None:
        return []
    return [f"{object_name(props)} {label}: {problem}" for label, container in containers(spec)
            if (problem := image_problem(container.get("image"))) is not None]


def no_host_access(resource_type: str, props: Mapping[str, Any], config: PolicyConfig = PolicyConfig()) -> list[str]:
    spec = pod_spec(resource_type, props)
    name = object_name(props)
    if spec is None or name in config.host_access_allow_list:
        return []
    found = [f"{name}: uses the host's {field[4:]} namespace ({field}: true)"
             for field in ("hostNetwork", "hostPID", "hostIPC") if spec.get(field) is True]
    found += [f"{name}: volume {volume.get('name')!r} mounts a hostPath"
              for volume in spec.get("volumes") or [] if isinstance(volume, Mapping) and volume.get("hostPath")]
    found += [f"{name} {label}: runs privileged" for label, container in containers(spec)
              if _get(container, ("securityContext", "privileged")) is True]
    if found:
        found.append(f"(add {name!r} to the policy config's host_access_allow_list if this is intended)")
    return found


def resources_limited(resource_type: str, props: Mapping[str, Any]) -> list[str]:
    spec = pod_spec(resource_type, props)
    if spec is None:
        return []
    found = []
    for label, container in containers(spec):
        if label.startswith("ephemeralContainers"):
            continue  # the API forbids resources on ephemeral containers
        missing = [f"{section}.{resource}" for section in ("requests", "limits") for resource in ("cpu", "memory")
                   if not _get(container, ("resources", section, resource))]
        if missing:
            found.append(f"{object_name(props)} {label}: no {', '.join(missing)}")
    return found


def strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, Mapping):
        for key, item in value.items():
            yield str(key)
            yield from strings(item)
    elif isinstance(value, list | tuple):
        for item in value:
            yield from strings(item)


def _decoded_secret_data(resource_type: str, props: Mapping[str, Any]) -> Iterator[str]:
    if kind_of(resource_type) not in ("Secret",):
        return
    for value in (props.get("data") or {}).values():
        try:
            yield base64.b64decode(str(value), validate=True).decode("utf-8", errors="replace")
        except (binascii.Error, ValueError):
            continue


def no_example_credentials(resource_type: str, props: Mapping[str, Any]) -> list[str]:
    """Any resource whose inputs hold a documentation/default credential (also inside Secret `data`)."""
    texts = [*strings(props), *_decoded_secret_data(resource_type, props)]
    found = sorted({credential for credential in EXAMPLE_CREDENTIALS if any(credential in t for t in texts)})
    return [f"{resource_type} holds the well-known example credential {credential[:6]}...: "
            "generate real keys (pulumi-random) instead" for credential in found]


def no_secrets_in_configmaps(resource_type: str, props: Mapping[str, Any]) -> list[str]:
    if kind_of(resource_type) != "ConfigMap":
        return []
    name = object_name(props)
    found = []
    for section in ("data", "binaryData"):
        for key, value in sorted((props.get(section) or {}).items()):
            if _SECRET_NAME.search(str(key)):
                found.append(f"{name}: {section} key {key!r} looks like a secret: use a Secret")
            elif section == "data" and any(pattern.search(str(value)) for pattern in _SECRET_TEXT):
                found.append(f"{name}: {section} key {key!r} holds a password or private key: use a Secret")
    return found


def _labels_match(selector: Mapping[str, Any], labels: Mapping[str, Any]) -> bool:
    match = selector.get("matchLabels") or {}
    return bool(match) and all(labels.get(key) == value for key, value in match.items())


def replicated_statefulsets_have_pdb(resources: Iterable[tuple[str, Mapping[str, Any]]]) -> list[str]:
    """Every StatefulSet with more than one replica is covered by a PodDisruptionBudget in its namespace."""
    items = list(resources)
    budgets = [(_get(props, ("metadata", "namespace")) or "default", _get(props, ("spec", "selector")) or {})
               for resource_type, props in items if kind_of(resource_type) == "PodDisruptionBudget"]
    found = []
    for resource_type, props in items:
        if kind_of(resource_type) != "StatefulSet":
            continue
        replicas = _get(props, ("spec", "replicas"))
        if not isinstance(replicas, int | float) or replicas <= 1:
            continue
        namespace = _get(props, ("metadata", "namespace")) or "default"
        labels = _get(props, ("spec", "template", "metadata", "labels")) or {}
        if not any(ns == namespace and _labels_match(selector, labels) for ns, selector in budgets):
            found.append(f"StatefulSet {object_name(props)} runs {int(replicas)} replicas but no "
                         "PodDisruptionBudget selects its pods: a node drain could stop several at once")
    return found


ResourceRule = Callable[[str, Mapping[str, Any], PolicyConfig], list[str]]


@dataclass(frozen=True)
class Rule:
    name: str
    description: str
    check: ResourceRule


RESOURCE_RULES = (
    Rule("kubernetes-images-pinned", "Container images carry a version tag or digest, never 'latest'.",
         lambda t, p, _c: images_pinned(t, p)),
    Rule("kubernetes-no-host-access",
         "No privileged containers, hostPath volumes or host network/PID/IPC unless allow-listed.",
         no_host_access),
    Rule("kubernetes-resources-limited", "Every container requests and limits CPU and memory.",
         lambda t, p, _c: resources_limited(t, p)),
    Rule("no-example-credentials", "No well-known example or default credentials in any resource input.",
         lambda t, p, _c: no_example_credentials(t, p)),
    Rule("kubernetes-no-secrets-in-configmaps", "Passwords, keys and tokens live in Secrets, not ConfigMaps.",
         lambda t, p, _c: no_secrets_in_configmaps(t, p)),
)
STACK_RULE_NAME = "kubernetes-statefulset-pdb"
STACK_RULE_DESCRIPTION = "Every replicated StatefulSet has a PodDisruptionBudget."
CONFIG_SCHEMA = {"host_access_allow_list": {"type": "array", "items": {"type": "string"}, "default": []}}


def validate_resource(rule: Rule) -> Callable[[Any, Callable[..., None]], None]:
    """A `ResourceValidationPolicy` validate function running `rule` (args: resource_type, props, get_config)."""

    def validate(args: Any, report_violation: Callable[..., None]) -> None:
        config = PolicyConfig.from_mapping(args.get_config())
        for message in rule.check(args.resource_type, args.props, config):
            report_violation(message)

    return validate


def validate_stack(args: Any, report_violation: Callable[..., None]) -> None:
    """A `StackValidationPolicy` validate function (args.resources with resource_type and props)."""
    for message in replicated_statefulsets_have_pdb((r.resource_type, r.props) for r in args.resources):
        report_violation(message)


def all_violations(resources: Iterable[tuple[str, Mapping[str, Any]]],
                   config: PolicyConfig = PolicyConfig()) -> list[str]:
    """Every rule over every resource of a stack: what the pack would report, as `rule: message` lines."""
    items = list(resources)
    found = [f"{rule.name}: {message}" for resource_type, props in items for rule in RESOURCE_RULES
             for message in rule.check(resource_type, props, config)]
    return found + [f"{STACK_RULE_NAME}: {message}" for message in replicated_statefulsets_have_pdb(items)]
