"""The suite's image registry (``paz up --registry``): Debian's ``docker-registry`` (the distribution
project, 2.8) guarded by paz tokens through the registry's token authentication.

How a ``docker login <registry> -u paz -p <paz token>`` works: the registry answers a client without a
bearer token 401 with a realm, the scheduler's ``GET /registry/token``; the Docker Engine asks it with
the paz token as the basic-auth password; the scheduler looks the token up like any other and signs a
short-lived JWT granting what the token's role allows on the repositories asked for (``read``:
pull; ``deploy`` and ``admin``: pull and push). The registry trusts the JWT's signature, made with a
key kept sealed in etcd (:data:`SIGNING_KEY`), whose certificate the registry is given at start.

Why not an htpasswd file kept in step with the tokens: htpasswd maps one password to a user and
gives every user every action, so neither "any paz token is a password for ``paz``" nor "``read``
pulls only" can be said in it, and the file would need each token's clear secret (etcd keeps only
digests) at the moment it is made. Token authentication costs one signing key and this module.
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import hashlib
import json
import re
import secrets
import time
from dataclasses import dataclass
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.x509.oid import NameOID

from . import keys
from .auth import RANK
from .etcd import AlreadyExists, Store
from .secrets import Keyring

NAME = "paz-registry"
"""Announced as ``/paz/services/paz-registry``; also the ``service`` (audience) its tokens are for."""
ISSUER = "paz"
USER = "paz"
"""The user name ``docker login`` is given; the password is a paz token."""
TOKEN_SECONDS = 300
SIGNING_KEY = keys.REGISTRY_SIGNING_KEY
REPOSITORY = re.compile(r"^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*$")
"""A repository name as the distribution spec allows it (lower case path components)."""
ACTIONS_OF_ROLE = {"read": ("pull",), "deploy": ("pull", "push"), "admin": ("pull", "push")}


@dataclass(frozen=True)
class Access:
    """One resource a token grants actions on, as the registry's JWT ``access`` claim lists it."""

    type: str
    name: str
    actions: tuple[str, ...]

    def as_claim(self) -> dict[str, Any]:
        return {"type": self.type, "name": self.name, "actions": list(self.actions)}


def parse_scope(scope: str) -> Access | None:
    """``repository:<name>:<actions>`` as the registry asks for it; None for anything else (ignored)."""
    kind, _, rest = scope.partition(":")
    name, _, actions = rest.rpartition(":")
    if kind != "repository" or not REPOSITORY.fullmatch(name):
        return None
    return Access(kind, name, tuple(action for action in actions.split(",") if action))


def granted(role: str, asked: Access) -> Access:
    """What of ``asked`` a token of ``role`` gets: the actions its role allows, no others."""
    allowed = ACTIONS_OF_ROLE.get(role, ()) if role in RANK else ()
    return Access(asked.type, asked.name, tuple(action for action in asked.actions if action in allowed))


# -- the signing key and its token -----------------------------------------------------------------


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def key_id(public_key: ec.EllipticCurvePublicKey) -> str:
    """libtrust's key id, by which the registry finds the key of its certificate that signed a token:
    the SHA-256 of the key's DER form, cut to 240 bits, in base32 groups of four joined by ``:``."""
    der = public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    encoded = base64.b32encode(hashlib.sha256(der).digest()[:30]).decode().rstrip("=")
    return ":".join(encoded[i:i + 4] for i in range(0, len(encoded), 4))


def issue_token(key: ec.EllipticCurvePrivateKey, subject: str, access: list[Access], seconds: int = TOKEN_SECONDS) -> str:
    """A JWT (ES256) the registry accepts, granting ``access`` to ``subject`` for ``seconds``."""
    now = int(time.time())
    header = {"typ": "JWT", "alg": "ES256", "kid": key_id(key.public_key())}
    claims = {"iss": ISSUER, "sub": subject, "aud": NAME, "iat": now, "nbf": now - 5, "exp": now + seconds,
              "jti": secrets.token_hex(16), "access": [item.as_claim() for item in access]}
    signed = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(claims).encode())}"
    r, s = decode_dss_signature(key.sign(signed.encode(), ec.ECDSA(hashes.SHA256())))
    return f"{signed}.{_b64(r.to_bytes(32, 'big') + s.to_bytes(32, 'big'))}"


def certificate_of(key: ec.EllipticCurvePrivateKey) -> bytes:
    """A self-signed certificate (PEM) of ``key``: the registry's ``rootcertbundle``, whence it trusts the key."""
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"{NAME} token signer")])
    now = dt.datetime.now(dt.timezone.utc)
    certificate = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
                   .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(days=1))
                   .not_valid_after(now + dt.timedelta(days=3650)).sign(key, hashes.SHA256()))
    return certificate.public_bytes(serialization.Encoding.PEM)


def signing_key(etcd: Store, keyring: Keyring) -> ec.EllipticCurvePrivateKey | None:
    """The key tokens are signed with (sealed in etcd), or None when no registry was set up."""
    sealed = etcd.value(SIGNING_KEY)
    if sealed is None:
        return None
    pem = keyring.open("the registry's signing key", sealed).encode()
    return serialization.load_pem_private_key(pem, password=None)  # type: ignore[return-value]


def ensure_signing_key(etcd: Store, keyring: Keyring) -> ec.EllipticCurvePrivateKey:
    """The signing key, made and stored (sealed) the first time; two registries starting at once agree."""
    key = ec.generate_private_key(ec.SECP256R1())
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    with contextlib.suppress(AlreadyExists):
        etcd.create(SIGNING_KEY, keyring.seal(pem.decode()))
    found = signing_key(etcd, keyring)
    assert found is not None
    return found


# -- the registry's configuration ------------------------------------------------------------------


def config(address: str, storage: str, realm: str, certificate_file: str, hook_url: str, hook_token: str) -> str:
    """The registry's config file. Written as JSON (YAML's subset), so every value is a quoted string
    whatever it holds: nothing given can add a key or end one."""
    document = {
        "version": 0.1,
        # warn, not info: at info the registry logs each notification endpoint with its headers, our token among them
        "log": {"level": "warn", "formatter": "text", "accesslog": {"disabled": True}},
        "storage": {"filesystem": {"rootdirectory": storage}, "delete": {"enabled": True}},
        "http": {"addr": address, "headers": {"X-Content-Type-Options": ["nosniff"]}},
        "auth": {"token": {"realm": realm, "service": NAME, "issuer": ISSUER, "rootcertbundle": certificate_file}},
        "notifications": {"endpoints": [{
            "name": "paz-scheduler", "url": hook_url, "headers": {"Authorization": [f"Bearer {hook_token}"]},
            "timeout": "5s", "threshold": 5, "backoff": "1s", "ignoredmediatypes": ["application/octet-stream"],
        }]},
    }
    return json.dumps(document, indent=2) + "\n"


def pushed_images(envelope: Any) -> list[tuple[str, str]]:
    """``(repository, tag)`` of each tagged manifest push in a registry notification's envelope."""
    found = []
    for event in (envelope or {}).get("events") or []:
        target = (event or {}).get("target") or {}
        repository, tag = target.get("repository"), target.get("tag")
        if event.get("action") == "push" and isinstance(tag, str) and tag and isinstance(repository, str):
            found.append((repository, tag))
    return list(dict.fromkeys(found))
