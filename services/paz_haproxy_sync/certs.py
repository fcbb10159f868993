"""Certificates as the routers keep them: one record per host name in etcd, the private key sealed.

``/paz/certs/<name>`` holds ``{name, certificate (PEM chain, leaf first), privateKey: {sealed},
source (acme or brought), issuer, notBefore, notAfter}``. The key is sealed with the suite's secrets
key (:mod:`paz.secrets`), so etcd never holds it in clear, and every router (and a router restarted)
serves the certificate without ordering it again. Nothing from a record reaches haproxy.cfg: the
certificate and key go to HAProxy through its Runtime API and a file of their own.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from paz.contracts.times import iso
from paz.secrets import Keyring

ACME, BROUGHT = "acme", "brought"
RENEW_AT = 2 / 3
"""A certificate is renewed once this share of its lifetime has passed (Let's Encrypt's advice)."""


class BadCertificate(ValueError):
    """PEM that is not a usable certificate and key for a name; the message says what to fix."""


class OrderFailed(Exception):
    """The ACME CA could not be reached, or refused the order; the message says which and why."""


@dataclass(frozen=True)
class Certificate:
    name: str
    chain: str
    key: str
    source: str
    issuer: str
    not_before: dt.datetime
    not_after: dt.datetime

    @property
    def renew_at(self) -> dt.datetime:
        return self.not_before + (self.not_after - self.not_before) * RENEW_AT

    @property
    def pem(self) -> str:
        """What HAProxy loads: the chain, then the key."""
        return self.chain.rstrip("\n") + "\n" + self.key.rstrip("\n") + "\n"

    def summary(self) -> dict[str, Any]:
        """What anyone may see: never the key."""
        return {"name": self.name, "source": self.source, "issuer": self.issuer, "notBefore": iso(self.not_before),
                "notAfter": iso(self.not_after), "renewAt": iso(self.renew_at)}


def read_pem(name: str, chain: str, key: str, source: str) -> Certificate:
    """The certificate for ``name`` in ``chain`` (PEM, leaf first) with its private ``key``, checked:
    the leaf covers ``name``, the key is its key, and it has not expired."""
    try:
        certificates = x509.load_pem_x509_certificates(chain.encode())
    except ValueError:
        raise BadCertificate("the certificate is not PEM (-----BEGIN CERTIFICATE-----)") from None
    try:
        private = serialization.load_pem_private_key(key.encode(), password=None)
    except (ValueError, TypeError):
        raise BadCertificate("the private key is not an unencrypted PEM key (-----BEGIN PRIVATE KEY-----)") from None
    leaf = certificates[0]
    if not isinstance(private, (rsa.RSAPrivateKey, ec.EllipticCurvePrivateKey)):
        raise BadCertificate("the private key is neither RSA nor ECDSA")
    if _public(private.public_key()) != _public(leaf.public_key()):
        raise BadCertificate("the private key is not the key of the certificate (the first one in the file)")
    if name not in _names(leaf):
        raise BadCertificate(f"the certificate is for {', '.join(sorted(_names(leaf))) or 'no name'}, not {name}")
    if leaf.not_valid_after_utc <= dt.datetime.now(dt.timezone.utc):
        raise BadCertificate(f"the certificate expired at {iso(leaf.not_valid_after_utc)}")
    clear_key = private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                      serialization.NoEncryption()).decode()
    return Certificate(name, "".join(c.public_bytes(serialization.Encoding.PEM).decode() for c in certificates),
                       clear_key, source, _issuer(leaf), leaf.not_valid_before_utc, leaf.not_valid_after_utc)


def _public(key: Any) -> bytes:
    return key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def _names(leaf: x509.Certificate) -> set[str]:
    try:
        return {n.lower() for n in leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
                .get_values_for_type(x509.DNSName)}
    except x509.ExtensionNotFound:
        return {a.value.lower() for a in leaf.subject.get_attributes_for_oid(NameOID.COMMON_NAME) if isinstance(a.value, str)}


def _issuer(leaf: x509.Certificate) -> str:
    names = leaf.issuer.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(names[0].value) if names else leaf.issuer.rfc4514_string()


def stored(certificate: Certificate, keyring: Keyring) -> str:
    """The etcd record of ``certificate``, its key sealed."""
    return json.dumps({
        **certificate.summary(), "certificate": certificate.chain, "privateKey": {"sealed": keyring.seal(certificate.key)},
    }, sort_keys=True)


def from_stored(name: str, value: str, keyring: Keyring) -> Certificate:
    """The certificate a record holds, checked again (a record is never trusted): BadCertificate if not."""
    try:
        record = json.loads(value)
        chain, sealed, source = record["certificate"], record["privateKey"]["sealed"], record["source"]
    except (ValueError, KeyError, TypeError):
        raise BadCertificate(f"the record of {name} is not {{certificate, privateKey: {{sealed}}, source}}") from None
    if source not in (ACME, BROUGHT) or not isinstance(chain, str) or not isinstance(sealed, str):
        raise BadCertificate(f"the record of {name} is not {{certificate, privateKey: {{sealed}}, source}}")
    return read_pem(name, chain, keyring.open(f"the private key of {name}", sealed), source)
