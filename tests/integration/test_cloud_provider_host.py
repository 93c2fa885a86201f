"""The cloud providers inside Pulumi's real dynamic-provider host, driven over gRPC as the engine drives it.

The host is `python -m pulumi.dynamic` (what the engine's `pulumi-resource-pulumi-python` plugin runs), started in
the project directory with libcloud's MockHttp pointed at the fake CloudStack (tests/unit/cloud_support.py). It
unpickles each `__provider` (by reference: it imports components.cloud.providers itself), `configure`s it with the
config the test sends, and serves Check/Create/Delete. No Pulumi CLI exists here, so the engine's side (which RPC
when) is this test's; the host, the pickles, the config path and the gRPC payloads are real.

Also the parallelism number of issue 10: 8 node creates against 1, with a fixed latency per API call. The host
serves RPCs from a ThreadPoolExecutor(max_workers=4) (pulumi/dynamic/__main__.py main()): at most 4 creates run at
once, so 8 take about two rounds. The same 8 creates in-process, without that cap, take about one round.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any

import grpc
import pytest
from google.protobuf import struct_pb2
from pulumi.dynamic import Config, ConfigureRequest
from pulumi.dynamic.dynamic import serialize_provider
from pulumi.runtime.proto import provider_pb2, provider_pb2_grpc

from components.cloud.providers import KeyPairProvider, NodeProvider, SecurityGroupProvider
from tests.harness.program import ROOT
from tests.unit.cloud_support import API_KEY, API_SECRET, CREDENTIAL_KEYS, PROJECT, FakeCloudStack, installed
from tests.unit.test_cloud_providers import group_props, key_props, node_props

pytestmark = pytest.mark.integration

SECRET_SIG = {"4dabf18193072939515e22adb298388d": "1b47061264138c4ac30d75fd1eb44270"}  # Pulumi's secret marker
BOOT = """
import runpy, sys
from tests.unit.cloud_support import FakeCloudStack, installed
fake = installed(FakeCloudStack(latency=float(sys.argv[1])))  # kept referenced: its exit would undo it
fake.__enter__()
sys.argv = ["pulumi.dynamic"]
runpy.run_module("pulumi.dynamic", run_name="__main__")
"""
LATENCY = 0.05  # seconds per CloudStack API call


def struct(values: dict[str, Any]) -> struct_pb2.Struct:
    message = struct_pb2.Struct()
    message.update(values)
    return message


@contextmanager
def provider_host(latency: float) -> Iterator[provider_pb2_grpc.ResourceProviderStub]:
    process = subprocess.Popen([sys.executable, "-c", BOOT, str(latency)], cwd=ROOT, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        port = int(process.stdout.readline())
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = provider_pb2_grpc.ResourceProviderStub(channel)
            # The engine sends the stack's config, secrets marked; the host unwraps them for `configure`.
            stub.Configure(provider_pb2.ConfigureRequest(args=struct({
                CREDENTIAL_KEYS[0]: {**SECRET_SIG, "value": API_KEY},
                CREDENTIAL_KEYS[1]: {**SECRET_SIG, "value": API_SECRET}})))
            yield stub
    finally:
        process.terminate()
        process.wait(timeout=10)


def urn(kind: str, name: str) -> str:
    return f"urn:pulumi:test::{PROJECT}::pulumi-python:dynamic/cloud:{kind}::{name}"


def create(stub: provider_pb2_grpc.ResourceProviderStub, kind: str, name: str, provider: Any,
           props: dict[str, Any]) -> Any:
    news = struct({**props, "__provider": serialize_provider(provider)})
    checked = stub.Check(provider_pb2.CheckRequest(urn=urn(kind, name), olds=struct({}), news=news))
    assert list(checked.failures) == [], checked.failures
    return stub.Create(provider_pb2.CreateRequest(urn=urn(kind, name), properties=checked.inputs))


def prepare(stub: provider_pb2_grpc.ResourceProviderStub) -> None:
    create(stub, "KeyPair", "key", KeyPairProvider(CREDENTIAL_KEYS, 0), key_props())
    create(stub, "SecurityGroup", "group", SecurityGroupProvider(CREDENTIAL_KEYS, 0), group_props())


def create_nodes(stub: provider_pb2_grpc.ResourceProviderStub, count: int) -> float:
    provider = NodeProvider(CREDENTIAL_KEYS, 0)
    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=count) as pool:  # the engine issues independent creates at once
        results = list(pool.map(lambda i: create(stub, "Node", f"n{i}", provider,
                                                 node_props(name=f"n{i}", display_name=f"t-n{i}")), range(count)))
    elapsed = time.monotonic() - started
    assert len({result.id for result in results}) == count
    return elapsed


def test_the_host_runs_the_providers_with_credentials_from_config_only() -> None:
    with provider_host(0) as stub:
        prepare(stub)
        news = struct({**node_props(size="Huge"), "__provider": serialize_provider(NodeProvider(CREDENTIAL_KEYS, 0))})
        checked = stub.Check(provider_pb2.CheckRequest(urn=urn("Node", "n"), olds=struct({}), news=news))
        [failure] = checked.failures
        assert failure.property == "size" and "unknown size 'Huge'; the cloud offers: 'Compute Large PRD'" in (
            failure.reason)
        created = create(stub, "Node", "n", NodeProvider(CREDENTIAL_KEYS, 0), node_props())
        assert created.properties["state"] == "Running" and created.properties["address"]
        stub.Delete(provider_pb2.DeleteRequest(id=created.id, urn=urn("Node", "n"), properties=created.properties))
        stub.Delete(provider_pb2.DeleteRequest(id=created.id, urn=urn("Node", "n"), properties=created.properties))
        with pytest.raises(grpc.RpcError) as error:  # no key pair by that name: the cloud's message, node named
            create(stub, "Node", "m", NodeProvider(CREDENTIAL_KEYS, 0), node_props(name="m", key_pair="missing"))
        assert "cloud node 'm': deploying: A key pair with name 'missing' was not found." in str(error.value.details())


def in_process_seconds(count: int) -> float:
    with installed(FakeCloudStack(latency=LATENCY)):
        provider = NodeProvider(CREDENTIAL_KEYS, 0)
        provider.configure(ConfigureRequest(Config(dict(zip(CREDENTIAL_KEYS, (API_KEY, API_SECRET), strict=True)),
                                                   PROJECT)))
        KeyPairProvider.configure(key := KeyPairProvider(CREDENTIAL_KEYS, 0), ConfigureRequest(
            Config(dict(zip(CREDENTIAL_KEYS, (API_KEY, API_SECRET), strict=True)), PROJECT)))
        key.create(key_props())
        group = SecurityGroupProvider(CREDENTIAL_KEYS, 0)
        group.configure(ConfigureRequest(Config(dict(zip(CREDENTIAL_KEYS, (API_KEY, API_SECRET), strict=True)),
                                                PROJECT)))
        group.create(group_props())
        started = time.monotonic()
        with ThreadPoolExecutor(max_workers=count) as pool:
            list(pool.map(lambda i: provider.create(node_props(name=f"n{i}", display_name=f"t-n{i}")), range(count)))
        return time.monotonic() - started


def test_eight_nodes_are_created_in_parallel_not_one_after_another() -> None:
    with provider_host(LATENCY) as stub:
        prepare(stub)
        one = create_nodes(stub, 1)
    with provider_host(LATENCY) as stub:
        prepare(stub)
        eight = create_nodes(stub, 8)
    unbounded_one, unbounded_eight = in_process_seconds(1), in_process_seconds(8)
    print(f"\ncloud node creation, {LATENCY * 1000:.0f} ms per API call: provider host 1 node {one:.2f} s, "
          f"8 nodes {eight:.2f} s (ratio {eight / one:.2f}); in-process 1 node {unbounded_one:.2f} s, "
          f"8 nodes {unbounded_eight:.2f} s (ratio {unbounded_eight / unbounded_one:.2f})")
    assert eight / one < 3.0  # serial would be 8; the host's 4 workers make it about 2
    assert unbounded_eight / unbounded_one < 1.8
