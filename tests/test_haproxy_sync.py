"""paz-haproxy-sync against a real etcd and the real HAProxy it starts, with real HTTP servers on
127.0.0.1 (:class:`helpers.IdServer`, each answering its own id) as the instances."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator

import pytest

from tests.support import EtcdServer, HaproxySync, KeepAliveLoad, instance, wait_until


@pytest.fixture(scope="module")
def sync(etcd: EtcdServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[HaproxySync]:
    service = HaproxySync(etcd, tmp_path_factory.mktemp("hs")).start()
    yield service
    service.stop()
    assert service.haproxy_pid() is None


def body(sync: HaproxySync, host: str) -> str | None:
    answer = sync.route(host)
    return answer.text if answer.status_code == 200 else None


def seen(sync: HaproxySync, host: str, count: int = 12) -> Counter[str]:
    return Counter(body(sync, host) for _ in range(count))


def status(sync: HaproxySync) -> dict:
    return json.loads((sync.folder / "haproxy" / "status.json").read_text())


def test_routes_by_host_name_and_answers_503_for_an_unknown_host(sync, etcd, servers, unique_name):
    first, second, suite = f"{unique_name}-a", f"{unique_name}-b", f"paz-{unique_name}"
    etcd.put(f"/paz/services/{first}/1/1", instance(servers, "a1").address)
    etcd.put(f"/paz/services/{second}/1/1", instance(servers, "b1").address)
    etcd.put(f"/paz/services/{suite}", instance(servers, "suite").address)
    wait_until(lambda: body(sync, f"{first}.paz") == "a1", 10, what="the first service routed")
    # the first change is applied at once; one that comes during that apply goes into the next
    wait_until(lambda: body(sync, f"{second}.paz") == "b1", 10, what="the second service routed")
    assert body(sync, f"{second}.PAZ:{sync.http_port}") == "b1"
    wait_until(lambda: body(sync, f"{suite}.paz") == "suite", 10, what="a suite service routed as paz-<name>.paz")
    unknown = sync.route(f"nothing-{unique_name}.paz")
    assert unknown.status_code == 503
    assert f"no service is routed for the host name 'nothing-{unique_name}.paz'" in unknown.text
    assert sync.route(f"{first}.example.com").status_code == 503  # no domain set: only .paz names


def test_round_robin_across_instances_and_versions(sync, etcd, servers, unique_name):
    for version, number in ((1, 1), (1, 2), (2, 1)):
        etcd.put(f"/paz/services/{unique_name}/{version}/{number}", instance(servers, f"v{version}-{number}").address)
    wait_until(lambda: len(seen(sync, f"{unique_name}.paz", 6)) == 3, 10, what="all three instances routed")
    counts = seen(sync, f"{unique_name}.paz", 30)
    assert counts == {"v1-1": 10, "v1-2": 10, "v2-1": 10}


def test_new_key_is_routed_and_deleted_expired_or_moved_keys_follow_without_a_reload(sync, etcd, servers, unique_name):
    host = f"{unique_name}.paz"
    etcd.put(f"/paz/services/{unique_name}/1/1", instance(servers, "one").address)
    wait_until(lambda: body(sync, host) == "one", 10, what="the first instance routed")
    master, worker = sync.haproxy_pid(), sync.worker_pid()

    etcd.put(f"/paz/services/{unique_name}/1/2", instance(servers, "two").address)
    wait_until(lambda: "two" in seen(sync, host, 4), 5, what="a new instance key routed")
    etcd.put(f"/paz/services/{unique_name}/1/3", instance(servers, "three").address, ttl=2)
    wait_until(lambda: "three" in seen(sync, host, 6), 5, what="an instance key with a TTL routed")
    assert status(sync)["lastApply"] == "runtime"

    etcd.delete(f"/paz/services/{unique_name}/1/2")
    wait_until(lambda: "two" not in seen(sync, host, 6), 5, what="a deleted instance no longer routed")
    wait_until(lambda: set(seen(sync, host, 6)) == {"one"}, 10, what="the expired instance no longer routed")
    assert set(seen(sync, host, 20)) == {"one"}
    etcd.put(f"/paz/services/{unique_name}/1/1", instance(servers, "moved").address)
    wait_until(lambda: set(seen(sync, host, 6)) == {"moved"}, 5, what="a re-addressed instance key followed")
    assert (sync.haproxy_pid(), sync.worker_pid()) == (master, worker), "server changes must not reload HAProxy"
    wait_until(lambda: f"{unique_name}-1-" not in sync.request("GET", "/config").text.replace(f"{unique_name}-1-1 ", ""), 5,
               what="the config in force saved once the changes paused")


def test_basic_auth_from_the_directory(sync, etcd, directory, servers, unique_name):
    document = {
        "name": unique_name, "dockerRepository": "paz-test/hello",
        "config": {"basicAuth": {"realm": "Private area", "users": [{"username": "ada", "password": "s3cret pass"}]}},
    }
    assert directory.request("POST", "/services", json=document).status_code == 201
    etcd.put(f"/paz/services/{unique_name}/1/1", instance(servers, "guarded").address)
    host = f"{unique_name}.paz"
    # the document (a reload) and the instance (a runtime change) may be applied one after the other:
    # the password is asked for as soon as the first is, the instance answers once the second is
    wait_until(lambda: sync.route(host, auth=("ada", "s3cret pass")).status_code == 200, 10, what="the instance routed")
    assert sync.route(host).status_code == 401
    assert 'realm="Private area"' in sync.route(host).headers["WWW-Authenticate"]
    assert sync.route(host, auth=("ada", "wrong")).status_code == 401
    assert sync.route(host, auth=("bob", "s3cret pass")).status_code == 401
    allowed = sync.route(host, auth=("ada", "s3cret pass"))
    assert (allowed.status_code, allowed.text) == (200, "guarded")
    assert "s3cret" not in sync.request("GET", "/config").text


def test_health_check_takes_a_failing_instance_out(sync, etcd, directory, servers, unique_name):
    document = {"name": unique_name, "dockerRepository": "paz-test/hello",
                "config": {"healthCheck": {"path": "/health", "intervalSeconds": 1, "timeoutSeconds": 1}}}
    assert directory.request("POST", "/services", json=document).status_code == 201
    sick = instance(servers, "sick")
    etcd.put(f"/paz/services/{unique_name}/1/1", instance(servers, "well").address)
    etcd.put(f"/paz/services/{unique_name}/1/2", sick.address)
    host = f"{unique_name}.paz"
    wait_until(lambda: set(seen(sync, host, 6)) == {"well", "sick"}, 10, what="both instances routed")
    assert "option httpchk GET /health" in sync.request("GET", "/config").text
    sick.healthy = False
    wait_until(lambda: set(seen(sync, host, 6)) == {"well"}, 10, what="the failing instance taken out by its health check")
    etcd.put(f"/paz/services/{unique_name}/2/1", instance(servers, "added").address)
    wait_until(lambda: "added" in seen(sync, host, 6), 10, what="an instance added at runtime, with its health check")
    states = {s["name"]: s["state"] for b in sync.request("GET", "/backends").json() if b["service"] == unique_name for s in b["servers"]}
    assert states[f"{unique_name}-1-2"] == "DOWN" and states[f"{unique_name}-2-1"].startswith("UP")


HOSTILE = [
    "x\nbackend evil", "x\r\nlisten evil", "x y", "x#comment", "x'quote", 'x"quote', "$(touch /tmp/pwned)", "x;y", "x\\",
]


def test_hostile_keys_and_values_never_reach_the_config(sync, etcd, servers, unique_name):
    good = instance(servers, "good").address
    for number, hostile in enumerate(HOSTILE, start=1):
        etcd.put(f"/paz/services/{unique_name}/1/{number}", f"{good}{hostile}")
        etcd.put(f"/paz/services/{unique_name}/2/{hostile}", good)
        etcd.put(f"/paz/services/{hostile}-{unique_name}/1/1", good)
    evil_doc = {"config": {
        "publicFacing": True,
        "basicAuth": {"realm": "r\"\n    server evil 6.6.6.6:1", "users": [{"username": "u\nx", "passwordHash": "$6$salt$h\n#"}]},
        "healthCheck": {"path": "/h' \nbackend evil", "intervalSeconds": 1},
    }}
    etcd.put(f"/paz/directory/services/{unique_name}-doc", json.dumps(evil_doc))
    etcd.put(f"/paz/services/{unique_name}-doc/1/1", good)
    etcd.put(f"/paz/services/{unique_name}/9/1", good)
    wait_until(lambda: body(sync, f"{unique_name}.paz") == "good", 10, what="the one good key routed")
    refused = wait_until(lambda: (a := sync.route(f"{unique_name}-doc.paz")).status_code == 503 and a.text, 10,
                         what="a service whose basic auth cannot be read refused, not exposed")
    assert "router settings in the directory cannot be read" in refused
    config = sync.request("GET", "/config").text
    for marker in ("evil", "pwned", "comment", "quote", "6.6.6.6", "#\n", "x y", "/h'"):
        assert marker not in config
    assert f"server {unique_name}-9-1 " in config and config.count(f"    server {unique_name}-") == 2
    assert "skipped an instance key" in sync.process.log()


def test_a_new_service_reloads_without_dropping_requests(sync, etcd, servers, unique_name):
    etcd.put(f"/paz/services/{unique_name}/1/1", instance(servers, "steady").address)
    wait_until(lambda: body(sync, f"{unique_name}.paz") == "steady", 10, what="the steady service routed")
    worker = sync.worker_pid()
    with KeepAliveLoad(f"http://127.0.0.1:{sync.http_port}/", f"{unique_name}.paz", expect="steady") as load:
        for number in range(5):
            etcd.put(f"/paz/services/{unique_name}-new{number}/1/1", instance(servers, f"new{number}").address)
            wait_until(lambda: body(sync, f"{unique_name}-new{number}.paz") == f"new{number}", 10, what="a new service routed")
    assert sync.worker_pid() != worker and status(sync)["lastApply"] == "reload"
    assert load.failures == []


def test_health_config_and_backends(sync, etcd, servers, unique_name):
    etcd.put(f"/paz/services/{unique_name}/3/1", instance(servers, "api").address)
    wait_until(lambda: body(sync, f"{unique_name}.paz") == "api", 10, what="the service routed")
    health = sync.request("GET", "/health")
    assert health.status_code == 200
    assert health.json()["checks"]["haproxy"]["lastAppliedAt"]
    config = sync.request("GET", "/config")
    assert config.headers["Content-Type"].startswith("text/plain") and f"backend {unique_name}\n" in config.text
    backends = {entry["service"]: entry for entry in sync.request("GET", "/backends").json()}
    assert backends[unique_name]["servers"] == [{"name": f"{unique_name}-3-1", "address": servers[-1].address, "state": "no check"}]
    assert backends[unique_name]["stats"]["requests"] >= 1
    assert "paz_unknown" not in backends
    announced = wait_until(lambda: etcd.get("/paz/services/paz-haproxy-sync"), 5, what="haproxy-sync announced")
    assert announced["value"] == f"127.0.0.1:{sync.port}"


def test_a_config_haproxy_refuses_is_never_installed(tmp_path):
    from paz_haproxy_sync.haproxy import Haproxy, HaproxyError
    from paz_haproxy_sync.settings import SyncSettings

    haproxy = Haproxy(SyncSettings(haproxy_dir=str(tmp_path)))
    haproxy.config_path.write_text("# the last good config\n")
    with pytest.raises(HaproxyError, match="refused"):
        haproxy.install("frontend x\n    bind 127.0.0.1:1\n    no-such-keyword\n")
    assert haproxy.installed() == "# the last good config\n"
    assert "no-such-keyword" in (tmp_path / "haproxy.cfg.rejected").read_text()
