"""The dashboard's view models and forms: what a page shows from the orchestrator's answers, and what a
typed form sends back."""

from __future__ import annotations

import datetime as dt

import pytest
from werkzeug.datastructures import MultiDict

from paz.errors import ApiError, BadRequest
from paz_web import forms, views

pytestmark = pytest.mark.unit


def unit(service: str, version: int, state: str = "running", healthy: bool = True) -> dict:
    return {"id": f"{service}-{version}-1", "service": service, "version": version, "state": state, "healthy": healthy}


SERVICES = [{"name": "web", "description": "shop", "dockerRepository": "shop/web"}, {"name": "api", "dockerRepository": "shop/api"}]


def test_a_service_row_counts_running_and_healthy_units_and_their_versions() -> None:
    rows = views.service_rows(SERVICES, [unit("web", 3), unit("web", 4, healthy=False), unit("web", 2, "exited"), unit("gone", 1)])
    assert [(r.name, r.instances, r.healthy, r.running_version, r.health) for r in rows] == [
        ("api", 0, 0, "not running", "no instance"), ("web", 2, 1, "3, 4", "1 unhealthy")]


def test_without_units_the_rows_still_list_every_service() -> None:
    assert [(row.name, row.image, row.health) for row in views.service_rows(SERVICES, None)] == [
        ("api", "shop/api", "no instance"), ("web", "shop/web", "no instance")]


def test_the_config_diff_shows_each_key_and_each_env_key_with_its_change() -> None:
    running = {"numInstances": 1, "publicFacing": False, "env": {"A": "1", "B": "2"}, "ports": [{"container": 80}]}
    upcoming = {"numInstances": 2, "publicFacing": False, "env": {"A": "1", "C": "3"}, "volume": {"/srv": "/data"}}
    assert [(row.key, row.running, row.next, row.change) for row in views.config_diff(running, upcoming)] == [
        ("env.A", '"1"', '"1"', "same"),
        ("env.B", '"2"', "", "removed"),
        ("env.C", "", '"3"', "added"),
        ("numInstances", "1", "2", "changed"),
        ("ports", '[{"container": 80}]', "", "removed"),
        ("publicFacing", "false", "false", "same"),
        ("volume", "", '{"/srv": "/data"}', "added"),
    ]


def test_before_a_first_deploy_every_key_is_added() -> None:
    assert {row.change for row in views.config_diff(None, {"numInstances": 1, "env": {"A": "x"}})} == {"added"}


@pytest.mark.parametrize(("item", "reason"), [
    ({"id": "u1", "error": {"message": "connection refused"}}, "connection refused"),
    ({"id": "u1", "error": "timed out"}, "timed out"),
    ({"id": "u1", "state": "exited"}, "its state is exited"),
    ({"id": "u1", "state": "running", "announced": False}, "it runs but is not announced in etcd"),
    ({"id": "u1", "state": "running"}, "not healthy"),
])
def test_an_unhealthy_item_is_named_with_its_reason(item: dict, reason: str) -> None:
    assert views.unhealthy("unit", [item, {"id": "ok", "healthy": True}]) == [f"unit u1: {reason}"]


def test_counts_and_failures_name_what_the_orchestrator_could_not_answer() -> None:
    assert views.counted([{"healthy": True}, {"healthy": False}]) == {"total": 2, "healthy": 1}
    assert views.counted(None) is None
    answers = {"units": ApiError("the scheduler does not answer"), "services": []}
    assert views.failures(answers) == ["units: the scheduler does not answer"]
    assert views.answered(answers["units"], []) == [] and views.answered(answers["services"]) == []


@pytest.mark.parametrize(("text", "env"), [
    ("A=1\nB=two words", {"A": "1", "B": "two words"}),
    ("\n  \nA=1\r\n", {"A": "1"}),
    ("A==b=c", {"A": "=b=c"}),
    ("A=", {"A": ""}),
    (" A =x", {"A": "x"}),
    ('Q="quoted" $(x); `y`', {"Q": '"quoted" $(x); `y`'}),
])
def test_env_lines_become_the_env_object(text: str, env: dict[str, str]) -> None:
    assert forms.parse_env(text) == env


@pytest.mark.parametrize(("text", "line"), [("A=1\nnot a pair", 2), ("=x", 1), ("  =x", 1)])
def test_a_line_that_is_not_key_value_is_named_beside_the_env_field(text: str, line: int) -> None:
    with pytest.raises(BadRequest) as refused:
        forms.parse_env(text)
    assert forms.field_errors(refused.value.details) == {"env": f"line {line} is not KEY=value"}


def test_env_round_trips_through_its_text() -> None:
    env = {"A": "1", "B": "x=y"}
    assert forms.parse_env(forms.env_text(env)) == env


