"""The suite's name server, in-process: which answer each name gets, and what reaches haproxy.cfg."""

from __future__ import annotations

import pytest
from dnslib import QTYPE, RCODE, DNSLabel, DNSRecord

from paz.settings import SettingsError
from paz_haproxy_sync.dns import answer, parse_nameservers, service_of
from paz_haproxy_sync.model import Table
from paz_haproxy_sync.render import render
from paz_haproxy_sync.settings import SyncSettings

pytestmark = pytest.mark.unit

ROUTER = "172.17.0.1"
SERVICES = frozenset({"db-api", "web"})
HOSTILE = ["a\nb", 'a"b', "a$(id)", "a;b", "a b", "a`id`", "a/b", "a\\b"]


def ask(name: str | DNSLabel, qtype: str = "A") -> DNSRecord | None:
    return answer(DNSRecord.question(name, qtype), SERVICES, ROUTER)


def test_a_service_name_is_the_router_address() -> None:
    reply = ask("db-api.paz")
    assert reply.header.rcode == RCODE.NOERROR and reply.header.aa
    assert [(str(rr.rname), QTYPE[rr.rtype], str(rr.rdata)) for rr in reply.rr] == [("db-api.paz.", "A", ROUTER)]


def test_names_are_case_insensitive_and_may_end_in_a_dot() -> None:
    assert str(ask("WEB.Paz.").rr[0].rdata) == ROUTER


def test_a_name_that_is_no_service_is_nxdomain() -> None:
    for name in ("other.paz", "paz", "a.web.paz", "ab.paz"):
        reply = ask(name)
        assert reply.header.rcode == RCODE.NXDOMAIN and not reply.rr, name


def test_other_record_types_of_a_service_are_empty_not_missing() -> None:
    reply = ask("web.paz", "AAAA")
    assert reply.header.rcode == RCODE.NOERROR and not reply.rr


def test_names_outside_paz_are_left_to_forward() -> None:
    assert ask("example.com") is None
    assert ask("web.paz.example.com") is None


@pytest.mark.parametrize("label", HOSTILE)
def test_hostile_labels_are_nxdomain_never_an_answer(label: str) -> None:
    name = DNSLabel([label.encode(), b"paz"])
    assert service_of(str(name)) == ""
    reply = answer(DNSRecord.question(name), SERVICES | {label}, ROUTER)
    assert reply.header.rcode == RCODE.NXDOMAIN and not reply.rr


def test_resolv_conf_nameservers_in_order_skipping_what_is_no_address() -> None:
    text = "# comment\nsearch example.com\nnameserver 10.0.0.2\nnameserver $(id)\nnameserver ::1\noptions ndots:1\n"
    assert parse_nameservers(text) == ("10.0.0.2", "::1")


@pytest.mark.parametrize("value", ["172.17.0.1\nbind 0.0.0.0:22", '172.17.0.1"', "$(id)", "172.17.0.1;", "router.paz"])
def test_a_hostile_router_address_is_refused_before_anything_starts(value: str) -> None:
    with pytest.raises(SettingsError, match="PAZ_ROUTER_ADDRESS"):
        SyncSettings.from_env({"PAZ_ROUTER_ADDRESS": value})


def test_upstreams_take_an_optional_port() -> None:
    settings = SyncSettings.from_env({"PAZ_DNS_UPSTREAM": "10.0.0.2, 127.0.0.1:5353"})
    assert settings.dns_upstream == (("10.0.0.2", 53), ("127.0.0.1", 5353))
    with pytest.raises(SettingsError, match="PAZ_DNS_UPSTREAM"):
        SyncSettings.from_env({"PAZ_DNS_UPSTREAM": "10.0.0.2;rm"})


def binds(**settings: str | int) -> list[str]:
    """The plain HTTP binds of the router (TLS is tests/unit/test_https_model.py's)."""
    text = render(Table(None, {}), SyncSettings(name="haproxy-sync", haproxy_dir="/run/paz-haproxy", https_port=0, **settings))
    frontend = text.split("frontend paz_router\n")[1].split("\n\n")[0]
    return [line.strip() for line in frontend.splitlines() if line.strip().startswith("bind")]


def test_the_router_also_listens_on_port_80_of_the_router_address() -> None:
    assert binds() == ["bind 127.0.0.1:8080"]
    assert binds(router_address=ROUTER) == ["bind 127.0.0.1:8080", f"bind {ROUTER}:80"]
    assert binds(router_address=ROUTER, dns_bind="0.0.0.0") == ["bind 127.0.0.1:8080", "bind 0.0.0.0:80"]
    assert binds(router_address=ROUTER, router_bind="0.0.0.0", http_port=80) == ["bind 0.0.0.0:80"]
