"""The local stack's etcd for real: the program (`__main__.py`, a `local` section with Kubernetes and the registry
off) runs under ExecutingMocks with its Docker resources executed on a real Docker engine (Debian's docker.io,
started here in its own network namespace, its default bridge kept like a user's engine), pulumi-tls emulated
with real keys, and the real `etcdctl` checks the cluster through the loopback ports the stack publishes.

The engine cannot pull images here. The etcd image is built from Debian's etcd packages (the test hosts' offline
apt repository, filled by debootstrap's apt) and the root filesystem's glibc, `docker import`ed with the official
image's interface: `/usr/local/bin/etcd` and `etcdctl`, etcd configured by `ETCD_*` variables, and no shell (the
official image is distroless: a shell-form healthcheck would fail on both). Debian's etcd is 3.4.23; the stack
pins the official v3.6 image, which reads the same variables.

k3s, Cassandra, Pithos and the registry cannot run here (no images): tests/unit/test_local.py covers their
containers under mocks.
"""

from __future__ import annotations

import datetime
import hashlib
import io
import json
import os
import shutil
import signal
import subprocess
import tarfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.harness.docker_emulator import DockerMocks
from tests.harness.program import run_program
from tests.harness.tls import emulate_tls
from tests.infra.docker_engine import DOCKER, DOCKERD, DockerEngine
from tests.infra.rootfs import STANDARD_PATH, _exclusive_lock, cache_dir, ensure_apt_repo, ensure_rootfs, recipe_hash
from tests.integration.local_engine import EngineSetup as Setup
from tests.integration.local_engine import engine_setup

pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(shutil.which(DOCKERD) is None, reason="needs dockerd (Debian docker.io)")]

ENGINE_HOST = "local"  # the engine's network namespace: cN-local in this test lane
IMAGE = "cookbook-test/etcd:3.4.23-debian"
IMAGE_VERSION = 1  # bump when the image recipe below changes
ETCDCTL = "/usr/bin/etcdctl"  # Debian's etcd-client on this machine
PREFIX = "it-local"
CLIENT_PORTS = [2379, 22379, 32379]
MEMBERS = [f"{PREFIX}-etcd-{index}" for index in (1, 2, 3)]
CONFIG: dict[str, Any] = {"local": {
    "prefix": PREFIX, "subnet": "10.213.0.0/24",
    "etcd": {"image": IMAGE, "members": 3, "client_ports": CLIENT_PORTS, "memory_mb": 256, "cpus": "0.5"},
    "kubernetes": {"enabled": False}, "registry": {"enabled": False},
}}
STACK = "it-local"
NUMBERS: dict[str, Any] = {}


# --- the etcd image ---------------------------------------------------------------------------------------
def _image_hash(debs: list[Path]) -> str:
    recipe = {"version": IMAGE_VERSION, "rootfs": recipe_hash(), "debs": sorted(deb.name for deb in debs)}
    return hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:12]


def etcd_image_archive() -> Path:
    """A tar of the etcd image's root filesystem, built once and cached beside the test image: Debian's
    etcd-server and etcd-client binaries at the official image's paths, and the glibc they link against."""
    repo, rootfs = ensure_apt_repo(), ensure_rootfs()
    debs = sorted(path for name in ("etcd-server", "etcd-client") for path in repo.glob(f"{name}_*.deb"))
    assert len(debs) == 2, f"the offline apt repository lacks etcd-server/etcd-client: {debs}"
    root = cache_dir()
    final = root / f"docker-etcd-{_image_hash(debs)}.tar"
    if final.is_file():
        return final
    with _exclusive_lock(root / ".build.lock"):
        if final.is_file():
            return final
        staging = root / f".docker-etcd-{os.getpid()}"
        shutil.rmtree(staging, ignore_errors=True)
        try:
            image, unpacked = staging / "rootfs", staging / "debs"
            unpacked.mkdir(parents=True)
            for deb in debs:
                subprocess.run(["dpkg-deb", "-x", str(deb), str(unpacked)], check=True, capture_output=True)
            (image / "usr/local/bin").mkdir(parents=True)
            for binary in ("etcd", "etcdctl"):
                shutil.copy2(unpacked / "usr/bin" / binary, image / "usr/local/bin" / binary)
            # glibc's loader and libc (the binaries need nothing else: `ldd`), and the merged-/usr links.
            libc_list = next((rootfs / "var/lib/dpkg/info").glob("libc6:*.list")).read_text().splitlines()
            # Each at its real directory (merged /usr: /lib is a link to usr/lib), links kept as links.
            wanted = sorted({str((rootfs / path.lstrip("/")).parent.resolve().relative_to(rootfs.resolve())
                                 / Path(path).name)
                             for path in libc_list if Path(path).name.startswith(("ld-linux", "libc.so"))})
            links = [name for name in ("lib", "lib64") if (rootfs / name).is_symlink()]
            subprocess.run(["cp", "-a", "--parents", *links, *wanted, str(image)], cwd=rootfs, check=True,
                           capture_output=True)
            for directory in ("tmp", "var/lib/etcd"):
                (image / directory).mkdir(parents=True, exist_ok=True)
            (image / "tmp").chmod(0o1777)
            partial = staging / "rootfs.tar"
            subprocess.run(["tar", "-C", str(image), "--numeric-owner", "-cf", str(partial), "."], check=True,
                           capture_output=True)
            partial.rename(final)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return final


