"""Offline validators the tests share. `make test` installs every tool, so a missing tool or a validator
that could not run is a test failure, never a silent pass.

Exclusions are never passed for a whole script: a finding that is intended is silenced on its own line in
the template with `# shellcheck disable=SCnnnn  # reason`.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Mapping
from pathlib import Path


class ValidatorError(RuntimeError):
    """The validator itself failed (missing, usage error, crash): its verdict is unknown."""


def require_tool(name: str) -> str:
    """The path of `name`, or a ValidatorError saying how to install it."""
    path = shutil.which(name)
    if path is None:
        raise ValidatorError(f"{name} is not installed: `make test-deps` installs every validator")
    return path


def shellcheck_findings(script: str) -> str:
    """shellcheck's report for a bash script (empty when clean), every severity down to style.

    shellcheck exits 0 when clean and 1 when it reports findings; anything else (2: files could not be
    processed, 3: bad syntax/options, 4: unknown options) means it did not check the script.
    """
    done = subprocess.run([require_tool("shellcheck"), "--shell=bash", "--severity=style", "--external-sources",
                           "-"], input=script, capture_output=True, text=True, check=False)
    if done.returncode not in (0, 1):
        raise ValidatorError(f"shellcheck exited {done.returncode}: {done.stderr.strip() or done.stdout.strip()}")
    if done.returncode == 1 and not done.stdout.strip():
        raise ValidatorError(f"shellcheck exited 1 without a report: {done.stderr.strip()}")
    return done.stdout if done.returncode else ""


def systemd_verify(units: Mapping[str, str], directory: Path) -> str:
    """`systemd-analyze verify` of unit files (name -> text) written to `directory`; its complaints, or ""."""
    analyze = require_tool("systemd-analyze")
    paths = []
    for name, text in units.items():
        path = directory / name
        path.write_text(text.rstrip("\n") + "\n")
        paths.append(str(path))
    done = subprocess.run([analyze, "verify", *paths], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        return done.stderr.strip() or f"systemd-analyze verify exited {done.returncode}"
    return ""
