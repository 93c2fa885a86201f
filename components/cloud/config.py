"""The `cloud` section of a stack's config: which cloud, which image, size and zone, and the cloud nodes.

Everything that can be checked without asking the cloud is checked here, before any resource exists
(driver, endpoint, credentials present and secret, operator CIDR, OS, node names and roles, packages and
time servers on CoreOS; with the other sections, `check_cloud_stack`: one node source for etcd and Kubernetes,
etcd's install mode on CoreOS; the etcd member count, cloud nodes included, is the etcd section's). Whether a
size, image or zone *exists* only the cloud knows: the providers' `check` asks it
(`components/cloud/providers.py`), which `pulumi preview` and the preview of `pulumi up` run for every node
before anything is created.
"""

from __future__ import annotations

import inspect
import ipaddress
import re
import urllib.parse
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any

from components.cloud.userdata import COREOS, LOGIN_USERS, OPERATING_SYSTEMS
from components.shared.validation import Problems, Section, check_dns_label, check_positive, one_of

# Secret config keys (top level, like ssh_private_key) the provider reads in `configure`.
API_KEY = "cloud_api_key"
API_SECRET = "cloud_api_secret"
CREDENTIAL_KEYS = (API_KEY, API_SECRET)
DEFAULT_DRIVER = "cloudstack"
# Keyword arguments of create_node this recipe passes (CloudStackNodeDriver.create_node in libcloud 3.9.1).
CREATE_NODE_KEYWORDS = ("ex_keyname", "ex_userdata", "ex_security_groups", "ex_start_vm", "ex_displayname")
# libcloud still ships the driver, but Exoscale shut down its CloudStack-compatible API.
RETIRED_DRIVERS = {"exoscale": "Exoscale shut down its CloudStack-compatible API; libcloud's exoscale driver "
                                "cannot be used any more"}
_PUBLIC_KEY = re.compile(r"^(ssh-ed25519|ssh-rsa|ecdsa-sha2-nistp(256|384|521)) [A-Za-z0-9+/]+={0,3}( [^\n]*)?$")


# What cloud nodes run: etcd and Kubernetes (the security group's rules are theirs). ZooKeeper and Mesos run
# on `nodes` entries only (their recipes need the address in the config).
CLOUD_ROLES = ("etcd", "control-plane", "worker")


@dataclass(frozen=True)
class CloudNodeConfig:
    name: str
    roles: tuple[str, ...] = ()
    size: str | None = None  # overrides cloud.size for this node

    @property
    def address(self) -> str:
        """Not known from the config: a cloud node's address is its VM's, known once the VM runs. The
        role parsers of the other sections take cloud nodes as nodes with this empty address."""
        return ""


@dataclass(frozen=True)
class CloudConfig:
    zone: str
    image: str
    size: str
    os: str
    operator_cidr: str
    ssh_public_key: str
    driver: str = DEFAULT_DRIVER
    endpoint: str | None = None
    start_timeout: int = 600
    expunge: bool = True
    nodes: tuple[CloudNodeConfig, ...] = ()

    @property
    def login_user(self) -> str:
        return LOGIN_USERS[self.os]

    @property
    def coreos(self) -> bool:
        return self.os in COREOS


def _driver_class(name: str) -> Any | None:
    from libcloud.compute.providers import get_driver  # imported on use: libcloud loads driver modules lazily

    try:
        return get_driver(name)
    except AttributeError:  # not a libcloud compute provider name
        return None


def has_calls_used(driver_class: Any) -> bool:
    """A driver speaks the CloudStack API this recipe uses: its node, key pair and security-group calls
    (security groups with ingress from a group: `usersecuritygrouplist`) and create_node's keywords."""
    from libcloud.compute.drivers.cloudstack import CloudStackNodeDriver

    if not (isinstance(driver_class, type) and issubclass(driver_class, CloudStackNodeDriver)):
        return False
    parameters = inspect.signature(getattr(driver_class, "create_node")).parameters  # noqa: B009  (typed as `type`)
    return all(keyword in parameters for keyword in CREATE_NODE_KEYWORDS)


