"""The tls emulator writes what pulumi-tls 5.x writes (it wraps hashicorp/terraform-provider-tls 4.x).

References (hashicorp/terraform-provider-tls, internal/provider/): common_cert.go (`createCertificate`,
`generateSubjectKeyID`, `modifyPlanIfCertificateReadyForRenewal`), common_key.go (`setPublicKeyAttributes`),
resource_private_key.go (`prvKeySupportsOpenSSHMarshalling`), resource_self_signed_cert.go and
resource_locally_signed_cert.go (schemas), attribute_plan_modifier_bool/default_value.go (`ReadyForRenewal`).
Go's crypto/x509 `CreateCertificate` adds an AuthorityKeyId from the parent's SubjectKeyId when the certificate
is not self-signed; golang.org/x/crypto ssh/keys.go `FingerprintSHA256`, `FingerprintLegacyMD5`, `NewPublicKey`.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pulumi
import pulumi_command as command
import pulumi_tls as tls
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from tests.harness.executing import ExecutingMocks, StackState
from tests.harness.program import run_program
from tests.harness.tls import TlsEmulator, emulate_tls
from tools.offline import unwrap_secrets

SELF_SIGNED, LOCALLY_SIGNED = "tls:index/selfSignedCert:SelfSignedCert", "tls:index/locallySignedCert:LocallySignedCert"
PRIVATE_KEY, CERT_REQUEST = "tls:index/privateKey:PrivateKey", "tls:index/certRequest:CertRequest"
T0 = datetime.datetime(2026, 1, 1, 12, 0, tzinfo=datetime.UTC)


def emulate(typ: str, emulator: TlsEmulator = emulate_tls, **inputs: Any) -> dict[str, Any]:
    return {**inputs, **unwrap_secrets(emulator(typ, inputs))}


def key(algorithm: str = "ECDSA", **settings: Any) -> dict[str, Any]:
    return emulate(PRIVATE_KEY, algorithm=algorithm, **settings)


def self_signed(key_pem: str, **settings: Any) -> x509.Certificate:
    outputs = emulate(SELF_SIGNED, privateKeyPem=key_pem, subject={"commonName": "test"}, validityPeriodHours=24,
                      allowedUses=["digital_signature"], **settings)
    return x509.load_pem_x509_certificate(outputs["certPem"].encode())


def locally_signed(ca_key: str, ca_cert: str, **settings: Any) -> x509.Certificate:
    leaf_key = key()["privateKeyPem"]
    request = emulate(CERT_REQUEST, privateKeyPem=leaf_key, subject={"commonName": "leaf"})["certRequestPem"]
    outputs = emulate(LOCALLY_SIGNED, certRequestPem=request, caPrivateKeyPem=ca_key, caCertPem=ca_cert,
                      validityPeriodHours=24, allowedUses=["server_auth"], **settings)
    return x509.load_pem_x509_certificate(outputs["certPem"].encode())


def extension(cert: x509.Certificate, kind: type[x509.ExtensionType]) -> Any:
    try:
        return cert.extensions.get_extension_for_class(kind).value
    except x509.ExtensionNotFound:
        return None


def provider_key_id(cert: x509.Certificate) -> bytes:
    """common_cert.go `generateSubjectKeyID` for an ECDSA key: SHA-1 of `elliptic.Marshal` (the point)."""
    point = cert.public_key().public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
    return hashlib.sha1(point).digest()


# --- key identifiers --------------------------------------------------------------------------------
def test_a_plain_self_signed_certificate_has_no_key_identifiers() -> None:
    """`set_subject_key_id` and `set_authority_key_id` default to false (resource_self_signed_cert.go)."""
    cert = self_signed(key()["privateKeyPem"])
    assert extension(cert, x509.SubjectKeyIdentifier) is None
    assert extension(cert, x509.AuthorityKeyIdentifier) is None


def test_set_subject_key_id_adds_the_provider_s_key_id() -> None:
    """common_cert.go `createCertificate`: `set_subject_key_id` -> `template.SubjectKeyId = generateSubjectKeyID`."""
    cert = self_signed(key()["privateKeyPem"], setSubjectKeyId=True)
    assert extension(cert, x509.SubjectKeyIdentifier).digest == provider_key_id(cert)
    assert extension(cert, x509.AuthorityKeyIdentifier) is None


def test_a_ca_always_has_a_subject_key_id_and_a_self_signed_one_no_authority_key_id() -> None:
    """common_cert.go: `is_ca_certificate` sets `template.SubjectKeyId = generateSubjectKeyID(pubKey)` itself; Go
    copies the parent's SubjectKeyId into AuthorityKeyId only when issuer and subject differ."""
    cert = self_signed(key()["privateKeyPem"], isCaCertificate=True)
    assert extension(cert, x509.SubjectKeyIdentifier).digest == provider_key_id(cert)
    assert extension(cert, x509.AuthorityKeyIdentifier) is None
    with_aki = self_signed(key()["privateKeyPem"], isCaCertificate=True, setAuthorityKeyId=True)
    aki = extension(with_aki, x509.AuthorityKeyIdentifier)
    assert aki.key_identifier == provider_key_id(with_aki)
    assert aki.authority_cert_issuer is None and aki.authority_cert_serial_number is None


