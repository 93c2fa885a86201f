"""Pithos, an S3-compatible object store kept in Cassandra, in front of a `CassandraCluster`.

Its whole configuration (keystore with generated keys, bucket/meta/blob stores on the Cassandra Service) is
rendered from typed settings into a Kubernetes Secret. A Job installs the schema (every statement with
`IF NOT EXISTS`, so it may run again at any point), a Deployment serves S3 (AWS signature version 2,
path-style), and the outputs carry ready-to-use client settings as secrets.

Upstream never published a release image of Pithos 0.7.5: `docker/Dockerfile` beside this module builds one
(multi-arch), either by hand or by the stack itself (`build`, with pulumi-docker-build).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from string import Template
from typing import Any, ClassVar
from urllib.parse import urlsplit

import pulumi
import pulumi_docker_build as docker_build
import pulumi_kubernetes as kubernetes
import pulumi_random as random

from components.shared.kubernetes import (
    MEBIBYTE,
    check_cpu,
    check_memory,
    container_security,
    labels,
    quantity,
    resources,
)
from components.shared.scripts import ShellValue, render_script, template
from components.store.cassandra import CASSANDRA_IMAGE, CASSANDRA_UID, CQL_PORT
from components.store.schema import expected_columns, expected_indexes, schema_statements

# Where components/store/docker/Dockerfile puts the uberjar (`lein uberjar` of Pithos 0.7.5 writes
# target/pithos-0.7.5-standalone.jar; its Main-Class is io.pithos, `:main` in project.clj).
PITHOS_JAR = "/opt/pithos/pithos.jar"
PITHOS_VERSION = "0.7.5"
PITHOS_UID = 10001
PITHOS_PORT = 8080
SERVICE_TYPES = ("ClusterIP", "NodePort", "LoadBalancer")
MASTER_TENANT = "operator"
CONFIG_DIR = "/etc/pithos"
# The build context, relative to the project root (the program's working directory under `pulumi up`):
# relative, so the image's inputs do not depend on where the checkout lives.
ROOT = Path(__file__).resolve().parents[2]
DOCKER_CONTEXT = Path(__file__).resolve().parent.relative_to(ROOT) / "docker"
DEFAULT_PLATFORMS = ("linux/amd64", "linux/arm64")
PLATFORMS = ("linux/amd64", "linux/arm64", "linux/arm/v7", "linux/ppc64le", "linux/s390x")  # eclipse-temurin:11-jre's
_KEYSPACE = re.compile(r"^[a-z][a-z0-9_]{0,47}$")
_TENANT = re.compile(r"^[a-z0-9][a-z0-9._@-]{0,62}$")
_REGISTRY = re.compile(r"^[a-z0-9]([a-z0-9.-]*[a-z0-9])?(:[0-9]{1,5})?(/[a-z0-9._-]+)*$")
_REPOSITORY = re.compile(r"^[a-z0-9]+([._/-][a-z0-9]+)*$")
_TAG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")

# Blob storage layout (io.pithos.blob in 0.7.5): an object is a list of blocks, each block one partition of
# the `block` table, holding chunks of at most `max-chunk` bytes (one row each); a new block starts once a
# block spans max-chunk x max-block-chunks bytes (`boundary?`), so a partition can reach that size plus one
# chunk. Reads load a block's chunks (up to 8192 rows) in one query into the heap. Pithos's defaults
# (512k x 2048) make 1 GiB partitions; 512k x 32 keeps them at 16 MiB (at most 16.5 MiB).
MAX_CHUNK = "512k"
MAX_BLOCK_CHUNKS = 32

# JVM memory of the Pithos container, from its limit: the heap gets 60 %, Netty's direct buffers 10 % (the
# Cassandra driver's I/O), and the rest covers metaspace, code cache and thread stacks. Explicit sizes work
# on any JRE, whether or not it reads cgroup v2 limits (JDK 11 does from 11.0.16).
HEAP_PERCENT = 60
DIRECT_PERCENT = 10
MIN_MEMORY_MIB = 512

# Time budgets, in seconds. A Pithos pod may take this long to start (a JVM on a Pi): its startupProbe.
PITHOS_START_SECONDS = 300
_ROLLOUT_MARGIN_SECONDS = 120  # image pull and scheduling
# The schema job: cqlsh's request timeout, the CQL calls it makes besides the DDL statements (three waits,
# keyspace create/read/alter, two reads to verify), and time to schedule the pod and pull the image.
CQL_REQUEST_TIMEOUT = 60
CQL_CONNECT_SECONDS = 10
SCHEMA_EXTRA_CALLS = 8
SCHEMA_POD_START_SECONDS = 300


def pithos_bytes(text: str) -> int:
    """Bytes of a Pithos size such as `512k` (io.pithos.util/to-bytes: k, m, g, t, p are powers of 1024)."""
    match = re.fullmatch(r"([0-9]+)(([kKmMgGtTpP])[bB]?)?", text)
    if match is None:
        raise ValueError(f"not a Pithos byte amount: {text!r}")
    factor = 1024 ** ("kmgtp".index(match[3].lower()) + 1) if match[3] else 1
    return int(match[1]) * factor


def block_partition_bytes(max_chunk: str = MAX_CHUNK, max_block_chunks: int = MAX_BLOCK_CHUNKS) -> int:
    """The largest partition of the `block` table: a block is closed once it spans max-chunk x
    max-block-chunks bytes, so its last chunk may start one byte before that."""
    chunk = pithos_bytes(max_chunk)
    return chunk * max_block_chunks - 1 + chunk


def jvm_options(memory_limit: str) -> list[str]:
    """The Pithos JVM's memory flags for a container memory limit (valid on JRE 8u92+ and 11)."""
    limit_mib = int(quantity(memory_limit) // MEBIBYTE)
    return [f"-Xmx{limit_mib * HEAP_PERCENT // 100}m", f"-XX:MaxDirectMemorySize={limit_mib * DIRECT_PERCENT // 100}m",
            "-XX:+ExitOnOutOfMemoryError"]


def schema_job_deadline(wait_seconds: int) -> int:
    """Seconds the schema job may run (`activeDeadlineSeconds`): waiting for CQL, every statement at its
    timeout, and starting the pod."""
    calls = len(schema_statements("k")) + SCHEMA_EXTRA_CALLS
    return wait_seconds + calls * (CQL_REQUEST_TIMEOUT + CQL_CONNECT_SECONDS) + SCHEMA_POD_START_SECONDS


def deployment_timeout_seconds(replicas: int) -> int:
    """How long `pulumi up` waits for a Pithos rollout: one new pod at a time (maxSurge 1), each started."""
    return replicas * (PITHOS_START_SECONDS + _ROLLOUT_MARGIN_SECONDS)


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
    max_chunk: str = MAX_CHUNK
    max_block_chunks: int = MAX_BLOCK_CHUNKS

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
        keyspace=_scalar(settings.keyspace), hints=_scalar({"replication": settings.replication}),
        max_chunk=_scalar(settings.max_chunk), max_block_chunks=settings.max_block_chunks,
        block_mib=pithos_bytes(settings.max_chunk) * settings.max_block_chunks // MEBIBYTE)


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


SCHEMA_STEPS = ("prepare", "tables", "verify")


def render_schema_script(step: str, settings: PithosSettings, wait_seconds: int) -> str:
    """One bash step of the schema job, run by cqlsh of the Cassandra image: `prepare` (keyspace and its
    replication), `tables` (Pithos's tables and indexes) or `verify`."""
    params: dict[str, ShellValue] = {
        "CASSANDRA_HOST": settings.cassandra_host,
        "CQL_PORT": CQL_PORT,
        "REQUEST_TIMEOUT": CQL_REQUEST_TIMEOUT,
        "KEYSPACE": settings.keyspace,
        "WAIT_SECONDS": wait_seconds,
    }
    if step == "prepare":
        params.update({"DATACENTER": settings.datacenter, "REPLICATION_FACTOR": settings.replication_factor,
                       "REPLICATION": settings.replication_cql})
    elif step == "tables":
        params.update({"PITHOS_VERSION": PITHOS_VERSION, "STATEMENTS": schema_statements(settings.keyspace)})
    elif step == "verify":
        params.update({"EXPECTED_COLUMNS": expected_columns(), "EXPECTED_INDEXES": expected_indexes()})
    else:
        raise ValueError(f"step: one of {', '.join(SCHEMA_STEPS)}, got {step!r}")
    return render_script(["store/cql.sh", f"store/schema-{step}.sh"], params)


@dataclass(frozen=True)
class PithosBuild:
    """Build the image from `docker/Dockerfile` and push it to `registry` (pulumi-docker-build)."""

    registry: str  # host[:port][/path], e.g. registry.lan:5000
    repository: str = "pithos"
    tag: str = PITHOS_VERSION
    platforms: tuple[str, ...] = DEFAULT_PLATFORMS
    builder: str | None = None  # a buildx builder (multi-platform needs the docker-container driver)
    username: str | None = None
    password: str | None = None  # plain text here (secret config `registry_password`); wrapped before use

    @property
    def image_name(self) -> str:
        return f"{self.registry}/{self.repository}:{self.tag}"

    def problems(self) -> list[tuple[str, str]]:
        found: list[tuple[str, str]] = []
        if not _REGISTRY.match(self.registry):
            found.append(("build.registry", f"must be a registry host[:port][/path], got {self.registry!r}"))
        if not _REPOSITORY.match(self.repository):
            found.append(("build.repository", f"must be a lowercase repository path, got {self.repository!r}"))
        if not _TAG.match(self.tag) or self.tag == "latest":
            found.append(("build.tag", f"must be a tag other than latest, got {self.tag!r}"))
        if not self.platforms:
            found.append(("build.platforms", "must name at least one platform"))
        for index, platform in enumerate(self.platforms):
            if platform not in PLATFORMS:
                found.append((f"build.platforms[{index}]", f"must be one of {', '.join(PLATFORMS)} (the runtime "
                              f"image's platforms), got {platform!r}"))
        if (self.username is None) != (self.password is None):
            found.append(("build.username", "registry credentials need both build.username and the secret "
                          "`registry_password` (or neither: then `docker login` credentials are used)"))
        return found


@dataclass(frozen=True)
class PithosArgs:
    namespace: str
    cassandra_host: str = ""  # the Cassandra headless Service (the driver discovers every node from it)
    datacenter: str = "dc1"
    replication_factor: int = 3  # the keyspace's replicas in `datacenter`
    cassandra_client_label: tuple[str, str] = ("cookbook.dev/cql-client", "true")
    image: str | None = None  # an image built from docker/Dockerfile (or compatible); or `build`
    build: PithosBuild | None = None
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
        if (self.image is None) == (self.build is None):
            found.append(("image", "set exactly one of image (an image built from components/store/docker, "
                          "README: 'Supported versions and images') and build (the stack builds and pushes it)"))
        if self.build is not None:
            found.extend(self.build.problems())
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
        if check_memory(self.memory) is None and quantity(self.memory) < MIN_MEMORY_MIB * MEBIBYTE:
            found.append(("memory", f"Pithos's JVM needs at least {MIN_MEMORY_MIB}Mi, got {self.memory!r}"))
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
    image: pulumi.Output[str]

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

        job_timeout = f"{schema_job_deadline(args.schema_wait_seconds) + _ROLLOUT_MARGIN_SECONDS}s"
        schema = kubernetes.batch.v1.Job(
            f"{name}-schema",
            metadata={**metadata, "name": f"{name}-schema"},
            spec=self._schema_job_spec(args, settings, {**pod_labels, "app.kubernetes.io/component": "schema"}),
            # The pod template is immutable: a changed job is recreated under the same name and runs again
            # (every statement is idempotent). Pulumi waits for it a little longer than the job may run.
            opts=pulumi.ResourceOptions(parent=self, delete_before_replace=True,
                                        custom_timeouts=pulumi.CustomTimeouts(create=job_timeout,
                                                                              update=job_timeout)))

        self.image = self._image(name, args)

        # A one-way digest of 238-bit random secrets reveals nothing, so it may stay readable: a secret here
        # would hide the whole Deployment spec from previews and policies.
        config_hash = pulumi.Output.unsecret(
            config_text.apply(lambda text: hashlib.sha256(text.encode()).hexdigest()))
        rollout_timeout = f"{deployment_timeout_seconds(args.replicas)}s"
        kubernetes.apps.v1.Deployment(
            f"{name}-deployment",
            metadata=metadata,
            spec=self._deployment_spec(args, self.image, selector, pod_labels, config_hash, config_volume,
                                       config_mount),
            # Pithos serves only once its keyspace and tables exist; it mounts the config Secret.
            opts=pulumi.ResourceOptions(parent=self, depends_on=[schema, secret],
                                        custom_timeouts=pulumi.CustomTimeouts(create=rollout_timeout,
                                                                              update=rollout_timeout)))

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
            "image": self.image,
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

    def _image(self, name: str, args: PithosArgs) -> pulumi.Output[str]:
        """The image reference the Deployment runs: the given one, or the pushed build's tag@digest."""
        if args.build is None:
            return pulumi.Output.from_input(args.image or "")
        build = args.build
        registries = None
        if build.username is not None and build.password is not None:
            registries = [docker_build.RegistryArgs(address=build.registry.split("/")[0], username=build.username,
                                                    password=pulumi.Output.secret(build.password))]
        image = docker_build.Image(
            f"{name}-image",
            tags=[build.image_name],
            platforms=[docker_build.Platform(platform) for platform in build.platforms],
            push=True,
            context=docker_build.BuildContextArgs(location=str(DOCKER_CONTEXT)),
            dockerfile=docker_build.DockerfileArgs(location=str(DOCKER_CONTEXT / "Dockerfile")),
            build_args={"PITHOS_JAR": args.jar_path},
            builder=None if build.builder is None else docker_build.BuilderConfigArgs(name=build.builder),
            registries=registries,
            # A preview must not spend minutes compiling Pithos; the Dockerfile is still checked.
            build_on_preview=False,
            opts=pulumi.ResourceOptions(parent=self))
        # `ref` is the pushed tag with the build's digest: a rebuild rolls the pods, an unchanged one does not.
        return image.ref

    def _deployment_spec(self, args: PithosArgs, image: pulumi.Output[str], selector: Mapping[str, str],
                         pod_labels: Mapping[str, str], config_hash: pulumi.Output[str],
                         config_volume: Mapping[str, Any], config_mount: Mapping[str, Any]) -> Any:
        return {
            "replicas": args.replicas,
            "selector": {"match_labels": selector},
            # One pod more, never one fewer: a rollout keeps every replica serving (the PDB allows one down
            # for drains). A rollout stalls after this long without a new pod becoming ready.
            "strategy": {"type": "RollingUpdate", "rolling_update": {"max_unavailable": 0, "max_surge": 1}},
            "progress_deadline_seconds": PITHOS_START_SECONDS + _ROLLOUT_MARGIN_SECONDS,
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
                        "image": image,
                        "image_pull_policy": "IfNotPresent",
                        "command": ["java", *jvm_options(args.memory), "-jar", args.jar_path,
                                    "-f", f"{CONFIG_DIR}/pithos.yaml", "-a", "api-run"],
                        "ports": [{"name": "http", "container_port": PITHOS_PORT}],
                        "resources": resources(args.cpu_request, args.cpu_limit, args.memory),
                        "security_context": container_security(PITHOS_UID, read_only_root=True),
                        # Jetty listens once the stores are connected; a slow JVM start is not killed.
                        "startup_probe": {"tcp_socket": {"port": PITHOS_PORT}, "period_seconds": 10,
                                          "failure_threshold": PITHOS_START_SECONDS // 10},
                        "readiness_probe": {"tcp_socket": {"port": PITHOS_PORT}, "period_seconds": 10,
                                            "failure_threshold": 3},
                        "liveness_probe": {"tcp_socket": {"port": PITHOS_PORT}, "period_seconds": 20,
                                           "failure_threshold": 6},
                        "volume_mounts": [config_mount, {"name": "tmp", "mount_path": "/tmp"}],
                    }],
                    "volumes": [config_volume, {"name": "tmp", "empty_dir": {}}],
                },
            },
        }

    @staticmethod
    def _pod_security() -> dict[str, Any]:
        return {"run_as_non_root": True, "fs_group": PITHOS_UID, "seccomp_profile": {"type": "RuntimeDefault"}}

    def _schema_job_spec(self, args: PithosArgs, settings: PithosSettings,
                         pod_labels: Mapping[str, str]) -> Any:
        work_mount = {"name": "work", "mount_path": "/work"}

        def cqlsh_step(step: str) -> dict[str, Any]:
            return {
                "name": f"schema-{step}",
                "image": args.cassandra_image,
                "command": ["bash", "-c", render_schema_script(step, settings, args.schema_wait_seconds)],
                "env": [{"name": "HOME", "value": "/work"}],  # cqlsh keeps its history there
                "resources": resources("100m", "500m", "256Mi"),
                "security_context": container_security(CASSANDRA_UID),
                "volume_mounts": [work_mount],
            }

        *first, last = SCHEMA_STEPS
        return {
            "backoff_limit": 6,
            # The job gives up before Pulumi stops waiting for it, so a failure shows the job's own reason.
            "active_deadline_seconds": schema_job_deadline(args.schema_wait_seconds),
            "template": {
                "metadata": {"labels": dict(pod_labels)},
                "spec": {
                    "restart_policy": "Never",
                    "security_context": self._pod_security(),
                    "enable_service_links": False,
                    "init_containers": [cqlsh_step(step) for step in first],
                    "containers": [cqlsh_step(last)],
                    "volumes": [{"name": "work", "empty_dir": {}}],
                },
            },
        }
