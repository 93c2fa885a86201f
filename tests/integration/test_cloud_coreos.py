"""Cloud nodes on hosts that behave like Fedora CoreOS / Flatcar: the whole program (cloud -> hosts -> etcd) on
booted test hosts, with the cloud providers run against the fake CloudStack.

Each test host is made to look like a Flatcar VM before anything runs: a `core` user with passwordless sudo and
no SSH key yet, systemd-timesyncd present (Flatcar's time service), no apt or dpkg, and `/usr` read-only (a bind
mount remounted read-only inside the host). The fake cloud "boots" each deployed VM on the next test host as
Ignition would: it writes the config's files (hostname, modules, sysctls, the SSH host key the stack generated)
and the `core` user's key, then restarts sshd so it serves that host key. Then the program, unchanged: the node
layer prepares the hosts over SSH (the host key pinned from the first connection), etcd's tarball mode
installs into /opt/bin (the test image has no etcd: the tarball is made of this machine's etcd 3.4.23
binaries), and the cluster forms; a second run changes nothing; a changed setting restarts one member at a
time from the scripts in /opt/lib. Measured numbers are printed with `-s`.
"""

from __future__ import annotations

import functools
import http.server
import json
import os
import shutil
import subprocess
import threading
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.harness.executing import ExecutingMocks, StackState
from tests.harness.program import run_program
from tests.harness.tls import emulate_tls
from tests.infra.hosts import HostFleet, TestHost
from tests.integration.conftest import boot_fleet
from tests.integration.test_etcd import release_tarball
from tests.unit.cloud_support import (
    API_KEY,
    API_SECRET,
    ENDPOINT,
    IMAGE,
    SIZE,
    ZONE,
    ConfiguredDynamicEmulator,
    FakeCloudStack,
    installed,
)

pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(shutil.which("etcdctl") is None, reason="needs etcdctl (Debian etcd-client)")]

HOSTS = ["f1", "f2", "f3"]
MEMBERS = ["etcd-1", "etcd-2", "etcd-3"]
NUMBERS: dict[str, Any] = {}
SECRET_KEYS = ["ssh_private_key", "cloud_api_key", "cloud_api_secret"]

# What a Flatcar VM has and lacks, on a Debian test host: run as root inside it before the fake cloud boots it.
LIKE_FLATCAR = (
    "useradd --create-home --shell /bin/bash core && "
    "echo 'core ALL=(ALL) NOPASSWD: ALL' > /etc/sudoers.d/core && chmod 0440 /etc/sudoers.d/core && "
    "apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq systemd-timesyncd >/dev/null && "
    "rm -f /usr/bin/apt-get /usr/bin/apt /usr/bin/dpkg /usr/bin/dpkg-query && "
    "mount --bind /usr /usr && mount -o remount,bind,ro /usr"
)


def boot_like_ignition(host: TestHost, user_data: str) -> None:
    """Applies an Ignition config's files and the login user's keys, as Ignition does in the initramfs, then
    restarts sshd so that it serves the host key the config carries (sshd reads its keys when it starts)."""
    config = json.loads(user_data)
    assert config["ignition"]["version"] == "3.3.0"
    for file in config["storage"]["files"]:
        content = urllib.parse.unquote(file["contents"]["source"].removeprefix("data:,"))
        host.run(["install", "-D", "-m", format(file["mode"], "o"), "/dev/stdin", file["path"]], input=content)
    for user in config["passwd"]["users"]:
        keys = "".join(f"{key}\n" for key in user["sshAuthorizedKeys"])
        home = f"/home/{user['name']}/.ssh"
        host.run(["install", "-d", "-m", "0700", "-o", user["name"], "-g", user["name"], home])
        host.run(["install", "-m", "0600", "-o", user["name"], "-g", user["name"], "/dev/stdin",
                  f"{home}/authorized_keys"], input=keys)
    host.run("hostname \"$(cat /etc/hostname)\" && systemctl restart ssh")


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HostFleet]:
    for fleet in boot_fleet(HOSTS, tmp_path_factory):
        started = time.monotonic()
        for host in fleet:
            host.run(LIKE_FLATCAR)
            assert host.run("findmnt -rno OPTIONS --target /usr").stdout.split(",")[0] == "ro"
            assert host.run("command -v apt-get dpkg", check=False).returncode != 0
            assert host.run("test -e /usr/bin/etcd", check=False).returncode != 0  # the image has no etcd
        NUMBERS["make_hosts_like_flatcar_seconds"] = round(time.monotonic() - started, 1)
        yield fleet
    print("\ncloud CoreOS numbers:", json.dumps(NUMBERS, indent=1))


