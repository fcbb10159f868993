"""Marathon's apps routed by haproxy-sync, and changes forwarded to Marathon by the orchestrator.

Marathon (JVM, Mesos, ZooKeeper) cannot run here: :class:`MarathonStandIn` is a stand-in of its HTTP
API (apps with tasks, the SSE event bus, event subscriptions, app updates) written from its documented
shapes, serving real HTTP on 127.0.0.1. Everything else is real: etcd, haproxy-sync and the HAProxy
it starts, the orchestrator, and the app instances (:class:`IdServer`, real HTTP servers).
"""

from __future__ import annotations

import http.client
import json
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from passlib.hash import sha512_crypt

from tests.support import EtcdServer, EventStream, HaproxySync, IdServer, KeepAliveLoad, Service, free_port, instance, wait_until
from tests.support.marathon_standin import MarathonStandIn

SILENCE_SECONDS = 3


@pytest.fixture(scope="module")
def marathon_etcd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EtcdServer]:
    """An etcd of this module's own: a Marathon URL in the session's etcd would reach every haproxy-sync."""
    server = EtcdServer(tmp_path_factory.mktemp("etcd-marathon")).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def marathon() -> Iterator[MarathonStandIn]:
    standin = MarathonStandIn().start()
    yield standin
    standin.stop()


@pytest.fixture(scope="module")
def seed_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The seed's settings file: per-service ports and an authConf naming a list of users."""
    path = tmp_path_factory.mktemp("seed") / "marathon.json"
    path.write_text(json.dumps({
        "marathon_hosts": [],
        "services": {"vault": {"authConf": "site_users"}, "pinned-shop": {"port": free_port(), "backend_port": free_port()}},
        "auth_confs": {"site_users": {"realm": "Skylr", "users": [{"username": "ada", "passwordHash": sha512_crypt.using(rounds=5000).hash("s3cret")}]}},
        "config_destination": "/etc/haproxy/haproxy.auto.cfg",
    }))
    return path


@pytest.fixture(scope="module")
def sync(marathon_etcd: EtcdServer, marathon: MarathonStandIn, seed_file: Path,
         tmp_path_factory: pytest.TempPathFactory) -> Iterator[HaproxySync]:
    port = free_port()
    service = HaproxySync(marathon_etcd, tmp_path_factory.mktemp("hs-marathon"), port=port, env={
        "PAZ_MARATHON_SETTINGS": str(seed_file),
        "PAZ_MARATHON_SILENCE_SECONDS": str(SILENCE_SECONDS),
        "PAZ_MARATHON_CALLBACK_URL": f"http://127.0.0.1:{port}/marathon/events",
    }).start()
    marathon_etcd.put("/paz/config/marathon", marathon.url)
    yield service
    service.stop()


def port_of(server: IdServer) -> int:
    return int(server.address.rsplit(":", 1)[1])


def body(sync: HaproxySync, host: str, **kwargs) -> str | None:
    answer = sync.route(host, **kwargs)
    return answer.text if answer.status_code == 200 else None


def seen(sync: HaproxySync, host: str, count: int = 8) -> Counter[str | None]:
    return Counter(body(sync, host) for _ in range(count))


def config(sync: HaproxySync) -> str:
    return sync.request("GET", "/config").text


def marathon_health(sync: HaproxySync) -> dict:
    return sync.request("GET", "/health").json()["checks"]["haproxy"]["marathon"]


