"""Prints every resource input of a stack evaluation as canonical JSON (for determinism checks).

Usage: python -m tests.harness.dump_inputs STACK
"""

from __future__ import annotations

import json
import sys

from tests.harness.fixtures import evaluate_stack


def main(stack: str) -> None:
    mocks = evaluate_stack(stack)
    dump = {r.urn: r.registration.raw_inputs for r in mocks.resources}
    json.dump(dump, sys.stdout, sort_keys=True, indent=1)


if __name__ == "__main__":
    main(sys.argv[1])
