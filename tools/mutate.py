"""Mutation check: does the test suite notice when the code is wrong?

Each mutation in `tools/mutations.yaml` is a meaningful one-line change to `components/` (Python or a
template, shell templates included): a dropped `parent=self`, a gate that no longer checks membership, a
rollout that may take two pods down... For each, a scratch copy of the repository gets the change and the
unit suite runs there (or the tests the entry names). A mutation the suite does not fail has *survived*.

    python -m tools.mutate            # every mutation, 2 at a time; exit 1 if any survived
    python -m tools.mutate --only etcd-health-skips-membership --jobs 1
    python -m tools.mutate --list

An entry: `id`, `file`, `find` (must occur exactly once in the file: a stale entry is an error, never a
silent pass), `replace`, `why`, and optionally `tests` (pytest arguments; default: the unit suite).
A mutated program that cannot even be collected (syntax error) is reported as `invalid`, not as killed, and
every test selection must pass without mutations before any is measured.
"""

from __future__ import annotations

import argparse
import os
import queue
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
MUTATIONS = ROOT / "tools" / "mutations.yaml"
UNIT_SUITE = ("-m", "not integration", "tests")
TIMEOUT_SECONDS = 900
# pytest exit codes: 0 all passed, 1 some failed, 2 interrupted, 3 internal error, 4 usage, 5 none collected.
PASSED, TESTS_FAILED = 0, 1


@dataclass(frozen=True)
class Mutation:
    id: str
    file: str
    find: str
    replace: str
    why: str
    tests: tuple[str, ...] = UNIT_SUITE


@dataclass(frozen=True)
class Outcome:
    mutation: Mutation
    status: str  # killed | survived | invalid | stale
    seconds: float
    detail: str


def load(path: Path = MUTATIONS) -> list[Mutation]:
    entries: list[dict[str, Any]] = yaml.safe_load(path.read_text(encoding="utf-8")) or []
    mutations = []
    for entry in entries:
        tests = entry.pop("tests", None)
        mutations.append(Mutation(**entry, tests=tuple(shlex.split(tests)) if tests else UNIT_SUITE))
    ids = [m.id for m in mutations]
    duplicates = sorted({i for i in ids if ids.count(i) > 1})
    if duplicates:
        raise ValueError(f"{path.name}: duplicate ids {duplicates}")
    return mutations