def test_the_marathon_key_takes_effect_without_a_restart(sync, marathon_etcd, marathon, servers, unique_name):
    marathon.put_app(f"/{unique_name}")
    marathon.set_task(f"/{unique_name}", f"{unique_name}.1", "127.0.0.1", [port_of(instance(servers, "one"))])
    wait_until(lambda: body(sync, f"{unique_name}.paz") == "one", 10, what="the app routed once Marathon is configured")
    marathon_etcd.delete_tree("/paz/config/marathon")
    wait_until(lambda: sync.route(f"{unique_name}.paz").status_code == 503, 10, what="no Marathon route once the key is removed")
    assert "marathon_" not in config(sync)
    marathon_etcd.put("/paz/config/marathon", f"http://127.0.0.1:{free_port()}, {marathon.url}")  # the first is down
    wait_until(lambda: body(sync, f"{unique_name}.paz") == "one", 10, what="routed again, failing over to the second URL")
    assert marathon_health(sync)["readFrom"] == marathon.url


def test_an_app_is_routed_by_name_vhost_and_service_port_and_follows_its_tasks(sync, marathon, servers, unique_name):
    app_id, service_port = f"/shop/{unique_name}", free_port()
    marathon.put_app(app_id, labels={"HAPROXY_0_VHOST": f"{unique_name}.example.com"}, portDefinitions=[{"port": service_port}])
    marathon.set_task(app_id, "t1", "127.0.0.1", [port_of(instance(servers, "t1"))])
    name = f"{unique_name}-shop"
    wait_until(lambda: body(sync, f"{name}.paz") == "t1", 10, what="the app routed as <app>-<group>.paz")
    assert body(sync, f"{unique_name}.example.com") == "t1"
    assert requests.get(f"http://127.0.0.1:{service_port}/", timeout=5).text == "t1"
    worker = sync.worker_pid()

    marathon.set_task(app_id, "t2", "127.0.0.1", [port_of(instance(servers, "t2"))])
    wait_until(lambda: set(seen(sync, f"{name}.paz")) == {"t1", "t2"}, 5, what="a new task routed")
    marathon.set_task(app_id, "t1", "127.0.0.1", [port_of(servers[0])], state="TASK_KILLED")
    wait_until(lambda: set(seen(sync, f"{name}.paz")) == {"t2"}, 5, what="a killed task out of the backend")
    marathon.set_task(app_id, "t3", "127.0.0.1", [port_of(instance(servers, "t3"))], state="TASK_STAGING")
    assert set(seen(sync, f"{name}.paz")) == {"t2"}
    assert sync.worker_pid() == worker, "task changes must not reload HAProxy"

    backends = {b["service"]: b for b in sync.request("GET", "/backends").json()}
    assert backends[name]["source"] == "marathon" and backends[name]["marathonApp"] == app_id
    # a removed server waits in maintenance until its last connection ends, then goes (the next tick)
    wait_until(lambda: [s["name"] for b in sync.request("GET", "/backends").json() if b["service"] == name for s in b["servers"]] == ["t2"],
               5, what="the killed task's server deleted")


def test_a_task_failing_its_health_check_is_not_routed(sync, marathon, servers, unique_name):
    app_id = f"/{unique_name}"
    marathon.put_app(app_id, healthChecks=[{"protocol": "HTTP", "path": "/health"}])
    marathon.set_task(app_id, "well", "127.0.0.1", [port_of(instance(servers, "well"))], alive=True)
    marathon.set_task(app_id, "sick", "127.0.0.1", [port_of(instance(servers, "sick"))], alive=True)
    marathon.set_task(app_id, "unchecked", "127.0.0.1", [port_of(instance(servers, "unchecked"))])
    wait_until(lambda: set(seen(sync, f"{unique_name}.paz")) == {"well", "sick"}, 10, what="healthy tasks routed")
    marathon.set_health(app_id, "sick", False)
    wait_until(lambda: set(seen(sync, f"{unique_name}.paz")) == {"well"}, 5, what="the failing task taken out")


