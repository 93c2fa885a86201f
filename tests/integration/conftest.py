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


def boot_fleet(names: list[str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[HostFleet]:
    workdir: Path = tmp_path_factory.mktemp("fleet")
    with HostFleet(names=names, workdir=workdir) as fleet:
        yield fleet
