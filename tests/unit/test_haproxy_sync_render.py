"""haproxy.cfg as haproxy-sync writes it from a table of routes: the lines a person finds in the file."""

from __future__ import annotations

import json

import pytest

from paz_haproxy_sync.marathon_model import SeedFile, parse_app
from paz_haproxy_sync.model import RouterSettings, Table, parse_instance, parse_router_settings
from paz_haproxy_sync.render import render, server_line
from paz_haproxy_sync.settings import SyncSettings

pytestmark = pytest.mark.unit

SETTINGS = SyncSettings(name="haproxy-sync", haproxy_dir="/run/paz-haproxy", router_bind="0.0.0.0", http_port=80, stats_port=1936)
HASH = "$6$saltsalt$" + "b" * 86


def config(services: dict[str, list[tuple[str, str]]], domain: str | None = None, documents: dict[str, dict] | None = None,
           marathon: dict | None = None, servers: bool = True) -> list[str]:
    """The rendered lines for announcements ``{service: [(key, value)]}`` and directory documents' configs."""
    table = Table(
        domain,
        {name: tuple(parse_instance(key, value) for key, value in found) for name, found in services.items()},
        {name: parse_router_settings(name, json.dumps({"config": doc}))[0] for name, doc in (documents or {}).items()},
        marathon or {},
    )
    return render(table, SETTINGS, servers).splitlines()


def backend(lines: list[str], name: str) -> list[str]:
    start = lines.index(f"backend {name}")
    return lines[start:lines.index("", start)]


WEB = {"web": [("/paz/services/web/2/1", "10.0.0.5:31001"), ("/paz/services/web/2/2", "10.0.0.6:31002")]}


def test_a_service_is_routed_by_its_paz_name_to_each_instance() -> None:
    lines = config(WEB)
    assert "    use_backend web if { var(txn.host) -m str web.paz }" in lines
    assert backend(lines, "web") == ["backend web", "    balance roundrobin", "    server web-2-1 10.0.0.5:31001",
                                     "    server web-2-2 10.0.0.6:31002"]


def test_the_router_listens_where_settings_say() -> None:
    lines = config({})
    assert "    bind 0.0.0.0:80" in lines and "    bind 0.0.0.0:1936" in lines
    assert not [line for line in lines if "pidfile" in line], "haproxy-sync writes the pid file, not HAProxy"
    assert "    stats socket /run/paz-haproxy/stats.sock mode 600 level admin expose-fd listeners" in lines
    assert "    default_backend paz_unknown" in lines


@pytest.mark.parametrize(("public", "hosts"), [(True, "web.paz web.example.com"), (False, "web.paz")])
def test_only_a_public_facing_service_gets_the_domain(public: bool, hosts: str) -> None:
    lines = config(WEB, "example.com", {"web": {"publicFacing": public}})
    assert f"    use_backend web if {{ var(txn.host) -m str {hosts} }}" in lines


def test_the_suite_own_services_never_get_the_public_domain() -> None:
    lines = config({"paz-web": [("/paz/services/paz-web", "127.0.0.1:9004")]}, "example.com", {"paz-web": {"publicFacing": True}})
    assert "    use_backend paz-web if { var(txn.host) -m str paz-web.paz }" in lines
    assert "    server paz-web 127.0.0.1:9004" in lines


def test_a_health_check_adds_httpchk_and_checks_each_server() -> None:
    lines = config(WEB, documents={"web": {"healthCheck": {"path": "/health", "intervalSeconds": 3, "timeoutSeconds": 2}}})
    assert backend(lines, "web")[2:] == ["    option httpchk GET /health", "    timeout check 2s",
                                         "    server web-2-1 10.0.0.5:31001 check inter 3000 rise 2 fall 2",
                                         "    server web-2-2 10.0.0.6:31002 check inter 3000 rise 2 fall 2"]


def test_basic_auth_gets_a_userlist_and_an_auth_rule() -> None:
    auth = {"realm": "Staff", "users": [{"username": "ann", "passwordHash": HASH}]}
    lines = config(WEB, documents={"web": {"basicAuth": auth}})
    at = lines.index("userlist users_web")
    assert lines[at + 1] == f"    user ann password {HASH}"
    assert '    http-request auth realm "Staff" unless { http_auth(users_web) }' in backend(lines, "web")


