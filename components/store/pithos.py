"""Pithos, an S3-compatible object store kept in Cassandra, in front of a `CassandraCluster`.

Its whole configuration (keystore with generated keys, bucket/meta/blob stores on the Cassandra Service) is
rendered from typed settings into a Kubernetes Secret. A Job installs the schema once, a Deployment serves
S3 (AWS signature version 2, path-style), and the outputs carry ready-to-use client settings as secrets.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from string import Template
from typing import Any, ClassVar
from urllib.parse import urlsplit

import pulumi
import pulumi_kubernetes as kubernetes
import pulumi_random as random

from components.shared.kubernetes import check_cpu, check_memory, container_security, labels, resources
from components.shared.scripts import ShellValue, render_script, template
from components.store.cassandra import CASSANDRA_IMAGE, CASSANDRA_UID, CQL_PORT

# Pithos publishes no multi-arch image: the default is an amd64 build; Pis need an image you build
# (see the README's object store section).
PITHOS_IMAGE = "exoscale/pithos:0.7.5"
PITHOS_JAR = "/pithos-standalone.jar"
PITHOS_UID = 10001
PITHOS_PORT = 8080
SERVICE_TYPES = ("ClusterIP", "NodePort", "LoadBalancer")
MASTER_TENANT = "operator"
REQUIRED_TABLES = ("bucket", "inode_blocks", "block")  # bucketstore's first and blobstore's last tables
CONFIG_DIR = "/etc/pithos"
_KEYSPACE = re.compile(r"^[a-z][a-z0-9_]{0,47}$")
_TENANT = re.compile(r"^[a-z0-9][a-z0-9._@-]{0,62}$")


@dataclass(frozen=True)
class AccessKey:
    tenant: str
    access_key: str
    secret_key: str
    master: bool = False


@dataclass(frozen=True)
class PithosSettings:
    """Everything pithos.yaml says apart from the keys (plain values, so rendering stays a pure function)."""

    service_uri: str
    region: str
    keyspace: str
    cassandra_host: str
    datacenter: str
    replication_factor: int
    port: int = PITHOS_PORT

    @property
    def replication(self) -> dict[str, Any]:
        return {"class": "NetworkTopologyStrategy", self.datacenter: self.replication_factor}

    @property
    def replication_cql(self) -> str:
        return f"{{'class': 'NetworkTopologyStrategy', '{self.datacenter}': {self.replication_factor}}}"


def _scalar(value: Any) -> str:
    """A YAML scalar or flow mapping for any JSON value (JSON is valid YAML, and quoting is never wrong)."""
    return json.dumps(value, sort_keys=True)


def render_pithos_config(settings: PithosSettings, keys: Sequence[AccessKey]) -> str:
    if not any(key.master for key in keys):
        raise ValueError("keys: pithos needs one master key (for the operator)")
    rendered_keys = "".join(
        Template(template("store/key.yaml")).substitute(
            access_key=_scalar(key.access_key), tenant=_scalar(key.tenant), secret_key=_scalar(key.secret_key),
            master=_scalar(key.master))
        for key in keys)
    return Template(template("store/pithos.yaml")).substitute(
        port=settings.port, service_uri=_scalar(settings.service_uri), region=_scalar(settings.region),
        keys=rendered_keys.rstrip("\n"), cassandra=_scalar(settings.cassandra_host),
        keyspace=_scalar(settings.keyspace), hints=_scalar({"replication": settings.replication}))


def endpoint_parts(endpoint: str) -> tuple[str, bool]:
    """(host[:port], uses TLS) of an endpoint URL."""
    parts = urlsplit(endpoint)
    return parts.netloc, parts.scheme == "https"


def render_s3cfg(endpoint: str, region: str, key: AccessKey) -> str:
    host, tls = endpoint_parts(endpoint)
    return Template(template("store/s3cfg")).substitute(
        tenant=key.tenant, endpoint=endpoint, access_key=key.access_key, secret_key=key.secret_key, host=host,
        use_https=str(tls), region=region)


def boto3_settings(endpoint: str, region: str, key: AccessKey) -> dict[str, Any]:
    """Keyword arguments for `boto3.client("s3", ...)`; `config` goes into `botocore.config.Config(**config)`.

    Pithos checks signature version 2 only: botocore still ships it as `signature_version="s3"` (HmacV1).
    """
    return {
        "endpoint_url": endpoint,
        "region_name": region,
        "aws_access_key_id": key.access_key,
        "aws_secret_access_key": key.secret_key,
        "config": {"signature_version": "s3", "s3": {"addressing_style": "path"}},
    }


def render_schema_script(step: str, settings: PithosSettings, wait_seconds: int, stamp: str) -> str:
    """The bash steps of the schema job that run in the Cassandra image (`prepare` and `verify`)."""
    params: dict[str, ShellValue] = {
        "CASSANDRA_HOST": settings.cassandra_host,
        "CQL_PORT": CQL_PORT,
        "KEYSPACE": settings.keyspace,
        "REQUIRED_TABLES": REQUIRED_TABLES,
        "WAIT_SECONDS": wait_seconds,
    }
    if step == "prepare":
        params.update({"DATACENTER": settings.datacenter, "REPLICATION_FACTOR": settings.replication_factor,
                       "REPLICATION": settings.replication_cql, "STAMP": stamp})
    return render_script(["store/cql.sh", f"store/schema-{step}.sh"], params)


@dataclass(frozen=True)
class PithosArgs:
    namespace: str
    cassandra_host: str = ""  # the Cassandra headless Service (the driver discovers every node from it)
    datacenter: str = "dc1"
    replication_factor: int = 3  # the keyspace's replicas in `datacenter`
    cassandra_client_label: tuple[str, str] = ("cookbook.dev/cql-client", "true")
    image: str = PITHOS_IMAGE
    jar_path: str = PITHOS_JAR
    cassandra_image: str = CASSANDRA_IMAGE  # runs cqlsh in the schema job
    replicas: int = 2
    service_type: str = "ClusterIP"
    node_port: int | None = None
    endpoint: str | None = None  # the URL clients use; default: the in-cluster Service URL
    region: str = "cookbook"
    keyspace: str = "storage"
    tenants: tuple[str, ...] = ()
    cpu_request: str = "250m"
    cpu_limit: str = "1"
    memory: str = "1Gi"
    schema_wait_seconds: int = 900

    def problems(self) -> list[tuple[str, str]]:
        """(field, what is wrong) for every invalid field; empty when the args are usable."""
        found: list[tuple[str, str]] = []
        if self.replicas < 2:
            found.append(("replicas", f"must be at least 2 (one may be down during a rollout), got {self.replicas}"))
        if self.replication_factor < 1:
            found.append(("replication_factor", f"must be at least 1, got {self.replication_factor}"))
        if self.service_type not in SERVICE_TYPES:
            found.append(("service_type", f"must be one of {', '.join(SERVICE_TYPES)}, got {self.service_type!r}"))
        if self.node_port is not None and (self.service_type == "ClusterIP" or not 30000 <= self.node_port <= 32767):
            found.append(("node_port", f"needs service_type NodePort or LoadBalancer and a port in 30000-32767, "
                         f"got {self.node_port} with {self.service_type}"))
        if not _KEYSPACE.match(self.keyspace):
            found.append(("keyspace", f"must be a CQL identifier (lowercase, digits, '_'), got {self.keyspace!r}"))
        if self.endpoint is not None and urlsplit(self.endpoint).scheme not in ("http", "https"):
            found.append(("endpoint", f"must be an http:// or https:// URL, got {self.endpoint!r}"))
        for index, tenant in enumerate(self.tenants):
            if not _TENANT.match(tenant) or tenant == MASTER_TENANT:
                found.append((f"tenants[{index}]",
                              f"must be a lowercase name other than {MASTER_TENANT!r}, got {tenant!r}"))
        if len(set(self.tenants)) != len(self.tenants):
            found.append(("tenants", f"duplicate names in {list(self.tenants)}"))
        for field_name, check in (("cpu_request", check_cpu), ("cpu_limit", check_cpu), ("memory", check_memory)):
            if (error := check(getattr(self, field_name))) is not None:
                found.append((field_name, error))
        return found


class ObjectStore(pulumi.ComponentResource):
    """Pithos on Kubernetes: config Secret, schema Job, Deployment, PodDisruptionBudget and Service."""

    TYPE: ClassVar[str] = "cookbook:pithos:ObjectStore"
    endpoint: str
    region: str
    access_key: pulumi.Output[str]
    secret_key: pulumi.Output[str]
    tenant_keys: pulumi.Output[dict[str, dict[str, str]]]
    s3cfg: pulumi.Output[str]
    boto3: pulumi.Output[dict[str, Any]]

    def __init__(self, name: str, args: PithosArgs, opts: pulumi.ResourceOptions | None = None):
        if not args.cassandra_host:
            raise ValueError("cassandra_host: the Cassandra Service to store objects in is required")
        if problems := args.problems():
            raise ValueError("invalid PithosArgs: " + "; ".join(f"{key}: {message}" for key, message in problems))
        super().__init__(self.TYPE, name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        self.endpoint = args.endpoint or f"http://{name}.{args.namespace}.svc.cluster.local:{PITHOS_PORT}"
        self.region = args.region
        settings = PithosSettings(
            service_uri=urlsplit(self.endpoint).hostname or name, region=args.region, keyspace=args.keyspace,
            cassandra_host=args.cassandra_host, datacenter=args.datacenter,
            replication_factor=args.replication_factor)

        keys = [self._key(name, MASTER_TENANT, master=True)] + [self._key(name, t) for t in args.tenants]
        all_keys: pulumi.Output[list[AccessKey]] = pulumi.Output.all(*keys)
        config_text: pulumi.Output[str] = pulumi.Output.secret(
            all_keys.apply(lambda ks: render_pithos_config(settings, ks)))
        master = keys[0]
        self.access_key = pulumi.Output.secret(master.apply(lambda k: k.access_key))
        self.secret_key = pulumi.Output.secret(master.apply(lambda k: k.secret_key))
        self.tenant_keys = pulumi.Output.secret(all_keys.apply(lambda ks: {
            k.tenant: {"access_key": k.access_key, "secret_key": k.secret_key} for k in ks}))
        self.s3cfg = pulumi.Output.secret(master.apply(lambda k: render_s3cfg(self.endpoint, args.region, k)))
        self.boto3 = pulumi.Output.secret(master.apply(lambda k: boto3_settings(self.endpoint, args.region, k)))

        selector = {"app.kubernetes.io/name": "pithos", "app.kubernetes.io/instance": name}
        client_key, client_value = args.cassandra_client_label
        pod_labels = {**labels("pithos", name, "s3-api"), client_key: client_value}
        metadata: Any = {"name": name, "namespace": args.namespace, "labels": labels("pithos", name, "s3-api")}
        secret = kubernetes.core.v1.Secret(
            f"{name}-config",
            metadata={**metadata, "name": f"{name}-config"},
            type="Opaque",
            string_data={"pithos.yaml": config_text},
            opts=pulumi.ResourceOptions(parent=self, additional_secret_outputs=["data", "stringData"]))
        config_volume = {"name": "config", "secret": {"secret_name": f"{name}-config", "default_mode": 0o440}}
        config_mount = {"name": "config", "mount_path": CONFIG_DIR, "read_only": True}

        schema = kubernetes.batch.v1.Job(
            f"{name}-schema",
            metadata={**metadata, "name": f"{name}-schema"},
            spec=self._schema_job_spec(args, settings, {**pod_labels, "app.kubernetes.io/component": "schema"},
                                       config_volume, config_mount),
            # The pod template is immutable: a changed job is recreated under the same name (and re-run:
            # every step is idempotent). It mounts the config Secret, so that exists first.
            opts=pulumi.ResourceOptions(parent=self, depends_on=[secret], delete_before_replace=True))

        # A one-way digest of 238-bit random secrets reveals nothing, so it may stay readable: a secret here
        # would hide the whole Deployment spec from previews and policies.
        config_hash = pulumi.Output.unsecret(
            config_text.apply(lambda text: hashlib.sha256(text.encode()).hexdigest()))
        kubernetes.apps.v1.Deployment(
            f"{name}-deployment",
            metadata=metadata,
            spec=self._deployment_spec(args, selector, pod_labels, config_hash, config_volume, config_mount),
            # Pithos serves only once its keyspace and tables exist.
            opts=pulumi.ResourceOptions(parent=self, depends_on=[schema]))

        kubernetes.policy.v1.PodDisruptionBudget(
            f"{name}-pdb", metadata=metadata,
            spec={"max_unavailable": 1, "selector": {"match_labels": selector}}, opts=child)

        port: dict[str, Any] = {"name": "http", "port": PITHOS_PORT, "target_port": "http", "protocol": "TCP"}
        if args.node_port is not None:
            port["node_port"] = args.node_port
        kubernetes.core.v1.Service(
            f"{name}-service", metadata=metadata,
            spec={"type": args.service_type, "selector": selector, "ports": [port]}, opts=child)

        self.register_outputs({
            "endpoint": self.endpoint,
            "region": self.region,
            "access_key": self.access_key,
            "secret_key": self.secret_key,
            "tenant_keys": self.tenant_keys,
            "s3cfg": self.s3cfg,
            "boto3": self.boto3,
        })

    def _key(self, name: str, tenant: str, master: bool = False) -> pulumi.Output[AccessKey]:
        """An access key (20 upper-case letters and digits, like AWS's) and a 40-character secret."""
        child = pulumi.ResourceOptions(parent=self)
        access = random.RandomPassword(f"{name}-{tenant}-access-key", length=20, lower=False, upper=True,
                                       numeric=True, special=False, opts=child)
        secret = random.RandomPassword(f"{name}-{tenant}-secret-key", length=40, special=False, opts=child)
        return pulumi.Output.all(access.result, secret.result).apply(
            lambda values: AccessKey(tenant, values[0], values[1], master))

    def _deployment_spec(self, args: PithosArgs, selector: Mapping[str, str], pod_labels: Mapping[str, str],
                         config_hash: pulumi.Output[str], config_volume: Mapping[str, Any],
                         config_mount: Mapping[str, Any]) -> Any:
        return {
            "replicas": args.replicas,
            "selector": {"match_labels": selector},
            "strategy": {"type": "RollingUpdate", "rolling_update": {"max_unavailable": 0, "max_surge": 1}},
            "template": {
                # A config change (a new tenant, say) rolls the pods.
                "metadata": {"labels": pod_labels, "annotations": {"cookbook.dev/config-sha256": config_hash}},
                "spec": {
                    "security_context": self._pod_security(),
                    "enable_service_links": False,
                    "affinity": {"pod_anti_affinity": {"preferred_during_scheduling_ignored_during_execution": [{
                        "weight": 100, "pod_affinity_term": {"label_selector": {"match_labels": selector},
                                                             "topology_key": "kubernetes.io/hostname"}}]}},
                    "containers": [{
                        "name": "pithos",
                        "image": args.image,
                        "image_pull_policy": "IfNotPresent",
                        # The JVM sizes its heap from the container's memory limit.
                        "command": ["java", "-XX:MaxRAMPercentage=70", "-jar", args.jar_path,
                                    "-f", f"{CONFIG_DIR}/pithos.yaml", "-a", "api-run"],
                        "ports": [{"name": "http", "container_port": PITHOS_PORT}],
                        "resources": resources(args.cpu_request, args.cpu_limit, args.memory),
                        "security_context": container_security(PITHOS_UID, read_only_root=True),
                        "readiness_probe": {"tcp_socket": {"port": PITHOS_PORT}, "initial_delay_seconds": 10,
                                            "period_seconds": 10, "failure_threshold": 3},
                        "liveness_probe": {"tcp_socket": {"port": PITHOS_PORT}, "initial_delay_seconds": 60,
                                           "period_seconds": 20, "failure_threshold": 6},
                        "volume_mounts": [config_mount, {"name": "tmp", "mount_path": "/tmp"}],
                    }],
                    "volumes": [config_volume, {"name": "tmp", "empty_dir": {}}],
                },
            },
        }

    @staticmethod
    def _pod_security() -> dict[str, Any]:
        return {"run_as_non_root": True, "fs_group": PITHOS_UID, "seccomp_profile": {"type": "RuntimeDefault"}}

    def _schema_job_spec(self, args: PithosArgs, settings: PithosSettings, pod_labels: Mapping[str, str],
                         config_volume: Mapping[str, Any], config_mount: Mapping[str, Any]) -> Any:
        stamp = "/work/schema-present"
        work_mount = {"name": "work", "mount_path": "/work"}
        cqlsh_env = [{"name": "HOME", "value": "/work"}]  # cqlsh keeps its history there

        def cqlsh_step(step: str) -> dict[str, Any]:
            return {
                "name": f"schema-{step}",
                "image": args.cassandra_image,
                "command": ["bash", "-c", render_schema_script(step, settings, args.schema_wait_seconds, stamp)],
                "env": cqlsh_env,
                "resources": resources("100m", "500m", "256Mi"),
                "security_context": container_security(CASSANDRA_UID),
                "volume_mounts": [work_mount],
            }

        install = {
            "name": "schema-install",
            "image": args.image,
            "command": ["sh", "-c", template("store/schema-install.sh")],
            "env": [{"name": "STAMP", "value": stamp}, {"name": "PITHOS_JAR", "value": args.jar_path}],
            "resources": resources("100m", "1", "512Mi"),
            "security_context": container_security(PITHOS_UID, read_only_root=True),
            "volume_mounts": [work_mount, dict(config_mount), {"name": "tmp", "mount_path": "/tmp"}],
        }
        return {
            "backoff_limit": 6,
            "template": {
                "metadata": {"labels": dict(pod_labels)},
                "spec": {
                    "restart_policy": "Never",
                    "security_context": self._pod_security(),
                    "enable_service_links": False,
                    "init_containers": [cqlsh_step("prepare"), install],
                    "containers": [cqlsh_step("verify")],
                    "volumes": [dict(config_volume), {"name": "work", "empty_dir": {}},
                                {"name": "tmp", "empty_dir": {}}],
                },
            },
        }
