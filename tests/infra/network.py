"""Private test network: one bridge in the machine's namespace, one netns + veth pair per host.

    machine (root netns)                      netns cc-<name>
    cc-br0 10.250.0.1/24 --- cc-<name> ====== host0 10.250.0.(10+i)/24, lo

No NAT and no default route in the hosts: traffic can never leave the machine.
Every object is named with PREFIX so that cleanup_stale() can find leftovers.

Lanes: `COOKBOOK_TEST_LANE=N` (1-9) gives a process its own prefix `cN-`, subnet 10.250.N.0/24 and fleet
lock, so independent test runs on one machine do not wait for each other. Lane 0 (the default) is `cc-`.
"""

from __future__ import annotations

import os
import re
import subprocess

LANE_ENV = "COOKBOOK_TEST_LANE"


def _lane() -> int:
    text = os.environ.get(LANE_ENV, "0") or "0"
    if not text.isdigit() or not 0 <= int(text) <= 9:
        raise ValueError(f"{LANE_ENV} must be a digit 0-9, got {text!r}")
    return int(text)


LANE = _lane()
PREFIX = "cc-" if LANE == 0 else f"c{LANE}-"
BRIDGE = f"{PREFIX}br0"
SUBNET = f"10.250.{LANE}"
GATEWAY = f"{SUBNET}.1"
PREFIX_LENGTH = 24
CONTAINER_LINK = "host0"
MAX_HOSTS = 200
# Linux interface names are at most 15 bytes; the host side veth is PREFIX + host name.
_HOST_NAME = re.compile(r"^[a-z0-9]([a-z0-9-]{0,10}[a-z0-9])?$")


class NetworkError(RuntimeError):
    pass


def validate_host_name(name: str) -> None:
    if not _HOST_NAME.match(name) or PREFIX + name == BRIDGE:
        raise ValueError(f"invalid test host name {name!r}: use 1-12 characters of [a-z0-9-], "
                         "not starting or ending with '-', and not 'br0'")


def host_address(index: int) -> str:
    """Address of the index-th host, counting from 1 (host 1 -> 10.250.0.11 in lane 0)."""
    if not 1 <= index <= MAX_HOSTS:
        raise ValueError(f"host index {index} out of range 1..{MAX_HOSTS}")
    return f"{SUBNET}.{10 + index}"


def netns_name(host: str) -> str:
    return PREFIX + host


def netns_path(host: str) -> str:
    return f"/run/netns/{netns_name(host)}"


def veth_name(host: str) -> str:
    return PREFIX + host


def ip(*args: str) -> str:
    result = subprocess.run(["ip", *args], capture_output=True, text=True)
    if result.returncode != 0:
        raise NetworkError(f"ip {' '.join(args)}: {result.stderr.strip()}")
    return result.stdout


def create_bridge() -> None:
    ip("link", "add", BRIDGE, "type", "bridge")
    ip("addr", "add", f"{GATEWAY}/{PREFIX_LENGTH}", "dev", BRIDGE)
    ip("link", "set", BRIDGE, "up")


def create_host_network(host: str, address: str) -> None:
    """Create netns cc-<host> holding `host0` (with `address`) whose peer is enslaved to the bridge."""
    netns = netns_name(host)
    ip("netns", "add", netns)
    ip("link", "add", veth_name(host), "type", "veth", "peer", "name", CONTAINER_LINK, "netns", netns)
    ip("link", "set", veth_name(host), "master", BRIDGE, "up")
    ip("-n", netns, "addr", "add", f"{address}/{PREFIX_LENGTH}", "dev", CONTAINER_LINK)
    ip("-n", netns, "link", "set", CONTAINER_LINK, "up")
    ip("-n", netns, "link", "set", "lo", "up")


def set_host_link(host: str, up: bool) -> None:
    """Bring the machine-side veth of a host up or down (down = host unreachable, still running)."""
    ip("link", "set", veth_name(host), "up" if up else "down")


def delete_link(name: str) -> None:
    """Delete a link unless it is gone; a veth also goes when its peer's netns does (asynchronously)."""
    if name in list_links():
        _ignore_vanished("link", "del", name)


def delete_netns(name: str) -> None:
    if name in list_netns():
        _ignore_vanished("netns", "del", name)


def _ignore_vanished(*args: str) -> None:
    try:
        ip(*args)
    except NetworkError as error:
        if "Cannot find device" not in str(error) and "No such file" not in str(error):
            raise


def delete_host_network(host: str) -> None:
    delete_link(veth_name(host))  # deletes the host0 peer too
    delete_netns(netns_name(host))


def delete_bridge() -> None:
    delete_link(BRIDGE)


def list_links(prefix: str = "") -> list[str]:
    names = []
    for line in ip("-o", "link", "show").splitlines():
        # "7: cc-h1@if2: <BROADCAST,...": the name ends at '@' (peer) or ':'
        name = line.split(":", 2)[1].strip().split("@", 1)[0]
        if name.startswith(prefix):
            names.append(name)
    return names


def list_netns(prefix: str = "") -> list[str]:
    # "cc-h1 (id: 3)" or just "cc-h1"
    return [line.split()[0] for line in ip("netns", "list").splitlines()
            if line.strip() and line.split()[0].startswith(prefix)]


def remove_all() -> list[str]:
    """Delete every link and netns named with PREFIX (the bridge last); return what was removed."""
    removed = []
    for link in list_links(PREFIX):
        if link != BRIDGE:
            delete_link(link)
            removed.append(f"link {link}")
    for netns in list_netns(PREFIX):
        delete_netns(netns)
        removed.append(f"netns {netns}")
    if BRIDGE in list_links(PREFIX):
        delete_bridge()
        removed.append(f"link {BRIDGE}")
    return removed
