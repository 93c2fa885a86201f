"""Process and cgroup plumbing for systemd-nspawn hosts.

Each host runs in its own cgroup directory `cc-<name>` (in the name=systemd v1 hierarchy and the
cgroup2 one). Without that, every nspawn started with --keep-unit from the same cgroup puts its
container into the same `payload` cgroup, so the hosts' systemd instances share unit cgroups
(e.g. ssh.service of h1 and h2 become one cgroup and stopping one waits for the other).
Having all of a host's processes in one known cgroup also makes stale ones easy to find and kill.
"""

from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path

from .network import PREFIX


def read_status_field(pid: int, field: str) -> str | None:
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith(field + ":"):
                    return line.split(":", 1)[1].strip()
    except (FileNotFoundError, ProcessLookupError):
        return None
    return None


def pid_alive(pid: int) -> bool:
    state = read_status_field(pid, "State")
    return state is not None and not state.startswith("Z")


def wait_pids_gone(pids: list[int], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while any(pid_alive(pid) for pid in pids):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def children(pid: int) -> list[int]:
    found: list[int] = []
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children") as handle:
                found.extend(int(child) for child in handle.read().split())
    except (FileNotFoundError, ProcessLookupError):
        pass
    return found


def descendants(pid: int) -> list[int]:
    """All descendants of pid, parents before children."""
    found: list[int] = []
    queue = children(pid)
    while queue:
        child = queue.pop(0)
        found.append(child)
        queue.extend(children(child))
    return found


def container_init_pid(nspawn_pid: int) -> int | None:
    """PID (in our namespace) of the container's init: the nspawn child that is PID 1 of its namespace."""
    for child in children(nspawn_pid):
        nspid = read_status_field(child, "NSpid")
        if nspid is not None and len(nspid.split()) > 1 and nspid.split()[-1] == "1":
            return child
    return None


def kill_quietly(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)


def killpg_quietly(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, sig)


def cmdline(pid: int) -> list[str]:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            return [arg.decode(errors="replace") for arg in handle.read().split(b"\0") if arg]
    except (FileNotFoundError, ProcessLookupError):
        return []


def our_nspawn_pids() -> list[int]:
    """All systemd-nspawn processes started by this package (machine name starts with PREFIX)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        argv = cmdline(int(entry))
        if argv and argv[0].endswith("systemd-nspawn") and any(
            arg.startswith(f"--machine={PREFIX}") for arg in argv
        ):
            found.append(int(entry))
    return found


# --- cgroups ---------------------------------------------------------------------------------

def _own_cgroup_paths() -> dict[str, str]:
    """Map hierarchy key ('name=systemd' or '' for cgroup2) to this process's path in it."""
    paths = {}
    with open("/proc/self/cgroup") as handle:
        for line in handle:
            _hid, controllers, path = line.rstrip("\n").split(":", 2)
            if controllers in ("name=systemd", ""):
                paths[controllers] = path
    return paths


def _cgroup_mounts() -> dict[str, Path]:
    """Map hierarchy key to its mount point, from /proc/self/mountinfo."""
    mounts: dict[str, Path] = {}
    with open("/proc/self/mountinfo") as handle:
        for line in handle:
            fields = line.split()
            separator = fields.index("-")
            mount_point, fstype, super_options = fields[4], fields[separator + 1], fields[separator + 3]
            if fstype == "cgroup2":
                mounts.setdefault("", Path(mount_point))
            elif fstype == "cgroup" and "name=systemd" in super_options.split(","):
                mounts.setdefault("name=systemd", Path(mount_point))
    return mounts


def cgroup_parents() -> list[Path]:
    """Directories of our own cgroup in the hierarchies systemd-nspawn uses."""
    mounts = _cgroup_mounts()
    return [mounts[key] / path.lstrip("/") for key, path in _own_cgroup_paths().items() if key in mounts]


def host_cgroups(host: str) -> list[Path]:
    return [parent / f"{PREFIX}{host}" for parent in cgroup_parents()]


def create_host_cgroups(host: str) -> list[Path]:
    dirs = host_cgroups(host)
    for directory in dirs:
        directory.mkdir(exist_ok=True)
    return dirs


def cgroup_tree_pids(directory: Path) -> list[int]:
    pids: list[int] = []
    for dirpath, _dirs, _files in os.walk(directory):
        try:
            pids.extend(int(pid) for pid in (Path(dirpath) / "cgroup.procs").read_text().split())
        except FileNotFoundError:
            continue
    return pids


def remove_cgroup_tree(directory: Path, timeout: float = 5.0) -> None:
    """rmdir a cgroup and its children, deepest first (succeeds once its processes are reaped)."""
    deadline = time.monotonic() + timeout
    while directory.exists():
        try:
            for dirpath, _dirs, _files in os.walk(directory, topdown=False):
                os.rmdir(dirpath)
        except FileNotFoundError:
            continue
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def stale_cgroups() -> list[Path]:
    return [child for parent in cgroup_parents() if parent.is_dir()
            for child in parent.glob(f"{PREFIX}*") if child.is_dir()]
