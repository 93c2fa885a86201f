"""Throwaway Debian test hosts with real systemd and sshd, booted with systemd-nspawn.

    rootfs = ensure_rootfs()
    with HostFleet(["h1", "h2", "h3"], workdir=tmp_path) as fleet:
        fleet["h1"].run("systemctl is-system-running --wait")

See README.md in this directory for the design and the workarounds this machine needs.
"""

from __future__ import annotations

import atexit
import fcntl
import logging
import os
import signal
import socket
import stat
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any, TextIO, TypeAlias

from . import network, processes
from .rootfs import REPO_MOUNT_POINT, STANDARD_PATH, cache_dir, ensure_apt_repo, ensure_rootfs

__all__ = [
    "FleetBusyError", "FleetCleanupError", "HostBootError", "HostCommandError", "HostFleet", "TestHost",
    "cleanup_stale", "ensure_apt_repo", "ensure_rootfs", "find_leftovers",
]

log = logging.getLogger(__name__)

_SignalHandler: TypeAlias = "Callable[[int, FrameType | None], Any] | int | signal.Handlers | None"

SSH_PORT = 22
DEFAULT_BOOT_TIMEOUT = 60.0
DEFAULT_STOP_TIMEOUT = 30.0
DEFAULT_LOCK_WAIT = 3600.0  # how long a fleet waits for another process's fleet to finish (several suites may queue)
REBOOT_EXIT_CODE = 133  # systemd-nspawn's exit status when the container asked for a reboot
POWEROFF_SIGNAL = signal.SIGRTMIN + 4  # systemd starts poweroff.target
FLEET_LOCK = Path(f"/run/lock/cluster-cookbook-fleet-{network.LANE}.lock")  # one fleet per lane
NSPAWN_STATE_DIR = Path("/run/systemd/nspawn")

# Runs as `unshare --mount --propagation private sh -c LAUNCH_SCRIPT cc-launch ROOT OVERLAY CGROUPS NSPAWN..`.
# The private mount namespace carries (a) the tmpfs on /run/systemd/nspawn that parallel nspawns
# need on this machine and (b) the host's overlay mount, which therefore disappears by itself when
# nspawn exits, however it exits: no mount can ever leak into the machine's namespace.
LAUNCH_SCRIPT = """\
set -e
root=$1 overlay_options=$2 cgroups=$3
shift 3
for cgroup in $cgroups; do echo $$ > "$cgroup/cgroup.procs"; done
mount -t tmpfs tmpfs /run/systemd/nspawn
mount -t overlay overlay -o "$overlay_options" "$root"
exec "$@"
"""


class HostBootError(RuntimeError):
    """A host did not come up (its console log tail is in the message)."""


class FleetBusyError(RuntimeError):
    """Another HostFleet is running on this machine (the bridge and address range are global)."""


class FleetCleanupError(RuntimeError):
    """Tearing a fleet down found or left something behind."""


class HostCommandError(subprocess.CalledProcessError):
    """A command run inside a host failed; unlike CalledProcessError, str() includes its stderr."""

    def __str__(self) -> str:
        stderr = self.stderr if isinstance(self.stderr, str) else ""
        return f"{super().__str__()}\nstderr:\n{stderr[-2000:]}"


