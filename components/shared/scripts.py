"""Renders host-side shell scripts: a parameter header (safely quoted) followed by template fragments.

Fragments live in each recipe's `templates/` folder and are named `<recipe>/<file>` (e.g. `etcd/join.sh` is
`components/etcd/templates/join.sh`; `shared/common.sh` holds helpers every recipe uses). They read only the
variables the header defines.
Rendering is pure and deterministic, so tests call it directly and `shellcheck` the result.
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping, Sequence
from functools import cache
from pathlib import Path

COMPONENTS = Path(__file__).resolve().parents[1]
ShellValue = str | int | bool | Sequence[str]


@cache
def template(name: str) -> str:
    """The text of template `<recipe>/<file>`, i.e. `components/<recipe>/templates/<file>`."""
    recipe, _, file = name.partition("/")
    return (COMPONENTS / recipe / "templates" / file).read_text(encoding="utf-8")


def shell_assignment(name: str, value: ShellValue) -> str:
    if isinstance(value, bool):
        return f"{name}={int(value)}"
    if isinstance(value, int):
        return f"{name}={value}"
    if isinstance(value, str):
        return f"{name}={shlex.quote(value)}"
    items = " ".join(shlex.quote(item) for item in value)
    return f"{name}=({items})"


# Parameter values are data (file contents, names): a `$` inside their single quotes must not expand, so
# shellcheck's "expressions don't expand in single quotes" is silenced on exactly those assignment lines.
_LITERAL_DIRECTIVE = "# shellcheck disable=SC2016  # a parameter value: literal text, nothing in it expands\n"


def _header_line(name: str, value: ShellValue) -> str:
    line = shell_assignment(name, value)
    return _LITERAL_DIRECTIVE + line if "$" in line else line


def render_script(fragments: Sequence[str], params: Mapping[str, ShellValue]) -> str:
    """Returns a bash script: strict mode, `params` as variables (in the given order), then fragments."""
    header = "\n".join(_header_line(name, value) for name, value in params.items())
    body = "\n".join(template(fragment).rstrip("\n") for fragment in fragments)
    readonly = " ".join(params)
    return (
        "#!/usr/bin/env bash\n"
        "# Rendered by cluster-cookbook; parameters first, then the steps.\n"
        "set -euo pipefail\n"
        f"{header}\n"
        + (f"readonly {readonly}\n" if readonly else "")
        + f"{body}\n"
    )


def remote_invocation(script: str, become: bool) -> str:
    """The command line that runs `script` over SSH, through `sudo -n` when the login user is not root."""
    prefix = "sudo -n " if become else ""
    return f"{prefix}bash -c {shlex.quote(script)}"