def import_image(engine: DockerEngine) -> None:
    changes = ['CMD ["/usr/local/bin/etcd"]', f"ENV PATH={STANDARD_PATH}", "WORKDIR /var/lib/etcd"]
    with open(etcd_image_archive(), "rb") as archive:
        subprocess.run([DOCKER, "-H", engine.url, "import", *(f"--change={c}" for c in changes), "-", IMAGE],
                       stdin=archive, capture_output=True, check=True, timeout=600)


# --- the engine and the stack -----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    yield from engine_setup(ENGINE_HOST, tmp_path_factory, import_image, NUMBERS, "local etcd")


def up(setup: Setup, program: Callable[[], None] | None = None) -> DockerMocks:
    mocks = DockerMocks(setup.state, {"": setup.engine.url}, emulators={"tls": emulate_tls})
    setup.outputs = run_program(mocks, CONFIG, stack=STACK, program=program)
    mocks.finish()
    return mocks


@pytest.fixture(scope="module")
def deployed(setup: Setup) -> dict[str, Any]:
    started = time.monotonic()
    mocks = up(setup)
    NUMBERS["bring_up_3_members_healthy_seconds"] = round(time.monotonic() - started, 1)
    NUMBERS["first_run_operations"] = len(mocks.operations)
    return setup.outputs


def write_pki(directory: Path, outputs: dict[str, Any]) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    etcd = outputs["etcd"]
    for file, key in (("etcd-ca.crt", "ca_cert"), ("etcd-client.crt", "client_cert"),
                      ("etcd-client.key", "client_key")):
        (directory / file).write_text(etcd[key])
    (directory / "etcd-client.key").chmod(0o600)
    return directory