class TestHost:
    """One systemd-nspawn container with a persistent overlay disk and its own network namespace."""

    __test__ = False  # not a pytest test class, despite the name

    def __init__(self, name: str, index: int, workdir: Path, rootfs: Path, apt_repo: Path,
                 boot_timeout: float = DEFAULT_BOOT_TIMEOUT) -> None:
        network.validate_host_name(name)
        self.name = name
        self.index = index
        self.address = network.host_address(index)
        self.port = SSH_PORT
        self.workdir = workdir
        self.rootfs = rootfs
        self.apt_repo = apt_repo
        self.boot_timeout = boot_timeout
        self.upper_dir = workdir / "upper"
        self.overlay_work_dir = workdir / "work"
        self.root_dir = workdir / "root"
        self.console_log = workdir / "console.log"
        self.host_key = ""  # "ssh-ed25519 AAAA...", set by prepare()
        self.boot_count = 0  # nspawn launches so far, in-container reboots included
        self.last_exit_code: int | None = None  # systemd-nspawn's last exit status
        self._lock = threading.RLock()
        self._proc: subprocess.Popen[bytes] | None = None
        self._supervisor: threading.Thread | None = None
        self._powered_on = False  # while True, an in-container reboot relaunches nspawn

    def __repr__(self) -> str:
        return f"TestHost({self.name!r}, {self.address}, running={self.is_running})"

    # --- disk ------------------------------------------------------------------------------

    def prepare(self, authorized_key: str) -> None:
        """Create the overlay directories and seed the upper layer before the first boot."""
        for directory in (self.upper_dir, self.overlay_work_dir, self.root_dir):
            directory.mkdir(parents=True, exist_ok=True)
        for path in (self.rootfs, self.upper_dir, self.overlay_work_dir):
            _check_overlay_path(path)
        self.upper_dir.chmod(0o755)  # the upper dir's mode becomes the mode of the host's "/"
        host_key = self.upper_dir / "etc/ssh/ssh_host_ed25519_key"
        if not host_key.exists():
            self._seed_first_boot(host_key)
        self._mkdirs_like_lower("root/.ssh")
        keys = self.upper_dir / "root/.ssh/authorized_keys"
        keys.write_text(authorized_key.strip() + "\n")
        keys.chmod(0o600)
        self.host_key = " ".join(Path(f"{host_key}.pub").read_text().split()[:2])

    def _seed_first_boot(self, host_key: Path) -> None:
        self._mkdirs_like_lower("etc/ssh")
        machine_id = self.upper_dir / "etc/machine-id"
        machine_id.write_text(uuid.uuid4().hex + "\n")
        machine_id.chmod(0o444)
        subprocess.run(
            ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"root@{self.name}", "-f", str(host_key)],
            check=True, capture_output=True,
        )

    def _mkdirs_like_lower(self, relative: str) -> None:
        """Create upper-layer directories with the lower layer's owner and mode (upper wins in the merge)."""
        current = Path()
        for part in Path(relative).parts:
            current /= part
            upper, lower = self.upper_dir / current, self.rootfs / current
            if upper.is_dir():
                continue
            info = lower.stat()
            upper.mkdir()
            os.chown(upper, info.st_uid, info.st_gid)
            upper.chmod(stat.S_IMODE(info.st_mode))

    # --- power -----------------------------------------------------------------------------

    @property
    def is_running(self) -> bool:
        """True from start() until the host is powered off, stopped or killed (also while rebooting)."""
        supervisor = self._supervisor
        return supervisor is not None and supervisor.is_alive()

    def start(self, timeout: float | None = None) -> None:
        """Boot the host from its persistent disk and wait until sshd answers."""
        if not self.host_key:
            raise RuntimeError(f"{self.name}: prepare() must run before start()")
        with self._lock:
            if self.is_running:
                raise RuntimeError(f"{self.name} is already running")
            self._powered_on = True
            self._launch()
            self._supervisor = threading.Thread(target=self._supervise, name=f"cc-supervise-{self.name}",
                                                daemon=True)
            self._supervisor.start()
        self.wait_for_ssh(timeout)

    def stop(self, timeout: float = DEFAULT_STOP_TIMEOUT) -> None:
        """Clean poweroff, then wait for nspawn to exit; falls back to kill() after `timeout`.

        SIGRTMIN+4 to the container's systemd is `systemctl poweroff`: all units stop, then
        nspawn exits 0. Not SIGTERM to nspawn: that works too (it halts via SIGRTMIN+3), but a
        second SIGTERM makes nspawn kill the container at once. The signal is re-sent every 2 s
        because a pid namespace's init drops signals that arrive before it installed its handlers.
        """
        with self._lock:
            self._powered_on = False
            supervisor = self._supervisor
        if supervisor is None:
            return
        deadline = time.monotonic() + timeout
        while supervisor.is_alive() and time.monotonic() < deadline:
            init = self._current_init_pid()
            if init is not None:
                processes.kill_quietly(init, POWEROFF_SIGNAL)
            supervisor.join(min(2.0 if init is not None else 0.1, max(0.0, deadline - time.monotonic())))
        if supervisor.is_alive():
            log.warning("%s did not power off within %.0f s; killing it", self.name, timeout)
            self.kill()

    def kill(self) -> None:
        """Power loss: SIGKILL the container's init (and so its whole pid namespace) and nspawn."""
        with self._lock:
            self._powered_on = False
            proc, supervisor = self._proc, self._supervisor
            if proc is not None and proc.returncode is None:
                init = processes.container_init_pid(proc.pid)
                if init is not None:
                    processes.kill_quietly(init, signal.SIGKILL)
                self._kill_cgroup_processes()
                processes.killpg_quietly(proc.pid, signal.SIGKILL)
        if supervisor is not None:
            supervisor.join(DEFAULT_STOP_TIMEOUT)
            if supervisor.is_alive():
                raise RuntimeError(f"{self.name}: supervisor still running after kill()")

    def wait_for_ssh(self, timeout: float | None = None) -> None:
        """Poll every 0.1 s until sshd on the host sends its SSH-2.0 banner."""
        limit = self.boot_timeout if timeout is None else timeout
        deadline = time.monotonic() + limit
        while not _ssh_banner_received(self.address, self.port):
            if not self.is_running:
                raise HostBootError(f"{self.name} is not running (nspawn exit status {self.last_exit_code})\n"
                                    f"{self.console_tail()}")
            if time.monotonic() > deadline:
                raise HostBootError(f"sshd on {self.name} ({self.address}:{self.port}) did not answer within "
                                    f"{limit:.0f} s\n{self.console_tail()}")
            time.sleep(0.1)

    def wait_for_reboot(self, boot_count_before: int, timeout: float | None = None) -> None:
        """After triggering a reboot inside the host: wait for the relaunch, then for sshd."""
        limit = self.boot_timeout if timeout is None else timeout
        deadline = time.monotonic() + limit
        while self.boot_count <= boot_count_before:
            if not self.is_running:
                raise HostBootError(f"{self.name} stopped instead of rebooting (nspawn exit status "
                                    f"{self.last_exit_code})\n{self.console_tail()}")
            if time.monotonic() > deadline:
                raise HostBootError(f"{self.name} did not reboot within {limit:.0f} s\n{self.console_tail()}")
            time.sleep(0.1)
        self.wait_for_ssh(max(1.0, deadline - time.monotonic()))

    def _launch(self) -> None:
        """Start systemd-nspawn for the current disk state (caller holds self._lock)."""
        cgroups = processes.create_host_cgroups(self.name)
        overlay = f"lowerdir={self.rootfs},upperdir={self.upper_dir},workdir={self.overlay_work_dir}"
        argv = ["unshare", "--mount", "--propagation", "private", "sh", "-c", LAUNCH_SCRIPT, "cc-launch",
                str(self.root_dir), overlay, " ".join(str(c) for c in cgroups), *self._nspawn_argv()]
        self.boot_count += 1
        with open(self.console_log, "ab") as console:
            console.write(f"\n===== {time.strftime('%H:%M:%S')} boot {self.boot_count} of {self.name} =====\n"
                          .encode())
            console.flush()
            self._proc = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=console, stderr=subprocess.STDOUT,
                start_new_session=True,
                # Like a real machine, the host may set its own network sysctls (ip_forward, bridge-nf):
                # nspawn keeps /proc/sys/net read-only unless told otherwise (plus CAP_NET_ADMIN below).
                env={"PATH": STANDARD_PATH, "LANG": "C.UTF-8", "SYSTEMD_NSPAWN_API_VFS_WRITABLE": "network"},
            )

    def _nspawn_argv(self) -> list[str]:
        return [
            "systemd-nspawn",
            f"--directory={self.root_dir}",
            f"--machine={network.PREFIX}{self.name}",
            f"--hostname={self.name}",
            "--register=no",
            "--keep-unit",
            "--console=read-only",
            f"--network-namespace-path={network.netns_path(self.name)}",
            "--capability=CAP_NET_ADMIN",
            f"--bind-ro={self.apt_repo}:{REPO_MOUNT_POINT}",
            "--resolv-conf=off",  # keep the machine's DNS config out; hosts have no DNS
            "--link-journal=no",  # never touch the machine's /var/log/journal
            "--setenv=SYSTEMD_COLORS=0",  # readable console.log
            "--boot",
        ]

    def _supervise(self) -> None:
        """Wait for nspawn; relaunch it after an in-container reboot, unless we are stopping."""
        try:
            while True:
                proc = self._proc
                assert proc is not None
                exit_code = proc.wait()
                self._reap_leftovers()
                with self._lock:
                    self.last_exit_code = exit_code
                    if not self._powered_on or exit_code != REBOOT_EXIT_CODE:
                        return
                    log.info("%s rebooted; relaunching systemd-nspawn", self.name)
                    self._launch()
        finally:
            self._powered_on = False

    def _reap_leftovers(self, grace: float = 10.0) -> None:
        """Wait until the host's cgroups are empty (SIGKILL stragglers after `grace`), then remove them."""
        deadline = time.monotonic() + grace
        while any(processes.cgroup_tree_pids(cgroup) for cgroup in processes.host_cgroups(self.name)):
            if time.monotonic() > deadline:
                self._kill_cgroup_processes()
            time.sleep(0.05)
        for cgroup in processes.host_cgroups(self.name):
            processes.remove_cgroup_tree(cgroup)

    def _kill_cgroup_processes(self) -> None:
        for cgroup in processes.host_cgroups(self.name):
            for pid in processes.cgroup_tree_pids(cgroup):
                processes.kill_quietly(pid, signal.SIGKILL)

    # --- network ---------------------------------------------------------------------------

    def block(self) -> None:
        """Cut the host off the bridge (machine-side veth down) without stopping it."""
        network.set_host_link(self.name, up=False)

    def unblock(self) -> None:
        network.set_host_link(self.name, up=True)

    # --- commands --------------------------------------------------------------------------

    def run(self, command: str | Sequence[str], check: bool = True, timeout: float = 300.0,
            input: str | None = None) -> subprocess.CompletedProcess[str]:
        """Run a command as root inside the running host (via nsenter, not ssh); a str goes to `sh -c`."""
        argv = ["sh", "-c", command] if isinstance(command, str) else list(command)
        nsenter = ["nsenter", f"--target={self._init_pid()}", "--mount", "--uts", "--ipc", "--net", "--pid",
                   "--root", "--wd", "--",
                   "env", "-i", f"PATH={STANDARD_PATH}", "HOME=/root", "USER=root", "LANG=C.UTF-8"]
        stdin = subprocess.DEVNULL if input is None else subprocess.PIPE
        with subprocess.Popen(nsenter + argv, stdin=stdin, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) as proc:
            try:
                stdout, stderr = proc.communicate(input, timeout=timeout)
            except subprocess.TimeoutExpired:
                # Killing nsenter alone would leave the command running inside the host.
                for pid in processes.descendants(proc.pid):
                    processes.kill_quietly(pid, signal.SIGKILL)
                proc.kill()
                proc.communicate()
                raise
        result = subprocess.CompletedProcess(argv, proc.returncode, stdout, stderr)
        if check and result.returncode != 0:
            raise HostCommandError(result.returncode, argv, result.stdout, result.stderr)
        return result

    def read_file(self, path: str) -> str:
        return self.run(["cat", "--", path]).stdout

    def _current_init_pid(self) -> int | None:
        proc = self._proc
        if proc is None or proc.returncode is not None:
            return None
        return processes.container_init_pid(proc.pid)

    def _init_pid(self) -> int:
        if not self.is_running:
            raise RuntimeError(f"{self.name} is not running")
        init = self._current_init_pid()
        if init is None:
            raise RuntimeError(f"{self.name}: container init not found (host is booting or rebooting)")
        return init

    def console_tail(self, lines: int = 40) -> str:
        try:
            text = self.console_log.read_text(errors="replace")
        except FileNotFoundError:
            return f"(no console log at {self.console_log})"
        tail = "\n".join(text.splitlines()[-lines:])
        return f"--- last {lines} lines of {self.console_log} ---\n{tail}"


