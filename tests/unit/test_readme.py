"""The README's shell commands work as written: every block that can run on this machine runs here (in a
scratch copy of the checkout, so it changes nothing), the ones that run on a booted host are run by the
integration test named by their marker, and every other block says what it needs (tests/harness/readme.py).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.harness import readme
from tests.harness.program import ROOT
from tools.mutate import scratch_copy

RUNNABLE = [block for block in readme.shell_blocks() if block.runs_here]


def test_every_shell_block_says_where_it_runs() -> None:
    unmarked = [block.line for block in readme.shell_blocks() if block.marker is None]
    assert unmarked == [], f"README.md lines {unmarked}: add <!-- runs here -->, <!-- runs on a test host: ID --> " \
                           "or <!-- needs: WHAT --> before the block"
    assert RUNNABLE, "no README command runs on this machine: the check would prove nothing"


def test_blocks_for_test_hosts_are_run_by_an_integration_test() -> None:
    sources = "\n".join(path.read_text() for path in (ROOT / "tests" / "integration").glob("test_*.py"))
    for block in readme.shell_blocks():
        if block.host_id is not None:
            assert f'readme_block("{block.host_id}")' in sources, f"no test runs README line {block.line}"


def test_a_block_without_a_marker_is_reported(tmp_path: Path) -> None:
    page = tmp_path / "README.md"
    page.write_text("# x\n\n<!-- runs here -->\n```sh\ntrue\n```\n\ntext\n\n```sh\nfalse\n```\n")
    assert [(b.line, b.marker) for b in readme.shell_blocks(page)] == [(4, "runs here"), (10, None)]


@pytest.mark.parametrize("block", RUNNABLE, ids=[f"line-{block.line}" for block in RUNNABLE])
def test_the_block_runs_here(block: readme.Block, tmp_path: Path) -> None:
    scratch_copy(tmp_path)
    venv = Path(sys.prefix)  # the environment running the tests, installed: `make` must not build it anew
    (tmp_path / ".venv").symlink_to(venv)
    for declared in ("requirements.txt", "pyproject.toml"):  # never newer than the installed environment
        os.utime(tmp_path / declared, (0, 0))
    env = {**os.environ, "PATH": f"{venv / 'bin'}{os.pathsep}{os.environ['PATH']}"}
    done = subprocess.run(["bash", "-euo", "pipefail", "-c", block.text], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, f"README line {block.line} failed:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}"
