"""Marathon's apps (``GET /v2/apps?embed=apps.tasks``, as Marathon documents it) and the seed's settings
file, read as routes: what is routed where, and what is skipped."""

from __future__ import annotations

import json

import pytest

from paz_haproxy_sync.marathon_model import SeedFile, SeedService, parse_app, parse_apps, parse_seed, routed_name
from paz_haproxy_sync.model import Instance, Malformed

pytestmark = pytest.mark.unit

HASH = "$6$saltsalt$" + "c" * 86


def task(task_id: str = "shop_cart.1", host: str = "10.0.1.1", ports: list | None = None, state: str = "TASK_RUNNING",
         health: list | None = None) -> dict:
    found = {"id": task_id, "appId": "/shop/cart", "host": host, "ports": [31001] if ports is None else ports, "state": state,
             "startedAt": "2024-01-01T00:00:00.000Z"}
    return {**found, "healthCheckResults": health} if health is not None else found


def app(app_id: str = "/shop/cart", tasks: list | None = None, **more: object) -> dict:
    return {"id": app_id, "instances": 1, "labels": {}, "portDefinitions": [{"port": 10001, "protocol": "tcp"}],
            "tasks": [task()] if tasks is None else tasks, **more}


def test_an_app_is_routed_as_mesos_dns_names_it_with_its_running_tasks() -> None:
    routed = parse_app(app(), SeedFile())
    assert (routed.name, routed.backend, routed.hosts, routed.service_port) == ("cart-shop", "marathon_cart-shop", ("cart-shop.paz",), 10001)
    assert routed.servers == (Instance("marathon_cart-shop", "shop_cart.1", "10.0.1.1:31001"),)
    assert json.loads(routed.published()) == {"app": "/shop/cart", "hosts": ["cart-shop.paz"], "servicePort": 10001,
                                              "servers": ["10.0.1.1:31001"]}


@pytest.mark.parametrize(("app_id", "problem"), [
    ("shop/cart", "is not /<label>"), ("/Shop", "is not /<label>"), ("/shop/../x", "is not /<label>"), ("/shop.cart", "is not /<label>"),
    ("/shop\n", "is not /<label>"), ("/a;b", "is not /<label>"), (7, "is not /<label>"), ("/" + "a" * 40 + "/" + "b" * 30, "longer than a DNS label"),
])
def test_an_app_id_that_cannot_make_a_host_name_is_refused(app_id: object, problem: str) -> None:
    with pytest.raises(Malformed, match=problem):
        routed_name(app_id)


@pytest.mark.parametrize(("labels", "hosts"), [
    ({"HAPROXY_0_VHOST": "Cart.Example.com"}, ("cart-shop.paz", "cart.example.com")),
    ({"HAPROXY_0_VHOST": "a.example.com, b.example.com"}, ("cart-shop.paz", "a.example.com", "b.example.com")),
    ({"HAPROXY_0_VHOST": "cart-shop.paz"}, ("cart-shop.paz",)),
    ({"HAPROXY_0_VHOST": "ok.example.com,evil.com\nbackend x,$(x).com, a b"}, ("cart-shop.paz", "ok.example.com")),
    ({"HAPROXY_VHOST": "x.example.com", "OTHER": "y.example.com"}, ("cart-shop.paz",)),
])
def test_vhost_labels_add_host_names_and_bad_ones_are_skipped(labels: dict, hosts: tuple) -> None:
    assert parse_app(app(labels=labels), SeedFile()).hosts == hosts


@pytest.mark.parametrize(("found", "routed"), [
    (task(), True),
    (task(state="TASK_STAGING"), False),
    (task(state="TASK_KILLED"), False),
    (task(ports=[]), False),
    (task(ports=[0]), False),
    (task(host="agent 1"), False),
    (task(host="10.0.1.1\nserver evil"), False),
    (task(task_id="t 1"), False),
    (task(task_id="t\n1"), False),
    (task(task_id="t;1"), False),
])
def test_only_a_running_task_with_a_host_and_port_is_a_server(found: dict, routed: bool) -> None:
    assert bool(parse_app(app(tasks=[found]), SeedFile()).servers) is routed


