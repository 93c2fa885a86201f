"""cluster-cookbook's policy rules as pure functions: a resource (type, properties, secret outputs) in, violation
messages out.

`policy/__main__.py` only assembles them into a CrossGuard `PolicyPack`; tests call them directly and through
`validate_resource` / `validate_stack` with objects shaped like pulumi-policy's validation args.
Properties are the engine's view of a resource's inputs: Kubernetes fields in camelCase as in a manifest,
pulumi-command and pulumi-docker fields in their wire names (`connection.privateKey`, `networkMode`).

Two facts about what a policy sees shape the rules (pulumi-policy 1.21, `pulumi_policy/policy.py`):
- During a preview, values computed from other resources are *unknown*. The SDK's property proxy raises on
  reading one; `plain` turns the proxies into plain data where an unknown stays a sentinel string, and every
  rule skips unknown values. The engine runs the pack again before each step of `pulumi up`, when those
  values are known, so nothing is waived for good.
- Secret values arrive unwrapped: a rule cannot tell a secret input from a plain one. So credentials are
  only allowed in the inputs built to carry them (`CREDENTIAL_CARRIERS`: stdin, the SSH connection's key
  fields, Kubernetes Secrets, the provider's kubeconfig, ...); that the program marks those secret is
  proved by the unit tests of the program's graph.
"""

from __future__ import annotations

import base64
import binascii
import fnmatch
import ipaddress
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import yaml

