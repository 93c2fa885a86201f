"""Fake commands for running rendered scripts on this machine: a `bin/` directory put first on PATH, the fakes
sharing one JSON state file (FAKE_STATE) and appending what they were asked to FAKE_CALLS."""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class FakeCommands:
    root: Path
    env: dict[str, str] = field(default_factory=dict)  # more variables the fakes read

    @property
    def state_path(self) -> Path:
        return self.root / "state.json"

    @property
    def bin(self) -> Path:
        return self.root / "bin"

    def add(self, name: str, text: str) -> None:
        self.bin.mkdir(exist_ok=True)
        (self.bin / name).write_text(text)
        (self.bin / name).chmod(0o755)

    def state(self) -> dict[str, Any]:
        state: dict[str, Any] = json.loads(self.state_path.read_text())
        return state

    def set_state(self, **values: Any) -> None:
        self.state_path.write_text(json.dumps({**self.state(), **values}))

    def calls(self) -> list[str]:
        path = self.root / "calls"
        return path.read_text().splitlines() if path.exists() else []

    def run(self, script: str, stdin: str | None = None, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        env = {"PATH": f"{self.bin}:/usr/bin:/bin", "FAKE_STATE": str(self.state_path),
               "FAKE_CALLS": str(self.root / "calls"), **self.env}
        return subprocess.run(["bash", "-c", script], input=stdin, capture_output=True, text=True, env=env,
                              timeout=timeout, check=False)
