"""Smoke-tests a deployed object store with boto3: create a bucket, put, get, list and delete an object.

Usage (from the repository root):
    pulumi stack output --json --show-secrets --stack s3-store | python -m tools.s3_smoke -
    python -m tools.s3_smoke outputs.json [--endpoint http://HOST:PORT] [--bucket NAME]

It reads the stack's `store` output (its `boto3` settings), prints the s3cmd equivalent of every step, and
cleans up what it created even when a step fails. Pithos checks AWS signature version 2 only: boto3 signs
that way with `signature_version="s3"` (botocore's HmacV1 signer, still shipped though no longer
botocore's default), and path-style addressing keeps bucket names out of the Host header.
"""

from __future__ import annotations

import argparse
import json
import secrets
import sys
from collections.abc import Callable
from typing import Any, TextIO

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

BODY = b"cluster-cookbook s3-smoke\n"
KEY = "smoke/hello.txt"


def store_settings(outputs: dict[str, Any]) -> dict[str, Any]:
    """The boto3 settings of `pulumi stack output --json --show-secrets` (a secret shows as "[secret]")."""
    store = outputs.get("store")
    if not isinstance(store, dict) or "boto3" not in store:
        raise ValueError("the outputs have no store.boto3: is this the s3-store stack, deployed?")
    settings = store["boto3"]
    if not isinstance(settings, dict):
        raise ValueError("store.boto3 is hidden: run `pulumi stack output --json --show-secrets`")
    return settings


def client(settings: dict[str, Any], endpoint: str | None = None) -> Any:
    config = settings.get("config") or {}
    return boto3.client(
        "s3",
        endpoint_url=endpoint or settings["endpoint_url"],
        region_name=settings.get("region_name"),
        aws_access_key_id=settings["aws_access_key_id"],
        aws_secret_access_key=settings["aws_secret_access_key"],
        config=Config(signature_version=config.get("signature_version", "s3"),
                      s3=config.get("s3") or {"addressing_style": "path"},
                      retries={"max_attempts": 3, "mode": "standard"}),
    )


def run(s3: Any, bucket: str, out: TextIO) -> None:
    """Every step, each printed with its s3cmd equivalent (`s3cmd -c s3cfg` uses the stack's s3cfg output)."""

    def step(description: str, s3cmd: str, action: Callable[[], Any]) -> Any:
        print(f"{description:<28} s3cmd -c s3cfg {s3cmd}", file=out)
        return action()

    step("create bucket", f"mb s3://{bucket}", lambda: s3.create_bucket(Bucket=bucket))
    try:
        step("put object", f"put hello.txt s3://{bucket}/{KEY}",
             lambda: s3.put_object(Bucket=bucket, Key=KEY, Body=BODY))
        body = step("get object", f"get s3://{bucket}/{KEY} -",
                    lambda: s3.get_object(Bucket=bucket, Key=KEY)["Body"].read())
        if body != BODY:
            raise RuntimeError(f"read back {body!r}, wrote {BODY!r}")
        listing = step("list objects", f"ls s3://{bucket}/smoke/",
                       lambda: s3.list_objects(Bucket=bucket, Prefix="smoke/"))
        keys = [item["Key"] for item in listing.get("Contents", [])]
        if keys != [KEY]:
            raise RuntimeError(f"listing shows {keys}, expected [{KEY!r}]")
        step("delete object", f"del s3://{bucket}/{KEY}", lambda: s3.delete_object(Bucket=bucket, Key=KEY))
    finally:
        leftovers = s3.list_objects(Bucket=bucket).get("Contents", [])
        for item in leftovers:
            s3.delete_object(Bucket=bucket, Key=item["Key"])
        step("delete bucket", f"rb s3://{bucket}", lambda: s3.delete_bucket(Bucket=bucket))


def main(argv: list[str] | None = None, stdin: TextIO | None = None, out: TextIO | None = None) -> int:
    parser = argparse.ArgumentParser(description="S3 smoke test of a deployed object store")
    parser.add_argument("outputs", help="file with `pulumi stack output --json --show-secrets`, or - for stdin")
    parser.add_argument("--endpoint", help="URL to use instead of the stack's endpoint (e.g. a port-forward)")
    parser.add_argument("--bucket", help="bucket to create and delete (default: a random cookbook-smoke-* name)")
    options = parser.parse_args(argv)
    out = out or sys.stdout
    try:
        if options.outputs == "-":
            outputs = json.load(stdin or sys.stdin)
        else:
            with open(options.outputs, encoding="utf-8") as handle:
                outputs = json.load(handle)
        settings = store_settings(outputs)
    except (OSError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    bucket = options.bucket or f"cookbook-smoke-{secrets.token_hex(4)}"
    endpoint = options.endpoint or settings["endpoint_url"]
    print(f"S3 smoke test against {endpoint} (signature v2, path-style), bucket {bucket}", file=out)
    try:
        run(client(settings, options.endpoint), bucket, out)
    except (BotoCoreError, ClientError, RuntimeError) as error:
        print(f"FAILED: {error}", file=sys.stderr)
        return 1
    print("OK: bucket created, object written, read back, listed and deleted", file=out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
