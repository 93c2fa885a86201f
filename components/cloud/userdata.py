"""First-boot configuration for cloud nodes, built as data and serialised (never text templates).

CoreOS images (Fedora CoreOS, Flatcar) read an Ignition config (spec 3.3.0); Debian and Ubuntu cloud images
read cloud-init user data. Both carry only what the SSH recipes need before their first step: the deploy
key for the image's login user, the hostname, the kernel modules and sysctls the node layer sets
(`components/nodes/templates/prepare.sh`, byte for byte, so its first run finds them in place), and the SSH
host key the stack generated for the node (so that even the first connection is pinned: the user data is then
a secret). Everything else is done over SSH by the same recipes as on any other node.
"""

from __future__ import annotations

import json
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import yaml

IGNITION_VERSION = "3.3.0"
COREOS = ("fedora-coreos", "flatcar")
CLOUD_INIT = ("debian", "ubuntu")
OPERATING_SYSTEMS = (*COREOS, *CLOUD_INIT)
# The login user each image family creates and gives the key to (steps then run through `sudo -n`).
LOGIN_USERS: Mapping[str, str] = {"fedora-coreos": "core", "flatcar": "core", "debian": "debian", "ubuntu": "ubuntu"}
# The files prepare.sh writes when kubernetes_networking is on (tests compare them with prepare.sh).
MODULES_FILE = "/etc/modules-load.d/cluster-cookbook.conf"
MODULES = ("overlay", "br_netfilter")
SYSCTL_FILE = "/etc/sysctl.d/99-cluster-cookbook.conf"
SYSCTLS = (("net.ipv4.ip_forward", "1"), ("net.bridge.bridge-nf-call-iptables", "1"),
           ("net.bridge.bridge-nf-call-ip6tables", "1"))
FILE_MODE = 0o644
HOST_KEY_FILE = "/etc/ssh/ssh_host_ed25519_key"  # sshd's default ed25519 host key (its .pub beside it)
HOST_KEY_MODE = 0o600


@dataclass(frozen=True)
class HostKey:
    """An ed25519 SSH host key: the private key in OpenSSH format, and its public line ("ssh-ed25519 AAAA...")."""

    private_openssh: str
    public: str


@dataclass(frozen=True)
class FirstBoot:
    """What a node needs before SSH takes over. `host_key`: the node's ed25519 host key (None: the image
    generates its own at first boot, and nothing can pin it)."""

    os: str
    hostname: str
    ssh_public_key: str
    kubernetes_networking: bool = True
    host_key: HostKey | None = None

    @property
    def login_user(self) -> str:
        return LOGIN_USERS[self.os]


def node_files(boot: FirstBoot) -> dict[str, str]:
    """Path -> content of the files written at first boot (besides the hostname)."""
    if not boot.kubernetes_networking:
        return {}
    return {
        MODULES_FILE: "".join(f"{module}\n" for module in MODULES),
        SYSCTL_FILE: "".join(f"{key} = {value}\n" for key, value in SYSCTLS),
    }


def _data_url(text: str) -> str:
    """An RFC 2397 data URL, every reserved character percent-encoded (what Ignition's `source` accepts)."""
    return "data:," + urllib.parse.quote(text, safe="")


def ignition_config(boot: FirstBoot) -> dict[str, Any]:
    """The Ignition spec 3.3.0 config of one CoreOS node, as data."""
    if boot.os not in COREOS:
        raise ValueError(f"Ignition is for {', '.join(COREOS)}, not {boot.os!r}")
    files = {path: (content, FILE_MODE) for path, content in {"/etc/hostname": f"{boot.hostname}\n",
                                                               **node_files(boot)}.items()}
    if boot.host_key is not None:  # in place before sshd's first start (Ignition runs in the initramfs)
        files[HOST_KEY_FILE] = (_ending_newline(boot.host_key.private_openssh), HOST_KEY_MODE)
        files[f"{HOST_KEY_FILE}.pub"] = (_ending_newline(boot.host_key.public), FILE_MODE)
    return {
        "ignition": {"version": IGNITION_VERSION},
        "passwd": {"users": [{"name": boot.login_user, "sshAuthorizedKeys": [boot.ssh_public_key.strip()]}]},
        "storage": {"files": [
            {"path": path, "mode": mode, "overwrite": True, "contents": {"source": _data_url(content)}}
            for path, (content, mode) in sorted(files.items())
        ]},
    }


def _ending_newline(text: str) -> str:
    return text.strip() + "\n"


def cloud_config(boot: FirstBoot) -> dict[str, Any]:
    """The cloud-init `#cloud-config` of one Debian/Ubuntu node, as data (the key goes to the image's
    default user: `debian` or `ubuntu`)."""
    if boot.os not in CLOUD_INIT:
        raise ValueError(f"cloud-init user data is for {', '.join(CLOUD_INIT)}, not {boot.os!r}")
    config: dict[str, Any] = {
        "hostname": boot.hostname,
        "preserve_hostname": False,
        "ssh_authorized_keys": [boot.ssh_public_key.strip()],
        "write_files": [{"path": path, "permissions": "0644", "owner": "root:root", "content": content}
                        for path, content in sorted(node_files(boot).items())],
    }
    if boot.host_key is not None:  # cloud-init's cc_ssh: replaces the image's keys before sshd starts
        config["ssh_keys"] = {"ed25519_private": _ending_newline(boot.host_key.private_openssh),
                              "ed25519_public": boot.host_key.public.strip()}
    return config


def render_user_data(boot: FirstBoot) -> str:
    """The user data string handed to the cloud: compact sorted JSON for Ignition, `#cloud-config` YAML."""
    if boot.os in COREOS:
        return json.dumps(ignition_config(boot), sort_keys=True, separators=(",", ":"))
    return "#cloud-config\n" + yaml.safe_dump(cloud_config(boot), sort_keys=True, default_flow_style=False,
                                             width=4096)  # keys and lines unwrapped