class HostFleet:
    """N test hosts on the private bridge; a context manager that boots them all and always cleans up.

    Only one fleet can run on a machine at a time (bridge name and address range are fixed):
    a fleet started while another process runs one waits up to `lock_wait` seconds, then raises
    FleetBusyError; a second fleet in the same process raises it at once.
    """

    def __init__(self, names: Sequence[str], workdir: Path, *, rootfs: Path | None = None,
                 apt_repo: Path | None = None, boot_timeout: float = DEFAULT_BOOT_TIMEOUT,
                 lock_wait: float = DEFAULT_LOCK_WAIT) -> None:
        if not names:
            raise ValueError("a fleet needs at least one host name")
        if len(set(names)) != len(names):
            raise ValueError(f"duplicate host names in {list(names)}")
        for name in names:
            network.validate_host_name(name)
        self.names = list(names)
        self.workdir = Path(workdir).absolute()  # overlayfs options need absolute paths
        self.gateway = network.GATEWAY
        self.private_key_path = self.workdir / "fleet_key"
        self.boot_seconds: float | None = None  # wall time of the parallel boot in start()
        self.boot_timeout = boot_timeout
        self.lock_wait = lock_wait
        self._rootfs = rootfs
        self._apt_repo = apt_repo
        self._hosts: dict[str, TestHost] = {}
        self._lock_file: TextIO | None = None
        self._closed = False

    # --- access ----------------------------------------------------------------------------

    def __getitem__(self, name: str) -> TestHost:
        if not self._hosts:
            raise KeyError(f"{name!r}: the fleet has not been started")
        return self._hosts[name]

    def __iter__(self) -> Iterator[TestHost]:
        return iter(self._hosts.values())

    def __len__(self) -> int:
        return len(self._hosts)

    @property
    def hosts(self) -> list[TestHost]:
        return list(self._hosts.values())

    @property
    def private_key_pem(self) -> str:
        """OpenSSH-format ed25519 private key authorised for root on every host."""
        return self.private_key_path.read_text()

    @property
    def public_key(self) -> str:
        return Path(f"{self.private_key_path}.pub").read_text().strip()

    # --- lifecycle -------------------------------------------------------------------------

    def __enter__(self) -> HostFleet:
        self.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 traceback: TracebackType | None) -> None:
        try:
            self.close()
        except FleetCleanupError:
            if exc is None:
                raise
            log.exception("cleanup after a failed test also failed")  # don't hide the test's own error

    def start(self) -> None:
        """Set up the network, prepare every host's disk and boot all hosts in parallel."""
        if self._lock_file is not None or self._closed:
            raise RuntimeError("a HostFleet can be started only once")
        if _active_fleets:
            raise FleetBusyError("this process already runs a HostFleet; only one fleet can run at a time")
        self._lock_file = _acquire_fleet_lock(self.lock_wait)
        _register_active(self)
        try:
            for leftover in _remove_leftovers():
                log.warning("removed leftover from an earlier run: %s", leftover)
            _ensure_inotify_instances()
            self._create_hosts()
            started = time.monotonic()
            self._boot_all()
            self.boot_seconds = time.monotonic() - started
        except BaseException:
            self.close()
            raise

    def _create_hosts(self) -> None:
        rootfs = self._rootfs or ensure_rootfs()
        apt_repo = self._apt_repo or ensure_apt_repo()
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._ensure_key()
        NSPAWN_STATE_DIR.mkdir(parents=True, exist_ok=True)
        network.create_bridge()
        for index, name in enumerate(self.names, start=1):
            host = TestHost(name, index, self.workdir / name, rootfs, apt_repo, self.boot_timeout)
            self._hosts[name] = host
            network.create_host_network(name, host.address)
            host.prepare(self.public_key)

    def _ensure_key(self) -> None:
        if not self.private_key_path.exists():
            subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "cluster-cookbook-tests",
                            "-f", str(self.private_key_path)], check=True, capture_output=True)
        self.private_key_path.chmod(0o600)

    def _boot_all(self) -> None:
        errors = _run_parallel({host.name: host.start for host in self.hosts})
        if errors:
            raise HostBootError("\n\n".join(f"{name}: {error}" for name, error in errors.items()))

    def close(self) -> None:
        """Stop every host, then remove netns, veths, bridge and cgroups. Idempotent."""
        if self._lock_file is None or self._closed:
            return
        self._closed = True
        problems: list[str] = []
        try:
            stop_errors = _run_parallel({host.name: host.stop for host in self.hosts})
            problems += [f"stopping {name}: {error}" for name, error in stop_errors.items()]
            for name in self._hosts:
                problems += _attempt(f"removing network of {name}", network.delete_host_network, name)
            problems += _attempt("removing the bridge", network.delete_bridge)
            problems += [f"left behind (now removed): {item}" for item in _remove_leftovers(self.workdir)]
        finally:
            _unregister_active(self)
            self._lock_file.close()
        if problems:
            raise FleetCleanupError("; ".join(problems))