def project_files() -> list[str]:
    """Tracked and untracked-but-not-ignored files: exactly what a commit of the work tree would hold. Outside
    a git checkout (a scratch copy, whose tests copy it again): every file but installed and generated ones."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                            capture_output=True, check=False)
    if listed.returncode == 0:
        names = listed.stdout.decode().split("\0")
    else:
        names = [str(path.relative_to(ROOT)) for path in ROOT.rglob("*")
                 if not any(part in _NOT_PROJECT for part in path.relative_to(ROOT).parts)]
    return sorted({name for name in names if name and (ROOT / name).is_file()})


_NOT_PROJECT = {".git", ".venv", "__pycache__", "node_modules", "venv", ".pulumi-cli", "build", "rendered",
                ".mypy_cache", ".ruff_cache", ".pytest_cache"}


# Installed (git-ignored) trees the tests use, shared with the scratch copy rather than copied.
SHARED_INSTALLS = ("tools/node_modules", "policy/venv")


def scratch_copy(destination: Path) -> None:
    for name in project_files():
        target = destination / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, target)
    for name in SHARED_INSTALLS:
        if (ROOT / name).exists():
            (destination / name).parent.mkdir(parents=True, exist_ok=True)
            (destination / name).symlink_to(ROOT / name)


def apply(mutation: Mutation, tree: Path) -> str | None:
    """Applies the mutation inside `tree`; returns why it cannot be applied, or None."""
    path = tree / mutation.file
    if not path.is_file():
        return f"no file {mutation.file}"
    text = path.read_text(encoding="utf-8")
    count = text.count(mutation.find)
    if count != 1:
        return f"`find` occurs {count} times in {mutation.file} (must be exactly once)"
    path.write_text(text.replace(mutation.find, mutation.replace), encoding="utf-8")
    return None


# Integration tests boot test hosts: each worker gets its own lane (tests/infra/network.py) so fleets of
# mutations checked at the same time never share a bridge.
LANES: queue.Queue[str] = queue.Queue()


def run_suite(tree: Path, tests: tuple[str, ...]) -> subprocess.CompletedProcess[str]:
    lane = LANES.get()
    try:
        return _run_suite(tree, tests, lane)
    finally:
        LANES.put(lane)


def _run_suite(tree: Path, tests: tuple[str, ...], lane: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1", "COOKBOOK_TEST_LANE": lane}
    return subprocess.run([sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", *tests],
                          cwd=tree, env=env, capture_output=True, text=True, timeout=TIMEOUT_SECONDS, check=False)


def _first_failure(output: str) -> str:
    for line in output.splitlines():
        if line.startswith(("FAILED ", "ERROR ")):
            return line[:200]
    return output.strip().splitlines()[-1][:200] if output.strip() else ""


# Test files named after a recipe (`components/<recipe>/...`); nodes' tests are test_node*.py.
_RECIPE_TESTS = {"nodes": "node"}
WHOLE_GRAPH_TESTS = ("tests/unit/test_graph_shapes.py", "tests/unit/test_program.py")


def quick_tests(mutation: Mutation) -> tuple[str, ...] | None:
    """The mutated recipe's own unit tests and the whole-graph checks: a mutation they kill, the whole suite
    kills too (it contains them); only a survivor needs the whole suite."""
    parts = Path(mutation.file).parts
    if mutation.tests != UNIT_SUITE or len(parts) < 3 or parts[0] != "components":
        return None
    prefix = _RECIPE_TESTS.get(parts[1], parts[1])
    own = sorted(str(path.relative_to(ROOT)) for path in (ROOT / "tests" / "unit").glob(f"test_{prefix}*.py"))
    return (*own, *WHOLE_GRAPH_TESTS) if own else None


def check(mutation: Mutation) -> Outcome:
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="cookbook-mutant-") as scratch:
        tree = Path(scratch)
        scratch_copy(tree)
        problem = apply(mutation, tree)
        if problem is not None:
            return Outcome(mutation, "stale", 0.0, problem)
        quick = quick_tests(mutation)
        done = run_suite(tree, quick) if quick else None
        if done is None or done.returncode == PASSED:
            done = run_suite(tree, mutation.tests)
    seconds = time.monotonic() - started
    if done.returncode == PASSED:
        return Outcome(mutation, "survived", seconds, "every selected test passed")
    if done.returncode == TESTS_FAILED:
        return Outcome(mutation, "killed", seconds, _first_failure(done.stdout))
    return Outcome(mutation, "invalid", seconds, f"pytest exit {done.returncode}: {_first_failure(done.stdout)}")


def baseline_passes(tests: tuple[str, ...]) -> bool:
    with tempfile.TemporaryDirectory(prefix="cookbook-baseline-") as scratch:
        scratch_copy(Path(scratch))
        done = run_suite(Path(scratch), tests)
    if done.returncode != PASSED:
        print(f"the unmutated tests fail ({' '.join(tests)}: {_first_failure(done.stdout)}): fix them before "
              "measuring mutations")
    return done.returncode == PASSED


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", nargs="*", default=None, help="mutation ids to run")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--list", action="store_true", help="list the mutations and exit")
    options = parser.parse_args(argv)
    mutations = load()
    if options.only:
        unknown = sorted(set(options.only) - {m.id for m in mutations})
        if unknown:
            parser.error(f"unknown mutation ids: {', '.join(unknown)}")
        mutations = [m for m in mutations if m.id in options.only]
    if options.list:
        for mutation in mutations:
            print(f"{mutation.id:45} {mutation.file}: {mutation.why}")
        return 0
    for lane in range(1, max(1, options.jobs) + 1):
        LANES.put(str(lane))
    # A mutation counts as killed only by tests that pass without it: every selection must pass unmutated first.
    selections = sorted({UNIT_SUITE, *(m.tests for m in mutations)})
    with ThreadPoolExecutor(max_workers=max(1, options.jobs)) as pool:
        if not all(pool.map(baseline_passes, selections)):
            return 2
    with ThreadPoolExecutor(max_workers=max(1, options.jobs)) as pool:
        outcomes = list(pool.map(check, mutations))
    width = max(len(m.id) for m in mutations)
    for outcome in outcomes:
        print(f"{outcome.status:9} {outcome.mutation.id:{width}} {outcome.seconds:6.1f}s  {outcome.detail}")
    killed = sum(o.status == "killed" for o in outcomes)
    print(f"\nmutation score: {killed}/{len(outcomes)} killed"
          + "".join(f", {sum(o.status == s for o in outcomes)} {s}" for s in ("survived", "invalid", "stale")
                    if any(o.status == s for o in outcomes)))
    return 0 if killed == len(outcomes) else 1


if __name__ == "__main__":
    sys.exit(main())
