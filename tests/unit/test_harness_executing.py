"""The integration harness fails a run like the Pulumi engine does (a tiny program of local commands, no hosts).

Reference: pulumi/pulumi pkg/resource/deploy/step_executor.go. Without --continue-on-error,
`cancelDueToError` cancels the deployment's context at the first failed step; `executeChain` checks that
context before each step, so steps already executing finish and no new step starts. Resources gone from the
program are deleted only when the program completed (the delete phase follows a successful run).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pulumi
import pulumi_command as command
import pytest

from tests.harness.executing import ExecutingMocks, StackState, StepNotStarted
from tests.harness.program import run_program


def chain(log: Path, a: str, b: str, c: str, d: str | None = None) -> Callable[[], None]:
    """`a` and `b` start together; `c` takes `a`'s stdout, so it is registered only once `a` finished.
    `d` (when given) deletes by writing to `log`."""

    def program() -> None:
        first = command.local.Command("a", create=f"{a} >> {log} && echo a-done")
        command.local.Command("b", create=f"{b} >> {log}")
        command.local.Command("c", create=first.stdout.apply(lambda out: f"echo {c} {out} >> {log}"))
        if d is not None:
            command.local.Command("d", create=f"echo {d} >> {log}", delete=f"echo deleted-{d} >> {log}")

    return program


def up(state: StackState, program: Callable[[], None]) -> ExecutingMocks:
    mocks = ExecutingMocks(state)
    run_program(mocks, {}, program=program)
    mocks.finish()
    return mocks


def inputs_of(state: StackState, name: str) -> dict[str, object]:
    return next(r.inputs for r in state.resources.values() if r.name == name)


def test_after_a_failed_step_running_steps_finish_and_no_new_step_starts(tmp_path: Path) -> None:
    """step_executor.go: `executeChain` returns at `se.ctx.Done()` before starting a step, and
    `cancelDueToError` cancels that context when a step fails (no ContinueOnError)."""
    log = tmp_path / "log"
    state = StackState()
    up(state, chain(log, "echo a1", "echo b1", "c1", d="d1"))
    c_before = inputs_of(state, "c")
    log.write_text("")

    mocks = ExecutingMocks(state)
    with pytest.raises(Exception, match=r"'b'.*exit status 7"):
        run_program(mocks, {}, program=chain(log, "sleep 0.5; echo a2", "exit 7", "c2"))
    # `a` was running when `b` failed: it finished, and its new state was recorded.
    assert "a2" in log.read_text().split()
    assert ("update", "a") in mocks.operations
    assert inputs_of(state, "a")["create"] == f"sleep 0.5; echo a2 >> {log} && echo a-done"
    # `c` was registered after the failure: not started, its state entry as it was.
    assert ("update", "c") not in mocks.operations
    assert "c2" not in log.read_text()
    assert inputs_of(state, "c") == c_before
    not_started = [e for e in mocks.errors if "'c'" in e]
    assert len(not_started) == 1 and "not started: an earlier step failed" in not_started[0], mocks.errors
    assert "'b'" in mocks.errors[0]

    # `d` is gone from the program, but the run failed: finish() deletes nothing.
    mocks.finish()
    assert "deleted-d1" not in log.read_text()
    assert any(r.name == "d" for r in state.resources.values())

    # The next run starts clean and converges; `d` is deleted after it succeeded.
    rerun = up(state, chain(log, "sleep 0.5; echo a2", "echo b3", "c2"))
    assert rerun.errors == []
    assert sorted(rerun.operations[:2]) == [("update", "b"), ("update", "c")]
    assert rerun.operations[2:] == [("delete", "d")]
    assert "deleted-d1" in log.read_text()


def test_a_resource_registered_after_a_failure_raises_step_not_started(tmp_path: Path) -> None:
    """The error a late registration gets names the resource and says why nothing ran."""
    log = tmp_path / "log"
    mocks = ExecutingMocks(StackState())
    with pytest.raises(Exception, match="'b'"):
        run_program(mocks, {}, program=chain(log, "sleep 0.5; echo a1", "exit 1", "c1"))
    assert issubclass(StepNotStarted, RuntimeError)
    assert mocks.errors[1:] == [
        "command:local:Command 'c' not started: an earlier step failed (command:local:Command 'b')"]
    assert mocks.state.resources.keys() == {r.urn for r in mocks.resources if r.name == "a"}


def test_finish_deletes_nothing_after_the_program_itself_failed(tmp_path: Path) -> None:
    """A program error (no failed step) also ends the run without its delete phase."""
    log = tmp_path / "log"
    state = StackState()
    up(state, chain(log, "echo a1", "echo b1", "c1", d="d1"))

    def broken() -> None:
        command.local.Command("a", create=f"echo a1 >> {log} && echo a-done")
        raise ValueError("config: nodes is empty")

    mocks = ExecutingMocks(state)
    with pytest.raises(ValueError, match="nodes is empty"):
        run_program(mocks, {}, program=broken)
    mocks.finish()
    assert "deleted-d1" not in log.read_text()
    assert {r.name for r in state.resources.values()} == {"a", "b", "c", "d"}


def test_a_delete_before_replace_is_not_started_after_a_failure(tmp_path: Path) -> None:
    """A replacement registered after the failure deletes nothing either (its old resource stays)."""
    log = tmp_path / "log"

    def program(trigger: str, b: str) -> Callable[[], None]:
        def run() -> None:
            first = command.local.Command("a", create=f"sleep 0.5; echo a-{trigger} >> {log}")
            command.local.Command("b", create=b)
            command.local.Command(
                "r", create=first.stdout.apply(lambda _: f"echo r-{trigger} >> {log}"), delete=f"echo r-gone >> {log}",
                triggers=[trigger], opts=pulumi.ResourceOptions(delete_before_replace=True))
        return run

    state = StackState()
    up(state, program("one", "true"))
    mocks = ExecutingMocks(state)
    with pytest.raises(Exception, match="'b'"):
        run_program(mocks, {}, program=program("two", "false"))
    assert "r-gone" not in log.read_text() and "r-two" not in log.read_text()
    assert inputs_of(state, "r")["triggers"] == ["one"]


def replaced_once(log: Path, generation: str, fail: bool = False) -> Callable[[], None]:
    """`r` is replaced when `generation` changes (its triggers); `after` runs after it; `boom` may fail."""

    def program() -> None:
        replaced = command.local.Command("r", create=f"echo create-{generation} >> {log}",
                                         delete=f"echo delete-r >> {log}", triggers=[generation])
        command.local.Command("after", create=replaced.stdout.apply(lambda _: f"echo after-{generation} >> {log}"))
        command.local.Command("boom", create="exit 3" if fail else "true")

    return program


def test_a_replaced_resource_is_deleted_in_the_delete_phase_not_at_once(tmp_path: Path) -> None:
    """step_generator.go: a create-before-delete replacement's delete "is generated 'later' on", in the
    delete phase that follows a completed run; until then the old resource is kept, marked for deletion."""
    log = tmp_path / "log"
    state = StackState()
    up(state, replaced_once(log, "g1"))
    log.write_text("")

    mocks = up(state, replaced_once(log, "g2"))
    lines = log.read_text().split()
    assert lines.index("after-g2") < lines.index("delete-r"), lines  # dependents first, then the old delete
    assert mocks.operations[-1] == ("replace-delete", "r")
    assert state.pending_deletes == []


def test_a_failed_run_keeps_the_replaced_resource_pending_until_a_run_completes(tmp_path: Path) -> None:
    log = tmp_path / "log"
    state = StackState()
    up(state, replaced_once(log, "g1"))
    mocks = ExecutingMocks(state)
    with pytest.raises(Exception, match="exit status 3"):
        run_program(mocks, {}, program=replaced_once(log, "g2", fail=True))
    mocks.finish()
    assert "delete-r" not in log.read_text()
    assert [old.name for old in state.pending_deletes] == ["r"]

    up(state, replaced_once(log, "g2"))
    assert log.read_text().split().count("delete-r") == 1
    assert state.pending_deletes == []