# --- helpers -------------------------------------------------------------------------------

def _check_overlay_path(path: Path) -> None:
    if any(char in str(path) for char in ",:\n ") or not path.is_absolute():
        raise ValueError(f"overlayfs cannot use {path}: it must be absolute, without ',', ':' or spaces")


def _ssh_banner_received(address: str, port: int) -> bool:
    try:
        with socket.create_connection((address, port), timeout=1.0) as connection:
            connection.settimeout(2.0)
            return connection.recv(64).startswith(b"SSH-2.0")
    except OSError:
        return False


def _run_parallel(tasks: dict[str, Callable[[], None]]) -> dict[str, BaseException]:
    """Run the callables in parallel threads; return the exceptions by key."""
    if not tasks:
        return {}
    with ThreadPoolExecutor(max_workers=len(tasks)) as pool:
        futures: dict[str, Future[None]] = {key: pool.submit(task) for key, task in tasks.items()}
    return {key: error for key, future in futures.items() if (error := future.exception()) is not None}


def _attempt(what: str, action: Callable[..., None], *args: str) -> list[str]:
    try:
        action(*args)
    except (OSError, network.NetworkError, subprocess.SubprocessError) as error:
        return [f"{what}: {error}"]
    return []


def _acquire_fleet_lock(wait: float = 0.0) -> TextIO:
    """Take the machine-wide fleet lock, waiting up to `wait` s for a fleet of another process."""
    FLEET_LOCK.parent.mkdir(parents=True, exist_ok=True)
    handle = open(FLEET_LOCK, "a")  # noqa: SIM115 - stays open (and locked) while the fleet runs
    deadline = time.monotonic() + wait
    announced = False
    while True:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return handle
        except BlockingIOError:
            if not announced and wait > 0:
                log.info("waiting up to %.0f s for another process's HostFleet to finish", wait)
                announced = True
            if time.monotonic() >= deadline:
                handle.close()
                raise FleetBusyError(f"another HostFleet is running on this machine (holding {FLEET_LOCK})"
                                     ) from None
            time.sleep(0.5)


