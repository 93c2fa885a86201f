"""Docker engines for tests: one `dockerd` per test host, run on this machine inside that host's network
namespace, and a ZooKeeper image built here from Debian packages.

    with HostFleet(["d1", "d2", "d3"], workdir) as fleet, DockerEngines(fleet, workdir / "docker") as engines:
        engines["d1"].docker("ps")             # /usr/bin/docker -H unix://<socket> ps
        tag = engines.load_zookeeper_image()   # built once (cached), imported into every engine

Why so: Docker 20.10 (Debian's `docker.io`) works on this machine only when started in its own network
namespace with `nsenter --net=...` (`ip netns exec` breaks its cgroup mounts). Each test host already has one
(`cc-<host>` / `cN-<host>`), so a container with host networking listens on that host's address, as on a real
node; the engine itself (its data root, containerd, runc) lives on this machine. Engines create no bridge
(`--bridge=none`) and touch no iptables: the recipes only use host networking. No image can be pulled here:
images come from `docker import` of root filesystems built with debootstrap, cached like the test rootfs.

The ZooKeeper image is the test rootfs plus Debian's `zookeeper` (from the hosts' offline apt repository) and an
entrypoint implementing the documented interface of the official `zookeeper` image that the Mesos recipe uses:
`ZOO_MY_ID`, `ZOO_SERVERS`, `ZOO_4LW_COMMANDS_WHITELIST`, `ZOO_ADMINSERVER_ENABLED`, `ZOO_STANDALONE_ENABLED`,
`ZOO_AUTOPURGE_*`, `ZOO_TICK_TIME`/`ZOO_INIT_LIMIT`/`ZOO_SYNC_LIMIT`; `/conf/zoo.cfg` written only when absent,
`/data/myid` only when absent; data in `/data`, transaction logs in `/datalog`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING

from . import network
from .rootfs import STANDARD_PATH, _exclusive_lock, cache_dir, ensure_apt_repo, ensure_rootfs, recipe_hash

if TYPE_CHECKING:
    from .hosts import HostFleet

log = logging.getLogger(__name__)

DOCKERD = "/usr/sbin/dockerd"
DOCKER = "/usr/bin/docker"  # Debian's client (another `docker` may come first on PATH)
START_TIMEOUT = 60.0
ZOOKEEPER_IMAGE = "cookbook-test/zookeeper:3.8.0-debian"
IMAGE_VERSION = 1  # bump when the image recipe below changes

ENTRYPOINT = r"""#!/bin/bash
# The documented interface of the official `zookeeper` image, on Debian's zookeeper 3.8.0 (test image).
set -euo pipefail
: "${ZOO_CONF_DIR:=/conf}" "${ZOO_DATA_DIR:=/data}" "${ZOO_DATA_LOG_DIR:=/datalog}"
: "${ZOO_TICK_TIME:=2000}" "${ZOO_INIT_LIMIT:=5}" "${ZOO_SYNC_LIMIT:=2}" "${ZOO_MAX_CLIENT_CNXNS:=60}"
: "${ZOO_STANDALONE_ENABLED:=true}" "${ZOO_ADMINSERVER_ENABLED:=true}"
: "${ZOO_AUTOPURGE_PURGEINTERVAL:=0}" "${ZOO_AUTOPURGE_SNAPRETAINCOUNT:=3}"
mkdir -p "$ZOO_CONF_DIR" "$ZOO_DATA_DIR" "$ZOO_DATA_LOG_DIR"
if [ ! -f "$ZOO_CONF_DIR/zoo.cfg" ]; then
  {
    printf 'dataDir=%s\ndataLogDir=%s\n' "$ZOO_DATA_DIR" "$ZOO_DATA_LOG_DIR"
    printf 'tickTime=%s\ninitLimit=%s\nsyncLimit=%s\n' "$ZOO_TICK_TIME" "$ZOO_INIT_LIMIT" "$ZOO_SYNC_LIMIT"
    printf 'autopurge.snapRetainCount=%s\nautopurge.purgeInterval=%s\n' \
      "$ZOO_AUTOPURGE_SNAPRETAINCOUNT" "$ZOO_AUTOPURGE_PURGEINTERVAL"
    printf 'maxClientCnxns=%s\nstandaloneEnabled=%s\nadmin.enableServer=%s\n' \
      "$ZOO_MAX_CLIENT_CNXNS" "$ZOO_STANDALONE_ENABLED" "$ZOO_ADMINSERVER_ENABLED"
    for server in ${ZOO_SERVERS:-server.1=localhost:2888:3888;2181}; do
      printf '%s\n' "$server"
    done
    if [ -n "${ZOO_4LW_COMMANDS_WHITELIST:-}" ]; then
      printf '4lw.commands.whitelist=%s\n' "$ZOO_4LW_COMMANDS_WHITELIST"
    fi
  } >"$ZOO_CONF_DIR/zoo.cfg"