def etcdctl(setup: Setup, *args: str, endpoints: list[str] | None = None, pki: Path | None = None,
            credentials: tuple[str, str] | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
    """The real etcdctl in the engine's network namespace, where the published ports listen on 127.0.0.1."""
    pki = pki or write_pki(setup.workdir / "pki", setup.outputs)
    cert, key = credentials or (str(pki / "etcd-client.crt"), str(pki / "etcd-client.key"))
    endpoints = endpoints or setup.outputs["etcd"]["client_endpoints"]
    argv = ["nsenter", f"--net={setup.netns}", ETCDCTL, f"--endpoints={','.join(endpoints)}",
            f"--cacert={pki / 'etcd-ca.crt'}", *([f"--cert={cert}", f"--key={key}"] if cert else []),
            "--dial-timeout=3s", "--command-timeout=5s", *args]
    done = subprocess.run(argv, capture_output=True, text=True, env={"ETCDCTL_API": "3", "PATH": STANDARD_PATH},
                          timeout=60, check=False)
    if check:
        assert done.returncode == 0, done.stderr
    return done


# --- tests ----------------------------------------------------------------------------------------------------
def test_the_members_form_one_cluster_over_mutual_tls(setup: Setup, deployed: dict[str, Any]) -> None:
    etcd = deployed["etcd"]
    assert etcd["client_endpoints"] == [f"https://127.0.0.1:{port}" for port in CLIENT_PORTS]
    health = etcdctl(setup, "endpoint", "health", "-w", "json")
    assert [entry["health"] for entry in json.loads(health.stdout)] == [True, True, True]
    members = json.loads(etcdctl(setup, "member", "list", "-w", "json").stdout)["members"]
    assert sorted(member["name"] for member in members) == MEMBERS
    assert sorted(url for member in members for url in member["peerURLs"]) == [
        "https://10.213.0.11:2380", "https://10.213.0.12:2380", "https://10.213.0.13:2380"]
    assert all(url.startswith("https://") for member in members for url in member["clientURLs"])
    # Written through one member, read through each of the others.
    first, *others = etcd["client_endpoints"]
    etcdctl(setup, "put", "/cookbook/local", "hello", endpoints=[first])
    for endpoint in others:
        assert etcdctl(setup, "get", "--print-value-only", "/cookbook/local", endpoints=[endpoint]).stdout.strip() \
            == "hello"


def test_the_etcdctl_env_output_works_as_the_readme_says(setup: Setup, deployed: dict[str, Any]) -> None:
    pki = write_pki(setup.workdir / "readme", deployed)
    env_file = pki / "etcdctl.env"
    env_file.write_text(deployed["etcd"]["etcdctl_env"])
    done = subprocess.run(
        ["nsenter", f"--net={setup.netns}", "bash", "-c", f'. "{env_file}" && {ETCDCTL} endpoint health'],
        capture_output=True, text=True, env={"ETCD_PKI_DIR": str(pki), "PATH": STANDARD_PATH}, timeout=60,
        check=False)
    assert done.returncode == 0, done.stderr
    assert done.stderr.count("is healthy") == 3


def _foreign_client(directory: Path) -> tuple[str, str]:
    """A client certificate from a CA the cluster does not trust."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "intruder")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=1)).sign(key, hashes.SHA256()))
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "intruder.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (directory / "intruder.key").write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                                               serialization.PrivateFormat.PKCS8,
                                                               serialization.NoEncryption()))
    return str(directory / "intruder.crt"), str(directory / "intruder.key")


def test_clients_without_the_clusters_certificate_are_refused(setup: Setup, deployed: dict[str, Any]) -> None:
    endpoint = [deployed["etcd"]["client_endpoints"][0]]
    assert etcdctl(setup, "get", "/cookbook/local", endpoints=endpoint, credentials=("", ""),
                   check=False).returncode != 0
    foreign = _foreign_client(setup.workdir / "foreign")
    assert etcdctl(setup, "get", "/cookbook/local", endpoints=endpoint, credentials=foreign,
                   check=False).returncode != 0
    # Plain http on the client port gets nowhere either.
    plain = subprocess.run(["nsenter", f"--net={setup.netns}", ETCDCTL, "--endpoints=http://127.0.0.1:2379",
                            "--dial-timeout=3s", "--command-timeout=5s", "get", "/cookbook/local"],
                           capture_output=True, text=True, timeout=60, check=False)
    assert plain.returncode != 0


def _file_mode(setup: Setup, container: str, path: str) -> int:
    archive = setup.engine.docker("cp", f"{container}:{path}", "-").stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        return tar.getmembers()[0].mode


def test_the_containers_run_as_the_recipe_declares(setup: Setup, deployed: dict[str, Any]) -> None:
    for index, (member, port) in enumerate(zip(MEMBERS, CLIENT_PORTS, strict=True), start=1):
        inspected = setup.inspect(member)
        host, config = inspected["HostConfig"], inspected["Config"]
        assert host["Privileged"] is False
        assert host["RestartPolicy"]["Name"] == "unless-stopped"
        assert host["PortBindings"] == {"2379/tcp": [{"HostIp": "127.0.0.1", "HostPort": str(port)}]}
        assert (host["Memory"], host["MemorySwap"], host["NanoCpus"]) == (256 * 2**20, 256 * 2**20, 500_000_000)
        assert list(inspected["NetworkSettings"]["Networks"]) == [PREFIX]
        assert inspected["NetworkSettings"]["Networks"][PREFIX]["IPAddress"] == f"10.213.0.{10 + index}"
        assert inspected["State"]["Health"]["Status"] == "healthy"
        assert config["Labels"]["managed-by"] == "cluster-cookbook"
        mounts = {mount["Destination"]: mount["Name"] for mount in inspected["Mounts"]}
        assert mounts == {"/var/lib/cookbook-etcd": f"{member}-data"}
        assert f"ETCD_NAME={member}" in config["Env"]
        assert not any("PRIVATE KEY" in variable for variable in config["Env"])
        assert _file_mode(setup, member, "/etc/cookbook-etcd/pki/member.key") & 0o777 == 0o600
    # Only loopback: nothing answers on the engine's other addresses.
    listening = subprocess.run(["nsenter", f"--net={setup.netns}", "ss", "-Htln"], capture_output=True, text=True,
                               check=True).stdout
    published = sorted(line.split()[3] for line in listening.splitlines()
                       if line.split()[3].rsplit(":", 1)[-1] in {str(port) for port in CLIENT_PORTS})
    assert published == sorted(f"127.0.0.1:{port}" for port in CLIENT_PORTS)


def test_a_killed_member_is_restarted_by_docker_and_rejoins(setup: Setup, deployed: dict[str, Any]) -> None:
    member = MEMBERS[0]
    pid = int(setup.docker("inspect", "--format", "{{.State.Pid}}", member))
    killed = time.monotonic()
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 90
    while True:
        state = setup.inspect(member)["State"]
        done = etcdctl(setup, "endpoint", "health", check=False)
        if state["Running"] and state["Pid"] != pid and done.returncode == 0:
            break
        assert time.monotonic() < deadline, (state, done.stderr)
        time.sleep(0.5)
    NUMBERS["member_kill_to_cluster_healthy_seconds"] = round(time.monotonic() - killed, 1)
    assert int(setup.docker("inspect", "--format", "{{.RestartCount}}", member)) >= 1
    # Its data survived on the volume: the key written before is still there, read through it.
    endpoint = [deployed["etcd"]["client_endpoints"][0]]
    assert etcdctl(setup, "get", "--print-value-only", "/cookbook/local", endpoints=endpoint).stdout.strip() == "hello"


def test_a_second_run_changes_nothing(setup: Setup, deployed: dict[str, Any]) -> None:
    ids = {member: setup.inspect(member)["Id"] for member in MEMBERS}
    started = time.monotonic()
    mocks = up(setup)
    NUMBERS["second_run_seconds"] = round(time.monotonic() - started, 1)
    assert mocks.operations == []
    assert {member: setup.inspect(member)["Id"] for member in MEMBERS} == ids
    assert setup.outputs["etcd"]["ca_cert"] == deployed["etcd"]["ca_cert"]


def etcd_config(members: int) -> dict[str, Any]:
    ports = [2379 + 10000 * index for index in range(members)]
    return {"local": {**CONFIG["local"],
                      "etcd": {**CONFIG["local"]["etcd"], "members": members, "client_ports": ports}}}


@pytest.mark.parametrize("members", [5, 1])
def test_a_changed_member_count_is_refused_and_changes_nothing(setup: Setup, deployed: dict[str, Any],
                                                               members: int) -> None:
    """3 -> 5 would start two members bootstrapping a cluster of their own (their healthchecks never pass);
    3 -> 1 would leave member 1 without a quorum once the others are deleted. The membership guard's check
    refuses both before any step, naming the key; the running cluster is untouched."""
    ids = {member: setup.inspect(member)["Id"] for member in MEMBERS}
    volumes = setup.docker("volume", "ls", "-q")
    mocks = DockerMocks(setup.state, {"": setup.engine.url}, emulators={"tls": emulate_tls})
    started = time.monotonic()
    with pytest.raises(Exception) as raised:
        run_program(mocks, etcd_config(members), stack=STACK)
    NUMBERS[f"refused_3_to_{members}_seconds"] = round(time.monotonic() - started, 1)
    message = str(raised.value)
    assert "local.etcd.members: the local etcd cluster was created with 3 members and cannot change to " \
           f"{members}" in message, message
    assert "make destroy" in message
    assert [op for op in mocks.operations if op[1].startswith(("local-etcd-container-", "local-etcd-data-"))] == []
    assert {member: setup.inspect(member)["Id"] for member in MEMBERS} == ids
    assert setup.docker("volume", "ls", "-q") == volumes
    etcdctl(setup, "endpoint", "health")
    assert sorted(m["name"] for m in json.loads(etcdctl(setup, "member", "list", "-w", "json").stdout)["members"]) \
        == MEMBERS


def test_a_changed_setting_replaces_the_members_and_keeps_their_data(setup: Setup, deployed: dict[str, Any]) -> None:
    """A new memory limit replaces every member container (the old one removed first: fixed names and
    addresses); the members restart together from their volumes, as after a reboot of the machine."""
    before = {member: setup.inspect(member)["Id"] for member in MEMBERS}
    changed = {"local": {**CONFIG["local"], "etcd": {**CONFIG["local"]["etcd"], "memory_mb": 320}}}
    mocks = DockerMocks(setup.state, {"": setup.engine.url}, emulators={"tls": emulate_tls})
    started = time.monotonic()
    setup.outputs = run_program(mocks, changed, stack=STACK)
    mocks.finish()
    NUMBERS["replace_3_members_healthy_seconds"] = round(time.monotonic() - started, 1)
    containers = [f"local-etcd-container-{member}" for member in MEMBERS]
    assert sorted(mocks.operations) == sorted([*(("replace-delete", name) for name in containers),
                                               *(("replace-create", name) for name in containers)])
    for member in MEMBERS:
        inspected = setup.inspect(member)
        assert inspected["Id"] != before[member] and inspected["HostConfig"]["Memory"] == 320 * 2**20
    etcdctl(setup, "endpoint", "health")
    assert etcdctl(setup, "get", "--print-value-only", "/cookbook/local").stdout.strip() == "hello"
    members = json.loads(etcdctl(setup, "member", "list", "-w", "json").stdout)["members"]
    assert sorted(member["name"] for member in members) == MEMBERS  # the same members, not new ones


def test_destroy_leaves_nothing_on_the_engine(setup: Setup, deployed: dict[str, Any]) -> None:
    """`make destroy` is `pulumi destroy`: every resource of the stack is deleted, as a run of an empty program
    followed by the engine's delete phase does here."""
    started = time.monotonic()
    mocks = up(setup, program=lambda: None)
    NUMBERS["destroy_seconds"] = round(time.monotonic() - started, 1)
    deleted = {name for operation, name in mocks.operations if operation == "delete"}
    assert {f"local-etcd-container-{member}" for member in MEMBERS} <= deleted
    assert setup.state.resources == {}
    assert setup.docker("ps", "-aq") == ""
    assert setup.docker("volume", "ls", "-q") == ""
    assert sorted(setup.docker("network", "ls", "--format", "{{.Name}}").split()) == ["bridge", "host", "none"]
    assert IMAGE in setup.docker("image", "ls", "--format", "{{.Repository}}:{{.Tag}}")  # kept (keep_locally)


def test_after_make_destroy_another_member_count_starts_a_new_cluster(setup: Setup) -> None:
    """What the refusal tells the user to do works: after the destroy (state and engine empty, the guard's record
    gone), a run with 1 member starts a healthy 1-member cluster; destroyed again, nothing is left."""
    assert setup.state.resources == {}
    started = time.monotonic()
    mocks = DockerMocks(setup.state, {"": setup.engine.url}, emulators={"tls": emulate_tls})
    setup.outputs = run_program(mocks, etcd_config(1), stack=STACK)
    mocks.finish()
    NUMBERS["fresh_1_member_healthy_seconds"] = round(time.monotonic() - started, 1)
    assert ("create", "local-etcd-membership") in mocks.operations
    fresh = write_pki(setup.workdir / "fresh", setup.outputs)
    etcdctl(setup, "endpoint", "health", pki=fresh)
    members = json.loads(etcdctl(setup, "member", "list", "-w", "json", pki=fresh).stdout)["members"]
    assert [member["name"] for member in members] == [MEMBERS[0]]
    up(setup, program=lambda: None)
    assert setup.state.resources == {} and setup.docker("ps", "-aq") == "" and setup.docker("volume", "ls", "-q") == ""