INOTIFY_INSTANCES = Path("/proc/sys/fs/inotify/max_user_instances")
MIN_INOTIFY_INSTANCES = 1024


def _ensure_inotify_instances() -> None:
    """Every booted host's systemd and its services take inotify instances from root's shared budget (128 by
    default): several fleets (lanes) at once run out ("Too many open files" at boot). Raised, never lowered."""
    try:
        current = int(INOTIFY_INSTANCES.read_text())
        if current < MIN_INOTIFY_INSTANCES:
            INOTIFY_INSTANCES.write_text(f"{MIN_INOTIFY_INSTANCES}\n")
            log.info("raised fs.inotify.max_user_instances from %d to %d", current, MIN_INOTIFY_INSTANCES)
    except OSError as error:
        log.warning("cannot check fs.inotify.max_user_instances: %s", error)


def cleanup_stale() -> list[str]:
    """Remove everything a crashed run left behind (processes, cgroups, mounts, netns, links named 'cc-').

    Refuses (FleetBusyError) while a fleet is running. Returns descriptions of what was removed.
    """
    handle = _acquire_fleet_lock()
    try:
        return _remove_leftovers()
    finally:
        handle.close()


def find_leftovers(workdir: Path | None = None) -> list[str]:
    """Describe every 'cc-' process, cgroup, mount, link and netns that exists right now."""
    found = [f"process {pid} ({' '.join(processes.cmdline(pid))[:80]})" for pid in _stale_pids()]
    found += [f"cgroup {cgroup}" for cgroup in processes.stale_cgroups()]
    found += [f"mount {mount_point}" for mount_point in _stale_mount_points(workdir)]
    found += [f"link {link}" for link in network.list_links(network.PREFIX)]
    found += [f"netns {netns}" for netns in network.list_netns(network.PREFIX)]
    return found