@cache
def supported_drivers() -> tuple[str, ...]:
    """libcloud compute drivers with the calls used (imports every driver module once: error path only)."""
    from libcloud.compute.providers import DRIVERS

    names = []
    for name in sorted(DRIVERS):
        driver_class = _driver_class(name)
        if name not in RETIRED_DRIVERS and driver_class is not None and has_calls_used(driver_class):
            names.append(name)
    return tuple(names)


def _check_driver(value: str) -> str | None:
    if value in RETIRED_DRIVERS:
        return f"{RETIRED_DRIVERS[value]}; use one of {', '.join(supported_drivers())}"
    driver_class = _driver_class(value)
    if driver_class is None:
        return (f"unknown libcloud compute driver {value!r}; "
                f"drivers with the calls used: {', '.join(supported_drivers())}")
    if not has_calls_used(driver_class):
        return (f"libcloud driver {value!r} lacks the CloudStack API calls this recipe uses (security groups with "
                f"ingress from the group, key pair import, create_node with {', '.join(CREATE_NODE_KEYWORDS)}); "
                f"drivers with them: {', '.join(supported_drivers())}")
    return None


def _check_endpoint(value: str) -> str | None:
    parsed = urllib.parse.urlparse(value)
    if parsed.scheme in ("http", "https") and parsed.hostname and not parsed.query:
        return None
    return f"must be the API URL such as 'https://cloud.example.com/client/api', got {value!r}"


def check_cidr(value: str) -> str | None:
    if "/" not in value:
        try:
            single = ipaddress.ip_network(value)
        except ValueError:
            return f"must be a CIDR such as 203.0.113.0/24, got {value!r}"
        return f"must be a CIDR such as 203.0.113.0/24 (a single address is {single}), got {value!r}"
    try:
        ipaddress.ip_network(value, strict=True)
        return None
    except ValueError:
        pass
    try:
        network = ipaddress.ip_network(value, strict=False)
    except ValueError:
        return f"must be a CIDR such as 203.0.113.0/24, got {value!r}"
    return f"has host bits set; did you mean {network}?"


def check_public_key(value: str) -> str | None:
    if "PRIVATE KEY" in value:
        return "is a private key: give the public half (the .pub file), the private key stays in ssh_private_key"
    if _PUBLIC_KEY.match(value.strip()):
        return None
    return "must be an OpenSSH public key line such as 'ssh-ed25519 AAAA... comment' (the deploy key's .pub)"


def _check_not_empty(value: str) -> str | None:
    return None if value.strip() else "must not be empty (a name or an id)"


def _parse_node(raw: Any, path: str, roles: Sequence[str], problems: Problems) -> CloudNodeConfig:
    section = Section(raw, path, problems)
    node = CloudNodeConfig(
        name=section.required("name", str, "", check_dns_label),
        roles=section.strings("roles", (), one_of(roles)),
        size=section.value("size", str, None, _check_not_empty),
    )
    section.finish()
    return node


def _parse_nodes(raw: Any, roles: Sequence[str], other_nodes: Collection[str],
                 problems: Problems) -> tuple[CloudNodeConfig, ...]:
    if raw is None:
        problems.add("cloud.nodes", "is required: a list of nodes, each with a name and roles")
        return ()
    if not isinstance(raw, list) or not raw:
        problems.add("cloud.nodes", "must be a non-empty list of nodes (each with a name and roles)")
        return ()
    nodes = tuple(_parse_node(item, f"cloud.nodes[{i}]", roles, problems) for i, item in enumerate(raw))
    first: dict[str, int] = {}
    for index, node in enumerate(nodes):
        if not node.name:
            continue
        if node.name in first:
            problems.add(f"cloud.nodes[{index}].name",
                         f"duplicate node name {node.name!r} (also cloud.nodes[{first[node.name]}].name)")
        elif node.name in other_nodes:
            problems.add(f"cloud.nodes[{index}].name", f"{node.name!r} is also a node in `nodes`: names must be unique")
        first.setdefault(node.name, index)
    return nodes


