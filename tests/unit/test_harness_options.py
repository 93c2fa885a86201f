"""The recording monitor hands the engine's view of resource options to the tests (protect, retainOnDelete,
customTimeouts, ignoreChanges, replaceOnChanges), so recipes can assert them on the wire."""

from __future__ import annotations

import pulumi
import pulumi_command as command

from tests.harness.program import run_program
from tests.harness.recording import RecordingMocks


def test_resource_options_reach_the_registration() -> None:
    def program() -> None:
        command.local.Command("kept", create="true", opts=pulumi.ResourceOptions(
            protect=True, retain_on_delete=True, ignore_changes=["create"], replace_on_changes=["triggers"],
            custom_timeouts=pulumi.CustomTimeouts(create="5m", delete="1m")))
        command.local.Command("plain", create="true")

    mocks = RecordingMocks()
    run_program(mocks, {}, program=program)
    kept = mocks.named("kept").registration
    assert kept.protect and kept.retain_on_delete
    assert dict(kept.custom_timeouts) == {"create": "5m", "delete": "1m"}
    assert kept.ignore_changes == ("create",) and "triggers" in kept.replace_on_changes
    plain = mocks.named("plain").registration
    assert not plain.protect and not plain.retain_on_delete and plain.custom_timeouts == ()