def test_set_authority_key_id_without_a_subject_key_id_is_the_provider_s_error() -> None:
    """common_cert.go: `len(parent.SubjectKeyId) == 0` -> "Could not determine Authority Key Identifier"."""
    with pytest.raises(ValueError, match="Could not determine Authority Key Identifier"):
        self_signed(key()["privateKeyPem"], setAuthorityKeyId=True)


def test_a_locally_signed_certificate_names_its_ca_s_key_id_and_has_none_of_its_own() -> None:
    """resource_locally_signed_cert.go has no `set_authority_key_id`: Go's CreateCertificate sets
    AuthorityKeyId = parent.SubjectKeyId; a SubjectKeyId only with `set_subject_key_id`."""
    ca_key = key()["privateKeyPem"]
    ca = self_signed(ca_key, isCaCertificate=True)
    ca_pem = ca.public_bytes(serialization.Encoding.PEM).decode()
    leaf = locally_signed(ca_key, ca_pem)
    assert extension(leaf, x509.SubjectKeyIdentifier) is None
    assert extension(leaf, x509.AuthorityKeyIdentifier).key_identifier == provider_key_id(ca)
    with_ski = locally_signed(ca_key, ca_pem, setSubjectKeyId=True)
    assert extension(with_ski, x509.SubjectKeyIdentifier).digest == provider_key_id(with_ski)


def test_a_ca_without_a_subject_key_id_gives_its_certificates_no_authority_key_id() -> None:
    """Go copies the parent's SubjectKeyId only when there is one (`len(parent.SubjectKeyId) > 0`)."""
    ca_key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "outside CA")])
    ca = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(ca_key.public_key())
          .serial_number(1).not_valid_before(T0).not_valid_after(T0 + datetime.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .sign(ca_key, hashes.SHA256()))
    ca_key_pem = ca_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                                      serialization.NoEncryption()).decode()
    leaf = locally_signed(ca_key_pem, ca.public_bytes(serialization.Encoding.PEM).decode())
    assert extension(leaf, x509.AuthorityKeyIdentifier) is None


def test_an_ed25519_key_id_hashes_the_key_as_an_asn1_octet_string() -> None:
    """common_cert.go `generateSubjectKeyID`: `asn1.Marshal(pub)` for an ed25519.PublicKey ([]byte), i.e. the
    OCTET STRING 04 20 <key>, not the bare key of RFC 5280 method 1."""
    cert = self_signed(key("ED25519")["privateKeyPem"], setSubjectKeyId=True)
    raw = cert.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    assert extension(cert, x509.SubjectKeyIdentifier).digest == hashlib.sha1(b"\x04\x20" + raw).digest()


# --- ssh forms of a key -----------------------------------------------------------------------------
@pytest.mark.parametrize("settings", [{"algorithm": "RSA", "rsaBits": 2048}, {"algorithm": "ED25519"},
                                      *({"algorithm": "ECDSA", "ecdsaCurve": c} for c in ("P256", "P384", "P521"))])
def test_fingerprints_are_x_crypto_ssh_s(settings: dict[str, Any], tmp_path: Path) -> None:
    """common_key.go `setPublicKeyAttributes`: `ssh.FingerprintSHA256` ("SHA256:" + unpadded base64 of the
    SHA-256 of the wire-format key) and `ssh.FingerprintLegacyMD5` (colon-separated hex, no prefix). Checked
    against OpenSSH's `ssh-keygen -l`."""
    outputs = key(**settings)
    (tmp_path / "key.pub").write_text(outputs["publicKeyOpenssh"])

    def keygen(hash_name: str) -> str:
        done = subprocess.run(["ssh-keygen", "-l", "-E", hash_name, "-f", str(tmp_path / "key.pub")],
                              capture_output=True, text=True, check=True)
        return done.stdout.split()[1]

    assert outputs["publicKeyFingerprintSha256"] == keygen("sha256")
    assert "MD5:" + outputs["publicKeyFingerprintMd5"] == keygen("md5")
    wire = base64.b64decode(outputs["publicKeyOpenssh"].split()[1])
    assert outputs["publicKeyFingerprintSha256"] == "SHA256:" + base64.b64encode(
        hashlib.sha256(wire).digest()).decode().rstrip("=")
    assert outputs["publicKeyOpenssh"].endswith("\n")  # ssh.MarshalAuthorizedKey


def test_a_p224_key_has_no_openssh_forms() -> None:
    """resource_private_key.go `prvKeySupportsOpenSSHMarshalling` (false for P-224) and common_key.go
    (`ssh.NewPublicKey` fails: "only P-256, P-384 and P-521 EC keys are supported"): empty strings. P224 is the
    provider's default curve."""
    outputs = key("ECDSA")
    assert outputs["privateKeyOpenssh"] == outputs["publicKeyOpenssh"] == ""
    assert outputs["publicKeyFingerprintSha256"] == outputs["publicKeyFingerprintMd5"] == ""
    public = serialization.load_pem_public_key(outputs["publicKeyPem"].encode())
    assert isinstance(public, ec.EllipticCurvePublicKey) and public.curve.name == "secp224r1"


