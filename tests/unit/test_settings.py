"""Settings from the environment: defaults of the design, and a bad value refused naming its variable."""

from __future__ import annotations

from pathlib import Path

import pytest

from paz.settings import Settings, SettingsError, parse_base_urls, parse_labels
from paz_haproxy_sync.settings import SyncSettings
from paz_orchestrator.settings import OrchestratorSettings
from paz_web.settings import WebSettings

pytestmark = pytest.mark.unit


def test_defaults_follow_the_design() -> None:
    settings = Settings.from_env({}, name="scheduler", port=9002)
    assert (settings.etcd_endpoints, settings.host, settings.announce_ttl, settings.service_name, settings.address) == (
        ("http://127.0.0.1:2379",), "127.0.0.1", 60, "paz-scheduler", "127.0.0.1:9002")


@pytest.mark.parametrize(("environ", "field", "value"), [
    ({"PAZ_PORT": "9001"}, "port", 9001),
    ({"PAZ_ETCD_ENDPOINTS": "http://a:2379, http://b:2379/"}, "etcd_endpoints", ("http://a:2379", "http://b:2379")),
    ({"PAZ_ANNOUNCE_HOST": "::1"}, "announce_host", "::1"),
    ({"PAZ_HOST": "box-1.lan"}, "host", "box-1.lan"),
    ({"PAZ_LOG_LEVEL": "debug"}, "log_level", "DEBUG"),
    ({"PAZ_VIEW_WAIT": "0.5"}, "view_wait", 0.5),
    ({"PAZ_PORT": ""}, "port", 0),  # empty is unset
])
def test_a_variable_sets_its_field(environ: dict[str, str], field: str, value: object) -> None:
    assert getattr(Settings.from_env(environ), field) == value


@pytest.mark.parametrize(("variable", "value", "expected"), [
    ("PAZ_PORT", "0", "a port is a whole number from 1 to 65535"),
    ("PAZ_PORT", "65536", "a port is a whole number from 1 to 65535"),
    ("PAZ_PORT", "eighty", "invalid literal"),
    ("PAZ_ANNOUNCE_TTL", "0", "expected a whole number of at least 1"),
    ("PAZ_ETCD_TIMEOUT", "-1", "expected a number above 0"),
    ("PAZ_ETCD_ENDPOINTS", "127.0.0.1:2379", "is not of the form http://host:port"),
    ("PAZ_ETCD_ENDPOINTS", "http://a", "is not of the form http://host:port"),
    ("PAZ_ETCD_ENDPOINTS", " , ", "expected one or more etcd URLs"),
    ("PAZ_HOST", "box;reboot", "expected an IP address or a host name"),
    ("PAZ_HOST", "box\n", "expected an IP address or a host name"),
    ("PAZ_HOST", "$(hostname)", "expected an IP address or a host name"),
    ("PAZ_WORKER_CLASS", "eventlet", "expected gthread or gevent or sync or granian or asgi"),
    ("PAZ_AUTH", "maybe", "expected required or off"),
    ("PAZ_LOG_LEVEL", "LOUD", "expected DEBUG, INFO, WARNING or ERROR"),
    ("PAZ_ETCD_CA", "/no/such/ca.pem", "is not a file this process can read"),
])
def test_a_bad_value_is_refused_naming_the_variable_and_what_was_expected(variable: str, value: str, expected: str) -> None:
    with pytest.raises(SettingsError) as refused:
        Settings.from_env({variable: value})
    assert str(refused.value).startswith(f"{variable}={value!r} is not usable: ") and expected in str(refused.value)


def test_a_client_certificate_needs_its_key(tmp_path: Path) -> None:
    cert = tmp_path / "client.pem"
    cert.write_text("x")
    with pytest.raises(SettingsError, match="PAZ_ETCD_CERT and PAZ_ETCD_KEY go together"):
        Settings.from_env({"PAZ_ETCD_CERT": str(cert)})


@pytest.mark.parametrize(("name", "variable"), [("paz-scheduler", "PAZ_SCHEDULER_ADDR"),
                                                ("paz-service-directory", "PAZ_SERVICE_DIRECTORY_ADDR")])
def test_an_address_can_be_pinned_per_service(name: str, variable: str) -> None:
    assert Settings().override(name, {variable: "10.0.0.1:9"}) == "10.0.0.1:9"
    assert Settings().override(name, {}) is None


@pytest.mark.parametrize(("raw", "urls"), [
    ("", ()), ("http://m1:8080, https://m2/", ("http://m1:8080", "https://m2")), ("http://10.0.0.1:8080", ("http://10.0.0.1:8080",)),
])
def test_marathon_urls_are_plain_base_urls(raw: str, urls: tuple[str, ...]) -> None:
    assert parse_base_urls(raw) == urls


