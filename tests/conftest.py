"""Every test run: when pytest-xdist runs test files in parallel (`make integration` does), each worker gets
its own test lane (tests/infra/network.py), so their host fleets never share a bridge, a subnet or a lock.
This must run before anything imports tests.infra (the lane is read at import)."""

from __future__ import annotations

import os

_WORKER = os.environ.get("PYTEST_XDIST_WORKER", "")  # gw0, gw1, ...
if _WORKER.startswith("gw") and "COOKBOOK_TEST_LANE" not in os.environ:
    os.environ["COOKBOOK_TEST_LANE"] = str(1 + int(_WORKER[2:]) % 9)
