"""HTTPS in haproxy.cfg and certificates as the routers read them: the TLS bind, the redirect, the
names that get certificates, the checks a brought certificate passes, the back-off of failed orders."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from paz.secrets import Keyring, write_key_file, new_key
from paz_haproxy_sync.certs import ACME, BROUGHT, BadCertificate, from_stored, read_pem, stored
from paz_haproxy_sync.model import Instance, Table, parse_router_settings
from paz_haproxy_sync.orders import retry_after
from paz_haproxy_sync.render import render
from paz_haproxy_sync.settings import SyncSettings

pytestmark = pytest.mark.unit

SETTINGS = SyncSettings(name="haproxy-sync", haproxy_dir="/run/paz-haproxy", router_bind="0.0.0.0", http_port=80, https_port=443,
                        host="0.0.0.0", port=9003)
HOSTILE = ["a\nb.example.com", 'x".example.com', "$(reboot).example.com", "a;b.example.com", "*.example.com", "shop.paz"]


def table(config: dict, certified: frozenset[str] = frozenset(), domain: str | None = "example.com") -> Table:
    router = parse_router_settings("shop", json.dumps({"config": config}))[0]
    return Table(domain, {"shop": (Instance("shop", "shop-1-1", "10.0.0.5:31001"),)}, {"shop": router}, certified=certified)


def lines(config: dict, settings: SyncSettings = SETTINGS, **kwargs) -> list[str]:
    return render(table(config, **kwargs), settings).splitlines()


def test_the_router_terminates_tls_with_the_crt_list_and_refuses_unknown_names() -> None:
    assert "    bind 0.0.0.0:443 ssl crt-list /run/paz-haproxy/certs.list strict-sni alpn h2,http/1.1" in lines({})
    assert not any("ssl" in line for line in lines({}, SyncSettings(name="haproxy-sync", https_port=0)))


def test_public_names_and_custom_domains_are_routed_and_get_certificates() -> None:
    routed = table({"publicFacing": True, "domains": ["www.shop.com"]})
    assert routed.https_names() == {"shop.example.com": "shop", "www.shop.com": "shop"}
    assert "    use_backend shop if { var(txn.host) -m str shop.paz shop.example.com www.shop.com }" in render(routed, SETTINGS).splitlines()
    assert table({"publicFacing": False}).https_names() == {}


def test_hostile_domains_never_reach_the_config() -> None:
    router, problems = parse_router_settings("shop", json.dumps({"config": {"domains": [*HOSTILE, "ok.example.com"]}}))
    assert router.domains == ("ok.example.com",) and len(problems) == len(HOSTILE)
    text = render(table({"domains": [*HOSTILE, "ok.example.com"]}), SETTINGS)
    assert all(bad.split(".")[0] not in text for bad in HOSTILE[:4])


def test_plain_http_redirects_only_names_with_a_certificate_and_never_an_acme_request() -> None:
    config = {"publicFacing": True, "domains": ["www.shop.com"]}
    assert not any("redirect" in line for line in lines(config))
    redirect = [line for line in lines(config, certified=frozenset({"www.shop.com"})) if "redirect" in line]
    assert redirect == ["    http-request redirect code 308 location https://%[var(txn.host)]%[capture.req.uri] if !{ ssl_fc } "
                        "!{ path_beg /.well-known/acme-challenge/ } { var(txn.host) -m str www.shop.com }"]
    on_8443 = SyncSettings(name="haproxy-sync", https_port=8443)
    assert any(":8443%[capture.req.uri]" in line for line in lines(config, on_8443, certified=frozenset({"www.shop.com"})))
    opted_out = lines({**config, "httpsRedirect": False}, certified=frozenset({"www.shop.com"}))
    assert not any("redirect" in line for line in opted_out)


def test_acme_requests_go_to_haproxy_sync_before_any_host_rule() -> None:
    text = lines({"publicFacing": True})
    acme = text.index("    use_backend paz_acme if { path_beg /.well-known/acme-challenge/ }")
    assert acme < next(i for i, line in enumerate(text) if line.startswith("    use_backend shop"))
    assert "    server haproxy-sync 127.0.0.1:9003" in text[text.index("backend paz_acme"):]


def certificate(name: str, days: int = 90, key: ec.EllipticCurvePrivateKey | None = None) -> tuple[str, str]:
    """A self-signed certificate for ``name`` and its key, in PEM."""
    key = key or ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.timezone.utc)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    made = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(days=1))
            .not_valid_after(now + dt.timedelta(days=days))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
            .sign(key, hashes.SHA256()))
    return (made.public_bytes(serialization.Encoding.PEM).decode(),
            key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()).decode())


def test_a_brought_certificate_is_checked_against_its_name_its_key_and_its_expiry() -> None:
    chain, key = certificate("www.shop.com")
    read = read_pem("www.shop.com", chain, key, BROUGHT)
    assert read.issuer == "www.shop.com" and read.renew_at == read.not_before + (read.not_after - read.not_before) * 2 / 3
    with pytest.raises(BadCertificate, match="not www.other.com"):
        read_pem("www.other.com", chain, key, BROUGHT)
    with pytest.raises(BadCertificate, match="not the key of the certificate"):
        read_pem("www.shop.com", chain, certificate("www.shop.com")[1], BROUGHT)
    with pytest.raises(BadCertificate, match="expired"):
        read_pem("www.shop.com", *certificate("www.shop.com", days=-1), BROUGHT)
    with pytest.raises(BadCertificate, match="not PEM"):
        read_pem("www.shop.com", "-----BEGIN nothing", key, BROUGHT)


def test_the_stored_record_seals_the_key_and_reads_back(tmp_path: Path) -> None:
    write_key_file(tmp_path / "key", [new_key()])
    keyring = Keyring(tmp_path / "key")
    original = read_pem("www.shop.com", *certificate("www.shop.com"), ACME)
    record = stored(original, keyring)
    assert "PRIVATE KEY" not in record and json.loads(record)["privateKey"]["sealed"]
    assert from_stored("www.shop.com", record, keyring) == original
    with pytest.raises(BadCertificate):
        from_stored("www.shop.com", json.dumps({"certificate": original.chain}), keyring)


def test_failed_orders_back_off_from_ten_seconds_to_an_hour() -> None:
    assert [retry_after(n) for n in (1, 2, 3, 4)] == [10, 20, 40, 80]
    assert retry_after(30) == 3600