@pytest.mark.parametrize(("raw", "problem"), [
    ("m1:8080", "is not of the form http://host"), ("ftp://m1", "is not of the form"), ("http://m1:99999", "outside 1-65535"),
    ("http://user:pw@m1", "must be a plain base URL"), ("http://m1/?x=1", "must be a plain base URL"),
    ("http://m_1", "is not of the form"), ("http://m1/a b", "must be a plain base URL"),
])
def test_a_marathon_url_that_is_not_a_base_url_is_refused(raw: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        parse_base_urls(raw)


@pytest.mark.parametrize(("raw", "pairs"), [
    ("", ()), ("team=shop, tier=web", (("team", "shop"), ("tier", "web"))), ("a.b/c=x=y", (("a.b/c", "x=y"),)),
])
def test_instance_labels_are_key_value_pairs(raw: str, pairs: tuple) -> None:
    assert parse_labels(raw) == pairs


@pytest.mark.parametrize(("raw", "problem"), [
    ("team", "is not key=value"), ("=x", "is not key=value"), ("te am=x", "is not key=value"), ("team\n=x", "is not key=value"),
    ("team=a\nb", "is not key=value"), ("paz.service=evil", "is set by the scheduler itself"),
    ("paz.version=1", "is set by the scheduler itself"),
])
def test_a_label_that_is_not_key_value_or_is_the_scheduler_own_is_refused(raw: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        parse_labels(raw)


def test_haproxy_sync_settings_place_its_files_in_its_folder() -> None:
    settings = SyncSettings.from_env({"PAZ_HAPROXY_DIR": "/run/paz", "PAZ_HTTP_PORT": "80"})
    assert (str(settings.config_path), str(settings.master_socket), settings.http_port, settings.stats_port) == (
        "/run/paz/haproxy.cfg", "/run/paz/master.sock", 80, 1936)


@pytest.mark.parametrize(("environ", "problem"), [
    ({"PAZ_HAPROXY_DIR": "/" + "d" * 120}, "is too long for Unix sockets"),
    ({"PAZ_MARATHON_RESYNC_SECONDS": "61"}, "at most 60"),
    ({"PAZ_MARATHON_CALLBACK_URL": "http://x/cb\n"}, "expected http://host:port"),
    ({"PAZ_HAPROXY_KEEP": "perhaps"}, "expected true or false"),
    ({"PAZ_ROUTER_BIND": "0.0.0.0;x"}, "expected an IP address or a host name"),
])
def test_haproxy_sync_refuses_settings_it_cannot_use(environ: dict[str, str], problem: str) -> None:
    with pytest.raises(SettingsError, match=problem):
        SyncSettings.from_env(environ)


@pytest.mark.parametrize(("environ", "limit"), [({}, 4096 - 64), ({"PAZ_CONNECTIONS": "10"}, 1), ({"PAZ_EVENTS_MAX_CLIENTS": "5"}, 5)])
def test_the_orchestrator_keeps_connections_for_requests_beside_event_streams(environ: dict[str, str], limit: int) -> None:
    assert OrchestratorSettings.from_env(environ).stream_limit == limit


@pytest.mark.parametrize(("environ", "followers"), [
    ({}, 256),  # gevent: a greenlet each, not a thread
    ({"PAZ_WORKER_CLASS": "gthread", "PAZ_THREADS": "8"}, 4),
    ({"PAZ_LOGS_MAX_FOLLOWERS": "16"}, 16),
])
def test_the_scheduler_follows_as_many_logs_as_its_server_can_hold(environ: dict[str, str], followers: int) -> None:
    from paz_scheduler.app import SchedulerSettings

    assert SchedulerSettings.from_env(environ, name="scheduler", port=9002).logs_max_followers == followers


@pytest.mark.parametrize(("variable", "raw", "problem"), [
    ("PAZ_WEB_SECRET", "short", "a secret of at least 16 characters"),
    ("PAZ_WEB_CACHE_SECONDS", "-1", "expected a number of seconds, 0 or more"),
])
def test_the_dashboard_refuses_a_short_secret_and_negative_seconds(variable: str, raw: str, problem: str) -> None:
    with pytest.raises(SettingsError, match=problem):
        WebSettings.from_env({variable: raw})


def test_the_dashboard_secret_from_its_variable_wins() -> None:
    assert WebSettings.from_env({"PAZ_WEB_SECRET": "s" * 16}).session_secret() == "s" * 16
