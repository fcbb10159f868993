"""haproxy-sync's model: every etcd key and value is parsed into a route or refused with the rule it breaks."""

from __future__ import annotations

import json

import pytest

from paz_haproxy_sync.model import (
    DEFAULT_REALM, BasicAuth, HealthCheck, Instance, Malformed, parse_address, parse_domain, parse_host_name, parse_instance,
    parse_router_settings,
)

pytestmark = pytest.mark.unit

HASH = "$6$saltsalt$" + "a" * 86
HOSTILE = ["web\nbackend evil", "web server x 1.2.3.4:1", 'a"b', "$(reboot)", "a;b", "a#b", "a b", "a\tb", "a\\b", "a\rb", ""]


@pytest.mark.parametrize(("raw", "address"), [
    ("10.0.0.5:8080", "10.0.0.5:8080"),
    ("[::1]:80", "::1:80"),
    ("[2001:db8::1]:443", "2001:db8::1:443"),
    ("localhost:9000", "127.0.0.1:9000"),
    ("127.0.0.1:65535", "127.0.0.1:65535"),
])
def test_an_address_becomes_ip_and_port(raw: str, address: str) -> None:
    assert parse_address(raw) == address


@pytest.mark.parametrize(("raw", "problem"), [
    ("10.0.0.5", "is not host:port"),
    ("10.0.0.5:0", "outside 1-65535"),
    ("10.0.0.5:65536", "outside 1-65535"),
    ("10.0.0.5:80\nserver evil 1.2.3.4:80", "is not host:port"),
    ("10.0.0.5:80 check", "is not host:port"),
    ("10.0.0.5:80\n", "is not host:port"),
    ("$(reboot):80", "is not host:port"),
    ("a;b:80", "is not host:port"),
    ("-bad-.:80", "does not name a host"),
    ("", "is not host:port"),
])
def test_a_bad_address_is_refused_with_its_rule(raw: str, problem: str) -> None:
    with pytest.raises(Malformed, match=problem):
        parse_address(raw)


@pytest.mark.parametrize(("key", "instance"), [
    ("/paz/services/web/3/1", Instance("web", "web-3-1", "10.0.0.5:8080")),
    ("/paz/services/paz-orchestrator", Instance("paz-orchestrator", "paz-orchestrator", "10.0.0.5:8080")),
])
def test_an_announcement_is_a_server_of_its_service(key: str, instance: Instance) -> None:
    assert parse_instance(key, "10.0.0.5:8080") == instance


@pytest.mark.parametrize(("key", "problem"), [
    ("/paz/services/web/3", "is not /paz/services/<service>/<version>/<instance>"),
    ("/paz/services/web/3/1/extra", "is not /paz/services/<service>/<version>/<instance>"),
    ("/paz/services/Web/3/1", "is not a lowercase DNS label"),
    ("/paz/services/we\nb/3/1", "is not a lowercase DNS label"),
    ("/paz/services/web/3 check/1", "version and instance must be"),
    ("/paz/services/web/3/1;x", "version and instance must be"),
    ("/paz/services/web/-3/1", "version and instance must be"),
    ("/paz/services/web/3/1\n", "version and instance must be"),
    ("/paz/services/web\n/3/1", "is not a lowercase DNS label"),
])
def test_a_key_that_is_not_an_announcement_is_refused(key: str, problem: str) -> None:
    with pytest.raises(Malformed, match=problem) as refused:
        parse_instance(key, "10.0.0.5:8080")
    assert str(refused.value).startswith(f"key {key!r}")


def test_an_announcement_with_a_bad_value_names_the_value() -> None:
    with pytest.raises(Malformed, match=r"'10.0.0.5:80 backup' is not host:port"):
        parse_instance("/paz/services/web/3/1", "10.0.0.5:80 backup")


@pytest.mark.parametrize(("value", "domain"), [
    (None, None), ("", None), ("  ", None), ("Example.COM", "example.com"), ("example.com.", "example.com"),
    ("apps.example.co.uk", "apps.example.co.uk"),
])
def test_the_public_domain_is_read_lowercased(value: str | None, domain: str | None) -> None:
    assert parse_domain(value) == domain