fi
if [ ! -f "$ZOO_DATA_DIR/myid" ]; then
  printf '%s\n' "${ZOO_MY_ID:-1}" >"$ZOO_DATA_DIR/myid"
fi
exec "$@"
"""
COMMAND = ["/usr/bin/java", "-Xmx128m", "-cp", "/usr/share/java/zookeeper.jar:/usr/share/java/slf4j-simple.jar",
           "org.apache.zookeeper.server.quorum.QuorumPeerMain", "/conf/zoo.cfg"]


class DockerEngineError(RuntimeError):
    pass


class DockerEngine:
    """One dockerd in a host's network namespace; its state under `root` on this machine. `bridge`: keep
    Docker's default bridge network (a user's engine has it; the provider creates containers on it before
    connecting them to their `networks_advanced`)."""

    def __init__(self, host: str, root: Path, bridge: bool = False) -> None:
        self.host = host
        self.bridge = bridge
        self.root = root
        self.socket = root / "docker.sock"
        self.netns = network.netns_path(host)
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"unix://{self.socket}"

    def start(self, timeout: float = START_TIMEOUT) -> None:
        for directory in ("data", "exec"):
            (self.root / directory).mkdir(parents=True, exist_ok=True)
        log_file = open(self.root / "dockerd.log", "ab")  # noqa: SIM115 - dockerd writes to it while it runs
        argv = ["nsenter", f"--net={self.netns}", DOCKERD, "--data-root", str(self.root / "data"),
                "--exec-root", str(self.root / "exec"), "-H", self.url, "--pidfile", str(self.root / "dockerd.pid"),
                *([] if self.bridge else ["--bridge=none"]), "--iptables=false", "--ip-masq=false",
                "--ip-forward=false"]
        self._proc = subprocess.Popen(argv, stdout=log_file, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                      start_new_session=True, env={"PATH": STANDARD_PATH})
        log_file.close()
        deadline = time.monotonic() + timeout
        while self.docker("version", check=False).returncode != 0:
            if self._proc.poll() is not None or time.monotonic() > deadline:
                raise DockerEngineError(f"dockerd for {self.host} did not start: {self.log_tail()}")
            time.sleep(0.2)

    def docker(self, *args: str, check: bool = True, input: bytes | None = None,
               timeout: float = 300.0) -> subprocess.CompletedProcess[bytes]:
        done = subprocess.run([DOCKER, "-H", self.url, *args], input=input, capture_output=True, timeout=timeout,
                              check=False)
        if check and done.returncode != 0:
            raise DockerEngineError(f"docker {' '.join(args)} on {self.host}: {done.stderr.decode().strip()}")
        return done

    def has_image(self, tag: str) -> bool:
        return self.docker("image", "inspect", tag, check=False).returncode == 0

    def stop(self, timeout: float = 30.0) -> None:
        """Stops every container and the daemon, then removes what the daemon left mounted."""
        proc = self._proc
        if proc is not None and proc.poll() is None:
            running = self.docker("ps", "-q", check=False).stdout.split()
            if running:
                self.docker("kill", *(c.decode() for c in running), check=False)
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(10)
        for mount_point in _mounts_under(self.root):
            subprocess.run(["umount", "--lazy", mount_point], check=False, capture_output=True)

    def load_zookeeper_image(self) -> str:
        """Imports the ZooKeeper test image (built once, cached) unless the engine has it; returns its tag."""
        if not self.has_image(ZOOKEEPER_IMAGE):
            with open(ensure_zookeeper_image_archive(), "rb") as rootfs:
                changes = ['ENTRYPOINT ["/usr/local/bin/docker-entrypoint.sh"]', f"CMD {json.dumps(COMMAND)}",
                           f"ENV PATH={STANDARD_PATH}", "WORKDIR /"]
                argv = [DOCKER, "-H", self.url, "import", *(f"--change={c}" for c in changes), "-", ZOOKEEPER_IMAGE]
                subprocess.run(argv, stdin=rootfs, capture_output=True, check=True, timeout=600)
        return ZOOKEEPER_IMAGE

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join((self.root / "dockerd.log").read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return "(no log)"


class DockerEngines:
    """An engine for every host of a running fleet; stopped and cleaned up on exit."""

    def __init__(self, fleet: HostFleet, workdir: Path, hosts: Sequence[str] | None = None) -> None:
        if shutil.which(DOCKERD) is None:
            raise DockerEngineError(f"{DOCKERD} is missing: `make test-deps` installs docker.io")
        self.engines = {name: DockerEngine(name, Path(workdir).absolute() / name)
                        for name in (hosts or [host.name for host in fleet])}

    def __enter__(self) -> DockerEngines:
        try:
            for engine in self.engines.values():
                engine.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.close()

    def __getitem__(self, host: str) -> DockerEngine:
        return self.engines[host]

    def __iter__(self) -> Iterator[DockerEngine]:
        return iter(self.engines.values())

    def close(self) -> None:
        for engine in self.engines.values():
            try:
                engine.stop()
            except (OSError, subprocess.SubprocessError, DockerEngineError):
                log.exception("stopping the docker engine of %s failed", engine.host)

    def load_zookeeper_image(self) -> str:
        """Imports the ZooKeeper test image (built once, cached) into every engine; returns its tag."""
        for engine in self.engines.values():
            engine.load_zookeeper_image()
        return ZOOKEEPER_IMAGE


def _mounts_under(root: Path) -> list[str]:
    prefix = f"{root}/"
    with open("/proc/self/mountinfo") as mountinfo:
        found = [line.split()[4] for line in mountinfo if line.split()[4].startswith(prefix)]
    return sorted(found, key=len, reverse=True)


def _image_recipe_hash() -> str:
    recipe = {"version": IMAGE_VERSION, "rootfs": recipe_hash(), "entrypoint": ENTRYPOINT, "command": COMMAND}
    return hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:12]


def ensure_zookeeper_image_archive(cache: Path | None = None) -> Path:
    """A tar of the ZooKeeper image's root filesystem, built once (~1 min) and cached beside the test image."""
    root = cache or cache_dir()
    final = root / f"docker-zookeeper-{_image_recipe_hash()}.tar"
    if final.is_file():
        return final
    root.mkdir(parents=True, exist_ok=True)
    with _exclusive_lock(root / ".build.lock"):
        if final.is_file():
            return final
        staging = root / f".docker-zookeeper-{os.getpid()}"
        shutil.rmtree(staging, ignore_errors=True)
        try:
            _build_zookeeper_rootfs(staging / "rootfs")
            partial = staging / "rootfs.tar"
            subprocess.run(["tar", "-C", str(staging / "rootfs"), "--numeric-owner", "-cf", str(partial), "."],
                           check=True, capture_output=True)
            partial.rename(final)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return final


