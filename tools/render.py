"""Writes every Kubernetes object of a stack to YAML files, with no cluster and no credentials.

Usage (from the repository root): python -m tools.render STACK OUTDIR

Each object goes to OUTDIR/<namespace>/<kind>-<name>.yaml (cluster-scoped objects under OUTDIR/_cluster/).
Secret values are generated or held at deploy time, so Secret `data`/`stringData` values are redacted here.
Values only a deployment knows (like an image built and pushed by the stack: its digest) read UNKNOWN_VALUE.
OUTDIR must be empty or a previous render's output (it is replaced as a whole).
"""

from __future__ import annotations

import argparse
import base64
import shutil
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml
from pulumi.output import Unknown
from pulumi.runtime.rpc import UNKNOWN

from tools.offline import OfflineResource, evaluate

MARKER = ".rendered-by-cluster-cookbook"
REDACTED = "REDACTED: set at deploy time by pulumi up"
UNKNOWN_VALUE = "UNKNOWN: known only once pulumi up has created it"
# Credentials that live in secret config get placeholders: nothing is ever contacted.
PLACEHOLDER_SECRETS = {"kubeconfig": "offline render: no cluster is contacted",
                       "ssh_private_key": "offline render: no host is contacted",
                       "cloud_api_key": "offline render: no cloud is contacted",
                       "cloud_api_secret": "offline render: no cloud is contacted"}


def is_kubernetes_object(resource_type: str) -> bool:
    """`kubernetes:<group>/<version>:<Kind>` (not the provider, not helm/yaml/kustomize wrappers)."""
    module = resource_type.split(":")[1] if resource_type.count(":") == 2 else ""
    return resource_type.startswith("kubernetes:") and "/" in module and not module.startswith(
        ("helm.sh/", "yaml/", "kustomize/"))


def plain(value: Any) -> Any:
    """Wire values as YAML wants them: integral floats back to ints, mappings with sorted keys, values a
    preview cannot know as UNKNOWN_VALUE."""
    if isinstance(value, Unknown) or value == UNKNOWN:
        return UNKNOWN_VALUE
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {key: plain(value[key]) for key in sorted(value)}
    if isinstance(value, list):
        return [plain(item) for item in value]
    return value


def manifest(resource_type: str, inputs: dict[str, Any], redact: bool = True) -> dict[str, Any]:
    """The Kubernetes object a recorded resource stands for (apiVersion and kind are in its inputs)."""
    document = plain({key: value for key, value in inputs.items() if not key.startswith("__")})
    if redact and document.get("kind") == "Secret":
        if "stringData" in document:
            document["stringData"] = {key: REDACTED for key in document["stringData"]}
        if "data" in document:
            encoded = base64.b64encode(REDACTED.encode()).decode()
            document["data"] = {key: encoded for key in document["data"]}
    return document


def relative_path(document: dict[str, Any], fallback_name: str) -> Path:
    metadata = document.get("metadata") or {}
    namespace = metadata.get("namespace") or "_cluster"
    name = metadata.get("name") or fallback_name
    return Path(namespace) / f"{str(document['kind']).lower()}-{name}.yaml"


def render(resources: Iterable[OfflineResource]) -> dict[Path, str]:
    files: dict[Path, str] = {}
    for resource in resources:
        if not is_kubernetes_object(resource.type):
            continue
        document = manifest(resource.type, resource.inputs)
        path = relative_path(document, resource.name)
        if path in files:
            raise ValueError(f"two objects render to {path}")
        files[path] = yaml.safe_dump(document, sort_keys=False, default_flow_style=False)
    return files


def write(files: dict[Path, str], outdir: Path) -> None:
    if outdir.exists() and any(outdir.iterdir()):
        if not (outdir / MARKER).exists():
            raise SystemExit(f"error: {outdir} is not empty and holds no earlier render; choose another OUTDIR")
        shutil.rmtree(outdir)
    for path, text in sorted(files.items()):
        target = outdir / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")
    (outdir / MARKER).write_text("written by `python -m tools.render`; replaced on the next render\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("stack", help="stack name (stacks/Pulumi.<stack>.yaml)")
    parser.add_argument("outdir", type=Path, help="directory for the YAML files")
    options = parser.parse_args(argv)
    try:
        resources = evaluate(options.stack, secrets=PLACEHOLDER_SECRETS)
    except FileNotFoundError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    files = render(resources)
    if not files:
        print(f"stack {options.stack} declares no Kubernetes objects; nothing written", file=sys.stderr)
        return 0
    write(files, options.outdir)
    print(f"wrote {len(files)} Kubernetes objects of stack {options.stack} to {options.outdir}/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