@pytest.mark.parametrize("value", ["localhost", "example.com\nfrontend x", "exa mple.com", "example.com;x", "-a.com", "a..com",
                                   "$(x).com", "a" * 64 + ".com"])
def test_a_domain_that_is_not_a_domain_name_is_refused(value: str) -> None:
    with pytest.raises(Malformed, match="/paz/config/domain = .* is not a domain name"):
        parse_domain(value)


@pytest.mark.parametrize(("raw", "host"), [("Shop.Example.com.", "shop.example.com"), ("a", "a"), ("x-1.y", "x-1.y")])
def test_a_host_name_is_lowercased(raw: str, host: str) -> None:
    assert parse_host_name(raw) == host


@pytest.mark.parametrize("raw", HOSTILE + ["a.-b", "a" * 254])
def test_a_hostile_host_name_is_refused(raw: str) -> None:
    with pytest.raises(Malformed, match="is not a host name"):
        parse_host_name(raw)


def document(**config: object) -> str:
    return json.dumps({"name": "web", "config": config})


def test_router_settings_read_public_health_and_auth() -> None:
    raw = document(publicFacing=True, healthCheck={"path": "/health?deep=1", "intervalSeconds": 5, "timeoutSeconds": 2},
                   basicAuth={"realm": "Staff only", "users": [{"username": "ann", "passwordHash": HASH}]})
    settings, problems = parse_router_settings("web", raw)
    assert (settings.public, settings.health, settings.auth, settings.refused, problems) == (
        True, HealthCheck("/health?deep=1", 5, 2), BasicAuth("Staff only", (("ann", HASH),)), None, [])


@pytest.mark.parametrize("raw", ["", "not json", "[]", json.dumps({"config": "x"}), json.dumps({"name": "web"})])
def test_an_unreadable_document_refuses_the_service(raw: str) -> None:
    settings, problems = parse_router_settings("web", raw)
    assert settings.refused == "the directory document of 'web' is not JSON with a config object" and problems == [settings.refused]


@pytest.mark.parametrize("auth", [
    {"users": [{"username": "ann", "passwordHash": "plain"}]},
    {"users": [{"username": "ann\nuser evil", "passwordHash": HASH}]},
    {"users": [{"username": "a b", "passwordHash": HASH}]},
    {"users": [{"username": "ann\n", "passwordHash": HASH}]},
    {"users": [{"username": "ann", "passwordHash": HASH + "\n"}]},
    {"users": [{"username": "ann", "passwordHash": HASH + " insecure-password x"}]},
    {"users": []},
    {"users": "ann"},
    "ann:secret",
])
def test_a_bad_basic_auth_refuses_the_service_instead_of_exposing_it(auth: object) -> None:
    settings, problems = parse_router_settings("web", document(basicAuth=auth))
    assert settings.auth is None and settings.refused and problems == [settings.refused]


@pytest.mark.parametrize("realm", ['a"b', "a\\b", "a\nb", "Staff\n", "", 7, "x" * 65])
def test_a_realm_that_cannot_be_quoted_safely_becomes_the_default(realm: object) -> None:
    auth = {"realm": realm, "users": [{"username": "ann", "passwordHash": HASH}]}
    settings, _ = parse_router_settings("web", document(basicAuth=auth))
    assert settings.auth == BasicAuth(DEFAULT_REALM, (("ann", HASH),))


@pytest.mark.parametrize("check", [
    {"path": "/health\n    server evil 1.2.3.4:80"}, {"path": '/h"'}, {"path": "/h#x"}, {"path": "/h$x"}, {"path": "/h\\x"},
    {"path": "/h x"}, {"path": "/h\n"}, {"path": "health"}, {"path": "/h", "intervalSeconds": 0}, {"path": "/h", "timeoutSeconds": 3601},
    {"path": "/h", "intervalSeconds": True}, {"path": "/h", "intervalSeconds": "5"}, "/health",
])
def test_a_bad_health_check_is_dropped_and_said(check: object) -> None:
    settings, problems = parse_router_settings("web", document(healthCheck=check))
    assert settings.health is None and settings.refused is None
    assert problems and "routing without a health check" in problems[0]
