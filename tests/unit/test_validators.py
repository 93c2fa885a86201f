"""The validators themselves: each must fail loudly when it cannot judge, and find a known defect."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.harness import validators


def test_shellcheck_finds_a_single_quoted_variable() -> None:
    assert "SC2016" in validators.shellcheck_findings("#!/usr/bin/env bash\necho '$HOME'\n")


def test_shellcheck_clean_script_is_clean() -> None:
    assert validators.shellcheck_findings('#!/usr/bin/env bash\necho "$HOME"\n') == ""


def test_shellcheck_line_directive_silences_only_its_line() -> None:
    # (a directive right after the shebang would cover the whole file: scripts put theirs after `set`)
    script = ("#!/usr/bin/env bash\nset -eu\n# shellcheck disable=SC2016  # literal on purpose\necho '$HOME'\n"
              "echo '$USER'\n")
    findings = validators.shellcheck_findings(script)
    assert "line 5" in findings and "line 4" not in findings


def test_shellcheck_usage_error_is_an_error_not_clean(monkeypatch: pytest.MonkeyPatch) -> None:
    """Before: any non-zero exit other than a report came back as "clean"."""
    real_run = validators.subprocess.run

    def bad_option(args: list[str], **kwargs: object) -> object:
        return real_run([*args[:-1], "--no-such-option", "-"], **kwargs)  # type: ignore[call-overload]

    monkeypatch.setattr(validators.subprocess, "run", bad_option)
    with pytest.raises(validators.ValidatorError, match="shellcheck exited"):
        validators.shellcheck_findings("#!/usr/bin/env bash\necho hi\n")


def test_missing_tool_is_a_failure(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(validators.shutil, "which", lambda _name: None)
    with pytest.raises(validators.ValidatorError, match="make test-deps"):
        validators.shellcheck_findings("#!/usr/bin/env bash\n")


def test_systemd_verify_reports_a_broken_unit(tmp_path: Path) -> None:
    broken = "[Unit]\nDescription=x\n[Service]\nExecStart=relative/path\n"
    assert validators.systemd_verify({"broken.service": broken}, tmp_path) != ""


def test_systemd_verify_accepts_a_good_unit(tmp_path: Path) -> None:
    good = "[Unit]\nDescription=x\n[Service]\nType=oneshot\nExecStart=/bin/true\n"
    assert validators.systemd_verify({"good.service": good}, tmp_path) == ""
