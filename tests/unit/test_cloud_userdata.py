"""First-boot user data: Ignition 3.3.0 for Fedora CoreOS and Flatcar (golden files, ignition-validate), cloud-init
for Debian and Ubuntu, and the same module/sysctl files the node layer's prepare.sh writes."""

from __future__ import annotations

import base64
import json
import re
import subprocess
import urllib.parse
from pathlib import Path

import pytest
import yaml

from components.cloud.providers import MAX_USER_DATA_BASE64
from components.cloud.userdata import (
    COREOS,
    HOST_KEY_FILE,
    MODULES_FILE,
    SYSCTL_FILE,
    FirstBoot,
    HostKey,
    cloud_config,
    ignition_config,
    node_files,
    render_user_data,
)
from tests.harness.program import ROOT
from tests.harness.recording import fake_ed25519

GOLDEN = ROOT / "tests" / "data" / "cloudstack" / "golden"
KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIARldgzXBSQOjNeWmwe4DjlDqQyj8dKGhbfHKX2bOwm+ operator@example.com"
PREPARE = ROOT / "components" / "nodes" / "templates" / "prepare.sh"


def ignition_validate(document: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "config.ign"
    path.write_text(document, encoding="utf-8")
    return subprocess.run(["ignition-validate", str(path)], capture_output=True, text=True, check=False)


@pytest.mark.parametrize("os_name", COREOS)
def test_ignition_matches_the_golden_file(os_name: str) -> None:
    golden = json.loads((GOLDEN / f"ignition-{os_name}.json").read_text(encoding="utf-8"))
    assert ignition_config(FirstBoot(os_name, "etcd-1", KEY)) == golden


@pytest.mark.parametrize("os_name", ["debian", "ubuntu"])
def test_cloud_init_matches_the_golden_file(os_name: str) -> None:
    golden = (GOLDEN / f"cloud-init-{os_name}.yaml").read_text(encoding="utf-8")
    assert render_user_data(FirstBoot(os_name, "k8s-3", KEY)) == golden


@pytest.mark.parametrize("os_name", COREOS)
@pytest.mark.parametrize("networking", [True, False])
@pytest.mark.parametrize("hostname", ["etcd-1", "k8s-12"])
def test_every_generated_ignition_config_passes_ignition_validate(os_name: str, networking: bool, hostname: str,
                                                                  tmp_path: Path) -> None:
    document = render_user_data(FirstBoot(os_name, hostname, KEY, networking))
    done = ignition_validate(document, tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert json.loads(document)["ignition"]["version"] == "3.3.0"


def test_ignition_validate_rejects_a_broken_config(tmp_path: Path) -> None:
    """The validator is really consulted: a relative path fails."""
    config = ignition_config(FirstBoot("flatcar", "etcd-1", KEY))
    config["storage"]["files"][0]["path"] = "etc/hostname"
    done = ignition_validate(json.dumps(config), tmp_path)
    assert done.returncode != 0 and "path not absolute" in done.stdout + done.stderr


def _decoded_files(os_name: str, hostname: str, networking: bool = True) -> dict[str, str]:
    files = ignition_config(FirstBoot(os_name, hostname, KEY, networking))["storage"]["files"]
    return {f["path"]: urllib.parse.unquote(f["contents"]["source"].removeprefix("data:,")) for f in files}


@pytest.mark.parametrize("os_name", COREOS)
def test_ignition_holds_only_the_key_the_hostname_and_the_node_layer_files(os_name: str) -> None:
    config = ignition_config(FirstBoot(os_name, "etcd-1", KEY))
    assert sorted(config) == ["ignition", "passwd", "storage"]
    assert config["passwd"] == {"users": [{"name": "core", "sshAuthorizedKeys": [KEY]}]}
    assert sorted(config["storage"]) == ["files"]
    assert _decoded_files(os_name, "etcd-1") == {"/etc/hostname": "etcd-1\n", **node_files(
        FirstBoot(os_name, "etcd-1", KEY))}
    assert _decoded_files(os_name, "etcd-1", networking=False) == {"/etc/hostname": "etcd-1\n"}


def _heredoc(script: str, path: str) -> str:
    match = re.search(rf"install_file {re.escape(path)} 0644 <<'(\w+)'\n(.*?)\n\1\n", script, re.S)
    assert match, f"prepare.sh writes no {path}"
    return match.group(2) + "\n"


def test_first_boot_files_are_byte_for_byte_what_prepare_writes() -> None:
    """prepare.sh then finds them in place and changes nothing (its install_file compares content)."""
    script = PREPARE.read_text(encoding="utf-8")
    files = node_files(FirstBoot("flatcar", "n", KEY))
    assert files == {MODULES_FILE: _heredoc(script, MODULES_FILE), SYSCTL_FILE: _heredoc(script, SYSCTL_FILE)}


def test_cloud_init_gives_the_key_to_the_default_user_and_writes_the_same_files() -> None:
    document = render_user_data(FirstBoot("ubuntu", "k8s-3", KEY))
    assert document.startswith("#cloud-config\n")
    config = yaml.safe_load(document)
    assert config == cloud_config(FirstBoot("ubuntu", "k8s-3", KEY))
    assert config["hostname"] == "k8s-3" and config["ssh_authorized_keys"] == [KEY]
    assert {f["path"]: f["content"] for f in config["write_files"]} == node_files(FirstBoot("ubuntu", "k8s-3", KEY))


def test_each_family_refuses_the_other_format() -> None:
    with pytest.raises(ValueError, match="Ignition is for"):
        ignition_config(FirstBoot("debian", "n", KEY))
    with pytest.raises(ValueError, match="cloud-init user data is for"):
        cloud_config(FirstBoot("flatcar", "n", KEY))


def host_key(name: str = "n") -> HostKey:
    keys = fake_ed25519(name)
    return HostKey(keys["privateKeyOpenssh"], keys["publicKeyOpenssh"].strip())


@pytest.mark.parametrize("os_name", COREOS)
def test_ignition_writes_the_host_key_the_stack_pins_and_validates(os_name: str, tmp_path: Path) -> None:
    key = host_key()
    config = ignition_config(FirstBoot(os_name, "etcd-1", KEY, host_key=key))
    files = {f["path"]: f for f in config["storage"]["files"]}
    private, public = files[HOST_KEY_FILE], files[f"{HOST_KEY_FILE}.pub"]
    assert private["mode"] == 0o600 and public["mode"] == 0o644  # sshd refuses a private key others can read
    assert urllib.parse.unquote(private["contents"]["source"].removeprefix("data:,")) == key.private_openssh
    assert urllib.parse.unquote(public["contents"]["source"].removeprefix("data:,")) == key.public + "\n"
    done = ignition_validate(render_user_data(FirstBoot(os_name, "etcd-1", KEY, host_key=key)), tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr


def test_cloud_init_writes_the_host_key_through_ssh_keys() -> None:
    key = host_key()
    config = yaml.safe_load(render_user_data(FirstBoot("debian", "k8s-3", KEY, host_key=key)))
    assert config["ssh_keys"] == {"ed25519_private": key.private_openssh, "ed25519_public": key.public}


@pytest.mark.parametrize("os_name", ["fedora-coreos", "flatcar", "debian", "ubuntu"])
def test_user_data_with_a_host_key_fits_cloudstacks_limit(os_name: str) -> None:
    """deployVirtualMachine takes at most 4096 bytes of base64 user data in a GET request."""
    boot = FirstBoot(os_name, "a" * 63, KEY, host_key=host_key())
    assert len(base64.b64encode(render_user_data(boot).encode())) <= MAX_USER_DATA_BASE64
