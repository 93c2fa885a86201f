"""An emulator of Pulumi's dynamic providers for `ExecutingMocks(emulators={"pulumi-python": DynamicEmulator()})`.

What the engine and the `pulumi-python` provider host (pulumi/dynamic/__main__.py) do with a dynamic resource
(type `pulumi-python:dynamic:Resource`, or `pulumi-python:dynamic/<module>:<name>`): unpickle the provider from
the `__provider` input, then
- `Check(olds, news)` on every registration, with `olds` the resource's previous *inputs* (empty for a new
  resource): failures stop the deployment with the engine's message (pulumi/pulumi
  pkg/resource/deploy/step_generator.go issueCheckFailures; sdk/go/common/diag/errors.go 2003:
  "%v resource '%v': property %v value %v has a problem: %v");
- `Create(props)` for a new resource; `Diff(id, old outputs, news)` for an existing one: no changes -> same,
  `replaces` -> replace, else update.

- `Update(id, old outputs, news)` for an in-place change, `Delete(id, old outputs)` when the resource is
  replaced or gone (ExecutingMocks calls them through the `update`/`delete` hooks of its emulator protocol).
The provider's `id` is kept in the outputs as `__id` (ExecutingMocks reports it as the resource's id).
"""

from __future__ import annotations

import base64
from typing import Any

import dill  # what pulumi.dynamic pickles providers with

from tests.harness.executing import ID_KEY, Change

PROVIDER_KEY = "__provider"


class DynamicCheckFailed(RuntimeError):
    pass


class DynamicEmulator:
    """Create (after Check) and plan (Check, then Diff) dynamic resources as the engine does."""

    def __call__(self, typ: str, inputs: dict[str, Any]) -> dict[str, Any]:
        provider = _provider(inputs)
        news = _check(typ, provider, {}, inputs)
        created = provider.create(news)
        return {**(created.outs or {}), ID_KEY: created.id, PROVIDER_KEY: inputs[PROVIDER_KEY]}

    def plan(self, typ: str, old_inputs: dict[str, Any], old_outputs: dict[str, Any],
             inputs: dict[str, Any]) -> Change:
        provider = _provider(inputs)
        news = _check(typ, provider, old_inputs, inputs)
        diff = provider.diff(str(old_outputs.get(ID_KEY, "")), old_outputs, news)
        if diff.changes is False or (diff.changes is None and old_inputs == inputs):  # None: the engine compares
            return "same"
        return "replace" if diff.replaces else "update"


    def update(self, typ: str, old_outputs: dict[str, Any], inputs: dict[str, Any]) -> dict[str, Any]:
        provider = _provider(inputs)
        news = _check(typ, provider, old_outputs, inputs)
        updated = provider.update(str(old_outputs.get(ID_KEY, "")), old_outputs, news)
        return {**(updated.outs or {}), ID_KEY: old_outputs.get(ID_KEY), PROVIDER_KEY: inputs[PROVIDER_KEY]}

    def delete(self, typ: str, old_outputs: dict[str, Any]) -> None:
        _provider(old_outputs).delete(str(old_outputs.get(ID_KEY, "")), old_outputs)


def _provider(inputs: dict[str, Any]) -> Any:
    return dill.loads(base64.b64decode(inputs[PROVIDER_KEY]))


def _check(typ: str, provider: Any, olds: dict[str, Any], news: dict[str, Any]) -> dict[str, Any]:
    result = provider.check(olds, news)
    if result.failures:
        raise DynamicCheckFailed("; ".join(
            f"{typ} resource: property {failure.property} value {{{news.get(failure.property)!r}}} has a problem: "
            f"{failure.reason}" for failure in result.failures))
    return dict(result.inputs)