@pytest.mark.parametrize(("text", "ports"), [
    ("", []), ("8080", [{"container": 8080}]), ("8080:80, 9000", [{"container": 8080, "host": 80}, {"container": 9000}]),
    ("http", [{"container": "http"}]),  # left for the directory to refuse in its own words
])
def test_ports_are_container_or_container_colon_host(text: str, ports: list[dict]) -> None:
    assert forms.parse_ports(text) == ports
    assert forms.ports_text(ports) == ", ".join(part.strip() for part in text.split(",") if part.strip())


def test_the_register_form_becomes_the_post_body() -> None:
    form = {"name": " web ", "description": "shop", "dockerRepository": "shop/web:1", "numInstances": "2", "publicFacing": "on",
            "autoDeploy": "always", "env": "A=1", "ports": "8080"}
    assert forms.new_service(form) == {"name": "web", "description": "shop", "dockerRepository": "shop/web:1", "config": {
        "numInstances": 2, "publicFacing": True, "autoDeploy": "always", "env": {"A": "1"}, "ports": [{"container": 8080}]}}


def test_the_edit_form_removes_env_keys_and_ports_no_longer_there() -> None:
    patch = forms.config_patch({"numInstances": "1", "env": "B=2"}, {"env": {"A": "1", "B": "1"}, "ports": [{"container": 80}]})
    assert patch == {"numInstances": 1, "publicFacing": False, "autoDeploy": "never", "env": {"A": None, "B": "2"}, "ports": []}


def test_the_api_details_are_one_message_per_form_field() -> None:
    details = {"name": ["is too short"], "config": {"numInstances": ["must be at least 1"], "ports": {"0": {"container": ["bad"]}}}}
    assert forms.field_errors(details) == {"name": "is too short", "numInstances": "must be at least 1", "ports": "0: container: bad"}
    assert forms.field_errors("not a mapping") == {}


def test_the_edit_form_sets_the_typed_secret_and_removes_the_ticked_ones() -> None:
    form = MultiDict([("numInstances", "1"), ("secretName", " DB_PASSWORD "), ("secretValue", " it's $(x);\n"),
                      ("removeSecret", "OLD"), ("removeSecret", "OTHER")])
    patch = forms.config_patch(form, {"env": {}, "secrets": {"OLD": {"setAt": "t"}, "OTHER": {"setAt": "t"}}})
    assert patch["secrets"] == {"OLD": None, "OTHER": None, "DB_PASSWORD": " it's $(x);\n"}
    assert "secrets" not in forms.config_patch(MultiDict([("numInstances", "1")]), {})
    with pytest.raises(BadRequest) as raised:
        forms.config_patch(MultiDict([("numInstances", "1"), ("secretValue", "typed, no name")]), {})
    assert raised.value.details == {"secrets": ["give the secret a name"]}
    assert "typed, no name" not in raised.value.message


NOW = dt.datetime(2026, 12, 5, 12, 0, tzinfo=dt.timezone.utc)


def certificate(name: str, source: str, not_after: str) -> dict:
    return {"name": name, "source": source, "issuer": "Pebble", "notBefore": "2026-09-01T00:00:00Z",
            "notAfter": not_after, "renewAt": "2026-11-01T00:00:00Z"}


def test_a_certificate_that_will_not_be_renewed_is_named_two_weeks_before_it_expires() -> None:
    listing = {"certificates": [certificate("far.test", "brought", "2027-01-01T00:00:00Z"),
                                certificate("mine.test", "brought", "2026-12-15T12:00:00Z"),
                                certificate("shop.test", "acme", "2026-12-10T12:00:00Z"),
                                certificate("old.test", "brought", "2026-12-01T00:00:00Z")],
               "failures": [{"name": "shop.test", "reason": "the CA cannot be reached", "attempts": 3,
                             "failedAt": "2026-12-05T11:00:00Z", "retryAt": "2026-12-05T11:01:20Z"},
                            {"name": "new.test", "reason": "refused: rate limited", "attempts": 1,
                             "failedAt": "2026-12-05T11:00:00Z", "retryAt": "2026-12-05T11:00:10Z"}]}
    assert views.certificate_problems(listing, NOW) == [
        "certificate mine.test expires in 10 day(s), at 2026-12-15T12:00:00Z; it was brought, so nothing renews it: paz certs add mine.test CERT KEY",
        "certificate shop.test expires in 5 day(s), at 2026-12-10T12:00:00Z and is not renewed: the CA cannot be reached",
        "certificate old.test has expired; it was brought, so nothing renews it: paz certs add old.test CERT KEY",
        "certificate for new.test not ordered (attempt 1): refused: rate limited; plain HTTP meanwhile, next try at 2026-12-05T11:00:10Z",
    ]


def test_certificates_far_from_expiry_or_not_known_name_no_problem() -> None:
    assert views.certificate_problems({"certificates": [certificate("far.test", "acme", "2027-03-01T00:00:00Z")], "failures": []}, NOW) == []
    assert views.certificate_problems(None, NOW) == []