@pytest.mark.parametrize(("health", "routed"), [
    ([{"alive": True}], True), ([{"alive": False}], False), ([], False), ([{"alive": "yes"}], False),
])
def test_with_health_checks_a_task_serves_once_every_check_is_alive(health: list, routed: bool) -> None:
    checked = app(tasks=[task(health=health)], healthChecks=[{"protocol": "HTTP", "path": "/health"}])
    assert bool(parse_app(checked, SeedFile()).servers) is routed


@pytest.mark.parametrize(("raw", "port"), [
    ({"portDefinitions": [{"port": 10002}]}, 10002),
    ({"portDefinitions": [], "container": {"portMappings": [{"servicePort": 10003}]}}, 10003),
    ({"portDefinitions": None, "container": {"docker": {"portMappings": [{"servicePort": 10004}]}}}, 10004),
    ({"portDefinitions": [{"port": 70000}]}, None),
    ({"portDefinitions": None}, None),
])
def test_the_service_port_is_the_first_port_definition_or_mapping(raw: dict, port: int | None) -> None:
    assert parse_app(app(**raw), SeedFile()).service_port == port


def test_a_bad_app_is_skipped_and_a_taken_service_port_goes_to_the_first_app_by_id() -> None:
    payload = {"apps": [app("/shop/cart"), app("/web", portDefinitions=[{"port": 1936}]), app("/bad id"), "not an app",
                        app("/other", portDefinitions=[{"port": 10001}])]}
    routed = parse_apps(payload, SeedFile(), reserved_ports={1936})
    assert {name: found.service_port for name, found in routed.items()} == {
        "marathon_cart-shop": None, "marathon_web": None, "marathon_other": 10001}


@pytest.mark.parametrize("payload", [{}, [], {"apps": "x"}, None])
def test_an_answer_without_an_apps_list_is_refused(payload: object) -> None:
    with pytest.raises(Malformed, match="has no apps list"):
        parse_apps(payload, SeedFile(), set())


def seed(**document: object) -> SeedFile:
    return parse_seed(json.dumps(document))


@pytest.mark.parametrize("named", ["/shop/cart", "shop/cart", "cart-shop"])
def test_the_seed_file_names_marathon_hosts_and_per_service_settings(named: str) -> None:
    found = seed(marathon_hosts=["m1:8080", "https://m2"], auth_confs={"staff": {"realm": "Staff", "users": [
        {"username": "ann", "passwordHash": HASH}]}}, services={named: {"port": 10500, "backend_port": 31002, "authConf": "staff"}})
    assert found.marathon_urls == ("http://m1:8080", "https://m2")
    settings = found.service("/shop/cart", "cart-shop")
    assert (settings.port, settings.backend_port, settings.auth.realm, settings.refused) == (10500, 31002, "Staff", None)
    assert found.service("/other", "other") == SeedService()


def test_the_seed_backend_port_picks_the_task_port_and_its_port_wins() -> None:
    found = seed(services={"cart-shop": {"port": 10500, "backend_port": 31002}})
    routed = parse_app(app(tasks=[task(ports=[31001, 31002])]), found)
    assert routed.service_port == 10500 and [s.address for s in routed.servers] == ["10.0.1.1:31002"]


@pytest.mark.parametrize(("service", "problem"), [
    ({"port": 0}, "port and backend_port must be whole numbers"),
    ({"backend_port": "80"}, "port and backend_port must be whole numbers"),
    ({"authConf": "nobody"}, "authConf 'nobody' does not name a valid entry"),
    ("x", "is not an object"),
])
def test_a_bad_seed_service_refuses_its_app(service: object, problem: str) -> None:
    with pytest.raises(Malformed, match=problem):
        parse_app(app(), seed(services={"/shop/cart": service}))


@pytest.mark.parametrize(("text", "problem"), [
    ("{", "not JSON"), ("[]", "not a JSON object"), ('{"marathon_hosts": "m1"}', "marathon_hosts is not a list"),
    ('{"marathon_hosts": ["m1:8080\\nx"]}', "marathon_hosts:"), ('{"services": []}', "must be objects"),
])
def test_a_seed_file_that_is_not_the_seed_shape_is_refused(text: str, problem: str) -> None:
    with pytest.raises(Malformed, match=problem):
        parse_seed(text)
