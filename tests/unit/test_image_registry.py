"""The registry's pure parts: which actions a role gets, the tokens' form and signature, the key id the
registry finds the key by, its config written from hostile values, which notifications are pushes, and
the registry's addresses read from its settings."""

from __future__ import annotations

import base64
import json

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from cryptography.x509 import load_pem_x509_certificate

from paz import image_registry
from paz.cli.output import USAGE, PazError
from paz.cli.registry_commands import Addresses
from paz.image_registry import Access, granted, parse_scope, pushed_images
from paz.settings import parse_host_port

pytestmark = pytest.mark.unit


def _decoded(part: str) -> dict:
    return json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))


@pytest.mark.parametrize(("scope", "wanted"), [
    ("repository:web:pull,push", Access("repository", "web", ("pull", "push"))),
    ("repository:team/web:pull", Access("repository", "team/web", ("pull",))),
    ("repository:127.0.0.1:5000/web:pull", None),  # a name holds no host
    ("registry:catalog:*", None),
    ("repository:Web:pull", None),
    ("repository:web\n:pull", None),
    ("", None),
])
def test_a_scope_is_a_repository_and_its_actions(scope: str, wanted: Access | None) -> None:
    assert parse_scope(scope) == wanted


@pytest.mark.parametrize(("role", "actions"), [
    ("read", ("pull",)), ("deploy", ("pull", "push")), ("admin", ("pull", "push")), ("nobody", ()),
])
def test_a_role_gets_only_its_actions(role: str, actions: tuple[str, ...]) -> None:
    assert granted(role, Access("repository", "web", ("pull", "push", "delete", "*"))).actions == actions


def test_a_token_is_an_es256_jwt_for_the_registry_signed_by_the_key_its_kid_names() -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    token = image_registry.issue_token(key, "abc123", [Access("repository", "web", ("pull",))], seconds=60)
    header, claims, signature = token.split(".")
    assert _decoded(header) == {"typ": "JWT", "alg": "ES256", "kid": image_registry.key_id(key.public_key())}
    body = _decoded(claims)
    assert (body["iss"], body["aud"], body["sub"]) == ("paz", "paz-registry", "abc123")
    assert body["exp"] - body["iat"] == 60 and body["access"] == [{"type": "repository", "name": "web", "actions": ["pull"]}]
    raw = base64.urlsafe_b64decode(signature + "=" * (-len(signature) % 4))
    der = encode_dss_signature(int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big"))
    key.public_key().verify(der, f"{header}.{claims}".encode(), ec.ECDSA(hashes.SHA256()))  # raises when it is not


def test_the_key_id_is_libtrust_s_twelve_groups_of_four_and_the_certificate_carries_the_key() -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    groups = image_registry.key_id(key.public_key()).split(":")
    assert len(groups) == 12 and all(len(group) == 4 and group.isalnum() and group.isupper() for group in groups)
    certificate = load_pem_x509_certificate(image_registry.certificate_of(key))
    assert image_registry.key_id(certificate.public_key()) == image_registry.key_id(key.public_key())


def test_hostile_values_stay_values_in_the_registry_s_config() -> None:
    hostile = 'x"\n  delete: {enabled: false}\nauth: $(rm -rf /); `id`'
    config = image_registry.config("127.0.0.1:5000", hostile, hostile, hostile, hostile, hostile)
    parsed = json.loads(config)  # JSON, which YAML reads as the same document
    assert parsed["storage"] == {"filesystem": {"rootdirectory": hostile}, "delete": {"enabled": True}}
    assert parsed["auth"]["token"]["realm"] == hostile
    assert parsed["notifications"]["endpoints"][0]["headers"] == {"Authorization": [f"Bearer {hostile}"]}
    assert sorted(parsed) == ["auth", "http", "log", "notifications", "storage", "version"]


def test_only_tagged_manifest_pushes_are_pushes() -> None:
    envelope = {"events": [
        {"action": "push", "target": {"repository": "web", "tag": "3", "mediaType": "application/vnd.docker.distribution.manifest.v2+json"}},
        {"action": "push", "target": {"repository": "web", "tag": "3"}},  # the same push told twice
        {"action": "push", "target": {"repository": "web", "mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip"}},
        {"action": "pull", "target": {"repository": "web", "tag": "2"}},
        {"action": "push", "target": {"repository": "api", "tag": "1"}},
    ]}
    assert pushed_images(envelope) == [("web", "3"), ("api", "1")]
    assert pushed_images({}) == [] and pushed_images(None) == []


@pytest.mark.parametrize(("raw", "wanted"), [("127.0.0.1:5000", "127.0.0.1:5000"), ("registry.lan:443", "registry.lan:443")])
def test_a_registry_address_is_host_and_port(raw: str, wanted: str) -> None:
    assert parse_host_port(raw) == wanted


@pytest.mark.parametrize("raw", ["127.0.0.1", "127.0.0.1:0", "127.0.0.1:http", "a b:5000", ":5000"])
def test_a_bad_registry_address_is_refused(raw: str) -> None:
    with pytest.raises(ValueError):
        parse_host_port(raw)


def addresses(monkeypatch: pytest.MonkeyPatch, **env: str) -> Addresses:
    for var in ("PAZ_REGISTRY_ADDR", "PAZ_REGISTRY_BIND", "PAZ_ANNOUNCE_HOST", "PAZ_REGISTRY_REALM"):
        monkeypatch.delenv(var, raising=False)
    for var, value in env.items():
        monkeypatch.setenv(var, value)
    return Addresses.from_environment()


def test_on_one_machine_the_registry_listens_and_is_announced_where_images_name_it(monkeypatch: pytest.MonkeyPatch) -> None:
    found = addresses(monkeypatch, PAZ_REGISTRY_ADDR="10.0.0.5:5000")
    assert (found.listen, found.announced, found.local, found.realm) == ("10.0.0.5:5000", "10.0.0.5:5000", "10.0.0.5:5000", "")


def test_in_a_container_it_listens_everywhere_and_is_announced_by_its_name(monkeypatch: pytest.MonkeyPatch) -> None:
    found = addresses(monkeypatch, PAZ_REGISTRY_ADDR="127.0.0.1:5001", PAZ_REGISTRY_BIND="0.0.0.0", PAZ_ANNOUNCE_HOST="paz-registry",
                      PAZ_REGISTRY_REALM="http://127.0.0.1:9002/registry/token")
    assert (found.listen, found.announced, found.local) == ("0.0.0.0:5001", "paz-registry:5001", "127.0.0.1:5001")
    assert found.realm == "http://127.0.0.1:9002/registry/token"


@pytest.mark.parametrize(("var", "raw"), [("PAZ_REGISTRY_BIND", "a b"), ("PAZ_ANNOUNCE_HOST", "x;id"),
                                          ("PAZ_REGISTRY_REALM", "file:///etc/passwd"), ("PAZ_REGISTRY_REALM", "http://a b/")])
def test_a_bad_registry_setting_is_a_usage_error_naming_it(monkeypatch: pytest.MonkeyPatch, var: str, raw: str) -> None:
    with pytest.raises(PazError) as raised:
        addresses(monkeypatch, **{var: raw})
    assert raised.value.exit_code == USAGE and raised.value.message.startswith(f"{var}: ")
