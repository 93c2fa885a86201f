"""Health gates: what must hold on a host before a disruptive step (a reboot) takes it down, and again after.

A recipe that runs something on a host supplies a gate for it through the composition (`__main__.py`); the
node layer runs every gate of a host and never imports a recipe. A gate is a shell function defined by a
fragment of the recipe: a template (`fragment`, `<recipe>/<file>`) whose parameters (`params`) join the
step's header, or already rendered text (`text`, its parameter assignments included). Its parameters are
named with the gate's prefix (e.g. `ETCD_GATE_*`). The function:

- returns 0 when taking this host down now cannot hurt what runs on it (also when nothing runs on it yet,
  e.g. on the first bring-up), printing one line saying why;
- returns non-zero, printing what it waits for, otherwise. It is called again every 2 s (never in parallel
  with another gate) until every gate of the host passes in the same round, or the deadline (the largest
  `timeout` of the host's gates) has passed: then the step fails naming the gate and its last output.

Gates must only read: they run before every reboot and after it, and again on a re-run.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from components.shared.scripts import ShellValue

_FUNCTION = re.compile(r"^[a-z][a-z0-9_]*$")
_PARAM = re.compile(r"^[A-Z][A-Z0-9_]*$")


@dataclass(frozen=True)
class HealthGate:
    """One gate: `function`, defined by the template `fragment` reading `params`, or by the rendered `text`."""

    name: str  # what the gate protects, in messages: "etcd"
    function: str  # the shell function the fragment defines: "etcd_gate"
    fragment: str = ""  # the template defining it: "etcd/gate.sh"
    params: Mapping[str, ShellValue] = field(default_factory=dict)
    timeout: int = 300  # seconds the gate may take to pass
    text: str = ""  # instead of `fragment` and `params`: a rendered fragment defining `function`

    def __post_init__(self) -> None:
        if not _FUNCTION.match(self.function):
            raise ValueError(f"HealthGate {self.name!r}: function must be a lowercase shell name, got "
                             f"{self.function!r}")
        for param in self.params:
            if not _PARAM.match(param):
                raise ValueError(f"HealthGate {self.name!r}: parameter names are upper case, got {param!r}")
        if bool(self.fragment) == bool(self.text) or (self.text and self.params):
            raise ValueError(f"HealthGate {self.name!r}: give either a template fragment (with params) or a "
                             "rendered text")
        if self.text and f"{self.function}()" not in self.text:
            raise ValueError(f"HealthGate {self.name!r}: its text does not define {self.function}()")
        if self.timeout < 1:
            raise ValueError(f"HealthGate {self.name!r}: timeout must be at least 1 s, got {self.timeout}")


def gate_fragments(gates: Sequence[HealthGate]) -> list[str]:
    """The template fragments defining the gates, each once, in gate order."""
    return list(dict.fromkeys(gate.fragment for gate in gates if gate.fragment))


def gate_texts(gates: Sequence[HealthGate]) -> str:
    """The rendered fragments defining the gates, each once, in gate order."""
    return "".join(text.rstrip("\n") + "\n" for text in dict.fromkeys(gate.text for gate in gates if gate.text))


def gate_params(gates: Sequence[HealthGate], taken: Mapping[str, ShellValue]) -> dict[str, ShellValue]:
    """The script parameters the gate runner (`nodes/gates.sh`) and the gates read.

    Raises ValueError when two gates share a name or function, or a gate parameter collides with a
    parameter of the step (`taken`) or of another gate with a different value.
    """
    params: dict[str, ShellValue] = {
        "GATE_NAMES": tuple(gate.name for gate in gates),
        "GATE_FUNCTIONS": tuple(gate.function for gate in gates),
        "GATE_TIMEOUT": max((gate.timeout for gate in gates), default=0),
    }
    for attribute in ("name", "function"):
        values = [getattr(gate, attribute) for gate in gates]
        duplicates = sorted({value for value in values if values.count(value) > 1})
        if duplicates:
            raise ValueError(f"health gates: {attribute} {', '.join(duplicates)} given twice")
    for gate in gates:
        for key, value in gate.params.items():
            if key in taken or key in ("GATE_NAMES", "GATE_FUNCTIONS", "GATE_TIMEOUT"):
                raise ValueError(f"health gate {gate.name!r}: parameter {key} is already a parameter of the step")
            if key in params and params[key] != value:
                raise ValueError(f"health gate {gate.name!r}: parameter {key} differs from another gate's")
            params[key] = value
    return params
