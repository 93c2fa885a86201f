"""Extracts the flag names `k3s server` and `k3s agent` accept from k3s's own source, as test data.

k3s reads `/etc/rancher/k3s/config.yaml` by turning each key into the command-line flag of the same name
(pkg/configfilearg), so the accepted keys are exactly the flags of `pkg/cli/cmds/server.go` (`ServerFlags`)
and `pkg/cli/cmds/agent.go` (`NewAgentCommand`), including the shared flag variables those lists name (defined
across `pkg/cli/cmds/*.go`). Usage:

    python tests/data/extract_k3s_flags.py GIT_DIR COMMIT TAG > tests/data/k3s-flags-TAG.json

GIT_DIR is any clone holding COMMIT (k3s-io/k3s history). The output names its source (repository, commit,
tag, files) and lists each flag with its aliases, urfave/cli type and whether it is hidden.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from typing import Any

_FLAG_START = re.compile(r"&?cli\.(?P<type>\w+)Flag\{")
_VAR_FLAG = re.compile(r"^\s*(?P<var>\w+)\s*=\s*&?cli\.(?P<type>\w+)Flag\{", re.MULTILINE)
_NAME = re.compile(r'\bName:\s*"(?P<name>[^"]+)"')
_ALIASES = re.compile(r"\bAliases:\s*\[\]string\{(?P<items>[^}]*)\}")
_HIDDEN = re.compile(r"\bHidden:\s*true\b")


def _git(git_dir: str, *args: str) -> str:
    return subprocess.run(["git", "-C", git_dir, *args], capture_output=True, text=True, check=True).stdout


def _balanced(text: str, open_at: int) -> str:
    """The text from the `{` at open_at to its matching `}`, skipping Go string literals and comments."""
    depth, index = 0, open_at
    while index < len(text):
        char = text[index]
        if char in "\"`":  # a string literal: to its closing quote (`\"` escapes only in "...")
            index += 1
            while text[index] != char:
                index += 2 if char == '"' and text[index] == "\\" else 1
        elif text.startswith("//", index):
            index = text.index("\n", index)
        elif char == "{":
            depth += 1
        elif char == "}":
            depth -= 1
            if depth == 0:
                return text[open_at:index + 1]
        index += 1
    raise ValueError("unbalanced braces")


def _describe(kind: str, body: str) -> dict[str, Any]:
    name = _NAME.search(body)
    if name is None:
        raise ValueError(f"flag without a name: {body[:80]!r}")
    aliases = _ALIASES.search(body)
    return {"name": name["name"], "type": kind,
            "aliases": re.findall(r'"([^"]+)"', aliases["items"]) if aliases else [],
            "hidden": bool(_HIDDEN.search(body))}


def named_flags(sources: dict[str, str]) -> dict[str, dict[str, Any]]:
    """Flag variables (`NodeIPFlag = &cli.StringSliceFlag{...}`) of every file, by variable name."""
    found: dict[str, dict[str, Any]] = {}
    for text in sources.values():
        for match in _VAR_FLAG.finditer(text):
            body = _balanced(text, match.end() - 1)
            found[match["var"]] = _describe(match["type"], body)
    return found


def list_items(text: str, anchor: str, named: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """The flags of the `[]cli.Flag{...}` list that follows `anchor`."""
    start = text.index(anchor)
    open_at = text.index("[]cli.Flag{", start) + len("[]cli.Flag")
    body = _balanced(text, open_at)[1:-1]
    flags, position = [], 0
    while position < len(body):
        rest = body[position:]
        stripped = rest.lstrip()
        position += len(rest) - len(stripped)
        if not stripped:
            break
        if stripped.startswith("//"):
            position += stripped.find("\n") + 1 if "\n" in stripped else len(stripped)
            continue
        inline = _FLAG_START.match(stripped)
        if inline:
            literal = _balanced(body, position + inline.end() - 1)
            flags.append(_describe(inline["type"], literal))
            position += inline.end() - 1 + len(literal)
        else:
            identifier = re.match(r"&?(\w+)", stripped)
            if identifier is None:
                raise ValueError(f"unexpected list item: {stripped[:60]!r}")
            flags.append(named[identifier[1]])
            position += identifier.end()
        comma = body[position:].lstrip()
        if comma.startswith(","):
            position += len(body[position:]) - len(comma) + 1
    return flags


def extract(git_dir: str, commit: str, tag: str) -> dict[str, Any]:
    files = [path for path in _git(git_dir, "ls-tree", "--name-only", f"{commit}:pkg/cli/cmds").split()
             if path.endswith(".go") and not path.endswith("_test.go")]
    sources = {f"pkg/cli/cmds/{name}": _git(git_dir, "show", f"{commit}:pkg/cli/cmds/{name}") for name in files}
    named = named_flags(sources)
    server = list_items(sources["pkg/cli/cmds/server.go"], "var ServerFlags", named)
    agent = list_items(sources["pkg/cli/cmds/agent.go"], "func NewAgentCommand", named)
    return {
        "source": {
            "repository": "https://github.com/k3s-io/k3s",
            "tag": tag,
            "commit": commit,
            "files": ["pkg/cli/cmds/server.go (ServerFlags)", "pkg/cli/cmds/agent.go (NewAgentCommand)",
                      "pkg/cli/cmds/*.go (shared flag variables)"],
            "extracted_by": "tests/data/extract_k3s_flags.py",
        },
        "server": {flag["name"]: {k: v for k, v in flag.items() if k != "name"} for flag in server},
        "agent": {flag["name"]: {k: v for k, v in flag.items() if k != "name"} for flag in agent},
    }


if __name__ == "__main__":
    git_dir, commit, tag = sys.argv[1:4]
    json.dump(extract(git_dir, commit, tag), sys.stdout, indent=1, sort_keys=True)
    sys.stdout.write("\n")