class Cloud:
    """The fake cloud whose VMs boot on the test hosts, and the stack's state across runs."""

    def __init__(self, fleet: HostFleet, workdir: Path):
        self.fleet = fleet
        self.workdir = workdir
        self.state = StackState()
        self.booted: dict[str, str] = {}  # VM name -> test host
        self.fake = FakeCloudStack(boot=self.boot)
        self.etcd: dict[str, Any] = {}
        self.outputs: dict[str, Any] = {}
        self.tarball = release_tarball(workdir / "release")

    def boot(self, name: str, user_data: str) -> str:
        host = self.fleet[HOSTS[len(self.booted)]]
        boot_like_ignition(host, user_data)
        self.booted[name] = host.name
        return host.address

    def config(self) -> dict[str, Any]:
        path, sha256 = self.tarball
        return {
            "cloud": {"endpoint": ENDPOINT, "zone": ZONE, "image": IMAGE, "size": SIZE, "os": "flatcar",
                      "operator_cidr": "10.250.0.0/16",
                      "ssh_public_key": self.fleet.public_key,  # the deploy key: Ignition gives it to core
                      "nodes": [{"name": name, "roles": ["etcd"]} for name in MEMBERS]},
            "ssh": {"dial_error_limit": 3, "per_dial_timeout": 5, "reboot_timeout": 60},
            "prepare": {"packages": [], "kubernetes_networking": True},
            "etcd": {"install": "tarball", "version": "3.4.23", "tarballs": {"amd64": {"path": path, "sha256": sha256}},
                     "bootstrap": MEMBERS, "health_timeout": 120, **self.etcd},
            "ssh_private_key": self.fleet.private_key_pem, "cloud_api_key": API_KEY, "cloud_api_secret": API_SECRET,
        }

    def up(self) -> ExecutingMocks:
        config = self.config()
        mocks = ExecutingMocks(self.state, emulators={"tls": emulate_tls,
                                                      "pulumi-python": ConfiguredDynamicEmulator(config)})
        with installed(self.fake):
            self.outputs = run_program(mocks, config, stack="it-cloud", secret_keys=SECRET_KEYS)
        mocks.finish()
        return mocks

    def host(self, member: str) -> TestHost:
        return self.fleet[self.booted[member]]

    def etcdctl(self, *args: str) -> subprocess.CompletedProcess[str]:
        pki = self.workdir / "pki"
        pki.mkdir(exist_ok=True)
        etcd = self.outputs["etcd"]
        for file, key in (("ca.crt", "ca_cert"), ("client.crt", "client_cert"), ("client.key", "client_key")):
            (pki / file).write_text(etcd[key])
        endpoints = ",".join(etcd["client_endpoints"])
        return subprocess.run(["etcdctl", f"--endpoints={endpoints}", f"--cacert={pki}/ca.crt",
                               f"--cert={pki}/client.crt", f"--key={pki}/client.key", "--dial-timeout=3s", *args],
                              capture_output=True, text=True, env={**os.environ, "ETCDCTL_API": "3"}, timeout=60,
                              check=False)


@pytest.fixture(scope="module")
def cloud(fleet: HostFleet, tmp_path_factory: pytest.TempPathFactory) -> Cloud:
    return Cloud(fleet, tmp_path_factory.mktemp("cloud"))


def main_pids(cloud: Cloud) -> dict[str, str]:
    return {member: cloud.host(member).run("systemctl show -p MainPID --value cookbook-etcd").stdout.strip()
            for member in MEMBERS}


def test_vms_become_hosts_and_etcd_forms_from_opt_bin_on_a_read_only_usr(cloud: Cloud) -> None:
    started = time.monotonic()
    mocks = cloud.up()
    NUMBERS["first_up_seconds"] = round(time.monotonic() - started, 1)
    assert sorted(cloud.booted) == MEMBERS and len(cloud.fake.commands("deployVirtualMachine")) == 3
    health = cloud.etcdctl("endpoint", "health", "--cluster")
    assert health.returncode == 0 and health.stderr.count("is healthy") == 3, health.stderr
    members = json.loads(cloud.etcdctl("member", "list", "-w", "json").stdout)["members"]
    assert sorted(member["name"] for member in members) == MEMBERS
    for member in MEMBERS:
        host, node = cloud.host(member), cloud.outputs["nodes"][member]
        assert node["usr_read_only"] is True and node["address"] == host.address
        assert host.run("cat /etc/hostname").stdout == f"{member}\n"
        assert host.run("/opt/bin/etcd --version").stdout.startswith("etcd Version: 3.4.23")
        assert host.run("test -e /usr/local/bin/etcd", check=False).returncode != 0
        unit = host.read_file("/etc/systemd/system/cookbook-etcd.service")
        assert "ExecStart=/opt/bin/etcd\n" in unit and "/opt/lib/cookbook-etcd/config-hash" in unit
        assert host.run("test -x /opt/lib/cookbook-etcd/snapshot").returncode == 0
        assert host.run("systemctl is-enabled systemd-timesyncd").stdout.strip() == "enabled"
        assert host.run("systemctl is-active cookbook-etcd").stdout.strip() == "active"
        # The host key the first boot wrote is the one every step was pinned to.
        served = host.read_file("/etc/ssh/ssh_host_ed25519_key.pub").split()[:2]
        assert " ".join(served) == cloud.outputs["cloud_nodes"][member]["host_key"]
    prepares = {name for op, name in mocks.operations if name.endswith("-prepare")}
    assert prepares == {f"{member}-prepare" for member in MEMBERS}


