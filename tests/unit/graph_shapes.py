"""Every graph shape the program can produce, as stack configs: the shipped stacks plus the variants their
recipes take (growth, removal, install modes, Pis, bastions, non-root users, each recipe's options).

The whole-graph checks (parents, names, secrecy) run over all of them (tests/unit/test_graph_shapes.py), so a
child that loses `parent=self` or a secret that leaks in one variant only is still caught. A shape is a
function of a scratch directory (for the artifact files some modes upload) returning the stack config.
"""

from __future__ import annotations

import copy
import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.harness.program import load_stack_config

Shape = Callable[[Path], dict[str, Any]]
NS = "cluster-cookbook"


def _stack(name: str) -> dict[str, Any]:
    return {key.removeprefix(f"{NS}:"): value for key, value in copy.deepcopy(load_stack_config(name)).items()}


def _artifact(directory: Path, name: str) -> dict[str, str]:
    path = directory / name
    path.write_bytes(name.encode())
    return {"path": str(path), "sha256": hashlib.sha256(name.encode()).hexdigest()}


def _pi(name: str, address: str, *roles: str) -> dict[str, Any]:
    return {"name": name, "address": address, "kind": "pi", "roles": list(roles)}


def etcd_growth(_: Path) -> dict[str, Any]:
    config = _stack("pi-home")
    config["nodes"] += [_pi("pi-d", "192.168.1.24", "etcd", "worker"), _pi("pi-e", "192.168.1.25", "etcd", "worker")]
    return config


def etcd_replacement(_: Path) -> dict[str, Any]:
    config = _stack("pi-home")
    config["nodes"].append(_pi("pi-d", "192.168.1.24", "etcd", "worker"))
    config["etcd"]["removed"] = ["pi-c"]
    config["nodes"][2]["roles"] = ["etcd"]  # its worker role moved to pi-d
    return config


def etcd_tarball_linux_bastion(directory: Path) -> dict[str, Any]:
    """Linux hosts behind a bastion, a non-root user, etcd from release tarballs (one per architecture)."""
    config = _stack("pi-home")
    for node in config["nodes"]:
        node["kind"] = "linux"
        node["user"] = "admin"
        node["proxy"] = {"host": "203.0.113.5", "user": "jump"}
    config["etcd"]["install"] = "tarball"
    config["etcd"]["tarballs"] = {arch: _artifact(directory, f"etcd-{arch}.tar.gz") for arch in ("arm64", "amd64")}
    return config


def etcd_only_single_linux(_: Path) -> dict[str, Any]:
    return {"nodes": [{"name": "solo", "address": "10.0.0.5", "roles": ["etcd"]}], "etcd": {"install": "package"}}


def kubernetes_airgap_wireguard(directory: Path) -> dict[str, Any]:
    config = _stack("pi-home")
    config["kubernetes"]["install"] = "airgap"
    config["kubernetes"]["airgap"] = {
        arch: {"binary": _artifact(directory, f"k3s-{arch}"), "images": _artifact(directory, f"images-{arch}.tar.zst")}
        for arch in ("arm64", "amd64")}
    config["kubernetes"]["flannel"] = {"backend": "wireguard-native"}
    config["kubernetes"]["api"] = {"name": "k8s.home.lan"}
    return config


def kubernetes_preinstalled_servers_only(_: Path) -> dict[str, Any]:
    config = _stack("pi-home")
    for node in config["nodes"]:
        node["roles"] = ["etcd", "control-plane", "worker"]
    config["kubernetes"]["install"] = "preinstalled"
    del config["store"]
    return config


def zookeeper_growth(_: Path) -> dict[str, Any]:
    config = _stack("mesos")
    config["nodes"] += [{"name": "zk-4", "address": "192.168.20.14", "roles": ["zookeeper"]},
                        {"name": "zk-5", "address": "192.168.20.15", "roles": ["zookeeper"]}]
    config["zookeeper"]["ids"] |= {"zk-4": 4, "zk-5": 5}
    return config


def zookeeper_shrink(_: Path) -> dict[str, Any]:
    """5 servers of which 2 are removed (their node entries and ids stay: nothing runs on them)."""
    config = zookeeper_growth(_)
    config["zookeeper"]["removed"] = ["zk-4", "zk-5"]
    return config


def mesos_zookeeper_in_containers(_: Path) -> dict[str, Any]:
    config = _stack("mesos")
    del config["zookeeper"]
    for node in config["nodes"]:
        node["roles"] = [role for role in node["roles"] if role != "zookeeper"]
    return config


def store_built_image(_: Path) -> dict[str, Any]:
    config = _stack("s3-store")
    config["store"]["pithos"].pop("image", None)
    config["store"]["pithos"]["build"] = {"registry": "registry.lan:5000", "username": "builder"}
    return config


def cloud_debian_tarball_bastion(directory: Path) -> dict[str, Any]:
    """Cloud nodes on Debian (cloud-init user data, apt packages), etcd from uploaded tarballs, a bastion."""
    config = _stack("cloudstack")
    config["cloud"]["os"] = "debian"
    config["prepare"]["packages"] = ["jq"]
    config["ssh"]["proxy"] = {"host": "203.0.113.5", "user": "jump"}
    config["etcd"]["install"] = "tarball"
    config["etcd"]["tarballs"] = {"amd64": _artifact(directory, "etcd-amd64.tar.gz")}
    return config


def cloud_member_replaced_store_on_cloud(_: Path) -> dict[str, Any]:
    """A dead cloud etcd member removed (its VM stays) and replaced; the object store on the cloud cluster."""
    config = _stack("cloudstack")
    config["cloud"]["nodes"].append({"name": "etcd-4", "roles": ["etcd"]})
    config["etcd"]["removed"] = ["etcd-2"]
    config["store"] = _stack("pi-home")["store"]
    return config


SHAPES: dict[str, Shape] = {shape.__name__.replace("_", "-"): shape for shape in (
    etcd_growth, etcd_replacement, etcd_tarball_linux_bastion, etcd_only_single_linux,
    kubernetes_airgap_wireguard, kubernetes_preinstalled_servers_only, zookeeper_growth, zookeeper_shrink,
    mesos_zookeeper_in_containers, store_built_image, cloud_debian_tarball_bastion,
    cloud_member_replaced_store_on_cloud,
)}
