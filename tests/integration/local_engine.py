"""The local stack's tests: a real Docker engine (Debian's docker.io) in its own network namespace, standing in for a
user's engine (its default bridge kept), and the stack state the executing mocks keep across runs."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.harness.executing import StackState
from tests.infra import network
from tests.infra.docker_engine import DockerEngine
from tests.infra.rootfs import STANDARD_PATH


@dataclass
class EngineSetup:
    engine: DockerEngine
    workdir: Path
    state: StackState = field(default_factory=StackState)
    outputs: dict[str, Any] = field(default_factory=dict)

    @property
    def netns(self) -> str:
        return self.engine.netns

    def docker(self, *args: str) -> str:
        return self.engine.docker(*args).stdout.decode().strip()

    def inspect(self, name: str) -> dict[str, Any]:
        return dict(json.loads(self.docker("inspect", name))[0])

    def in_netns(self, *argv: str) -> subprocess.CompletedProcess[str]:
        """Runs `argv` in the engine's network namespace, where the containers' addresses are reachable."""
        return subprocess.run(["nsenter", f"--net={self.netns}", *argv], capture_output=True, text=True, timeout=90,
                              env={"PATH": STANDARD_PATH}, check=False)


def engine_setup(host: str, tmp_path_factory: pytest.TempPathFactory, load_images: Callable[[DockerEngine], object],
                 numbers: dict[str, Any], label: str) -> Iterator[EngineSetup]:
    """A module fixture's body: an engine in network namespace `host` (of this test lane) with the images
    `load_images` builds or loads; stopped and removed afterwards, then the module's numbers printed."""
    name = network.netns_name(host)
    network.delete_netns(name)  # a killed earlier run's
    network.ip("netns", "add", name)
    network.ip("-n", name, "link", "set", "lo", "up")
    workdir = tmp_path_factory.mktemp(host)
    engine = DockerEngine(host, workdir / "docker", bridge=True)
    try:
        engine.start()
        started = time.monotonic()
        load_images(engine)
        numbers["image_build_or_load_seconds"] = round(time.monotonic() - started, 1)
        yield EngineSetup(engine, workdir)
    finally:
        engine.stop()
        network.delete_netns(name)
        print(f"\n{label} numbers:", json.dumps(numbers, indent=1))
