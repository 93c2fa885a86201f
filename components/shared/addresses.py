"""Node addresses in URLs and host:port strings: an IP or a DNS name, IPv6 bracketed where a port follows."""

from __future__ import annotations

import ipaddress


def is_ip(address: str) -> bool:
    try:
        ipaddress.ip_address(address)
        return True
    except ValueError:
        return False


def bracketed(address: str) -> str:
    """`address` as the host part of a URL or `host:port`: an IPv6 address in brackets, anything else as is."""
    return f"[{address}]" if is_ip(address) and ipaddress.ip_address(address).version == 6 else address


def https_url(address: str, port: int) -> str:
    return f"https://{bracketed(address)}:{port}"