def test_a_second_run_changes_nothing(cloud: Cloud) -> None:
    pids = main_pids(cloud)
    mocks = cloud.up()
    assert [op for op in mocks.operations if op[0] != "read"] == []
    assert main_pids(cloud) == pids


def test_a_changed_setting_restarts_one_member_at_a_time_on_the_read_only_hosts(cloud: Cloud) -> None:
    pids = main_pids(cloud)
    cloud.etcd.update(heartbeat_interval=150, election_timeout=1500)
    started = time.monotonic()
    mocks = cloud.up()
    NUMBERS["settings_change_rolling_restart_3_seconds"] = round(time.monotonic() - started, 1)
    after = main_pids(cloud)
    assert all(after[member] != pids[member] for member in MEMBERS), (pids, after)
    assert [name for _, name in mocks.operations if name.startswith("etcd-member-")] == [
        f"etcd-member-{member}" for member in MEMBERS]
    # The hosts share this machine's kernel, so their monotonic clocks agree: the restarts came in member
    # order, each after the previous member was back (its step waits for that before the next one starts).
    starts = [int(cloud.host(member).run("systemctl show -p ExecMainStartTimestampMonotonic --value "
                                         "cookbook-etcd").stdout) for member in MEMBERS]
    assert starts == sorted(starts) and len(set(starts)) == 3, starts
    assert cloud.etcdctl("endpoint", "health", "--cluster").returncode == 0
    env = cloud.host("etcd-1").read_file("/etc/cookbook-etcd/etcd.env")
    assert "ETCD_HEARTBEAT_INTERVAL=150\n" in env


@pytest.fixture
def release_mirror(cloud: Cloud) -> Iterator[str]:
    """etcd's release layout (v<version>/SHA256SUMS and the tarball) served to the hosts from this machine."""
    path, sha256 = cloud.tarball
    root = cloud.workdir / "mirror"
    (root / "v3.4.23").mkdir(parents=True, exist_ok=True)
    shutil.copy2(path, root / "v3.4.23" / Path(path).name)
    (root / "v3.4.23" / "SHA256SUMS").write_text(f"{'0' * 64}  etcd-v3.4.23-linux-arm64.tar.gz\n"
                                                 f"{sha256}  {Path(path).name}\n")
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer((cloud.fleet.gateway, 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://{cloud.fleet.gateway}:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_switching_to_the_download_mode_fetches_what_is_missing_and_restarts_nothing(
        cloud: Cloud, release_mirror: str) -> None:
    """The shipped stack's mode: each host fetches the release and checks it against SHA256SUMS. A host whose
    tarball is gone downloads it; the member steps' inputs are the same (same tarball, same sha256): no
    member step runs, no member restarts."""
    pids = main_pids(cloud)
    cloud.host("etcd-2").run("rm -f /var/tmp/cookbook-etcd-v3.4.23-linux-amd64.tar.gz")
    cloud.etcd.update(install="download", download_url=release_mirror)
    mocks = cloud.up()
    ran = {name for _, name in mocks.operations}
    assert {f"etcd-download-{member}" for member in MEMBERS} <= ran
    assert not {name for name in ran if name.startswith("etcd-member-")}
    outputs = {name: res.outputs["stdout"] for res in cloud.state.resources.values()
               if (name := res.name).startswith("etcd-download-")}
    assert "changed: downloaded etcd-v3.4.23-linux-amd64.tar.gz" in outputs["etcd-download-etcd-2"]
    assert "changed:" not in outputs["etcd-download-etcd-1"] + outputs["etcd-download-etcd-3"]
    assert cloud.host("etcd-2").run("sha256sum /var/tmp/cookbook-etcd-v3.4.23-linux-amd64.tar.gz").stdout.split()[0] \
        == cloud.tarball[1]
    assert main_pids(cloud) == pids and cloud.etcdctl("endpoint", "health", "--cluster").returncode == 0
