"""Test-only stand-ins placed on test hosts by the integration tests, never shipped (see `k3s`'s docstring)."""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from components.kubernetes.render import K3S_VERSION

HERE = Path(__file__).resolve().parent
FLAG_LIST = HERE.parent / "data" / f"k3s-flags-{K3S_VERSION}.json"


@dataclass(frozen=True)
class File:
    path: str
    sha256: str


def _written(path: Path, content: bytes) -> File:
    path.write_bytes(content)
    path.chmod(0o755)
    return File(str(path), hashlib.sha256(content).hexdigest())


def k3s_binary(version: str, directory: Path) -> File:
    """The stand-in `k3s` reporting `version`, knowing the pinned version's flags (the airgap "binary")."""
    flags = json.loads(FLAG_LIST.read_text(encoding="utf-8"))
    baked = base64.b64encode(json.dumps({role: flags[role] for role in ("server", "agent")},
                                        sort_keys=True).encode()).decode()
    text = (HERE / "k3s").read_text(encoding="utf-8").replace("@VERSION@", version).replace("@FLAGS@", baked)
    return _written(directory / f"k3s-standin-{version.replace('+', '-')}", text.encode())


def airgap_images(directory: Path, label: str) -> File:
    """A file in place of k3s-airgap-images-<arch>.tar.zst (the stand-in imports no images)."""
    return _written(directory / f"k3s-airgap-images-{label}.tar.zst", f"stand-in airgap images {label}\n".encode())