def test_a_service_with_unreadable_auth_answers_503_rather_than_serving_unprotected() -> None:
    lines = config(WEB, documents={"web": {"basicAuth": {"users": [{"username": "ann", "passwordHash": "secret"}]}}})
    rules = [line for line in backend(lines, "web") if line.startswith("    http-request")]
    assert len(rules) == 1 and rules[0].startswith("    http-request return status 503")
    assert "users_web" not in "\n".join(lines)


def test_without_servers_only_the_structure_is_rendered() -> None:
    lines = config(WEB, servers=False)
    assert backend(lines, "web") == ["backend web", "    balance roundrobin"]


def test_a_service_with_no_instance_still_has_a_backend() -> None:
    lines = config({"web": []})
    assert backend(lines, "web") == ["backend web", "    balance roundrobin"]


def test_backends_come_in_name_order_so_the_file_is_stable() -> None:
    lines = config({"zeta": [], "alpha": [], "mid": []})
    assert [line for line in lines if line.startswith("backend ") and line not in ("backend paz_unknown", "backend paz_acme")] == [
        "backend alpha", "backend mid", "backend zeta"]


def marathon_app(app_id: str, labels: dict[str, str] | None = None, port: int | None = None):
    raw = {"id": app_id, "labels": labels or {}, "portDefinitions": [{"port": port}] if port else [],
           "tasks": [{"id": "t.1", "host": "10.0.1.1", "ports": [31000], "state": "TASK_RUNNING"}]}
    return parse_app(raw, SeedFile())


def test_a_marathon_app_routes_on_its_vhosts_and_its_service_port() -> None:
    app = marathon_app("/shop/cart", {"HAPROXY_0_VHOST": "cart.example.com"}, port=10001)
    lines = config({app.backend: []}, marathon={app.backend: app})
    assert "    use_backend marathon_cart-shop if { var(txn.host) -m str cart-shop.paz cart.example.com }" in lines
    at = lines.index("frontend port_10001")
    assert lines[at + 1:at + 3] == ["    bind 0.0.0.0:10001", "    default_backend marathon_cart-shop"]


def test_the_suite_services_win_a_host_name_over_marathon_apps() -> None:
    app = marathon_app("/web", {"HAPROXY_0_VHOST": "web.paz"})
    lines = config({**WEB, app.backend: []}, marathon={app.backend: app})
    uses = [line for line in lines if line.startswith("    use_backend") and "paz_acme" not in line]
    assert uses[0].startswith("    use_backend web ") and uses[1].startswith("    use_backend marathon_web ")


@pytest.mark.parametrize(("health", "line"), [
    (None, "web-2-1 10.0.0.5:31001"),
    ({"path": "/h", "intervalSeconds": 1}, "web-2-1 10.0.0.5:31001 check inter 1000 rise 2 fall 2"),
])
def test_a_server_line_is_the_same_in_the_file_and_on_the_runtime_api(health: dict | None, line: str) -> None:
    router = parse_router_settings("web", json.dumps({"config": {"healthCheck": health}}))[0] if health else RouterSettings()
    assert server_line("web-2-1", "10.0.0.5:31001", router) == line


@pytest.mark.parametrize("hostile", ["x\n    server evil 6.6.6.6:80", 'x" deny', "x$(reboot)", "x #y", "x\\", "x\r\nuserlist u", "x\ty"])
def test_no_directory_value_adds_a_line_or_a_word_to_the_config(hostile: str) -> None:
    users = [{"username": "ann", "passwordHash": HASH}]
    document = {"publicFacing": True, "healthCheck": {"path": "/" + hostile}, "basicAuth": {"realm": hostile, "users": users}}
    lines = config(WEB, "example.com", {"web": document})
    assert lines == config(WEB, "example.com", {"web": {"publicFacing": True, "basicAuth": {"users": users}}})
    assert '    http-request auth realm "paz" unless { http_auth(users_web) }' in lines


def test_a_health_path_with_reserved_url_characters_stays_one_word() -> None:
    lines = config(WEB, documents={"web": {"healthCheck": {"path": "/h;v=1&x=(a)*"}}})
    assert "    option httpchk GET /h;v=1&x=(a)*" in lines
