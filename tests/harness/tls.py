"""An emulator of pulumi-tls for `ExecutingMocks(emulators={"tls": emulate_tls})`, built on `cryptography`.

It answers the four resource types the cookbook uses with the outputs the real provider computes
(terraform-provider-tls 4.x, which pulumi-tls 5.x wraps), so certificates reaching test hosts are real:

- `tls:index/privateKey:PrivateKey` (algorithm RSA | ECDSA | ED25519; rsaBits; ecdsaCurve P224|P256|P384|P521)
  -> privateKeyPem (PKCS#1 for RSA, SEC1 for ECDSA, PKCS#8 for ED25519, as the provider writes them),
  privateKeyPemPkcs8, publicKeyPem, privateKeyOpenssh, publicKeyOpenssh, publicKeyFingerprintSha256.
- `tls:index/selfSignedCert:SelfSignedCert` and `tls:index/locallySignedCert:LocallySignedCert`
  -> certPem, validityStartTime, validityEndTime; honouring subject, dnsNames, ipAddresses, uris,
  allowedUses (key usages and extended key usages), isCaCertificate, validityPeriodHours.
- `tls:index/certRequest:CertRequest` -> certRequestPem (subject, dnsNames, ipAddresses, uris).

Private keys come back wrapped as secrets, as the provider's SDK marks them (additionalSecretOutputs).
Anything else the provider supports (early renewal, subject key ids set by flag, ...) is not emulated.
"""

from __future__ import annotations

import datetime
import hashlib
import ipaddress
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from tests.harness.program import SECRET_SIG

SECRET_VALUE = "1b47061264138c4ac30d75fd1eb44270"  # the wire marker of a secret value
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


def secret(value: str) -> dict[str, str]:
    return {SECRET_SIG: SECRET_VALUE, "value": value}


def emulate_tls(typ: str, inputs: dict[str, Any]) -> dict[str, Any]:
    kind = typ.rsplit(":", 1)[-1]
    handlers = {"PrivateKey": _private_key, "SelfSignedCert": _self_signed_cert,
                "CertRequest": _cert_request, "LocallySignedCert": _locally_signed_cert}
    if kind not in handlers:
        raise RuntimeError(f"the tls emulator does not implement {typ}")
    return handlers[kind](inputs)


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
    public_openssh = public.public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    return {
        "privateKeyPem": secret(key.private_bytes(pem, legacy, none).decode()),
        "privateKeyPemPkcs8": secret(key.private_bytes(pem, serialization.PrivateFormat.PKCS8, none).decode()),
        "privateKeyOpenssh": secret(key.private_bytes(pem, serialization.PrivateFormat.OpenSSH, none).decode()),
        "publicKeyPem": public.public_bytes(pem, serialization.PublicFormat.SubjectPublicKeyInfo).decode(),
        "publicKeyOpenssh": public_openssh.decode() + "\n",
        "publicKeyFingerprintSha256": "SHA256:" + hashlib.sha256(public_openssh).hexdigest(),
    }


def _load_key(pem: str) -> Any:
    return serialization.load_pem_private_key(pem.encode(), password=None)


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


def _build_cert(inputs: dict[str, Any], subject: x509.Name, public_key: Any, names: list[x509.GeneralName],
                issuer: x509.Name, issuer_key: Any, issuer_public_key: Any) -> dict[str, Any]:
    now = datetime.datetime.now(datetime.UTC).replace(microsecond=0)
    end = now + datetime.timedelta(hours=int(inputs["validityPeriodHours"]))
    uses = set(inputs.get("allowedUses") or [])
    unknown = uses - set(_KEY_USAGES) - set(_EXTENDED_USAGES)
    if unknown:
        raise ValueError(f"tls: unknown allowedUses {sorted(unknown)}")
    is_ca = bool(inputs.get("isCaCertificate"))
    builder = (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer).public_key(public_key)
               .serial_number(x509.random_serial_number()).not_valid_before(now).not_valid_after(end)
               .add_extension(x509.BasicConstraints(ca=is_ca, path_length=None), critical=True))
    if uses & set(_KEY_USAGES):
        flags = {argument: usage in uses for usage, argument in _KEY_USAGES.items()}
        builder = builder.add_extension(x509.KeyUsage(**flags), critical=True)
    extended = [_EXTENDED_USAGES[usage] for usage in sorted(uses) if usage in _EXTENDED_USAGES]
    if extended:
        builder = builder.add_extension(x509.ExtendedKeyUsage(extended), critical=False)
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    builder = builder.add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
    builder = builder.add_extension(
        x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_public_key), critical=False)
    cert = builder.sign(issuer_key, _signature_hash(issuer_key))
    return {
        "certPem": cert.public_bytes(serialization.Encoding.PEM).decode(),
        "validityStartTime": now.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "validityEndTime": end.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "readyForRenewal": False,
    }


def _self_signed_cert(inputs: dict[str, Any]) -> dict[str, Any]:
    key = _load_key(inputs["privateKeyPem"])
    subject = _subject(inputs)
    return _build_cert(inputs, subject, key.public_key(), _alternative_names(inputs), subject, key,
                       key.public_key())


def _locally_signed_cert(inputs: dict[str, Any]) -> dict[str, Any]:
    csr = x509.load_pem_x509_csr(inputs["certRequestPem"].encode())
    ca_key = _load_key(inputs["caPrivateKeyPem"])
    ca_cert = x509.load_pem_x509_certificate(inputs["caCertPem"].encode())
    try:
        names = list(csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value)
    except x509.ExtensionNotFound:
        names = []
    return _build_cert(inputs, csr.subject, csr.public_key(), names, ca_cert.subject, ca_key,
                       ca_cert.public_key())
