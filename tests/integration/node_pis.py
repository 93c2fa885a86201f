"""Test hosts that play Raspberry Pis (test-only, never shipped).

A container boots no kernel of its own: its /proc/cmdline is the machine's. On a Pi, the firmware reads
cmdline.txt at boot, prepends its own words, rewrites the serial console alias, and the kernel runs with that
line. `emulate_pi` installs a stand-in for exactly that: a unit early in every boot builds the line from
cmdline.txt the same way and bind-mounts it over /proc/cmdline. The program's steps then read the real path
/proc/cmdline, which changes only across a reboot, as on a Pi. What this cannot show: that a real kernel
honours the cgroup flags (the memory cgroup of these hosts is the machine's, on either way).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pulumi

from tests.harness.executing import ExecutingMocks, StackState
from tests.infra.hosts import TestHost

PI_CMDLINE = "console=serial0,115200 console=tty1 root=PARTUUID=1234-02 rootfstype=ext4 fsck.repair=yes rootwait"
FIRMWARE_PREFIX = "coherent_pool=1M 8250.nr_uarts=1 snd_bcm2835.enable_headphones=0 bcm2708_fb.fbwidth=0"
_FIRMWARE = "/usr/local/sbin/cookbook-test-pi-firmware"
_FIRMWARE_SCRIPT = f"""#!/bin/sh
# Test-only stand-in for the Raspberry Pi firmware's handling of the kernel command line.
set -e
file=/boot/firmware/cmdline.txt
[ -f "$file" ] || file=/boot/cmdline.txt
line=$(head -n 1 "$file" | sed 's/console=serial0,/console=ttyAMA0,/')
printf '%s %s\\n' '{FIRMWARE_PREFIX}' "$line" >/run/cookbook-test-cmdline
mount --bind /run/cookbook-test-cmdline /proc/cmdline
"""
_FIRMWARE_UNIT = f"""[Unit]
Description=Test-only stand-in for the Raspberry Pi firmware: the kernel command line from cmdline.txt
DefaultDependencies=no
After=local-fs.target
Before=sysinit.target ssh.service ssh.socket

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart={_FIRMWARE}

[Install]
WantedBy=sysinit.target
"""


def emulate_pi(host: TestHost, cmdline_path: str = "/boot/firmware/cmdline.txt", cmdline: str = PI_CMDLINE) -> None:
    """Makes `host` boot like a Pi with `cmdline` in `cmdline_path`; the running line takes effect now."""
    host.run(f"mkdir -p {cmdline_path.rsplit('/', 1)[0]} && printf '%s\\n' '{cmdline}' >{cmdline_path}")
    host.run(f"cat >{_FIRMWARE} && chmod 0755 {_FIRMWARE}", input=_FIRMWARE_SCRIPT)
    host.run("cat >/etc/systemd/system/cookbook-test-pi-firmware.service", input=_FIRMWARE_UNIT)
    host.run("systemctl daemon-reload && systemctl enable --now --quiet cookbook-test-pi-firmware.service")


def running_cmdline(host: TestHost) -> list[str]:
    return host.read_file("/proc/cmdline").split()


def boot_as_if_without(host: TestHost, flags: list[str]) -> None:
    """The host's kernel now runs as if booted without `flags` (e.g. a run was interrupted after cmdline.txt
    got them and before the reboot): the running line loses them, cmdline.txt keeps them."""
    words = [word for word in running_cmdline(host) if word not in flags]
    host.run("cat >/run/cookbook-test-cmdline-now && mount --bind /run/cookbook-test-cmdline-now /proc/cmdline",
             input=" ".join(words) + "\n")


class TimedMocks(ExecutingMocks):
    """ExecutingMocks that also time every step (create, update, replace), and can kill the run right after
    one step ran on its host, before the engine recorded it (its previous record stays, as after a kill)."""

    def __init__(self, state: StackState, emulators: dict[str, Any] | None = None,
                 kill_after: str | None = None):
        super().__init__(state, emulators)
        self.steps: dict[str, tuple[float, float]] = {}  # name -> (start, end) of steps that ran something
        self.kill_after = kill_after

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str | None, dict[str, Any]]:
        urn = self.registrations[f"{args.name}|{args.typ}"].urn
        before = self.state.resources.get(urn)
        ran = len(self.operations)
        started = time.monotonic()
        result = super().new_resource(args)
        if len(self.operations) > ran:
            self.steps[args.name] = (started, time.monotonic())
        if args.name == self.kill_after:
            if before is None:
                del self.state.resources[urn]
            else:
                self.state.resources[urn] = before
            raise RuntimeError(f"the run was killed right after {args.name} ran")
        return result


def window(mocks: TimedMocks, names: list[str]) -> float:
    """Seconds from the first start to the last end of the named steps that ran."""
    spans = [mocks.steps[name] for name in names if name in mocks.steps]
    return max(end for _, end in spans) - min(start for start, _ in spans)


def retry(action: Callable[[], Any], seconds: float = 60.0) -> Any:
    deadline = time.monotonic() + seconds
    while True:
        try:
            return action()
        except Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)
