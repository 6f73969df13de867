"""A throwaway PKI for the TLS tests: a CA, a loopback server certificate and client certificates."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


@dataclass(frozen=True)
class Issued:
    cert: Path
    key: Path


@dataclass(frozen=True)
class Authority:
    name: str
    key: ec.EllipticCurvePrivateKey
    cert: x509.Certificate
    cert_file: Path


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> Path:
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))
    path.chmod(0o600)
    return path


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "anss-gateway tests"),
                      x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def make_ca(directory: Path, name: str) -> Authority:
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(name)).issuer_name(_name(name))
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5)).not_valid_after(now + timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=False, content_commitment=False, key_encipherment=False,
                                     data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                     crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_file = directory / f"{name}.crt"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return Authority(name, key, cert, cert_file)


def issue(ca: Authority, directory: Path, stem: str, common_name: str, *, server: bool = False,
          uris: tuple[str, ...] = ()) -> Issued:
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.now(UTC)
    sans: list[x509.GeneralName] = [x509.UniformResourceIdentifier(u) for u in uris]
    if server:
        sans += [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name)).issuer_name(ca.cert.subject)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5)).not_valid_after(now + timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH if server
                                              else ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.key.public_key()), critical=False)
    )
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    cert = builder.sign(ca.key, hashes.SHA256())
    cert_file = directory / f"{stem}.crt"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return Issued(cert_file, _write_key(directory / f"{stem}.key", key))


@dataclass(frozen=True)
class Pki:
    ca: Path  # trusted for client certificates and to verify the server
    server: Issued
    asd: Issued  # SAN URI urn:anss:client:anss.asd
    tadamon: Issued  # SAN URI urn:anss:client:cnss.amo-tadamon
    cn_only: Issued  # no SAN URI: subject CN anss.asd
    foreign: Issued  # SAN URI urn:anss:client:anss.asd, but from another CA


def make_pki(directory: Path) -> Pki:
    directory.mkdir(parents=True, exist_ok=True)
    ca = make_ca(directory, "anss-test-ca")
    rogue = make_ca(directory, "foreign-ca")
    return Pki(
        ca=ca.cert_file,
        server=issue(ca, directory, "server", "localhost", server=True),
        asd=issue(ca, directory, "anss.asd", "ANSS ASD service", uris=("urn:anss:client:anss.asd",)),
        tadamon=issue(ca, directory, "cnss.amo-tadamon", "CNSS AMO Tadamon",
                      uris=("urn:anss:client:cnss.amo-tadamon",)),
        cn_only=issue(ca, directory, "cn-only", "anss.asd"),
        foreign=issue(rogue, directory, "foreign", "ANSS ASD impostor", uris=("urn:anss:client:anss.asd",)),
    )
