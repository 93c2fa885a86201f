"""A small private PKI built from pulumi-tls resources: one CA and the certificates it signs.

Private keys are secret Outputs (pulumi-tls marks them secret; `Output.secret` here makes that explicit,
so nothing downstream depends on the provider doing it). Certificates are plain PEM text.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass

import pulumi
import pulumi_tls as tls

KEY_ALGORITHM = "ECDSA"
KEY_CURVE = "P256"
CA_VALIDITY_HOURS = 10 * 365 * 24
LEAF_VALIDITY_HOURS = 5 * 365 * 24
CA_USES = ("cert_signing", "crl_signing", "digital_signature")
SERVER_AND_CLIENT_USES = ("digital_signature", "key_encipherment", "server_auth", "client_auth")
CLIENT_USES = ("digital_signature", "key_encipherment", "client_auth")


@dataclass(frozen=True)
class KeyPair:
    cert_pem: pulumi.Output[str]
    key_pem: pulumi.Output[str]  # secret


def split_addresses(names: Sequence[str]) -> tuple[list[str], list[str]]:
    """(DNS names, IP addresses) from a mixed list, each sorted and without duplicates."""
    dns: set[str] = set()
    ips: set[str] = set()
    for name in names:
        try:
            ips.add(str(ipaddress.ip_address(name)))
        except ValueError:
            dns.add(name)
    return sorted(dns), sorted(ips)


def _private_key(name: str, parent: pulumi.Resource) -> tls.PrivateKey:
    return tls.PrivateKey(name, algorithm=KEY_ALGORITHM, ecdsa_curve=KEY_CURVE,
                          opts=pulumi.ResourceOptions(parent=parent))


def certificate_authority(name: str, common_name: str, parent: pulumi.Resource) -> KeyPair:
    key = _private_key(f"{name}-key", parent)
    cert = tls.SelfSignedCert(
        name,
        private_key_pem=key.private_key_pem,
        subject=tls.SelfSignedCertSubjectArgs(common_name=common_name, organization="cluster-cookbook"),
        is_ca_certificate=True,
        validity_period_hours=CA_VALIDITY_HOURS,
        allowed_uses=list(CA_USES),
        opts=pulumi.ResourceOptions(parent=parent),
    )
    return KeyPair(cert.cert_pem, pulumi.Output.secret(key.private_key_pem))


def issue_certificate(name: str, ca: KeyPair, common_name: str, *, uses: Sequence[str],
                      alternative_names: Sequence[str] = (), organization: str = "cluster-cookbook",
                      parent: pulumi.Resource) -> KeyPair:
    """A key and a certificate signed by `ca`; `alternative_names` mixes DNS names and IPs."""
    key = _private_key(f"{name}-key", parent)
    dns_names, ip_addresses = split_addresses(alternative_names)
    request = tls.CertRequest(
        f"{name}-csr",
        private_key_pem=key.private_key_pem,
        subject=tls.CertRequestSubjectArgs(common_name=common_name, organization=organization),
        dns_names=dns_names,
        ip_addresses=ip_addresses,
        opts=pulumi.ResourceOptions(parent=parent),
    )
    cert = tls.LocallySignedCert(
        f"{name}-cert",
        cert_request_pem=request.cert_request_pem,
        ca_private_key_pem=ca.key_pem,
        ca_cert_pem=ca.cert_pem,
        validity_period_hours=LEAF_VALIDITY_HOURS,
        allowed_uses=list(uses),
        opts=pulumi.ResourceOptions(parent=parent),
    )
    return KeyPair(cert.cert_pem, pulumi.Output.secret(key.private_key_pem))
