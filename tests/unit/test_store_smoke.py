"""`make s3-smoke`: the script runs against a local S3-compatible server (moto) started by the test."""

from __future__ import annotations

import io
import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config
from moto.server import ThreadedMotoServer

from components.store.pithos import AccessKey, boto3_settings
from tests.harness.program import ROOT
from tools import s3_smoke

KEY = AccessKey("operator", "KIYAI6F08WBUV27AOSPJ", "Zq3xLr7VnPa2Wd9kTs4YbHc6Jm1Ne8Gu5Qf0Xo3R", master=True)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@pytest.fixture(scope="module")
def endpoint() -> Iterator[str]:
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


def stack_outputs(endpoint: str) -> dict[str, Any]:
    """What `pulumi stack output --json --show-secrets` prints for the s3-store stack."""
    return {"nodes": {}, "store": {"endpoint": endpoint, "region": "us-east-1", "access_key": KEY.access_key,
                                   "secret_key": KEY.secret_key, "boto3": boto3_settings(endpoint, "us-east-1", KEY)}}


def buckets(endpoint: str) -> list[str]:
    s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id=KEY.access_key,
                      aws_secret_access_key=KEY.secret_key, config=Config(signature_version="s3"))
    return [bucket["Name"] for bucket in s3.list_buckets()["Buckets"]]


def test_smoke_runs_every_step_and_cleans_up(endpoint: str, tmp_path: Path) -> None:
    outputs = tmp_path / "outputs.json"
    outputs.write_text(json.dumps(stack_outputs(endpoint)))
    out = io.StringIO()
    assert s3_smoke.main([str(outputs), "--bucket", "cookbook-smoke-test"], out=out) == 0
    text = out.getvalue()
    for s3cmd in ("s3cmd -c s3cfg mb s3://cookbook-smoke-test", "put hello.txt s3://cookbook-smoke-test/smoke/",
                  "get s3://cookbook-smoke-test/smoke/hello.txt -", "ls s3://cookbook-smoke-test/smoke/",
                  "del s3://cookbook-smoke-test/smoke/hello.txt", "rb s3://cookbook-smoke-test"):
        assert s3cmd in text, s3cmd
    assert text.rstrip().endswith("OK: bucket created, object written, read back, listed and deleted")
    assert "cookbook-smoke-test" not in buckets(endpoint)


def test_smoke_reads_stdin_and_signs_with_signature_v2(endpoint: str, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[str] = []
    original = s3_smoke.client

    def spying_client(settings: dict[str, Any], override: str | None = None) -> Any:
        s3 = original(settings, override)
        s3.meta.events.register("before-send.s3", lambda request, **_: seen.append(request.headers["Authorization"]))
        return s3

    monkeypatch.setattr(s3_smoke, "client", spying_client)
    stdin = io.StringIO(json.dumps(stack_outputs(endpoint)))
    assert s3_smoke.main(["-"], stdin=stdin, out=io.StringIO()) == 0
    assert seen
    headers = [header.decode() if isinstance(header, bytes) else header for header in seen]
    assert all(h.startswith(f"AWS {KEY.access_key}:") for h in headers), headers[0]  # v2, not AWS4-HMAC-SHA256


def test_smoke_fails_when_the_store_does_not_answer(tmp_path: Path) -> None:
    outputs = tmp_path / "outputs.json"
    outputs.write_text(json.dumps(stack_outputs(f"http://127.0.0.1:{free_port()}")))
    assert s3_smoke.main([str(outputs)], out=io.StringIO()) == 1


@pytest.mark.parametrize(("outputs", "message"), [
    ({"nodes": {}}, "no store.boto3"),
    ({"store": {"boto3": "[secret]"}}, "--show-secrets"),
])
def test_smoke_explains_unusable_outputs(outputs: dict[str, Any], message: str, tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "outputs.json"
    path.write_text(json.dumps(outputs))
    assert s3_smoke.main([str(path)], out=io.StringIO()) == 2
    assert message in capsys.readouterr().err


def fake_pulumi(directory: Path, outputs: dict[str, Any]) -> Path:
    """A `pulumi` that answers only `stack output --json --show-secrets --stack s3-store` (the Makefile's
    call) with `outputs`; anything else fails, so a changed call fails the test."""
    directory.mkdir()
    (directory / "outputs.json").write_text(json.dumps(outputs))
    script = directory / "pulumi"
    script.write_text(f"""#!/bin/sh
if [ "$*" = "stack output --json --show-secrets --stack s3-store" ]; then exec cat {directory}/outputs.json; fi
echo "fake pulumi: unexpected arguments: $*" >&2
exit 1
""")
    script.chmod(0o755)
    return directory


def make_s3_smoke(bin_dir: Path, *variables: str) -> subprocess.CompletedProcess[str]:
    # The environment running the tests (a scratch copy of the checkout has no .venv); -o: it is installed, do not
    # let make reinstall it.
    venv = sys.prefix
    return subprocess.run(["make", "--no-print-directory", "-C", str(ROOT), f"VENV={venv}",
                           "-o", f"{venv}/.installed-test", "-o", f"{venv}/.installed", "s3-smoke", "STACK=s3-store",
                           *variables],
                          capture_output=True, text=True, timeout=300, check=False,
                          env={**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"})


def test_make_s3_smoke_passes_the_readme_options(endpoint: str, tmp_path: Path) -> None:
    """Defect: `make s3-smoke` could not pass --endpoint/--bucket. The stack's own endpoint here is dead, so
    only ENDPOINT can make the round trip succeed."""
    dead = f"http://127.0.0.1:{free_port()}"
    bin_dir = fake_pulumi(tmp_path / "bin", stack_outputs(dead))
    done = make_s3_smoke(bin_dir, f"ENDPOINT={endpoint}", "BUCKET=cookbook-make-smoke")
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"S3 smoke test against {endpoint} (signature v2, path-style), bucket cookbook-make-smoke" in done.stdout
    assert "OK: bucket created, object written, read back, listed and deleted" in done.stdout
    assert "cookbook-make-smoke" not in buckets(endpoint)
    without = make_s3_smoke(bin_dir)  # the stack's endpoint, a random bucket
    assert without.returncode != 0 and f"S3 smoke test against {dead}" in without.stdout
    assert "bucket cookbook-smoke-" in without.stdout