def _remove_leftovers(workdir: Path | None = None) -> list[str]:
    """Remove all 'cc-' leftovers (caller holds the fleet lock); return what was found."""
    found = find_leftovers(workdir)
    victims = _stale_pids()
    for pid in victims:
        processes.kill_quietly(pid, signal.SIGKILL)
    if not processes.wait_pids_gone(victims, timeout=10.0):
        log.warning("stale processes survived SIGKILL: %s", victims)
    for cgroup in processes.stale_cgroups():
        processes.remove_cgroup_tree(cgroup)
    for mount_point in _stale_mount_points(workdir):
        subprocess.run(["umount", "--lazy", mount_point], check=False, capture_output=True)
    network.remove_all()
    return found


def _stale_pids() -> list[int]:
    pids = set(processes.our_nspawn_pids())
    for cgroup in processes.stale_cgroups():
        pids.update(processes.cgroup_tree_pids(cgroup))
    return sorted(pids)


def _stale_mount_points(workdir: Path | None) -> list[str]:
    """Mounts in the machine's namespace that belong to test hosts (normally there are none)."""
    markers = [f"{cache_dir()}/image-", f"/run/netns/{network.PREFIX}"]
    if workdir is not None:
        markers.append(f"{workdir}/")
    found = []
    with open("/proc/self/mountinfo") as mountinfo:
        for line in mountinfo:
            fields = line.split()
            mount_point, super_options = fields[4], fields[-1]
            if any(marker in mount_point or marker in super_options for marker in markers):
                found.append(mount_point)
    return sorted(found, key=len, reverse=True)  # innermost first


# --- emergency cleanup (atexit, SIGTERM) ---------------------------------------------------

_active_fleets: list[HostFleet] = []
_registry_lock = threading.Lock()
_handlers_installed = False
_previous_sigterm_handler: _SignalHandler = None


def _register_active(fleet: HostFleet) -> None:
    global _handlers_installed, _previous_sigterm_handler
    with _registry_lock:
        _active_fleets.append(fleet)
        if _handlers_installed:
            return
        atexit.register(_close_active_fleets)
        if threading.current_thread() is threading.main_thread():
            _previous_sigterm_handler = signal.signal(signal.SIGTERM, _on_sigterm)
        _handlers_installed = True


def _unregister_active(fleet: HostFleet) -> None:
    with _registry_lock:
        if fleet in _active_fleets:
            _active_fleets.remove(fleet)


def _close_active_fleets() -> None:
    for fleet in list(_active_fleets):
        try:
            fleet.close()
        except Exception:  # best effort at exit: keep closing the others
            log.exception("emergency cleanup of a HostFleet failed")


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    _close_active_fleets()
    previous = _previous_sigterm_handler
    if callable(previous):
        previous(signum, frame)
    elif previous != signal.SIG_IGN:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGTERM)
