"""A small private PKI built from pulumi-tls resources: certificate authorities and the certificates they sign.

Private keys are secret Outputs (pulumi-tls marks them secret; `Output.secret` here makes that explicit,
so nothing downstream depends on the provider doing it). Certificates are plain PEM text.

Renewal: a leaf certificate with `early_renewal_hours` is re-issued (same key, replaced certificate) by the
first `pulumi up` within that many hours of its expiry; the provider decides it at plan time from the
certificate's `validity_end_time` (terraform-provider-tls `modifyPlanIfCertificateReadyForRenewal`). A CA
is never renewed that way: replacing it invalidates everything it signed, so callers protect it and rotate
it deliberately. Every `KeyPair` carries its `expires` (RFC 3339) so callers can export the earliest one.
"""

from __future__ import annotations

import datetime
import ipaddress
import re
from collections.abc import Sequence
from dataclasses import dataclass

import pulumi
import pulumi_tls as tls

KEY_ALGORITHM = "ECDSA"
KEY_CURVE = "P256"
CA_VALIDITY_HOURS = 10 * 365 * 24
LEAF_VALIDITY_HOURS = 5 * 365 * 24
LEAF_EARLY_RENEWAL_HOURS = 90 * 24
CA_USES = ("cert_signing", "crl_signing", "digital_signature")
SERVER_AND_CLIENT_USES = ("digital_signature", "key_encipherment", "server_auth", "client_auth")
CLIENT_USES = ("digital_signature", "key_encipherment", "client_auth")


@dataclass(frozen=True)
class KeyPair:
    cert_pem: pulumi.Output[str]
    key_pem: pulumi.Output[str]  # secret
    expires: pulumi.Output[str]  # the certificate's validity_end_time, RFC 3339 in UTC


@dataclass(frozen=True)
class Validity:
    """How long a leaf certificate is valid, and how long before its end the next `up` re-issues it."""

    hours: int = LEAF_VALIDITY_HOURS
    early_renewal_hours: int = LEAF_EARLY_RENEWAL_HOURS


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


def _private_key(name: str, parent: pulumi.Resource, protect: bool = False) -> tls.PrivateKey:
    return tls.PrivateKey(name, algorithm=KEY_ALGORITHM, ecdsa_curve=KEY_CURVE,
                          opts=pulumi.ResourceOptions(parent=parent, protect=protect))


def certificate_authority(name: str, common_name: str, parent: pulumi.Resource, *,
                          protect: bool = True) -> KeyPair:
    """A CA key and self-signed certificate, protected by default: `pulumi up` refuses to replace or delete
    them (`pulumi state unprotect` first, on purpose)."""
    key = _private_key(f"{name}-key", parent, protect)
    cert = tls.SelfSignedCert(
        name,
        private_key_pem=key.private_key_pem,
        subject=tls.SelfSignedCertSubjectArgs(common_name=common_name, organization="cluster-cookbook"),
        is_ca_certificate=True,
        validity_period_hours=CA_VALIDITY_HOURS,
        allowed_uses=list(CA_USES),
        opts=pulumi.ResourceOptions(parent=parent, protect=protect),
    )
    return KeyPair(cert.cert_pem, pulumi.Output.secret(key.private_key_pem), cert.validity_end_time)


def issue_certificate(name: str, ca: KeyPair, common_name: str, *, uses: Sequence[str],
                      alternative_names: Sequence[str] | pulumi.Output[list[str]] = (),
                      organization: str = "cluster-cookbook",
                      validity: Validity = Validity(), parent: pulumi.Resource) -> KeyPair:
    """A key and a certificate signed by `ca`; `alternative_names` mixes DNS names and IPs (an Output when one
    is known only at deploy time, e.g. a cloud VM's address). The certificate is re-issued by an `up` within
    `validity.early_renewal_hours` of its end (the key stays)."""
    key = _private_key(f"{name}-key", parent)
    dns_names: pulumi.Input[Sequence[str]]
    ip_addresses: pulumi.Input[Sequence[str]]
    if isinstance(alternative_names, pulumi.Output):
        split = alternative_names.apply(split_addresses)
        dns_names, ip_addresses = split.apply(lambda both: both[0]), split.apply(lambda both: both[1])
    else:
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
        validity_period_hours=validity.hours,
        early_renewal_hours=validity.early_renewal_hours,
        allowed_uses=list(uses),
        opts=pulumi.ResourceOptions(parent=parent),
    )
    return KeyPair(cert.cert_pem, pulumi.Output.secret(key.private_key_pem), cert.validity_end_time)


_FRACTION = re.compile(r"(\.\d{1,6})\d*")


def parse_time(text: str) -> datetime.datetime:
    """An RFC 3339 time as pulumi-tls writes it (Go's `Time.MarshalText`: nanoseconds, `Z` or an offset)."""
    return datetime.datetime.fromisoformat(_FRACTION.sub(r"\1", text.strip()).replace("Z", "+00:00"))


def earliest_expiry(times: Sequence[str | None]) -> str:
    """The earliest of RFC 3339 times, in UTC as `YYYY-MM-DDTHH:MM:SSZ` ("" when none is known)."""
    known = [parse_time(text) for text in times if text]
    return min(known).astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ") if known else ""


def earliest(times: Sequence[pulumi.Input[str]]) -> pulumi.Output[str]:
    return pulumi.Output.all(*times).apply(earliest_expiry)
