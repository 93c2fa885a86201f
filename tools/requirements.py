"""requirements.txt, generated from pyproject.toml's `[project] dependencies`: the file Pulumi's pip toolchain
installs (`runtime.options.toolchain: pip` in Pulumi.yaml), so plain `pulumi up` builds the same .venv as
`make venv`.

    python -m tools.requirements --write   # after changing the dependencies in pyproject.toml
    python -m tools.requirements --check   # exit 1 when requirements.txt is out of date (a unit test does this)

Why a generated file and the pip toolchain rather than `uv`: a fresh clone then needs only Python and the
Pulumi CLI (uv would be one more tool to install first), and pyproject.toml stays the one place where
dependencies are declared. Every dependency is pinned exactly in pyproject.toml; the test extra and the
policy pack's own requirements (policy/requirements.txt) stay out of the program's environment, because the
engine downloads a provider plugin for every pulumi-* package it finds there.
"""

from __future__ import annotations

import argparse
import difflib
import re
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = ROOT / "pyproject.toml"
REQUIREMENTS = ROOT / "requirements.txt"
HEADER = """\
# The Pulumi program's dependencies, generated from pyproject.toml by `python -m tools.requirements --write`
# (do not edit: `make test` fails when this file and pyproject.toml disagree). Pulumi's pip toolchain
# (Pulumi.yaml) installs it into .venv on `pulumi install` or the first `pulumi up`; `make venv` does the same.
"""
_PIN = re.compile(r"^(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)(?P<extras>\[[^\]]*\])?==(?P<version>[^\s;,]+)$")


def normalized(name: str) -> str:
    """A distribution name as PEP 503 compares them (`PyYAML` == `pyyaml`, `a_b` == `a-b`)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def project(path: Path | None = None) -> dict:
    with (path or PYPROJECT).open("rb") as file:
        return dict(tomllib.load(file)["project"])


def declared(path: Path | None = None) -> list[str]:
    """The program's dependencies as written in pyproject.toml."""
    return [str(item) for item in project(path).get("dependencies", [])]


def unpinned(requirements: list[str]) -> list[str]:
    return [item for item in requirements if not _PIN.match(item.strip())]


def pins(requirements: list[str]) -> dict[str, str]:
    """{normalized name: version} of `name==version` requirements."""
    return {normalized(match["name"]): match["version"]
            for item in requirements if (match := _PIN.match(item.strip()))}


def render(path: Path | None = None) -> str:
    """requirements.txt's text: the header, then the dependencies sorted by name."""
    def name(item: str) -> str:
        return normalized(re.split(r"[\[=<>!~;\s]", item, maxsplit=1)[0])

    return HEADER + "".join(f"{item}\n" for item in sorted(declared(path), key=name))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.requirements", description=__doc__.split("\n\n")[0])
    action = parser.add_mutually_exclusive_group(required=True)
    action.add_argument("--write", action="store_true", help="regenerate requirements.txt")
    action.add_argument("--check", action="store_true", help="fail when requirements.txt is out of date")
    args = parser.parse_args(argv)
    problems = unpinned(declared())
    if problems:
        print(f"error: pin every dependency in pyproject.toml exactly (name==version): {', '.join(problems)}",
              file=sys.stderr)
        return 1
    expected = render()
    if args.write:
        REQUIREMENTS.write_text(expected, encoding="utf-8")
        return 0
    current = REQUIREMENTS.read_text(encoding="utf-8") if REQUIREMENTS.exists() else ""
    if current != expected:
        sys.stderr.writelines(difflib.unified_diff(current.splitlines(True), expected.splitlines(True),
                                                   "requirements.txt", "from pyproject.toml"))
        print("error: requirements.txt is out of date: run `python -m tools.requirements --write`", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