def _build_zookeeper_rootfs(rootfs: Path) -> None:
    """The test rootfs plus Debian's zookeeper from the offline repository, and the entrypoint."""
    rootfs.mkdir(parents=True)
    subprocess.run(["cp", "-a", f"{ensure_rootfs()}/.", str(rootfs)], check=True, capture_output=True)
    repo = ensure_apt_repo()
    script = (f"mount --bind {repo} {rootfs}/srv/cookbook-apt && mount -t proc proc {rootfs}/proc && "
              f"chroot {rootfs} env -i PATH={STANDARD_PATH} DEBIAN_FRONTEND=noninteractive "
              "sh -c 'apt-get update -qq && apt-get install -y -qq --no-install-recommends zookeeper && apt-get clean'")
    done = subprocess.run(["unshare", "--mount", "--propagation", "private", "--pid", "--fork", "sh", "-c", script],
                          capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise DockerEngineError(f"building the ZooKeeper image failed: {done.stdout[-2000:]}{done.stderr[-2000:]}")
    entrypoint = rootfs / "usr/local/bin/docker-entrypoint.sh"
    entrypoint.write_text(ENTRYPOINT)
    entrypoint.chmod(0o755)
    for leftover in (rootfs / "var/lib/apt/lists").glob("*"):
        if leftover.is_file():
            leftover.unlink()

