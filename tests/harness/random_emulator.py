"""An emulator of pulumi-random for `ExecutingMocks(emulators={"random": emulate_random})`.

`random:index/randomPassword:RandomPassword` (the only random type the recipes use): `result` of `length`
characters from the enabled classes (`upper`, `lower`, `numeric`, `special` with `overrideSpecial`), all true by
default as in the provider's schema; `result` is a secret output, as the provider marks it. Any input change
replaces it (the provider marks every input "forces replacement"), which ExecutingMocks does by default.
"""

from __future__ import annotations

import secrets
import string
from typing import Any

from tests.harness.program import secret

DEFAULT_SPECIAL = "!@#$%&*()-_=+[]{}<>:?"


def emulate_random(typ: str, inputs: dict[str, Any]) -> dict[str, Any]:
    if not typ.endswith("RandomPassword"):
        raise RuntimeError(f"the random emulator does not implement {typ}")
    classes = (("upper", string.ascii_uppercase), ("lower", string.ascii_lowercase), ("numeric", string.digits))
    alphabet = "".join(chars for flag, chars in classes if inputs.get(flag, True))
    if inputs.get("special", True):
        alphabet += inputs.get("overrideSpecial") or DEFAULT_SPECIAL
    return {"result": secret("".join(secrets.choice(alphabet) for _ in range(int(inputs.get("length", 16)))))}
