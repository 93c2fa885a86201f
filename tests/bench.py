"""Benchmarks for the closing notes (numbers, not assertions). Run with `make bench` (root, for hosts).

- wall time to prepare 3 vs 9 booted test hosts through the real program (fresh state each);
- SSH sessions opened per host;
- unit suite wall time;
- program evaluation time under recording mocks for 30 and 300 nodes;
- Kubernetes: evaluation time for 300 nodes with Kubernetes roles, bare hosts to a Ready cluster (3 etcd
  members + k3s servers, 2 agents; the k3s binary is the test-only stand-in) against etcd alone on the same
  hosts, SSH sessions per node, and the SSH sessions of a no-op run.
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


def kubernetes_evaluation_seconds(count: int) -> float:
    """The program for `count` nodes with Kubernetes roles: 3 etcd members and k3s servers, the rest agents."""
    nodes = [{"name": f"n{i}", "address": f"10.1.{i // 250}.{i % 250 + 1}", "kind": "pi" if i % 2 else "linux",
              "roles": ["etcd", "control-plane"] if i < 3 else ["worker"]} for i in range(count)]
    started = time.perf_counter()
    run_program(RecordingMocks(), {"nodes": nodes, "ssh_private_key": FAKE_PRIVATE_KEY,
                                   "etcd": {"bootstrap": ["n0", "n1", "n2"]}}, secret_keys=["ssh_private_key"])
    return time.perf_counter() - started


def kubernetes_bring_up(with_kubernetes: bool) -> dict[str, Any]:
    """Bare hosts to a Ready cluster (3 etcd members + k3s servers, 2 k3s agents; the TEST-ONLY k3s stand-in of
    tests/standins as the airgap binary), or to etcd alone on the same hosts; then a no-op run."""
    from components.kubernetes.render import K3S_VERSION
    from tests.harness.random_emulator import emulate_random
    from tests.harness.tls import emulate_tls
    from tests.standins import airgap_images, k3s_binary

    names = ["kb1", "kb2", "kb3", "kb4", "kb5"]
    with tempfile.TemporaryDirectory() as workdir, HostFleet(names=names, workdir=Path(workdir)) as fleet:
        binary, images = k3s_binary(K3S_VERSION, Path(workdir)), airgap_images(Path(workdir), "bench")
        config: dict[str, Any] = {
            "prepare": {"packages": ["jq"], "kubernetes_networking": False},
            "nodes": [{"name": h.name, "address": h.address,
                       "roles": (["etcd", "control-plane"] if i < 3 else ["worker"]) if with_kubernetes
                       else (["etcd"] if i < 3 else [])} for i, h in enumerate(fleet)],
            "ssh_private_key": fleet.private_key_pem,
            "etcd": {"install": "package", "bootstrap": names[:3]},
        }
        if with_kubernetes:
            config["kubernetes"] = {"install": "airgap", "airgap": {"amd64": {
                "binary": {"path": binary.path, "sha256": binary.sha256},
                "images": {"path": images.path, "sha256": images.sha256}}}}
        state = StackState()
        ssh.SESSIONS.clear()
        started = time.perf_counter()
        run_program(ExecutingMocks(state, emulators={"tls": emulate_tls, "random": emulate_random}), config,
                    secret_keys=["ssh_private_key"])
        wall = time.perf_counter() - started
        sessions = {h.name: ssh.SESSIONS[h.address] for h in fleet}
        ssh.SESSIONS.clear()
        run_program(ExecutingMocks(state, emulators={"tls": emulate_tls, "random": emulate_random}), config,
                    secret_keys=["ssh_private_key"])
        return {"seconds": round(wall, 1), "ssh_sessions_per_node": sessions,
                "noop_up_ssh_sessions": sum(ssh.SESSIONS.values())}


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
    results["evaluate_300_nodes_with_kubernetes_s"] = round(kubernetes_evaluation_seconds(300), 2)
    results["bare_hosts_to_etcd_3_plus_2_hosts"] = kubernetes_bring_up(with_kubernetes=False)
    results["bare_hosts_to_ready_kubernetes_3_servers_2_agents"] = kubernetes_bring_up(with_kubernetes=True)
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
