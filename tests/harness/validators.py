"""Offline validators the unit tests share. `make test` installs them, so a missing one is a failure."""

from __future__ import annotations

import subprocess
from collections.abc import Sequence


def shellcheck_findings(script: str, exclude: Sequence[str] = ()) -> str:
    """shellcheck's report for a bash script (empty when clean), every severity down to style."""
    excluded = [f"--exclude={code}" for code in exclude]
    done = subprocess.run(["shellcheck", "--shell=bash", "--severity=style", *excluded, "-"], input=script,
                          capture_output=True, text=True, check=False)
    return done.stdout if done.returncode else ""
