"""The node layer on cloud nodes that run Fedora CoreOS or Flatcar: no apt, a read-only /usr. The prepare step
decides from the host which time service to use (the image's own) and refuses what cannot be done there.

The functions run for real under bash, with a PATH that has no apt-get and fakes of `findmnt` (a read-only
/usr) and `systemctl` (the units the image has); nothing here writes outside the test's directory. The whole
prepare step on a booted host with a read-only /usr is tests/integration/test_cloud_coreos.py."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from components.nodes.host import HostArgs, render_prepare_script
from components.shared.connection import SshConnection

FAKE_SYSTEMCTL = r'''
import os, sys
units = os.environ.get("FAKE_UNITS", "").split()
with open(os.environ["FAKE_CALLS"], "a") as log:
    log.write("systemctl " + " ".join(sys.argv[1:]) + "\n")
if sys.argv[1] == "cat":
    sys.exit(0 if sys.argv[2].removesuffix(".service") in units else 1)
if sys.argv[1] == "is-enabled":
    sys.exit(0 if sys.argv[-1] in os.environ.get("FAKE_ENABLED", "").split() else 1)
sys.exit(0)
'''
TOOLS = ("cat", "mkdir", "mktemp", "cmp", "chmod", "mv", "rm", "dirname", "sed", "grep", "tr", "head", "python3")


@pytest.fixture
def path_without_apt(tmp_path: Path) -> Path:
    """A bin directory with the tools the functions use, fakes of findmnt and systemctl, and no apt-get."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in TOOLS:
        found = shutil.which(tool)
        assert found, tool
        (bin_dir / tool).symlink_to(found)
    (bin_dir / "findmnt").write_text("#!/bin/sh\necho ro,relatime\n")
    (bin_dir / "systemctl").write_text(f"#!{sys.executable}\n{FAKE_SYSTEMCTL}")
    for fake in ("findmnt", "systemctl"):
        (bin_dir / fake).chmod(0o755)
    return bin_dir


def run(function: str, bin_dir: Path, units: str, time_servers: tuple[str, ...] = (),
        enabled: str = "") -> subprocess.CompletedProcess[str]:
    """Runs one function of the prepare step (its parameters and helpers defined, nothing of it run)."""
    script = render_prepare_script(HostArgs(SshConnection(host="192.0.2.1", user="core"), "n", packages=(),
                                            time_servers=time_servers))
    definitions = script[:script.rindex("\nset_hostname\n")]  # everything before the steps start
    env = {"PATH": str(bin_dir), "FAKE_UNITS": units, "FAKE_ENABLED": enabled,
           "FAKE_CALLS": str(bin_dir.parent / "calls")}
    return subprocess.run(["/bin/bash", "-c", f"{definitions}\n{function}"], capture_output=True, text=True,
                          env=env, check=False)


@pytest.mark.parametrize(("units", "expected"), [
    ("chronyd systemd-timesyncd", "chronyd"),  # Fedora CoreOS: chronyd runs (timesyncd is shipped, not used)
    ("systemd-timesyncd", "systemd-timesyncd"),  # Flatcar
])
def test_the_time_service_is_the_one_the_image_runs(path_without_apt: Path, units: str, expected: str) -> None:
    done = run("read_only_time_service", path_without_apt, units)
    assert done.returncode == 0 and done.stdout == f"{expected}\n", done.stderr


def test_a_read_only_host_without_a_time_service_is_an_error(path_without_apt: Path) -> None:
    done = run("configure_time_sync", path_without_apt, "")
    assert done.returncode != 0
    assert "neither chronyd nor systemd-timesyncd; nothing can be installed here" in done.stderr


def test_chronyd_keeps_the_images_sources_and_refuses_servers_it_cannot_take(path_without_apt: Path) -> None:
    done = run("configure_time_sync", path_without_apt, "chronyd", enabled="chronyd")
    assert done.returncode == 0, done.stderr
    assert done.stdout == ""  # nothing written, nothing enabled: chronyd already runs
    refused = run("configure_time_sync", path_without_apt, "chronyd", time_servers=("ntp.example.com",))
    assert refused.returncode == 1
    assert refused.stderr.startswith("error: prepare.time_servers: this host runs chronyd with its image's "
                                     "/etc/chrony.conf (Fedora CoreOS)")


def test_a_disabled_chronyd_is_enabled(path_without_apt: Path) -> None:
    done = run("configure_time_sync", path_without_apt, "chronyd")
    assert done.returncode == 0, done.stderr
    assert done.stdout == "changed: chronyd enabled\n"
    assert "systemctl enable --now chronyd" in (path_without_apt.parent / "calls").read_text()


def test_packages_are_refused_on_a_host_without_apt(path_without_apt: Path) -> None:
    script = render_prepare_script(HostArgs(SshConnection(host="192.0.2.1", user="core"), "n", packages=("jq",)))
    start = script.index("\nif [ \"${#PACKAGES[@]}\" -gt 0 ] && ! command -v apt-get")
    check = script[start:script.index("\nfi\n", start) + 4]
    definitions = script[:script.rindex("\nset_hostname\n")]
    done = subprocess.run(["/bin/bash", "-c", definitions + check + "echo not reached\n"], capture_output=True,
                          text=True, env={"PATH": str(path_without_apt)}, check=False)
    assert done.returncode == 1 and "not reached" not in done.stdout
    assert done.stderr == ("error: prepare.packages asks for jq, but this host has no apt-get (Fedora CoreOS, "
                           "Flatcar: nothing can be installed); set prepare.packages to []\n")
