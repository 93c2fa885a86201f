"""Manual use: `python -m tests.infra build | boot NAME... | cleanup` (as root, from the repository root)."""

from __future__ import annotations

import argparse
import logging
import tempfile
from pathlib import Path

from .hosts import HostFleet, cleanup_stale, ensure_apt_repo, ensure_rootfs


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.infra")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("build", help="build (or find) the cached rootfs and apt repository")
    boot = commands.add_parser("boot", help="boot hosts, print how to reach them, stop on Enter")
    boot.add_argument("names", nargs="+")
    boot.add_argument("--no-wait", action="store_true", help="stop right after the boot (for timing)")
    commands.add_parser("cleanup", help="remove leftovers of a crashed run")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if args.command == "build":
        print(ensure_rootfs(), ensure_apt_repo())
    elif args.command == "cleanup":
        print("\n".join(cleanup_stale()) or "nothing to clean up")
    else:
        _boot(args.names, wait=not args.no_wait)


def _boot(names: list[str], wait: bool) -> None:
    with tempfile.TemporaryDirectory(prefix="cc-fleet-") as workdir, HostFleet(names, Path(workdir)) as fleet:
        print(f"booted {len(fleet)} hosts in {fleet.boot_seconds:.2f} s")
        for host in fleet:
            print(f"  ssh -i {fleet.private_key_path} -o StrictHostKeyChecking=no root@{host.address}"
                  f"   # {host.name}")
        if wait:
            input("press Enter to stop the hosts ")


if __name__ == "__main__":
    main()
