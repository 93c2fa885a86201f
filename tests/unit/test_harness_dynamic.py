"""The dynamic-provider emulator drives a provider the way the engine and pulumi's dynamic provider host do
(pulumi/dynamic/__main__.py): create returns the provider's id, an in-place change calls `update`, a replaced
or removed resource calls `delete` in the delete phase."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from pulumi import dynamic

from tests.harness.dynamic_emulator import DynamicEmulator
from tests.harness.executing import ExecutingMocks, StackState
from tests.harness.program import run_program

LOG = Path("journal.log")  # set to a temporary file by the test


class Journal(dynamic.ResourceProvider):
    """Writes every call to LOG; `size` changes in place, `name` replaces."""

    def create(self, props: dict[str, Any]) -> dynamic.CreateResult:
        _note(f"create {props['name']} {int(props['size'])}")
        return dynamic.CreateResult(id_=f"journal-{props['name']}", outs=props)

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> dynamic.DiffResult:
        changed = [key for key in ("name", "size") if olds.get(key) != news.get(key)]
        return dynamic.DiffResult(changes=bool(changed), replaces=[key for key in changed if key == "name"])

    def update(self, id_: str, _olds: dict[str, Any], news: dict[str, Any]) -> dynamic.UpdateResult:
        _note(f"update {id_} {int(news['size'])}")
        return dynamic.UpdateResult(outs=news)

    def delete(self, id_: str, _props: dict[str, Any]) -> None:
        _note(f"delete {id_}")


def log() -> Path:
    return LOG


def _note(line: str) -> None:
    with LOG.open("a") as journal:
        journal.write(line + "\n")


class Entry(dynamic.Resource):
    def __init__(self, name: str, size: int) -> None:
        super().__init__(Journal(), name, {"name": name, "size": size})


def program(entries: dict[str, int]) -> Callable[[], None]:
    def run() -> None:
        for name, size in entries.items():
            Entry(name, size)
    return run


def up(state: StackState, entries: dict[str, int]) -> tuple[ExecutingMocks, dict[str, Any]]:
    mocks = ExecutingMocks(state, emulators={"pulumi-python": DynamicEmulator()})
    outputs = run_program(mocks, {}, program=program(entries))
    mocks.finish()
    return mocks, outputs


def test_create_update_and_delete_reach_the_provider(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(f"{__name__}.LOG", tmp_path / "journal.log")
    state = StackState()
    up(state, {"a": 1, "b": 1})
    assert sorted(log().read_text().split("\n")[:-1]) == ["create a 1", "create b 1"]
    ids = sorted(entry.outputs["__id"] for entry in state.resources.values())
    assert ids == ["journal-a", "journal-b"]
    log().unlink()
    up(state, {"a": 2})  # a: size in place; b: gone
    assert log().read_text().split("\n")[:-1] == ["update journal-a 2", "delete journal-b"]
    log().unlink()
    _, _ = up(state, {"a": 2})
    assert not log().exists()  # nothing changed, nothing called