def test_a_silent_or_dropped_stream_is_noticed_and_resynced(sync, marathon, servers, unique_name):
    app_id, host = f"/{unique_name}", f"{unique_name}.paz"
    marathon.put_app(app_id)
    marathon.set_task(app_id, "a", "127.0.0.1", [port_of(instance(servers, "a"))])
    wait_until(lambda: body(sync, host) == "a", 10, what="the app routed")
    callbacks, marathon.callbacks = marathon.callbacks, []  # only the stream may tell, here
    try:
        opened = marathon.streams_opened
        marathon.silent = True  # the stream stays open and says nothing (marathon-lb's stale routes)
        marathon.set_task(app_id, "b", "127.0.0.1", [port_of(instance(servers, "b"))])
        wait_until(lambda: "b" in seen(sync, host), SILENCE_SECONDS + 5, what="the change seen after the silent stream was noticed")
        assert marathon.streams_opened > opened

        marathon.set_task(app_id, "c", "127.0.0.1", [port_of(instance(servers, "c"))])  # said to no one
        marathon.silent = False
        marathon.drop_streams()
        wait_until(lambda: "c" in seen(sync, host), 2, what="the change seen right after the stream dropped")
    finally:
        marathon.silent, marathon.callbacks = False, callbacks


def test_callbacks_are_registered_and_taken_only_from_marathon_hosts(sync, marathon, servers, unique_name):
    callback = f"{sync.url}/marathon/events"
    wait_until(lambda: callback in marathon.callbacks, 10, what="the callback registered with Marathon")
    app_id, host = f"/{unique_name}", f"{unique_name}.paz"
    marathon.put_app(app_id)
    marathon.silent = True
    try:
        marathon.set_task(app_id, "cb", "127.0.0.1", [port_of(instance(servers, "cb"))])  # told by callback only
        wait_until(lambda: body(sync, host) == "cb", SILENCE_SECONDS - 1, what="the change seen through the callback")
    finally:
        marathon.silent = False

    connection = http.client.HTTPConnection("127.0.0.1", sync.port, timeout=5, source_address=("127.0.0.2", 0))
    connection.request("POST", "/marathon/events", body=json.dumps({"eventType": "status_update_event"}),
                       headers={"Content-Type": "application/json"})
    answer = connection.getresponse()
    assert answer.status == 403 and "127.0.0.2" in json.loads(answer.read())["error"]["message"]
    accepted = sync.request("POST", "/marathon/events", json={"eventType": "status_update_event", "appId": app_id})
    assert accepted.status_code == 200 and accepted.json() == {"eventType": "status_update_event", "accepted": True}


def test_auth_conf_and_backend_port_from_the_settings_file(sync, marathon, seed_file, servers):
    marathon.put_app("/vault")
    marathon.set_task("/vault", "v1", "127.0.0.1", [port_of(instance(servers, "vault"))])
    wait_until(lambda: body(sync, "vault.paz", auth=("ada", "s3cret")) == "vault", 10, what="the task routed behind basic auth")
    refused = sync.route("vault.paz")
    assert refused.status_code == 401 and 'realm="Skylr"' in refused.headers["WWW-Authenticate"]
    assert sync.route("vault.paz", auth=("ada", "wrong")).status_code == 401
    assert "s3cret" not in config(sync)

    pinned = json.loads(seed_file.read_text())["services"]["pinned-shop"]
    servers.append(IdServer("pinned", port=pinned["backend_port"]).start())
    marathon.put_app("/shop/pinned", portDefinitions=[{"port": free_port()}])  # the file's port wins
    marathon.set_task("/shop/pinned", "p1", "127.0.0.1", [port_of(instance(servers, "other")), pinned["backend_port"]])
    wait_until(lambda: body(sync, "pinned-shop.paz") == "pinned", 10, what="the task port backend_port picks routed")
    assert requests.get(f"http://127.0.0.1:{pinned['port']}/", timeout=5).text == "pinned"


HOSTILE = ["x\nbackend evil", "x\r\nlisten evil", "x y", "x#comment", "x'quote", 'x"quote', "$(touch /tmp/pwned)", "x;y", "x\\"]


