"""The `store` section of the stack config: Cassandra + Pithos on an existing Kubernetes cluster."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from components.shared.kubernetes import check_cpu, check_memory, check_storage
from components.shared.validation import Problems, Section, check_dns_label, check_port, check_positive, one_of
from components.store.cassandra import CassandraArgs
from components.store.pithos import DEFAULT_PLATFORMS, PITHOS_VERSION, SERVICE_TYPES, PithosArgs, PithosBuild


@dataclass(frozen=True)
class StoreConfig:
    """The S3 object store (Cassandra + Pithos) on an existing Kubernetes cluster (`store` section)."""

    cassandra: CassandraArgs
    pithos: PithosArgs  # cassandra_host is filled in once the Cassandra component exists
    kubeconfig: str | None = None  # plain text here (from secret config); wrap before use
    context: str | None = None
    render_directory: str | None = None



def _report(path: str, found: list[tuple[str, str]], problems: Problems) -> None:
    for name, message in found:
        problems.add(f"{path}.{name}", message)


def _ordinals(section: Section, name: str, default: tuple[int, ...]) -> tuple[int, ...]:
    raw = section.value(name, list, list(default))
    if any(isinstance(i, bool) or not isinstance(i, int) or i < 0 for i in raw):
        section.problems.add(section.key(name), f"must be a list of pod ordinals (0, 1, ...), got {raw!r}")
        return default
    return tuple(raw)


def _parse_cassandra(raw: Any, namespace: str, problems: Problems) -> tuple[CassandraArgs, int]:
    section = Section(raw, "store.cassandra", problems)
    base = CassandraArgs()
    replicas = section.value("replicas", int, base.replicas, check_positive)
    if section.has("seed_count"):
        section.raw("seed_count")
        problems.add("store.cassandra.seed_count",
                     "replaced by store.cassandra.seeds, a record of pod ordinals that never follows replicas: "
                     "seed_count: N was seeds: [0, ..., N-1]; without seed_count a 3-pod ring had seeds: [0, 1]")
    args = CassandraArgs(
        namespace=namespace,
        replicas=replicas,
        seeds=_ordinals(section, "seeds", base.seeds),
        cluster_name=section.value("cluster_name", str, base.cluster_name, check_dns_label),
        datacenter=section.value("datacenter", str, base.datacenter, check_dns_label),
        rack=section.value("rack", str, base.rack, check_dns_label),
        image=section.value("image", str, base.image),
        cpu_request=section.value("cpu_request", str, base.cpu_request, check_cpu),
        cpu_limit=section.value("cpu_limit", str, base.cpu_limit, check_cpu),
        memory=section.value("memory", str, base.memory, check_memory),
        storage_size=section.value("storage_size", str, base.storage_size, check_storage),
        storage_class=section.value("storage_class", str, None, check_dns_label),
        anti_affinity=section.value("anti_affinity", bool, base.anti_affinity),
        drain_timeout=section.value("drain_timeout", int, base.drain_timeout, check_positive),
        startup_timeout=section.value("startup_timeout", int, base.startup_timeout, check_positive),
        decommissioned=_ordinals(section, "decommissioned", ()),
    )
    replication = section.value("replication_factor", int, min(3, replicas), check_positive)
    if replication > replicas:
        problems.add("store.cassandra.replication_factor",
                     f"must not exceed replicas ({replicas}): each replica lives on its own node, got {replication}")
    section.finish()
    _report("store.cassandra", args.problems(), problems)
    return args, replication


def _parse_build(raw: Any, registry_password: str | None, problems: Problems) -> PithosBuild | None:
    if raw is None:
        return None
    section = Section(raw, "store.pithos.build", problems)
    build = PithosBuild(
        registry=section.required("registry", str, "registry.invalid"),
        repository=section.value("repository", str, "pithos"),
        tag=section.value("tag", str, PITHOS_VERSION),
        platforms=section.strings("platforms", DEFAULT_PLATFORMS),
        builder=section.value("builder", str, None),
        username=section.value("username", str, None),
        password=registry_password,
    )
    section.finish()
    return build


def _parse_pithos(raw: Any, cassandra: CassandraArgs, replication: int, registry_password: str | None,
                  problems: Problems) -> PithosArgs:
    section = Section(raw, "store.pithos", problems)
    base = PithosArgs(namespace=cassandra.namespace)
    args = PithosArgs(
        namespace=cassandra.namespace,
        datacenter=cassandra.datacenter,
        replication_factor=replication,
        cassandra_image=cassandra.image,
        image=section.value("image", str, None),
        build=_parse_build(section.raw("build"), registry_password, problems),
        jar_path=section.value("jar_path", str, base.jar_path),
        replicas=section.value("replicas", int, base.replicas),
        service_type=section.value("service_type", str, base.service_type, one_of(SERVICE_TYPES)),
        node_port=section.value("node_port", int, None, check_port),
        endpoint=section.value("endpoint", str, None),
        region=section.value("region", str, base.region, check_dns_label),
        keyspace=section.value("keyspace", str, base.keyspace),
        tenants=section.strings("tenants"),
        cpu_request=section.value("cpu_request", str, base.cpu_request, check_cpu),
        cpu_limit=section.value("cpu_limit", str, base.cpu_limit, check_cpu),
        memory=section.value("memory", str, base.memory, check_memory),
        schema_wait_seconds=section.value("schema_wait_seconds", int, base.schema_wait_seconds, check_positive),
    )
    section.finish()
    # Values the section refused were replaced by defaults, so these problems are new ones.
    _report("store.pithos", args.problems(), problems)
    return args


def parse_store_config(raw: Any, kubeconfig: str | None, kubeconfig_given: bool,
                       problems: Problems, registry_password: str | None = None) -> StoreConfig | None:
    """The `store` section; `kubeconfig` and `registry_password` are secret config values (None when absent
    or refused)."""
    if raw is None:
        return None
    section = Section(raw, "store", problems)
    namespace = section.value("namespace", str, "object-store", check_dns_label)
    context = section.value("context", str, None)
    render_directory = section.value("render_directory", str, None)
    cassandra, replication = _parse_cassandra(section.raw("cassandra"), namespace, problems)
    pithos = _parse_pithos(section.raw("pithos"), cassandra, replication, registry_password, problems)
    section.finish()
    if kubeconfig is None and render_directory is None and not kubeconfig_given:
        problems.add("kubeconfig", "the store needs a cluster: `pulumi config set --secret kubeconfig < FILE` "
                                   "(or set store.render_directory to only render manifests)")
    return StoreConfig(cassandra=cassandra, pithos=pithos, kubeconfig=kubeconfig, context=context,
                       render_directory=render_directory)
