"""An emulator of pulumi-tls for `ExecutingMocks(emulators={"tls": emulate_tls})`, built on `cryptography`.

It answers the four resource types the cookbook uses with the outputs the real provider computes
(hashicorp/terraform-provider-tls 4.x, which pulumi-tls 5.x wraps; files below are its internal/provider/),
so certificates reaching test hosts are real:

- `tls:index/privateKey:PrivateKey` (algorithm RSA | ECDSA | ED25519; rsaBits 2048; ecdsaCurve P224 (the
  provider's default) | P256 | P384 | P521) -> privateKeyPem (PKCS#1 for RSA, SEC1 for ECDSA, PKCS#8 for
  ED25519), privateKeyPemPkcs8, publicKeyPem, and the SSH forms as common_key.go `setPublicKeyAttributes`
  writes them: privateKeyOpenssh, publicKeyOpenssh (authorized_keys line), publicKeyFingerprintSha256
  (`ssh.FingerprintSHA256`: "SHA256:" + unpadded base64 of the SHA-256 of the wire-format key) and
  publicKeyFingerprintMd5 (`ssh.FingerprintLegacyMD5`: colon-separated hex). x/crypto/ssh cannot encode
  P-224 keys, so for P224 all four are "" (resource_private_key.go `prvKeySupportsOpenSSHMarshalling`).
- `tls:index/selfSignedCert:SelfSignedCert` and `tls:index/locallySignedCert:LocallySignedCert`
  -> certPem, validityStartTime, validityEndTime, readyForRenewal; honouring subject, dnsNames, ipAddresses,
  uris, allowedUses, isCaCertificate, validityPeriodHours, earlyRenewalHours, setSubjectKeyId and (self-signed
  only) setAuthorityKeyId. Key identifiers as common_cert.go `createCertificate` and Go's
  `x509.CreateCertificate` write them: a SubjectKeyId (common_cert.go `generateSubjectKeyID`) when
  `isCaCertificate` or `setSubjectKeyId`; an AuthorityKeyId equal to the issuer's SubjectKeyId when the issuer
  differs from the subject and has one (Go), or on a self-signed certificate with `setAuthorityKeyId`.
- `tls:index/certRequest:CertRequest` -> certRequestPem (subject, dnsNames, ipAddresses, uris).

Planning (`TlsEmulator.plan`, used by ExecutingMocks): every input forces a replacement except
`earlyRenewalHours` (updated in place), and a certificate whose early renewal time has come
(now >= validityEndTime - earlyRenewalHours) is replaced even when its inputs did not change
(common_cert.go `modifyPlanIfCertificateReadyForRenewal`).

Private keys come back wrapped as secrets, as the provider's SDK marks them (additionalSecretOutputs).
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import ipaddress
from collections.abc import Callable
from typing import Any, Literal

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from tests.harness.program import secret

Change = Literal["same", "update", "replace"]
_CURVES: dict[str, Any] = {"P224": ec.SECP224R1, "P256": ec.SECP256R1, "P384": ec.SECP384R1, "P521": ec.SECP521R1}
_SUBJECT_FIELDS = {
    "commonName": NameOID.COMMON_NAME, "organization": NameOID.ORGANIZATION_NAME,
    "organizationalUnit": NameOID.ORGANIZATIONAL_UNIT_NAME, "country": NameOID.COUNTRY_NAME,
    "province": NameOID.STATE_OR_PROVINCE_NAME, "locality": NameOID.LOCALITY_NAME,
    "postalCode": NameOID.POSTAL_CODE, "serialNumber": NameOID.SERIAL_NUMBER,
}
# The provider's key usage names -> cryptography's KeyUsage arguments.
_KEY_USAGES = {
    "digital_signature": "digital_signature", "content_commitment": "content_commitment",
    "key_encipherment": "key_encipherment", "data_encipherment": "data_encipherment",
    "key_agreement": "key_agreement", "cert_signing": "key_cert_sign", "crl_signing": "crl_sign",
    "encipher_only": "encipher_only", "decipher_only": "decipher_only",
}
_EXTENDED_USAGES = {
    "server_auth": ExtendedKeyUsageOID.SERVER_AUTH, "client_auth": ExtendedKeyUsageOID.CLIENT_AUTH,
    "code_signing": ExtendedKeyUsageOID.CODE_SIGNING, "email_protection": ExtendedKeyUsageOID.EMAIL_PROTECTION,
    "timestamping": ExtendedKeyUsageOID.TIME_STAMPING, "ocsp_signing": ExtendedKeyUsageOID.OCSP_SIGNING,
    "any_extended": ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE,
}
_CERTIFICATES = ("SelfSignedCert", "LocallySignedCert")
_IN_PLACE = {"earlyRenewalHours"}  # the certificates' only input without RequiresReplace



class TlsEmulator:
    """Creates tls resources like the provider and plans their changes; `clock` is "now" (UTC)."""

    def __init__(self, clock: Callable[[], datetime.datetime] | None = None):
        self.clock = clock or (lambda: datetime.datetime.now(datetime.UTC))

    def __call__(self, typ: str, inputs: dict[str, Any]) -> dict[str, Any]:
        kind = typ.rsplit(":", 1)[-1]
        if kind == "PrivateKey":
            return _private_key(inputs)
        if kind == "CertRequest":
            return _cert_request(inputs)
        if kind == "SelfSignedCert":
            return _self_signed_cert(inputs, self.clock())
        if kind == "LocallySignedCert":
            return _locally_signed_cert(inputs, self.clock())
        raise RuntimeError(f"the tls emulator does not implement {typ}")

    def plan(self, typ: str, old_inputs: dict[str, Any], old_outputs: dict[str, Any],
             inputs: dict[str, Any]) -> Change:
        """The provider's plan for a stored resource given new inputs (schemas' RequiresReplace, ModifyPlan)."""
        changed = {key for key in old_inputs.keys() | inputs.keys() if old_inputs.get(key) != inputs.get(key)}
        if typ.rsplit(":", 1)[-1] not in _CERTIFICATES:
            return "replace" if changed else "same"
        end = datetime.datetime.fromisoformat(old_outputs["validityEndTime"])
        if changed - _IN_PLACE or _ready_for_renewal(end, inputs, self.clock()):
            return "replace"
        return "update" if changed else "same"


emulate_tls = TlsEmulator()


# --- keys --------------------------------------------------------------------------------------------
def _private_key(inputs: dict[str, Any]) -> dict[str, Any]:
    algorithm = inputs.get("algorithm") or "RSA"
    key: Any
    if algorithm == "RSA":
        key = rsa.generate_private_key(public_exponent=65537, key_size=int(inputs.get("rsaBits") or 2048))
        legacy = serialization.PrivateFormat.TraditionalOpenSSL
    elif algorithm == "ECDSA":
        key = ec.generate_private_key(_CURVES[inputs.get("ecdsaCurve") or "P224"]())
        legacy = serialization.PrivateFormat.TraditionalOpenSSL
    elif algorithm == "ED25519":
        key = ed25519.Ed25519PrivateKey.generate()
        legacy = serialization.PrivateFormat.PKCS8
    else:
        raise ValueError(f"tls PrivateKey: unsupported algorithm {algorithm!r}")
    pem, none = serialization.Encoding.PEM, serialization.NoEncryption()
    public = key.public_key()
    outputs = {
        "privateKeyPem": secret(key.private_bytes(pem, legacy, none).decode()),
        "privateKeyPemPkcs8": secret(key.private_bytes(pem, serialization.PrivateFormat.PKCS8, none).decode()),
        "publicKeyPem": public.public_bytes(pem, serialization.PublicFormat.SubjectPublicKeyInfo).decode(),
        "privateKeyOpenssh": secret(""), "publicKeyOpenssh": "",
        "publicKeyFingerprintSha256": "", "publicKeyFingerprintMd5": "",
    }
    if isinstance(key, ec.EllipticCurvePrivateKey) and key.curve.name == "secp224r1":
        return outputs
    authorized = public.public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    wire = base64.b64decode(authorized.split()[1])
    sha256 = base64.b64encode(hashlib.sha256(wire).digest()).decode().rstrip("=")
    md5 = hashlib.md5(wire, usedforsecurity=False).digest()
    return {
        **outputs,
        "privateKeyOpenssh": secret(key.private_bytes(pem, serialization.PrivateFormat.OpenSSH, none).decode()),
        "publicKeyOpenssh": authorized.decode() + "\n",
        "publicKeyFingerprintSha256": "SHA256:" + sha256,
        "publicKeyFingerprintMd5": ":".join(f"{byte:02x}" for byte in md5),
    }


def _load_key(pem: str) -> Any:
    return serialization.load_pem_private_key(pem.encode(), password=None)


def _key_id(public: Any) -> bytes:
    """common_cert.go `generateSubjectKeyID`: SHA-1 of the key as the provider marshals it: PKCS#1 for RSA,
    the uncompressed point for ECDSA, and for Ed25519 `asn1.Marshal` of the key bytes (an OCTET STRING)."""
    if isinstance(public, rsa.RSAPublicKey):
        data = public.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.PKCS1)
    elif isinstance(public, ec.EllipticCurvePublicKey):
        data = public.public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
    else:
        raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        data = bytes([0x04, len(raw)]) + raw
    return hashlib.sha1(data, usedforsecurity=False).digest()


# --- names -------------------------------------------------------------------------------------------
def _subject(inputs: dict[str, Any]) -> x509.Name:
    raw = inputs.get("subject") or {}
    attributes = []
    for field, oid in _SUBJECT_FIELDS.items():
        value = raw.get(field)
        for item in value if isinstance(value, list) else [value]:
            if item:
                attributes.append(x509.NameAttribute(oid, str(item)))
    return x509.Name(attributes)


def _alternative_names(inputs: dict[str, Any]) -> list[x509.GeneralName]:
    names: list[x509.GeneralName] = [x509.DNSName(name) for name in inputs.get("dnsNames") or []]
    names += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in inputs.get("ipAddresses") or []]
    names += [x509.UniformResourceIdentifier(uri) for uri in inputs.get("uris") or []]
    return names


def _signature_hash(key: Any) -> hashes.SHA256 | None:
    return None if isinstance(key, ed25519.Ed25519PrivateKey) else hashes.SHA256()


# --- certificates ------------------------------------------------------------------------------------
def _cert_request(inputs: dict[str, Any]) -> dict[str, Any]:
    key = _load_key(inputs["privateKeyPem"])
    builder = x509.CertificateSigningRequestBuilder().subject_name(_subject(inputs))
    names = _alternative_names(inputs)
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    csr = builder.sign(key, _signature_hash(key))
    return {"certRequestPem": csr.public_bytes(serialization.Encoding.PEM).decode()}


def _rfc3339(moment: datetime.datetime) -> str:
    """Go's `time.Time.MarshalText` (RFC 3339 with nanoseconds, trailing zeros dropped), in UTC."""
    text = moment.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%f").rstrip("0").rstrip(".")
    return text + "Z"