# Example credentials from AWS's documentation and test suites, and well-known default logins: never real.
EXAMPLE_CREDENTIALS = (
    "AKIAIOSFODNN7EXAMPLE", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
    "AKIAI44QH8DHBEXAMPLE", "je7MtGbClwBF/2Zp9Utk/h3yCo8nvbEXAMPLEKEY",
    "AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
    "minioadmin",
)
# The engine's placeholders for values not known during a preview (pulumi_policy/proxy.py).
UNKNOWN_VALUES = frozenset({
    "1c4a061d-8072-4f0a-a4cb-0ff528b18fe7", "3eeb2bf0-c639-47a8-9e75-3b44932eb421",
    "04da6b54-80e4-46f7-96ec-b56ff0331ba9", "6a19a0b0-7e62-4c92-b797-7f8e31da9cc2",
    "030794c1-ac77-496b-92df-f27374a8bd58", "e48ece36-62e2-4504-bad9-02848725956a",
    "dd056dcd-154b-4c76-9bd3-c8f88648b5ff",
})
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
_LONG_RUNNING = ("Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "ReplicationController")
_SECRET_NAME = re.compile(r"(?i)(passw(or)?d|secret|token|private[-_.]?key|credential|access[-_.]?key|"
                          r"s3cfg|kubeconfig|\.pem$|\.key$)")
_SECRET_TEXT = (
    re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----"),
    re.compile(r"(?im)^\s*[\"']?(secret[_-]?key|aws_secret_access_key|password|passwd|token)[\"']?\s*[:=]\s*\S+"),
)
COMMAND_TYPES = ("command:remote:Command", "command:local:Command")
SSH_TYPES = ("command:remote:Command", "command:remote:CopyToRemote", "command:remote:CopyFile")
DOCKER_CONTAINER = "docker:index/container:Container"
DOCKER_IMAGE = "docker:index/remoteImage:RemoteImage"


def is_unknown(value: Any) -> bool:
    return isinstance(value, str) and value in UNKNOWN_VALUES


def plain(value: Any) -> Any:
    """pulumi-policy's property proxies (which raise on reading an unknown value) as plain dicts and lists;
    unknown values stay as their sentinel strings. Plain data passes through unchanged."""
    if isinstance(value, Mapping):
        target = value
        if not isinstance(value, dict):
            try:
                target = value["__target"]  # the proxy's own data
            except KeyError:
                target = value
        return {str(key): plain(item) for key, item in target.items()}
    if isinstance(value, list | tuple):
        return [plain(item) for item in value]
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    try:  # a list proxy is a Sequence that is neither list nor tuple
        return [plain(item) for item in value["__target"]]
    except (KeyError, TypeError, IndexError):
        return value


@dataclass(frozen=True)
class Subject:
    """One resource as a rule sees it: its type, name, inputs and the outputs it asked to keep secret."""

    type: str
    props: Mapping[str, Any]
    name: str = ""
    secret_outputs: tuple[str, ...] = ()


# Docker containers whose job is the host's: the Mesos recipe's masters, Marathon and ZooKeeper listen on the
# host network; its agents run privileged in the host's PID namespace with the Docker socket (as Mesos needs).
# `*-mesos-agent-[0-9]*`: the local stack's Mesos agents (`<prefix>-mesos-agent-<n>`, local.mesos), which need the
# same of the local engine's host (its other Mesos containers are on the local network and need nothing).
HOST_ACCESS_CONTAINERS = ("cookbook-mesos-master", "cookbook-mesos-agent", "cookbook-marathon", "cookbook-zookeeper",
                          "*-mesos-agent-[0-9]*")


@dataclass(frozen=True)
class PolicyConfig:
    """`host_access_allow_list`: workloads ("namespace/name") that may use privileged mode, hostPath volumes,
    the host's network/PID/IPC namespaces or run as root (a CNI or storage driver, say).
    `privileged_image_allow_list`: image repositories whose Docker containers may run privileged (k3s in a
    container needs it, as k3d runs it). `privileged_container_allow_list`: Docker container names (globs)
    allowed the same, for containers whose image is referenced by ID. `host_access_container_allow_list`:
    Docker container names (globs) that may use the host's namespaces, the Docker socket and privileged mode."""

    host_access_allow_list: tuple[str, ...] = ()
    privileged_image_allow_list: tuple[str, ...] = ("rancher/k3s",)
    privileged_container_allow_list: tuple[str, ...] = ()
    host_access_container_allow_list: tuple[str, ...] = HOST_ACCESS_CONTAINERS

    @staticmethod
    def from_mapping(raw: Mapping[str, Any] | None) -> PolicyConfig:
        raw = raw or {}
        defaults = PolicyConfig()

        def items(key: str) -> tuple[str, ...]:
            value = raw.get(key)
            return tuple(str(item) for item in value) if value is not None else getattr(defaults, key)

        return PolicyConfig(host_access_allow_list=items("host_access_allow_list"),
                            privileged_image_allow_list=items("privileged_image_allow_list"),
                            privileged_container_allow_list=items("privileged_container_allow_list"),
                            host_access_container_allow_list=items("host_access_container_allow_list"))


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


def _text(value: Any) -> str | None:
    """A known, non-empty string, else None."""
    return value if isinstance(value, str) and value and not is_unknown(value) else None


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
        entries = spec.get(section)
        for index, container in enumerate(entries if isinstance(entries, list) else []):
            if isinstance(container, Mapping):
                yield f"{section}[{index}] {container.get('name', '?')!r}", container


def image_problem(image: Any) -> str | None:
    """Why an image reference is not pinned: no tag and no digest, or the moving `latest` tag. An unknown
    image (during a preview) is judged when it is known."""
    if is_unknown(image):
        return None
    if not isinstance(image, str) or not image:
        return "has no image"
    if "@sha256:" in image or re.fullmatch(r"sha256:[0-9a-f]{64}", image):
        return None  # a digest, or an image ID: content-addressed
    last = image.rsplit("/", 1)[-1]
    if ":" not in last:
        return f"image {image!r} has no tag: pin a version (e.g. {image}:1.2.3) or a digest"
    if last.rsplit(":", 1)[1] == "latest":
        return f"image {image!r} uses the moving tag 'latest': pin a version or a digest"
    return None


def image_repository(image: str) -> str | None:
    """`docker.io/library/rancher/k3s:v1.31.4-k3s1` -> `rancher/k3s`; None for an image ID (`sha256:...`)."""
    if image.startswith("sha256:"):
        return None
    name = image.split("@", 1)[0]
    head, _, last = name.rpartition("/")
    name = f"{head}/{last.split(':', 1)[0]}" if head else last.split(":", 1)[0]
    for prefix in ("docker.io/", "index.docker.io/", "registry-1.docker.io/"):
        name = name.removeprefix(prefix)
    return name.removeprefix("library/")


# ---------------------------------------------------------------------------------------------- Kubernetes


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
    volumes = spec.get("volumes")
    found += [f"{name}: volume {volume.get('name')!r} mounts a hostPath"
              for volume in (volumes if isinstance(volumes, list) else [])
              if isinstance(volume, Mapping) and volume.get("hostPath")]
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


def runs_as_non_root(resource_type: str, props: Mapping[str, Any],
                     config: PolicyConfig = PolicyConfig()) -> list[str]:
    """Every container runs as a non-root user (its own or the pod's `runAsNonRoot: true`) and cannot gain
    privileges (`allowPrivilegeEscalation: false`); workloads allowed host access are exempt."""
    spec = pod_spec(resource_type, props)
    name = object_name(props)
    if spec is None or name in config.host_access_allow_list:
        return []
    pod_non_root = _get(spec, ("securityContext", "runAsNonRoot"))
    found = []
    for label, container in containers(spec):
        if label.startswith("ephemeralContainers"):
            continue  # debugging containers take the security context the debugger asks for
        own = _get(container, ("securityContext", "runAsNonRoot"))
        non_root = own if own is not None else pod_non_root
        if non_root is not True and not is_unknown(non_root):
            found.append(f"{name} {label}: may run as root (set securityContext.runAsNonRoot: true)")
        escalation = _get(container, ("securityContext", "allowPrivilegeEscalation"))
        if escalation is not False and not is_unknown(escalation):
            found.append(f"{name} {label}: may gain privileges (set allowPrivilegeEscalation: false)")
    return found


def readiness_probes(resource_type: str, props: Mapping[str, Any]) -> list[str]:
    """Containers of long-running workloads have a readiness probe: a rollout or a drain waits for it."""
    if kind_of(resource_type) not in _LONG_RUNNING:
        return []
    spec = pod_spec(resource_type, props)
    if spec is None:
        return []
    return [f"{object_name(props)} {label}: no readinessProbe (rollouts and drains cannot wait for it)"
            for label, container in containers(spec)
            if label.startswith("containers") and not container.get("readinessProbe")]


def strings(value: Any) -> Iterator[str]:
    """Every known string in a value, mapping keys included."""
    if isinstance(value, str):
        if not is_unknown(value):
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
    data = props.get("data")
    for value in (data.values() if isinstance(data, Mapping) else []):
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
        entries = props.get(section)
        for key, value in sorted((entries if isinstance(entries, Mapping) else {}).items()):
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


# ------------------------------------------------------------------------------------- endpoints (TLS only)

_URL = re.compile(r"(?P<scheme>[a-z][a-z0-9+.-]*)://(?P<host>\[[0-9a-fA-F:.]+\]|[^/\s:'\",;|)]+)(?::(?P<port>\d+))?")
_ETCD_PORTS = frozenset({"2379", "2380"})
_ETCD_SETTINGS = re.compile(
    r"(?i)(ETCD_(LISTEN|ADVERTISE|INITIAL_ADVERTISE)_(CLIENT|PEER)_URLS|ETCD_INITIAL_CLUSTER|ETCDCTL_ENDPOINTS|"
    r"--endpoints|--etcd-servers|datastore-endpoint|K3S_DATASTORE_ENDPOINT|(listen|advertise|initial-advertise)-"
    r"(client|peer)-urls|initial-cluster)(?=[\s\"']*[=:\s])[\s\"']*[=:\s][\s\"']*(?P<value>[^\s\"']+)")
_KUBE_PORTS = frozenset({"6443", "6444"})
_KUBE_SETTINGS = re.compile(r"(?i)(K3S_URL|KUBERNETES_MASTER|--server|--kube-apiserver|(?<![\w-])server)"
                            r"(?=[\s\"']*[=:\s])[\s\"']*[=:\s][\s\"']*(?P<value>[^\s\"']+)")


def _plain_http_urls(text: str, ports: frozenset[str], settings: re.Pattern[str]) -> list[str]:
    """http:// URLs on one of `ports`, or given as the value of one of `settings`."""
    if "http://" not in text:
        return []
    found = {match.group(0) for match in _URL.finditer(text)
             if match.group("scheme") == "http" and match.group("port") in ports}
    for setting in settings.finditer(text):
        found.update(match.group(0) for match in _URL.finditer(setting.group("value"))
                     if match.group("scheme") == "http")
    return sorted(found)


def _label(subject: Subject) -> str:
    if kind_of(subject.type) is not None:
        return f"{subject.type} {object_name(subject.props)}"
    return f"{subject.type} {subject.name}".rstrip()


def etcd_endpoints_https(subject: Subject) -> list[str]:
    """etcd client and peer URLs in any input (scripts, env files, k3s's datastore endpoint) use https."""
    urls = sorted({url for text in strings(subject.props) for url in _plain_http_urls(text, _ETCD_PORTS,
                                                                                         _ETCD_SETTINGS)})
    return [f"{_label(subject)}: etcd endpoint {url} is plain http: etcd speaks mutual TLS here (https://)"
            for url in urls]


def _kubeconfig_problems(text: str) -> list[str]:
    if "clusters:" not in text and '"clusters"' not in text:
        return []
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError:
        return []
    clusters = document.get("clusters") if isinstance(document, Mapping) else None
    problems = []
    for entry in clusters if isinstance(clusters, list) else []:
        cluster = entry.get("cluster") if isinstance(entry, Mapping) else None
        if not isinstance(cluster, Mapping):
            continue
        server = cluster.get("server")
        if isinstance(server, str) and not server.startswith("https://"):
            problems.append(f"kubeconfig cluster {entry.get('name')!r} server {server} is not https")
        if cluster.get("insecure-skip-tls-verify") is True:
            problems.append(f"kubeconfig cluster {entry.get('name')!r} skips TLS verification")
    return problems


def kubernetes_endpoints_https(subject: Subject) -> list[str]:
    """Kubernetes API endpoints (kubeconfig servers, k3s server URLs, port 6443) use https and verify it."""
    found: set[str] = set()
    for text in strings(subject.props):
        found.update(f"API endpoint {url} is plain http" for url in _plain_http_urls(text, _KUBE_PORTS, _KUBE_SETTINGS))
        found.update(_kubeconfig_problems(text))
    return [f"{_label(subject)}: {problem}" for problem in sorted(found)]


# ------------------------------------------------------------------------------------- credentials


_PEM_PRIVATE_KEY = re.compile(r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY-----")
# A setting whose name says it is a credential. An etcd `initial-cluster-token` only names a cluster (etcd's
# docs: it keeps clusters apart, it authenticates nothing), so it is not one.
_CREDENTIAL_NAME = re.compile(
    r"(?i)^(?:[\w.-]*[_.-])?(?<!cluster[_-])(password|passwd|passphrase|secret|secret[_-]?key|"
    r"secret[_-]?access[_-]?key|api[_-]?key|access[_-]?token|auth[_-]?token|token|private[_-]?key|"
    r"client[_-]?key[_-]?data)$")
# `NAME=value`, `name: value`, `"name": "value"` anywhere in a text (a script's printf, a heredoc, YAML, JSON).
_ASSIGNMENT = re.compile(r"(?<![\w$.{-])[\"']?(?P<name>[A-Za-z_][\w.-]*)[\"']?[ \t]*[=:][ \t]*(?P<value>[^\s#,;]+)")


def _is_literal(value: str) -> bool:
    """A value written out, not a reference (`$VAR`, `"$(...)"`, `{{ }}`, `<placeholder>`) nor empty."""
    stripped = value.strip("\"'")
    return bool(stripped) and not stripped.startswith(("$", "<", "{{", "%", "(", "`", "[", "{", "&", "*")) \
        and stripped not in ("null", "~", "true", "false")


def credential_findings(text: str) -> list[str]:
    """What credential material a text holds: a PEM private key, or a setting named like a credential with a
    literal value (`password: hunter2`, `K3S_TOKEN=...`, kubeconfig `token:` / `client-key-data:`)."""
    found = ["a PEM private key"] if _PEM_PRIVATE_KEY.search(text) else []
    for match in _ASSIGNMENT.finditer(text):
        if _CREDENTIAL_NAME.match(match.group("name")) and _is_literal(match.group("value")):
            found.append(f"a literal {match.group('name')!r}")
    return sorted(set(found))


# Inputs built to carry credentials, by resource type (dotted paths; list indices dropped). Each is secret in
# its provider's schema or marked secret by the program (command `stdin`).
_SSH_CONNECTION_KEYS = tuple(f"connection.{proxy}{key}" for proxy in ("", "proxy.")
                             for key in ("privateKey", "privateKeyPassword", "password"))
CREDENTIAL_CARRIERS: Mapping[str, tuple[str, ...]] = {
    "command:remote:Command": ("stdin", *_SSH_CONNECTION_KEYS),
    "command:remote:CopyToRemote": _SSH_CONNECTION_KEYS,
    "command:remote:CopyFile": _SSH_CONNECTION_KEYS,
    "command:local:Command": ("stdin",),
    "pulumi:providers:kubernetes": ("kubeconfig",),
    "pulumi:providers:docker": ("registryAuth.password",),
    DOCKER_CONTAINER: ("uploads.content", "uploads.contentBase64"),
    "tls:index/selfSignedCert:SelfSignedCert": ("privateKeyPem",),
    "tls:index/certRequest:CertRequest": ("privateKeyPem",),
    "tls:index/locallySignedCert:LocallySignedCert": ("caPrivateKeyPem",),
}
_CARRIER_HINT = ("pass key material on the command's stdin (logging off, stdout/stderr secret), in a Kubernetes "
                 "Secret, or through the SSH connection's key fields")


def _walk(value: Any, path: str = "") -> Iterator[tuple[str, str | None, Any]]:
    """(dotted path, mapping key or None, value) for every leaf and every mapping entry."""
    if isinstance(value, Mapping):
        for key, item in value.items():
            child = f"{path}.{key}" if path else str(key)
            yield child, str(key), item
            yield from _walk(item, child)
    elif isinstance(value, list | tuple):
        for item in value:
            yield path, None, item
            yield from _walk(item, path)


def _carrier(resource_type: str, path: str) -> bool:
    if kind_of(resource_type) == "Secret":
        return path.split(".", 1)[0] in ("data", "stringData")
    return any(path == c or path.startswith(c + ".") for c in CREDENTIAL_CARRIERS.get(resource_type, ()))


def no_plaintext_credentials(subject: Subject) -> list[str]:
    """No credential in an input that is not built to carry one: scripts, environments, triggers, container
    env values and arguments, labels, ConfigMaps are stored and shown in plain text."""
    found: set[str] = set()
    for path, key, value in _walk(subject.props):
        if _carrier(subject.type, path):
            continue
        if isinstance(value, str) and not is_unknown(value):
            for finding in credential_findings(value):
                found.add(f"{path} holds {finding}")
            if key is not None and _CREDENTIAL_NAME.match(key) and _is_literal(value):
                found.add(f"{path} is a literal credential")
        elif isinstance(value, Mapping):  # {name: DB_PASSWORD, value: ...}: a container's env entry
            name, literal = value.get("name"), value.get("value")
            if isinstance(name, str) and _CREDENTIAL_NAME.match(name) and isinstance(literal, str) \
                    and not is_unknown(literal) and _is_literal(literal):
                found.add(f"{path} sets {name} to a literal value")
    return [f"{_label(subject)}: {problem} in plain text: {_CARRIER_HINT}" for problem in sorted(found)]


# ------------------------------------------------------------------------------------- commands on hosts


def command_key_material_hidden(subject: Subject) -> list[str]:
    """A command whose stdin carries a private key logs nothing and keeps stdout/stderr secret: a script that
    echoes a line of what it read must not put key material in the engine's log or the state in plain text."""
    if subject.type not in COMMAND_TYPES:
        return []
    stdin = _text(subject.props.get("stdin"))
    if stdin is None or not _PEM_PRIVATE_KEY.search(stdin):
        return []
    found = []
    logging = subject.props.get("logging")
    if logging != "none" and not is_unknown(logging):
        found.append(f"{_label(subject)}: stdin carries a private key but logging is {logging or 'the default'}"
                     " (set logging: none)")
    missing = [name for name in ("stdout", "stderr") if name not in subject.secret_outputs]
    if missing:
        found.append(f"{_label(subject)}: stdin carries a private key but {' and '.join(missing)} "
                     "are not in additional_secret_outputs")
    return found


_SHELL_C = re.compile(r"(?:^|[\s;&|(])(?:/usr)?(?:/bin/)?(?:bash|sh)\s+-c\s+")
_WORD_PART = re.compile(r"'([^']*)'|\"((?:[^\"\\]|\\.)*)\"|\\(.)|([^\s'\"\\;&|]+)", re.S)


def _shell_word(text: str, start: int) -> str:
    """The shell word at `start`, unquoted (single and double quotes, backslashes), as bash reads it."""
    parts, position = [], start
    while (match := _WORD_PART.match(text, position)) is not None and match.end() > position:
        single, double, escaped, bare = match.groups()
        if single is not None:
            parts.append(single)
        elif double is not None:
            parts.append(re.sub(r"\\([\"\\$`])", r"\1", double))
        else:
            parts.append(escaped if escaped is not None else bare)
        position = match.end()
    return "".join(parts)


def scripts_of(command: str) -> list[str]:
    """The scripts a command line runs: every argument of `bash -c SCRIPT` in it (also behind `sudo -n` or a
    guard such as `if ! sudo -n true; then ...; fi; sudo -n bash -c ...`), else the line itself."""
    scripts = [_shell_word(command, match.end()) for match in _SHELL_C.finditer(command)]
    return [script for script in scripts if script] or [command]


def _strict_options(script: str) -> set[str]:
    """Shell options a script's header turns on (`set -euo pipefail`, `set -o errexit`, ...) before its first
    line of work."""
    options: set[str] = set()
    for line in script.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if not line.startswith("set "):
            break
        words = line.split()[1:]
        for index, word in enumerate(words):
            if word.startswith("-") and word != "-o":
                options.update({"e": "errexit", "u": "nounset"}.get(flag, "") for flag in word[1:])
                if word.endswith("o") and index + 1 < len(words):
                    options.add(words[index + 1])
            elif word == "-o" and index + 1 < len(words):
                options.add(words[index + 1])
    return options - {""}


def command_scripts_strict(subject: Subject) -> list[str]:
    """Multi-line command scripts start with `set -euo pipefail`: a failed line stops the step (and the run),
    so a re-run starts from a known point instead of building on a half-done one."""
    if subject.type not in COMMAND_TYPES:
        return []
    found = []
    for field_name in ("create", "update", "delete"):
        command = _text(subject.props.get(field_name))
        if command is None:
            continue
        for script in scripts_of(command):
            if "\n" not in script.strip():
                continue  # one command: its exit status is the step's
            missing = {"errexit", "nounset", "pipefail"} - _strict_options(script)
            if missing:
                found.append(f"{_label(subject)}: the {field_name} script does not start with set -euo pipefail "
                             f"(missing {', '.join(sorted(missing))})")
    return found


def ssh_host_keys_pinned(subject: Subject) -> list[str]:
    """(advisory) SSH connections pin the host's public key: without one pulumi-command accepts any key."""
    if subject.type not in SSH_TYPES:
        return []
    connection = subject.props.get("connection")
    if not isinstance(connection, Mapping):
        return []
    found = []
    for label, hop in (("host", connection), ("bastion", connection.get("proxy"))):
        if not isinstance(hop, Mapping) or is_unknown(hop.get("hostKey")):
            continue
        if not hop.get("hostKey"):
            found.append(f"{_label(subject)}: the {label} {hop.get('host', '?')} is reached without a pinned host "
                         "key (set nodes[].host_key from `ssh-keyscan -t ed25519 HOST`)")
    return found


# ------------------------------------------------------------------------------------- PKI


_ECDSA_CURVES = frozenset({"P256", "P384", "P521"})


def tls_key_strength(subject: Subject) -> list[str]:
    """pulumi-tls private keys: RSA of at least 2048 bits, ECDSA on P-256 or larger (the provider's default
    curve is P224), or ED25519."""
    if subject.type != "tls:index/privateKey:PrivateKey":
        return []
    algorithm = subject.props.get("algorithm")
    if algorithm == "RSA":
        bits = subject.props.get("rsaBits", 2048)
        if isinstance(bits, int | float) and bits < 2048:
            return [f"{_label(subject)}: RSA key of {int(bits)} bits (at least 2048)"]
    elif algorithm == "ECDSA":
        curve = subject.props.get("ecdsaCurve", "P224")
        if isinstance(curve, str) and not is_unknown(curve) and curve not in _ECDSA_CURVES:
            return [f"{_label(subject)}: ECDSA curve {curve} (use P256, P384 or P521)"]
    elif isinstance(algorithm, str) and not is_unknown(algorithm) and algorithm != "ED25519":
        return [f"{_label(subject)}: unknown key algorithm {algorithm!r}"]
    return []


def tls_leaf_not_ca(subject: Subject) -> list[str]:
    """Certificates the private CA signs are leaves: not a CA, no certificate or CRL signing. A leaked member
    or client key then cannot mint certificates the cluster would trust."""
    if subject.type != "tls:index/locallySignedCert:LocallySignedCert":
        return []
    found = []
    if subject.props.get("isCaCertificate") is True:
        found.append(f"{_label(subject)}: a certificate signed by the cluster CA is itself a CA")
    uses = subject.props.get("allowedUses")
    signing = sorted({"cert_signing", "crl_signing"} & set(uses if isinstance(uses, list) else []))
    if signing:
        found.append(f"{_label(subject)}: a leaf certificate allows {', '.join(signing)}")
    return found


# ------------------------------------------------------------------------------------- Docker (local stack)


def docker_images_pinned(subject: Subject) -> list[str]:
    """Containers and pulled images name a tag (not `latest`) or a digest, or use an image ID."""
    if subject.type == DOCKER_CONTAINER:
        problem = image_problem(subject.props.get("image"))
    elif subject.type == DOCKER_IMAGE:
        problem = image_problem(subject.props.get("name"))
    else:
        return []
    return [] if problem is None else [f"{_label(subject)}: {problem}"]


def _privileged_allowed(subject: Subject, config: PolicyConfig) -> bool:
    name = _text(subject.props.get("name")) or subject.name
    if any(fnmatch.fnmatchcase(name, pattern) for pattern in config.privileged_container_allow_list):
        return True
    image = _text(subject.props.get("image"))
    repository = image_repository(image) if image else None
    return repository is not None and repository in {image_repository(item)
                                                     for item in config.privileged_image_allow_list}


def docker_no_host_access(subject: Subject, config: PolicyConfig = PolicyConfig()) -> list[str]:
    """Docker containers run unprivileged, in their own namespaces, without the Docker socket; privileged
    only for allow-listed images (k3s) or container names."""
    if subject.type != DOCKER_CONTAINER:
        return []
    props, label = subject.props, _label(subject)
    name = _text(props.get("name")) or subject.name
    if any(fnmatch.fnmatchcase(name, pattern) for pattern in config.host_access_container_allow_list):
        return []
    found = []
    if props.get("privileged") is True and not _privileged_allowed(subject, config):
        image = _text(props.get("image")) or "?"
        hint = ("reference the image by name (e.g. RemoteImage.repo_digest) or add the container name to "
                "privileged_container_allow_list") if image.startswith("sha256:") else \
            "add its repository to the policy config's privileged_image_allow_list if this is intended"
        found.append(f"{label}: image {image} runs privileged ({hint})")
    found += [f"{label}: uses the host's {field[:-4]} namespace ({field}: host)"
              for field in ("networkMode", "pidMode", "ipcMode", "usernsMode") if props.get(field) == "host"]
    sources = [(v.get("hostPath"), "volume") for v in props.get("volumes") or [] if isinstance(v, Mapping)]
    sources += [(m.get("source"), "mount") for m in props.get("mounts") or []
                if isinstance(m, Mapping) and m.get("type") == "bind"]
    found += [f"{label}: {kind} of {source} gives the container the host" for source, kind in sources
              if isinstance(source, str) and (source.rstrip("/") in ("", "/var/run", "/run")
                                              or source.endswith("docker.sock"))]
    return found


def _loopback(address: Any) -> bool:
    if address == "localhost":
        return True
    try:
        return ipaddress.ip_address(str(address)).is_loopback
    except ValueError:
        return False


def docker_ports_loopback(subject: Subject) -> list[str]:
    """Published ports bind to 127.0.0.1 (or ::1): Docker's default, 0.0.0.0, opens them to the network."""
    if subject.type != DOCKER_CONTAINER:
        return []
    ports = subject.props.get("ports")
    found = []
    for port in ports if isinstance(ports, list) else []:
        if not isinstance(port, Mapping) or is_unknown(port.get("ip")):
            continue
        if not _loopback(port.get("ip")):
            found.append(f"{_label(subject)}: port {port.get('external', port.get('internal'))} is published on "
                         f"{port.get('ip') or '0.0.0.0 (the default)'}: bind it to 127.0.0.1")
    return found


# ------------------------------------------------------------------------------------- the pack


@dataclass(frozen=True)
class Rule:
    name: str
    description: str
    check: Callable[[Subject, PolicyConfig], list[str]]
    enforcement: str = "mandatory"  # or "advisory": reported, never blocking
    config_keys: tuple[str, ...] = ()  # PolicyConfig fields this rule reads from its policy config


def _by_type(check: Callable[[str, Mapping[str, Any]], list[str]]) -> Callable[[Subject, PolicyConfig], list[str]]:
    return lambda subject, _config: check(subject.type, subject.props)


RESOURCE_RULES = (
    Rule("kubernetes-images-pinned", "Container images carry a version tag or digest, never 'latest'.",
         _by_type(images_pinned)),
    Rule("kubernetes-no-host-access",
         "No privileged containers, hostPath volumes or host network/PID/IPC unless allow-listed.",
         lambda s, c: no_host_access(s.type, s.props, c), config_keys=("host_access_allow_list",)),
    Rule("kubernetes-resources-limited", "Every container requests and limits CPU and memory.",
         _by_type(resources_limited)),
    Rule("kubernetes-non-root", "Containers run as non-root and cannot escalate privileges (unless allow-listed).",
         lambda s, c: runs_as_non_root(s.type, s.props, c), config_keys=("host_access_allow_list",)),
    Rule("kubernetes-readiness-probes", "Containers of long-running workloads have a readiness probe.",
         _by_type(readiness_probes)),
    Rule("kubernetes-no-secrets-in-configmaps", "Passwords, keys and tokens live in Secrets, not ConfigMaps.",
         _by_type(no_secrets_in_configmaps)),
    Rule("kubernetes-endpoints-https", "Kubernetes API endpoints and kubeconfigs use https and verify it.",
         lambda s, _c: kubernetes_endpoints_https(s)),
    Rule("etcd-endpoints-https", "etcd client and peer endpoints in any input use https (mutual TLS).",
         lambda s, _c: etcd_endpoints_https(s)),
    Rule("no-example-credentials", "No well-known example or default credentials in any resource input.",
         _by_type(no_example_credentials)),
    Rule("no-plaintext-credentials",
         "Private keys, passwords and tokens appear only in inputs built to carry secrets.",
         lambda s, _c: no_plaintext_credentials(s)),
    Rule("command-key-material-hidden",
         "Commands that read a private key on stdin log nothing and keep stdout/stderr secret.",
         lambda s, _c: command_key_material_hidden(s)),
    Rule("command-scripts-strict", "Multi-line command scripts start with set -euo pipefail.",
         lambda s, _c: command_scripts_strict(s)),
    Rule("ssh-host-keys-pinned", "SSH connections pin the host key (advisory).",
         lambda s, _c: ssh_host_keys_pinned(s), enforcement="advisory"),
    Rule("tls-key-strength", "Private keys are RSA >= 2048 bits, ECDSA P-256 or larger, or ED25519.",
         lambda s, _c: tls_key_strength(s)),
    Rule("tls-leaf-certificates-not-ca", "Certificates signed by the cluster CA cannot sign certificates.",
         lambda s, _c: tls_leaf_not_ca(s)),
    Rule("docker-images-pinned", "Docker containers and images are pinned by tag or digest, never 'latest'.",
         lambda s, _c: docker_images_pinned(s)),
    Rule("docker-no-host-access",
         "Docker containers are unprivileged (unless allow-listed), in their own namespaces, without the socket.",
         docker_no_host_access,
         config_keys=("privileged_image_allow_list", "privileged_container_allow_list",
                      "host_access_container_allow_list")),
    Rule("docker-ports-loopback", "Published Docker ports bind to the loopback address only.",
         lambda s, _c: docker_ports_loopback(s)),
)
STACK_RULE_NAME = "kubernetes-statefulset-pdb"
STACK_RULE_DESCRIPTION = "Every replicated StatefulSet has a PodDisruptionBudget."
CONFIG_SCHEMA: Mapping[str, Mapping[str, Any]] = {
    "host_access_allow_list": {"type": "array", "items": {"type": "string"}, "default": []},
    "privileged_image_allow_list": {"type": "array", "items": {"type": "string"},
                                    "default": list(PolicyConfig().privileged_image_allow_list)},
    "privileged_container_allow_list": {"type": "array", "items": {"type": "string"}, "default": []},
    "host_access_container_allow_list": {"type": "array", "items": {"type": "string"},
                                         "default": list(HOST_ACCESS_CONTAINERS)},
}


def rule_schema(rule: Rule) -> dict[str, Any] | None:
    """The JSON schema of a rule's policy config (None for rules without config)."""
    return {key: dict(CONFIG_SCHEMA[key]) for key in rule.config_keys} or None


def subject_of(args: Any) -> Subject:
    """A Subject from pulumi-policy's ResourceValidationArgs or PolicyResource."""
    options = getattr(args, "opts", None)
    secret_outputs = tuple(getattr(options, "additional_secret_outputs", None) or ())
    return Subject(args.resource_type, plain(args.props), str(getattr(args, "name", "") or ""), secret_outputs)


def validate_resource(rule: Rule) -> Callable[[Any, Callable[..., None]], None]:
    """A `ResourceValidationPolicy` validate function running `rule` (args: resource_type, props, opts,
    name, get_config)."""

    def validate(args: Any, report_violation: Callable[..., None]) -> None:
        config = PolicyConfig.from_mapping(args.get_config())
        for message in rule.check(subject_of(args), config):
            report_violation(message)

    return validate


def validate_stack(args: Any, report_violation: Callable[..., None]) -> None:
    """A `StackValidationPolicy` validate function (args.resources with resource_type and props)."""
    resources = [subject_of(r) for r in args.resources]
    for message in replicated_statefulsets_have_pdb((r.type, r.props) for r in resources):
        report_violation(message)


def all_violations(resources: Iterable[Subject], config: PolicyConfig = PolicyConfig(),
                   enforcement: str | None = "mandatory") -> list[str]:
    """Every rule of the given enforcement (None: all) over every resource of a stack, as `rule: message`
    lines: what the pack would report."""
    items = list(resources)
    found = [f"{rule.name}: {message}" for subject in items for rule in RESOURCE_RULES
             if enforcement in (None, rule.enforcement) for message in rule.check(subject, config)]
    if enforcement in (None, "mandatory"):
        found += [f"{STACK_RULE_NAME}: {message}"
                  for message in replicated_statefulsets_have_pdb((s.type, s.props) for s in items)]
    return found