# --- early renewal ----------------------------------------------------------------------------------
class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime.datetime:
        return self.now


@pytest.mark.parametrize(("validity", "early", "ready"), [(10, 0, False), (10, 9, False), (10, 10, True),
                                                          (10, 11, True), (0, 0, True)])
def test_ready_for_renewal_when_created(validity: int, early: int, ready: bool) -> None:
    """attribute_plan_modifier_bool `ReadyForRenewal`: true when `validity_period_hours` is 0 or
    `early_renewal_hours >= validity_period_hours`, else the default false."""
    outputs = emulate(SELF_SIGNED, TlsEmulator(Clock()), privateKeyPem=key()["privateKeyPem"],
                      subject={"commonName": "x"}, validityPeriodHours=validity, earlyRenewalHours=early,
                      allowedUses=[])
    assert outputs["readyForRenewal"] is ready


def test_a_certificate_is_replaced_once_now_reaches_its_early_renewal_time() -> None:
    """common_cert.go `modifyPlanIfCertificateReadyForRenewal`: when `validity_end_time - early_renewal_hours`
    <= now, `RequiresReplace` on `ready_for_renewal`, whatever the inputs. `early_renewal_hours` itself has no
    RequiresReplace (updated in place); every other input does."""
    clock = Clock()
    emulator = TlsEmulator(clock)
    inputs = {"privateKeyPem": key()["privateKeyPem"], "subject": {"commonName": "x"}, "validityPeriodHours": 10,
              "earlyRenewalHours": 2, "allowedUses": []}
    outputs = {**inputs, **emulator(SELF_SIGNED, inputs)}
    clock.now = T0 + datetime.timedelta(hours=7, minutes=59)
    assert emulator.plan(SELF_SIGNED, inputs, outputs, inputs) == "same"
    assert emulator.plan(SELF_SIGNED, inputs, outputs, {**inputs, "earlyRenewalHours": 1}) == "update"
    assert emulator.plan(SELF_SIGNED, inputs, outputs, {**inputs, "validityPeriodHours": 11}) == "replace"
    assert emulator.plan(SELF_SIGNED, inputs, outputs, {**inputs, "earlyRenewalHours": 3}) == "replace"
    clock.now = T0 + datetime.timedelta(hours=8)
    assert emulator.plan(SELF_SIGNED, inputs, outputs, inputs) == "replace"


def pki_program(log: Path) -> Callable[[], None]:
    """A CA that renews 2 h before it ends, a leaf it signs, and a command that installs the leaf."""

    def program() -> None:
        ca_key = tls.PrivateKey("ca-key", algorithm="ECDSA", ecdsa_curve="P256")
        ca = tls.SelfSignedCert("ca", private_key_pem=ca_key.private_key_pem, is_ca_certificate=True,
                                subject=tls.SelfSignedCertSubjectArgs(common_name="ca"), validity_period_hours=10,
                                early_renewal_hours=2, allowed_uses=["cert_signing"])
        leaf_key = tls.PrivateKey("leaf-key", algorithm="ECDSA", ecdsa_curve="P256")
        request = tls.CertRequest("leaf-csr", private_key_pem=leaf_key.private_key_pem,
                                  subject=tls.CertRequestSubjectArgs(common_name="leaf"))
        leaf = tls.LocallySignedCert("leaf", cert_request_pem=request.cert_request_pem,
                                     ca_private_key_pem=ca_key.private_key_pem, ca_cert_pem=ca.cert_pem,
                                     validity_period_hours=100, allowed_uses=["server_auth"])
        command.local.Command("install", create=leaf.cert_pem.apply(
            lambda pem: f"echo {hashlib.sha256(pem.encode()).hexdigest()} >> {log}"))
        pulumi.export("ca", ca.cert_pem)

    return program


def test_a_certificate_due_for_renewal_is_replaced_and_its_dependents_follow(tmp_path: Path) -> None:
    """The renewal replaces the CA on a run whose inputs are unchanged; its new certificate flows to the leaf
    (`ca_cert_pem` changed: replaced) and on to the command that installs the leaf (updated)."""
    clock = Clock()
    emulators: dict[str, Any] = {"tls": TlsEmulator(clock)}
    state, log = StackState(), tmp_path / "log"

    def up() -> tuple[ExecutingMocks, dict[str, Any]]:
        mocks = ExecutingMocks(state, emulators=emulators)
        outputs = run_program(mocks, {}, program=pki_program(log))
        mocks.finish()
        return mocks, outputs

    _, first = up()
    clock.now = T0 + datetime.timedelta(hours=7)
    quiet, same = up()
    assert quiet.operations == [] and same["ca"] == first["ca"]
    clock.now = T0 + datetime.timedelta(hours=8)
    renewal, renewed = up()
    assert renewed["ca"] != first["ca"]
    ran = sorted({name for _, name in renewal.operations})
    assert ran == ["ca", "install", "leaf"], renewal.operations
    assert ("update", "install") in renewal.operations and ("replace-create", "leaf") in renewal.operations
    assert len(log.read_text().split()) == 2