def test_hostile_app_ids_labels_hosts_and_ports_never_reach_the_config(sync, marathon, servers, unique_name):
    good = port_of(instance(servers, "good"))
    for number, hostile in enumerate(HOSTILE):
        marathon.put_app(f"/{unique_name}/{hostile}")
        marathon.set_task(f"/{unique_name}/{hostile}", f"id{number}", "127.0.0.1", [good])
        app_id = f"/{unique_name}-h{number}"
        marathon.put_app(app_id, labels={"HAPROXY_0_VHOST": f"ok{number}.example.com,{hostile}.example.com", f"HAPROXY_{hostile}": "x"},
                         portDefinitions=[{"port": hostile}])
        marathon.set_task(app_id, f"host{number}", f"127.0.0.1{hostile}", [good])
        marathon.set_task(app_id, f"port{number}", "127.0.0.1", [f"{good}{hostile}"])
        marathon.set_task(app_id, f"task{hostile}", "127.0.0.1", [good])
        marathon.set_task(app_id, f"fine{number}", "127.0.0.1", [good])
    wait_until(lambda: body(sync, f"ok{len(HOSTILE) - 1}.example.com") == "good", 10, what="the good parts routed")
    # servers added by the Runtime API reach the file once changes pause (0.2 s)
    wait_until(lambda: all(f"fine{number} " in config(sync) for number in range(len(HOSTILE))), 10,
               what="every good task in the config file")
    text = config(sync)
    for marker in ("evil", "pwned", "comment", "quote", "x y", "x;y", "x\\"):
        assert marker not in text
    for number in range(len(HOSTILE)):
        assert body(sync, f"{unique_name}-h{number}.paz") == "good"
        assert f"fine{number} " in text and f"host{number} " not in text and f"port{number} " not in text
    assert "skipped a Marathon app" in sync.process.log() and "skipped a Marathon task" in sync.process.log()


def test_no_failed_request_while_50_task_changes_are_applied(sync, marathon, servers, unique_name):
    app_id, host = f"/{unique_name}", f"{unique_name}.paz"
    marathon.put_app(app_id)
    marathon.set_task(app_id, "steady", "127.0.0.1", [port_of(instance(servers, "steady"))])
    wait_until(lambda: body(sync, host) == "steady", 10, what="the app routed")
    pool = [instance(servers, f"n{number}") for number in range(5)]
    with KeepAliveLoad(f"http://127.0.0.1:{sync.http_port}/", host) as load:
        for change in range(50):
            server = pool[change % len(pool)]
            killed = change // len(pool) % 2 == 1
            marathon.set_task(app_id, server.ident, "127.0.0.1", [port_of(server)], state="TASK_KILLED" if killed else "TASK_RUNNING")
            wait_until(lambda: (server.ident not in seen(sync, host, 12)) == killed, 5, what=f"task change {change} applied")
    assert load.failures == [] and load.sent > 100