def _ready_for_renewal(end: datetime.datetime, inputs: dict[str, Any], now: datetime.datetime) -> bool:
    return now >= end - datetime.timedelta(hours=int(inputs.get("earlyRenewalHours") or 0))


def _build_cert(inputs: dict[str, Any], now: datetime.datetime, subject: x509.Name, public_key: Any,
                names: list[x509.GeneralName], issuer: x509.Name, issuer_key: Any,
                issuer_key_id: bytes | None) -> dict[str, Any]:
    """common_cert.go `createCertificate`, then what Go's `x509.CreateCertificate` adds: `issuer_key_id` is
    the parent's SubjectKeyId (None for a self-signed certificate, whose parent is its own template)."""
    end = now + datetime.timedelta(hours=int(inputs["validityPeriodHours"]))
    uses = set(inputs.get("allowedUses") or [])
    unknown = uses - set(_KEY_USAGES) - set(_EXTENDED_USAGES)
    if unknown:
        raise ValueError(f"tls: unknown allowedUses {sorted(unknown)}")
    is_ca = bool(inputs.get("isCaCertificate"))
    if is_ca and not list(subject):
        raise ValueError("Invalid Certificate Subject: Must contain at least one Distinguished Name when creating "
                         "Certificate Authority (CA)")
    subject_key_id = _key_id(public_key) if is_ca or inputs.get("setSubjectKeyId") else None
    authority_key_id = None
    if issuer_key_id is None and inputs.get("setAuthorityKeyId"):  # self-signed: the parent is the template
        if subject_key_id is None:
            raise ValueError("Invalid Certificate Authority: Could not determine Authority Key Identifier")
        authority_key_id = subject_key_id
    if issuer_key_id and issuer.public_bytes() != subject.public_bytes():  # Go: parent's SubjectKeyId
        authority_key_id = issuer_key_id
    builder = (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer).public_key(public_key)
               .serial_number(x509.random_serial_number()).not_valid_before(now.replace(microsecond=0))
               .not_valid_after(end.replace(microsecond=0))
               .add_extension(x509.BasicConstraints(ca=is_ca, path_length=None), critical=True))
    if uses & set(_KEY_USAGES):
        flags = {argument: usage in uses for usage, argument in _KEY_USAGES.items()}
        builder = builder.add_extension(x509.KeyUsage(**flags), critical=True)
    extended = [_EXTENDED_USAGES[usage] for usage in sorted(uses) if usage in _EXTENDED_USAGES]
    if extended:
        builder = builder.add_extension(x509.ExtendedKeyUsage(extended), critical=False)
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    if subject_key_id:
        builder = builder.add_extension(x509.SubjectKeyIdentifier(subject_key_id), critical=False)
    if authority_key_id:
        builder = builder.add_extension(x509.AuthorityKeyIdentifier(authority_key_id, None, None), critical=False)
    cert = builder.sign(issuer_key, _signature_hash(issuer_key))
    return {
        "certPem": cert.public_bytes(serialization.Encoding.PEM).decode(),
        "validityStartTime": _rfc3339(now),
        "validityEndTime": _rfc3339(end),
        # attribute_plan_modifier_bool `ReadyForRenewal` at creation (validity 0, or early >= validity).
        "readyForRenewal": _ready_for_renewal(end, inputs, now),
    }


def _self_signed_cert(inputs: dict[str, Any], now: datetime.datetime) -> dict[str, Any]:
    key = _load_key(inputs["privateKeyPem"])
    subject = _subject(inputs)
    return _build_cert(inputs, now, subject, key.public_key(), _alternative_names(inputs), subject, key, None)


def _locally_signed_cert(inputs: dict[str, Any], now: datetime.datetime) -> dict[str, Any]:
    csr = x509.load_pem_x509_csr(inputs["certRequestPem"].encode())
    ca_key = _load_key(inputs["caPrivateKeyPem"])
    ca_cert = x509.load_pem_x509_certificate(inputs["caCertPem"].encode())
    try:
        names = list(csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value)
    except x509.ExtensionNotFound:
        names = []
    try:
        ca_key_id: bytes | None = ca_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest
    except x509.ExtensionNotFound:
        ca_key_id = None
    return _build_cert(inputs, now, csr.subject, csr.public_key(), names, ca_cert.subject, ca_key, ca_key_id)
