"""The README's shell blocks, each with what it needs, so tests can run the ones that run here.

Every ```sh block is preceded by one HTML comment saying where it runs:

    <!-- runs here -->                      tests/unit/test_readme.py runs it in a scratch copy of the checkout
    <!-- runs on a test host: ID -->        an integration test runs it on a booted host (readme_block(ID))
    <!-- needs: WHAT -->                    it needs what this machine does not have (a deployed stack, ...)
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

README = Path(__file__).resolve().parents[2] / "README.md"
_FENCE = re.compile(r"^```(\S*)\s*$")
_MARKER = re.compile(r"^<!-- (runs here|runs on a test host: (?P<id>[a-z0-9-]+)|needs: (?P<needs>.+?)) -->$")
SHELL_LANGUAGES = ("sh", "bash", "shell")


@dataclass(frozen=True)
class Block:
    line: int  # of the opening fence, 1-based
    language: str
    text: str
    marker: str | None  # the marker comment's content, None when missing
    host_id: str | None = None
    needs: str | None = None

    @property
    def runs_here(self) -> bool:
        return self.marker == "runs here"


def blocks(path: Path = README) -> list[Block]:
    lines = path.read_text(encoding="utf-8").split("\n")
    found = []
    index = 0
    while index < len(lines):
        fence = _FENCE.match(lines[index])
        if not fence:
            index += 1
            continue
        start = index
        index += 1
        body = []
        while index < len(lines) and not lines[index].startswith("```"):
            body.append(lines[index])
            index += 1
        previous = next((line for line in reversed(lines[:start]) if line.strip()), "")
        marker = _MARKER.match(previous.strip())
        found.append(Block(start + 1, fence.group(1), "\n".join(body) + "\n",
                           marker.group(1) if marker else None,
                           marker.group("id") if marker else None, marker.group("needs") if marker else None))
        index += 1
    return found


def shell_blocks(path: Path = README) -> list[Block]:
    return [block for block in blocks(path) if block.language in SHELL_LANGUAGES]


def readme_block(host_id: str, path: Path = README) -> str:
    """The text of the block marked `<!-- runs on a test host: host_id -->`."""
    matches = [block.text for block in shell_blocks(path) if block.host_id == host_id]
    if len(matches) != 1:
        raise LookupError(f"README.md has {len(matches)} blocks marked for test host id {host_id!r}")
    return matches[0]
