"""Small helpers for validating raw stack config: every problem is collected with its full key path."""

from __future__ import annotations

import difflib
import ipaddress
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

T = TypeVar("T")
D = TypeVar("D")

_HOSTNAME_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")
DNS_LABEL_RULE = "lowercase letters, digits and '-', 1-63 characters, not starting or ending with '-'"


class NodeLike(Protocol):
    """What a recipe's config parser reads of a node."""

    @property
    def name(self) -> str: ...
    @property
    def address(self) -> str: ...  # "": known only once the node exists (a cloud node's: its VM's)
    @property
    def roles(self) -> tuple[str, ...]: ...


class ConfigError(ValueError):
    """Raised with every config problem at once, each naming its full key path."""

    def __init__(self, problems: Iterable[str]):
        self.problems = list(problems)
        lines = "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(f"invalid stack configuration ({len(self.problems)} problem(s)):\n{lines}")


@dataclass
class Problems:
    """Collects problems while a whole config tree is read, so users see all of them in one run."""

    items: list[str] = field(default_factory=list)

    def add(self, path: str, message: str) -> None:
        self.items.append(f"{path}: {message}")

    def raise_if_any(self) -> None:
        if self.items:
            raise ConfigError(self.items)


def describe_type(value: Any) -> str:
    return {bool: "a boolean", int: "an integer", float: "a number", str: "a string",
            list: "a list", dict: "a mapping"}.get(type(value), type(value).__name__)


class Section:
    """A mapping being read at `path`; `finish()` reports keys nobody asked for (typos)."""

    def __init__(self, raw: Any, path: str, problems: Problems):
        self.path = path
        self.problems = problems
        self._seen: set[str] = set()
        if raw is None:
            raw = {}
        if not isinstance(raw, Mapping):
            problems.add(path, f"must be a mapping, got {describe_type(raw)}")
            raw = {}
        self._raw: Mapping[str, Any] = raw

    def key(self, name: str) -> str:
        return f"{self.path}.{name}"

    def has(self, name: str) -> bool:
        return name in self._raw

    def value(self, name: str, expected: type[T], default: D,
              check: Callable[[T], str | None] | None = None) -> T | D:
        """Reads one scalar; `check` returns an error text for a present value of the right type."""
        self._seen.add(name)
        if name not in self._raw:
            return default
        raw = self._raw[name]
        valid_type = isinstance(raw, expected) and not (expected is int and isinstance(raw, bool))
        if not valid_type:
            self.problems.add(self.key(name), f"must be {describe_type(expected())}, got {describe_type(raw)} {raw!r}")
            return default
        if check is not None and (error := check(raw)) is not None:
            self.problems.add(self.key(name), error)
            return default
        return raw

    def required(self, name: str, expected: type[T], default: T,
                 check: Callable[[T], str | None] | None = None) -> T:
        if name not in self._raw:
            self._seen.add(name)
            self.problems.add(self.key(name), f"is required ({describe_type(expected())})")
            return default
        return self.value(name, expected, default, check)

    def strings(self, name: str, default: tuple[str, ...] = (),
                check: Callable[[str], str | None] | None = None) -> tuple[str, ...]:
        raw = self.value(name, list, list(default))
        result: list[str] = []
        for index, item in enumerate(raw):
            path = f"{self.key(name)}[{index}]"
            if not isinstance(item, str):
                self.problems.add(path, f"must be a string, got {describe_type(item)} {item!r}")
            elif check is not None and (error := check(item)) is not None:
                self.problems.add(path, error)
            else:
                result.append(item)
        return tuple(result)

    def raw(self, name: str) -> Any:
        self._seen.add(name)
        return self._raw.get(name)

    def finish(self) -> None:
        for unknown in sorted(set(self._raw) - self._seen):
            self.problems.add(self.key(unknown), f"unknown key{did_you_mean(unknown, self._seen)}")


def did_you_mean(name: str, known: Iterable[str]) -> str:
    close = difflib.get_close_matches(name, sorted(known), n=1)
    valid = ", ".join(sorted(known))
    hint = f" (did you mean '{close[0]}'?)" if close else ""
    return f"{hint}; valid keys: {valid}"


def one_of(choices: Iterable[str]) -> Callable[[str], str | None]:
    options = tuple(choices)

    def check(value: str) -> str | None:
        return None if value in options else f"must be one of {', '.join(options)}, got {value!r}"

    return check


def check_port(value: int) -> str | None:
    return None if 1 <= value <= 65535 else f"must be a TCP port between 1 and 65535, got {value}"


def check_positive(value: int) -> str | None:
    return None if value > 0 else f"must be greater than 0, got {value}"


def check_dns_label(value: str) -> str | None:
    return None if _HOSTNAME_LABEL.match(value) else f"must be a DNS label ({DNS_LABEL_RULE}), got {value!r}"


def check_address(value: str) -> str | None:
    """An IPv4/IPv6 address or a DNS name."""
    try:
        ipaddress.ip_address(value)
        return None
    except ValueError:
        pass
    labels = value.rstrip(".").split(".")
    looks_numeric = all(label.isdigit() for label in labels)
    if value and not looks_numeric and all(_HOSTNAME_LABEL.match(label.lower()) for label in labels):
        return None
    return f"must be an IPv4/IPv6 address or a DNS name, got {value!r}"