@pytest.fixture(scope="module")
def orchestrator(marathon_etcd: EtcdServer, sync: HaproxySync, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    service = Service("paz-orchestrator", marathon_etcd, tmp_path_factory.mktemp("orchestrator-marathon")).start()
    yield service
    service.stop()


CHANGE = {
    "instances": 3, "cpus": 0.5, "mem": 128, "env": {"MODE": "so platform; many service"},
    "labels": {"HAPROXY_0_VHOST": "shop.example.com"}, "container": {"docker": {"image": "nginx:1.25"}},
    "portDefinitions": [{"port": 0, "protocol": "tcp", "name": "http"}],
}


def test_forwarding_passes_the_change_through_and_maps_marathons_answers(orchestrator, marathon, marathon_etcd, unique_name):
    app_id = f"/shop/{unique_name}"
    events = EventStream(f"{orchestrator.url}/events?service={unique_name}-shop")
    try:
        answer = orchestrator.request("PUT", f"/marathon/apps{app_id}", json=CHANGE)
        assert answer.status_code == 200, answer.text
        assert answer.json()["app"] == app_id and answer.json()["deploymentId"] and answer.json()["version"]
        assert marathon.received[-1] == ("PUT", app_id, {}, CHANGE)
        forwarded = events.until(lambda e: e["event"] == "marathon-change-forwarded", 1)[0]["data"]
        assert forwarded["deploymentId"] == answer.json()["deploymentId"] and forwarded["source"] == "marathon"
    finally:
        events.close()

    patched = orchestrator.request("PATCH", f"/marathon/apps{app_id}", json={"instances": 1})
    assert patched.status_code == 200 and marathon.received[-1] == ("PATCH", app_id, {}, {"instances": 1})
    marathon.locked.add(app_id)
    refused = orchestrator.request("PUT", f"/marathon/apps{app_id}", json={"instances": 2})
    assert refused.status_code == 409 and "deployment is in progress" in refused.json()["error"]["message"]
    forced = orchestrator.request("PUT", f"/marathon/apps{app_id}?force=true", json={"instances": 2})
    assert forced.status_code == 200 and marathon.received[-1][2] == {"force": "true"}
    assert orchestrator.request("PATCH", f"/marathon/apps/nothing-{unique_name}", json={"instances": 1}).status_code == 404

    before = len(marathon.received)
    for path, bad in ((app_id, {"instances": -1}), (app_id, {"cmd": "rm -rf /"}), (app_id, {}),
                      (app_id, {"container": {"docker": {"image": "x\nevil"}}}), ("/a b", {"instances": 1}),
                      ("/Shop/$(x)", {"instances": 1}), ("/a/-b", {"instances": 1})):
        assert orchestrator.request("PUT", f"/marathon/apps{requests.utils.quote(path)}", json=bad).status_code in (400, 404)
    assert len(marathon.received) == before, "invalid changes never reach Marathon"

    dead = f"http://127.0.0.1:{free_port()}"
    marathon_etcd.put("/paz/config/marathon", dead)
    try:
        down = orchestrator.request("PUT", f"/marathon/apps{app_id}", json={"instances": 1})
        assert down.status_code == 503 and dead in down.json()["error"]["message"]
        marathon_etcd.delete_tree("/paz/config/marathon")
        unset = orchestrator.request("PUT", f"/marathon/apps{app_id}", json={"instances": 1})
        assert unset.status_code == 409 and "No Marathon is configured" in unset.json()["error"]["message"]
    finally:
        marathon_etcd.put("/paz/config/marathon", marathon.url)


def test_marathon_apps_in_the_views(orchestrator, sync, marathon, servers, unique_name):
    events = EventStream(f"{orchestrator.url}/events?service={unique_name}")
    try:
        marathon.put_app(f"/{unique_name}")
        marathon.set_task(f"/{unique_name}", "v1", "127.0.0.1", [port_of(instance(servers, "viewed"))])
        routed = events.until(lambda e: e["event"] == "marathon-app-routed" and e["data"]["servers"], 1)[0]["data"]
        assert routed["app"] == f"/{unique_name}" and routed["source"] == "marathon" and routed["servers"] == [servers[-1].address]
    finally:
        events.close()
    wait_until(lambda: body(sync, f"{unique_name}.paz") == "viewed", 10, what="the app routed")
    balancers = orchestrator.request("GET", "/cluster/load-balancers").json()
    backend = next(b for lb in balancers for b in lb["backends"] if b["service"] == unique_name)
    assert backend["source"] == "marathon" and backend["marathonApp"] == f"/{unique_name}"
    stats = orchestrator.request("GET", f"/services/{unique_name}/stats")
    assert stats.status_code == 200, stats.text
    assert stats.json()["source"] == "marathon" and stats.json()["instances"] == [{"id": "v1", "host": servers[-1].address}]
    assert stats.json()["traffic"]["requests"] >= 1
