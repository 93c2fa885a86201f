"""Cached Debian root filesystem and offline apt repository for the test hosts.

One build produces an *image* directory in the cache::

    <cache>/image-<recipe hash>/rootfs     debootstrap'ed bookworm, read-only lower layer of every host
    <cache>/image-<recipe hash>/apt-repo   flat apt repository (REPO_PACKAGES + missing dependencies)

The image is built in a temporary directory and renamed into place, so a crashed
build never leaves a half-built image behind.  Changing anything in the recipe
(package lists, RECIPE_VERSION, ...) changes the hash and triggers a rebuild.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import shutil
import subprocess
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TextIO

log = logging.getLogger(__name__)

# Bump when the build steps change in a way the constants below do not capture.
RECIPE_VERSION = 2
SUITE = "bookworm"
MIRROR = "http://deb.debian.org/debian"
BOOTSTRAP_PACKAGES: tuple[str, ...] = (
    "systemd-sysv", "dbus", "iproute2", "openssh-server", "python3", "procps", "ca-certificates",
)
# Installed into the rootfs so the product's tests need not install them.
EXTRA_PACKAGES: tuple[str, ...] = ("openssl", "curl", "sudo", "kmod")
# NOT installed; served by the hosts' local apt repository, so the product installs them over ssh exactly as
# on a fresh machine (etcd's and ZooKeeper's `package` install modes, their distribution services included).
REPO_PACKAGES: list[str] = ["jq", "chrony", "systemd-timesyncd", "etcd-server", "etcd-client", "zookeeper"]
# Background apt runs would grab the dpkg lock while a test runs apt-get.
MASKED_UNITS: tuple[str, ...] = ("apt-daily.timer", "apt-daily-upgrade.timer")
# Units the image's own packages enable that the tests must not see running.
DISABLED_UNITS: tuple[str, ...] = ()

REPO_MOUNT_POINT = "/srv/cookbook-apt"
SOURCES_LIST = f"deb [trusted=yes] file:{REPO_MOUNT_POINT} ./\n"
CACHE_ENV = "COOKBOOK_TEST_CACHE"
STANDARD_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def cache_dir() -> Path:
    """$COOKBOOK_TEST_CACHE, else $XDG_CACHE_HOME/cluster-cookbook, else ~/.cache/cluster-cookbook."""
    override = os.environ.get(CACHE_ENV)
    if override:
        return Path(override)
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg) if xdg else Path.home() / ".cache"
    return base / "cluster-cookbook"


def recipe_hash() -> str:
    recipe = {
        "version": RECIPE_VERSION,
        "suite": SUITE,
        "bootstrap": BOOTSTRAP_PACKAGES,
        "extra": EXTRA_PACKAGES,
        "repo": REPO_PACKAGES,
        "masked": MASKED_UNITS,
        "disabled": DISABLED_UNITS,
    }
    return hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:12]


def image_dir(cache: Path | None = None) -> Path:
    return (cache or cache_dir()) / f"image-{recipe_hash()}"


def ensure_rootfs(cache: Path | None = None) -> Path:
    """Return the cached rootfs directory, building the image first if needed (~1-2 min once)."""
    return _ensure_image(cache) / "rootfs"


def ensure_apt_repo(cache: Path | None = None) -> Path:
    """Return the cached flat apt repository directory (built together with the rootfs)."""
    return _ensure_image(cache) / "apt-repo"


def _ensure_image(cache: Path | None) -> Path:
    root = cache or cache_dir()
    final = image_dir(root)
    if final.is_dir():
        return final
    root.mkdir(parents=True, exist_ok=True)
    with _exclusive_lock(root / ".build.lock"):
        if final.is_dir():  # another process built it while we waited
            return final
        _remove_abandoned_builds(root)
        staging = root / f".build-{recipe_hash()}-{os.getpid()}"
        try:
            _build_image(staging)
            staging.rename(final)
        finally:
            if staging.exists():
                shutil.rmtree(staging)
    return final


@contextmanager
def _exclusive_lock(path: Path) -> Iterator[None]:
    with open(path, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _remove_abandoned_builds(root: Path) -> None:
    for leftover in root.glob(".build-*"):
        log.info("removing abandoned image build %s", leftover)
        shutil.rmtree(leftover, ignore_errors=True)


def _build_image(staging: Path) -> None:
    started = time.monotonic()
    rootfs = staging / "rootfs"
    repo = staging / "apt-repo"
    staging.mkdir(parents=True)
    build_log = staging / "build.log"
    with open(build_log, "w") as out:
        _debootstrap(rootfs, out)
        _install_extra_packages(rootfs, out)
        _download_repo_packages(rootfs, repo, out)
    write_packages_index(repo)
    _configure_rootfs(rootfs)
    info = {
        "recipe_hash": recipe_hash(),
        "build_seconds": round(time.monotonic() - started, 1),
        "rootfs_bytes": _tree_size(rootfs),
        "repo_packages": sorted(p.name for p in repo.glob("*.deb")),
    }
    (staging / "build.json").write_text(json.dumps(info, indent=2) + "\n")
    log.info("built test image in %.0f s", info["build_seconds"])


def _run_logged(argv: Sequence[str], out: TextIO) -> None:
    out.write(f"\n$ {' '.join(argv)}\n")
    out.flush()
    result = subprocess.run(list(argv), stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    if result.returncode != 0:
        raise RuntimeError(f"image build step failed ({result.returncode}): {' '.join(argv)}; see {out.name}")


def _debootstrap(rootfs: Path, out: TextIO) -> None:
    _run_logged(
        ["debootstrap", "--variant=minbase", f"--include={','.join(BOOTSTRAP_PACKAGES)}",
         SUITE, str(rootfs), MIRROR],
        out,
    )


def chroot_command(rootfs: Path, command: Sequence[str]) -> list[str]:
    """Command line running `command` chrooted into rootfs, with a private /proc and pid namespace.

    The pid namespace guarantees that anything a maintainer script starts dies with the command,
    and the mount namespace guarantees that the /proc mount never outlives it.
    """
    return [
        "unshare", "--mount", "--propagation", "private", "--pid", "--fork", f"--mount-proc={rootfs}/proc",
        "chroot", str(rootfs),
        "env", "-i", f"PATH={STANDARD_PATH}", "DEBIAN_FRONTEND=noninteractive", "LC_ALL=C.UTF-8",
        *command,
    ]


def _install_extra_packages(rootfs: Path, out: TextIO) -> None:
    policy = rootfs / "usr/sbin/policy-rc.d"
    policy.write_text("#!/bin/sh\n# no daemons may start while the image is built\nexit 101\n")
    policy.chmod(0o755)
    _run_logged(chroot_command(rootfs, ["apt-get", "update"]), out)
    _run_logged(
        chroot_command(rootfs, ["apt-get", "install", "-y", "--no-install-recommends", *EXTRA_PACKAGES]), out
    )
    policy.unlink()


def _download_repo_packages(rootfs: Path, repo: Path, out: TextIO) -> None:
    """Fetch REPO_PACKAGES plus whatever they need that the rootfs lacks.

    One package at a time: chrony and systemd-timesyncd conflict, so apt cannot resolve them together.
    Recommends are included because `apt-get install` in a host installs them too.
    """
    inside = "/tmp/cc-repo-debs"
    (rootfs / inside.lstrip("/") / "partial").mkdir(parents=True)
    for package in REPO_PACKAGES:
        _run_logged(
            chroot_command(rootfs, ["apt-get", "install", "--download-only", "-y",
                                    "-o", f"Dir::Cache::archives={inside}", package]),
            out,
        )
    repo.mkdir()
    downloaded = rootfs / inside.lstrip("/")
    for deb in downloaded.glob("*.deb"):
        shutil.move(str(deb), repo / deb.name)
    shutil.rmtree(downloaded)


def write_packages_index(repo: Path) -> None:
    """Write `Packages` for a flat repository, like `dpkg-scanpackages . > Packages` (dpkg-deb only)."""
    stanzas = []
    for deb in sorted(repo.glob("*.deb")):
        control = subprocess.run(
            ["dpkg-deb", "--field", str(deb)], check=True, capture_output=True, text=True
        ).stdout.rstrip("\n")
        data = deb.read_bytes()
        md5 = hashlib.md5(data, usedforsecurity=False).hexdigest()
        sha256 = hashlib.sha256(data).hexdigest()
        stanzas.append(
            f"{control}\nFilename: ./{deb.name}\nSize: {len(data)}\nMD5sum: {md5}\nSHA256: {sha256}\n"
        )
    (repo / "Packages").write_text("\n".join(stanzas))


def _configure_rootfs(rootfs: Path) -> None:
    etc = rootfs / "etc"
    (etc / "hosts").write_text("127.0.0.1 localhost\n::1 localhost ip6-localhost ip6-loopback\n")
    (etc / "hostname").unlink(missing_ok=True)
    for key in (etc / "ssh").glob("ssh_host_*"):
        key.unlink()
    # Every host writes its own machine-id into its upper layer before its first boot.
    (etc / "machine-id").write_text("")
    dbus_id = rootfs / "var/lib/dbus/machine-id"
    dbus_id.unlink(missing_ok=True)
    dbus_id.symlink_to("/etc/machine-id")
    (etc / "resolv.conf").write_text("# test hosts have no DNS\n")
    (etc / "apt/sources.list").write_text(SOURCES_LIST)
    (rootfs / REPO_MOUNT_POINT.lstrip("/")).mkdir(parents=True, exist_ok=True)
    for unit in MASKED_UNITS:
        (etc / "systemd/system" / unit).symlink_to("/dev/null")
    if DISABLED_UNITS:
        subprocess.run(chroot_command(rootfs, ["systemctl", "disable", *DISABLED_UNITS]),
                       check=True, capture_output=True)
    subprocess.run(chroot_command(rootfs, ["apt-get", "clean"]), check=True, capture_output=True)
    lists = rootfs / "var/lib/apt/lists"
    for entry in lists.iterdir():
        if entry.is_file():
            entry.unlink()


def _tree_size(path: Path) -> int:
    total = 0
    for dirpath, _dirs, files in os.walk(path):
        for name in files:
            full = os.path.join(dirpath, name)
            if not os.path.islink(full):
                total += os.lstat(full).st_size
    return total

