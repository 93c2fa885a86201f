"""Benchmarks for the closing notes (numbers, not assertions). Run with `make bench` (root, for hosts).

- wall time to prepare 3 vs 9 booted test hosts through the real program (fresh state each);
- SSH sessions opened per host;
- unit suite wall time;
- program evaluation time under recording mocks for 30 and 300 nodes.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from tests.harness import ssh
from tests.harness.executing import ExecutingMocks, StackState
from tests.harness.fixtures import FAKE_PRIVATE_KEY
from tests.harness.program import ROOT, run_program
from tests.harness.recording import RecordingMocks
from tests.infra.hosts import HostFleet


def evaluation_seconds(count: int) -> float:
    nodes = [{"name": f"n{i}", "address": f"10.1.{i // 250}.{i % 250 + 1}", "kind": "pi" if i % 2 else "linux"}
             for i in range(count)]
    started = time.perf_counter()
    run_program(RecordingMocks(), {"nodes": nodes, "ssh_private_key": FAKE_PRIVATE_KEY},
                secret_keys=["ssh_private_key"])
    return time.perf_counter() - started


def _timed_run(config: dict[str, Any]) -> dict[str, Any]:
    mocks = ExecutingMocks(StackState())
    ssh.SESSIONS.clear()
    started = time.perf_counter()
    run_program(mocks, config, secret_keys=["ssh_private_key"])
    wall = time.perf_counter() - started
    busy = sum(end - start for start, end in mocks.timings.values())
    return {"seconds": round(wall, 2), "host_seconds_summed": round(busy, 2),
            "overlap": round(busy / wall, 2), "ssh_sessions_per_host": sorted(set(ssh.SESSIONS.values()))}


def prepare_seconds(count: int) -> dict[str, Any]:
    """First run installs a package on every host (CPU-bound dpkg work: 2 cores here, one CPU per Pi in
    real life); the second, with fresh state, re-runs every script on the prepared hosts."""
    names = [f"b{i}" for i in range(1, count + 1)]
    with tempfile.TemporaryDirectory() as workdir, HostFleet(names=names, workdir=Path(workdir)) as fleet:
        config = {
            "prepare": {"packages": ["jq"]},
            "nodes": [{"name": f"bench-{h.name}", "address": h.address} for h in fleet],
            "ssh_private_key": fleet.private_key_pem,
        }
        first = _timed_run(config)
        again = _timed_run(config)
        return {"hosts": count, "boot_seconds": round(fleet.boot_seconds or 0, 2), "first_run": first,
                "rerun_prepared": again}


def unit_suite_seconds() -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "pytest", "-q", "-m", "not integration", "tests"], cwd=ROOT,
                   check=True, capture_output=True)
    return time.perf_counter() - started


def main() -> None:
    results: dict[str, Any] = {
        "evaluate_30_nodes_s": round(evaluation_seconds(30), 2),
        "evaluate_300_nodes_s": round(evaluation_seconds(300), 2),
        "unit_suite_s": round(unit_suite_seconds(), 1),
    }
    three, nine = prepare_seconds(3), prepare_seconds(9)
    results.update(prepare_3=three, prepare_9=nine)
    for run in ("first_run", "rerun_prepared"):
        results[f"ratio_9_to_3_{run}"] = round(nine[run]["seconds"] / three[run]["seconds"], 2)
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