def parse_cloud_config(raw: Any, problems: Problems, *, credentials_given: Collection[str], raw_prepare: Any,
                       other_nodes: Collection[str]) -> CloudConfig | None:
    """None when the stack has no `cloud` section. The etcd member count, cloud nodes included, is the etcd
    section's check (`components/etcd/config.py`); `check_cloud_stack` checks what involves other sections.

    `credentials_given`: the top-level keys set (plain credentials are reported by the caller); `raw_prepare`:
    the `prepare` section as written (packages the stack asks for); `other_nodes`: names in `nodes`.
    """
    if raw is None:
        return None
    requested_packages = raw_prepare.get("packages") if isinstance(raw_prepare, Mapping) else None
    section = Section(raw, "cloud", problems)
    driver = section.value("driver", str, DEFAULT_DRIVER, _check_driver)
    endpoint = section.value("endpoint", str, None, _check_endpoint)
    if driver == DEFAULT_DRIVER and not section.has("endpoint"):
        problems.add("cloud.endpoint", "is required for the cloudstack driver: the API URL, such as "
                                       "'https://cloud.example.com/client/api'")
    config = CloudConfig(
        driver=driver,
        endpoint=endpoint,
        zone=section.required("zone", str, "", _check_not_empty),
        image=section.required("image", str, "", _check_not_empty),
        size=section.required("size", str, "", _check_not_empty),
        os=section.required("os", str, "", one_of(OPERATING_SYSTEMS)),
        operator_cidr=section.required("operator_cidr", str, "", check_cidr),
        ssh_public_key=section.required("ssh_public_key", str, "", check_public_key),
        start_timeout=section.value("start_timeout", int, 600, check_positive),
        expunge=section.value("expunge", bool, True),
        nodes=_parse_nodes(section.raw("nodes"), CLOUD_ROLES, other_nodes, problems),
    )
    section.finish()
    for key in CREDENTIAL_KEYS:
        if key not in credentials_given:
            problems.add(key, f"is required for the cloud section: `pulumi config set --secret {key} ...` "
                              "(the provider reads it from secret config; it is never stored in the state)")
    if config.os in COREOS and requested_packages:
        problems.add("prepare.packages", f"cloud.os is {config.os}, which has no package manager (read-only /usr): "
                                         "packages cannot be installed on its nodes; remove prepare.packages "
                                         "or set it to []")
    time_servers = raw_prepare.get("time_servers") if isinstance(raw_prepare, Mapping) else None
    if config.os == "fedora-coreos" and time_servers:
        problems.add("prepare.time_servers", "cloud.os fedora-coreos runs chronyd with the image's /etc/chrony.conf, "
                                             "which reads no drop-in file: the node layer cannot add servers there; "
                                             "leave prepare.time_servers empty (the image's pool, or DHCP's servers)")
    return config


def check_cloud_stack(cloud: CloudConfig, *, ssh_nodes: Sequence[tuple[str, Sequence[str]]], etcd_install: str | None,
                      problems: Problems) -> None:
    """What involves other sections: etcd and Kubernetes run on one node source (the security group opens
    their ports between cloud nodes only), and CoreOS nodes install etcd from a tarball (no package manager).
    `ssh_nodes`: (name, roles) of the `nodes` entries; `etcd_install`: etcd.install (None: no etcd)."""
    on_cloud = [node.name for node in cloud.nodes if set(node.roles) & set(CLOUD_ROLES)]
    on_ssh = [name for name, roles in ssh_nodes if set(roles) & set(CLOUD_ROLES)]
    if on_cloud and on_ssh:
        problems.add("cloud.nodes", f"etcd and Kubernetes run either on cloud nodes or on `nodes`, not on both: the "
                                    "security group opens their ports between cloud nodes only; nodes "
                                    f"{', '.join(on_ssh)} in `nodes` have role {' or '.join(CLOUD_ROLES)}")
    etcd_on_cloud = any("etcd" in node.roles for node in cloud.nodes)
    if cloud.coreos and etcd_on_cloud and etcd_install == "package":
        problems.add("etcd.install", f"cloud.os {cloud.os} has no package manager (read-only /usr): install etcd "
                                     "from release tarballs (etcd.install: tarball, etcd.tarballs.amd64: {path, "
                                     "sha256}); they go to /opt/bin")
