"""Integration fixtures: real test hosts (systemd-nspawn) and the real program with executing mocks."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.infra.hosts import HostFleet


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    reason = None
    if os.geteuid() != 0:
        reason = "integration tests boot systemd-nspawn hosts and need root"
    elif shutil.which("systemd-nspawn") is None:
        reason = "systemd-nspawn is missing: run `make test`, which installs it"
    for item in items:
        if reason and item.get_closest_marker("integration"):
            item.add_marker(pytest.mark.skip(reason=reason))


# A login user `pi` with the test key and passwordless sudo, as Raspberry Pi OS sets one up: the recipes then run
# their steps through `sudo -n`, as they do on real Pis and cloud images.
ADD_PI_USER = (
    "useradd --create-home --shell /bin/bash pi && install -d -m 0700 -o pi -g pi /home/pi/.ssh && "
    "install -m 0600 -o pi -g pi /root/.ssh/authorized_keys /home/pi/.ssh/authorized_keys && "
    "echo 'pi ALL=(ALL) NOPASSWD: ALL' > /etc/sudoers.d/010_pi-nopasswd && chmod 0440 /etc/sudoers.d/010_pi-nopasswd"
)


def boot_fleet(names: list[str], tmp_path_factory: pytest.TempPathFactory, *,
               pi_user: bool = False) -> Iterator[HostFleet]:
    workdir: Path = tmp_path_factory.mktemp("fleet")
    with HostFleet(names=names, workdir=workdir) as fleet:
        if pi_user:
            for host in fleet:
                host.run(ADD_PI_USER)
        yield fleet
