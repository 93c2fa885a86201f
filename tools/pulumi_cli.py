"""The Pulumi CLI the deploy entry point drives: the one on PATH when it is recent enough, else the pinned
version installed into this checkout (`.pulumi-cli/v<version>/`) with the Automation API's
`PulumiCommand.install`. No download possible: one error that says what to install by hand.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import urllib.error
from collections.abc import Callable
from pathlib import Path

from pulumi.automation import PulumiCommand
from pulumi.automation.errors import InvalidVersionError
from semver import VersionInfo

ROOT = Path(__file__).resolve().parents[1]
# The CLI this project is tested with: the same release as the pulumi SDK pinned in pyproject.toml (a unit
# test keeps the two and the PR workflow's `pulumi-version` equal).
PULUMI_VERSION = "3.272.0"
# Where the pinned CLI goes when none is on PATH (override with COOKBOOK_PULUMI_CLI_DIR).
INSTALL_DIR_VARIABLE = "COOKBOOK_PULUMI_CLI_DIR"


class CliUnavailable(Exception):
    """No usable Pulumi CLI and none could be installed; the message says what to do."""


def install_dir(version: str = PULUMI_VERSION) -> Path:
    override = os.environ.get(INSTALL_DIR_VARIABLE)
    return Path(override) if override else ROOT / ".pulumi-cli" / f"v{version}"


def manual_install_hint(version: str = PULUMI_VERSION) -> str:
    return (f"install the Pulumi CLI v{version} by hand -- `curl -fsSL https://get.pulumi.com | sh -s -- "
            f"--version {version}` (Windows and packages: https://www.pulumi.com/docs/iac/download-install/) -- "
            "make sure `pulumi` is on your PATH, then run the command again")


def _reason(error: BaseException) -> str:
    if isinstance(error, subprocess.CalledProcessError):
        output = (error.output or b"").decode("utf-8", "replace").strip().splitlines()
        return f"the installer exited with {error.returncode}" + (f": {output[-1]}" if output else "")
    if isinstance(error, urllib.error.URLError):
        return f"cannot download https://get.pulumi.com/install.sh ({error.reason})"
    return str(error) or type(error).__name__


def locate(version: str = PULUMI_VERSION, log: Callable[[str], None] = print) -> PulumiCommand:
    """The CLI on PATH if it is at least `version`, else `version` from (or installed into) `install_dir()`."""
    wanted = VersionInfo.parse(version)
    if shutil.which("pulumi"):
        try:
            return PulumiCommand(version=wanted)
        except InvalidVersionError as error:
            log(f"The pulumi on PATH does not fit ({error}); using a project-local v{version} instead.")
        except (OSError, subprocess.CalledProcessError) as error:
            log(f"The pulumi on PATH does not run ({_reason(error)}); using a project-local v{version} instead.")
    root = install_dir(version)
    if not (root / "bin" / "pulumi").exists():
        log(f"No Pulumi CLI on PATH: installing v{version} into {_shown(root)} (once; nothing outside it).")
    try:
        return PulumiCommand.install(root=str(root), version=wanted)
    except (OSError, urllib.error.URLError, subprocess.CalledProcessError, InvalidVersionError) as error:
        raise CliUnavailable(f"could not install the Pulumi CLI v{version} into {_shown(root)}: {_reason(error)}. "
                             f"Offline or blocked? {manual_install_hint(version)}.") from error


def _shown(path: Path) -> str:
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def command_line(command: PulumiCommand) -> str:
    """How a user types this CLI: `pulumi` when it comes from PATH, else its path."""
    return "pulumi" if not os.path.isabs(command.command) else _shown(Path(command.command))
