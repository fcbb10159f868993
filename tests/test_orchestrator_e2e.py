"""The seed's walkthrough (000_339a63fe56d49014.txt) end to end, through real processes started
here: etcd, the directory, the scheduler (docker driver, a real Docker Engine), haproxy-sync with its
HAProxy, and the orchestrator; the images are the tests' busybox image tagged with the seed's names.

Deviations from the text, each forced by running on a test machine: names get a unique suffix
(the Docker Engine may be shared with other test runs), the contrived service's host port is a
free port instead of 80, and fleet's journal is replaced by waiting for the deploy hook's answer.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from tests.support import (
    DockerEngine, EtcdServer, EventStream, SuiteParts, build_test_image, etcdctl_get,
    free_port, running, wait_until,
)


@pytest.fixture(scope="module")
def images(docker_engine: DockerEngine, test_image: str) -> dict[str, str]:
    """The seed's images: demo-api serves $MESSAGE on 8000; contrived-service-1 says "Hello World 1" on 9000."""
    docker_engine.client().images.get(test_image).tag("lukebond/demo-api", "latest")
    contrived = build_test_image(
        docker_engine, "lukebond/contrived-service-1:0.0.1",
        extra_changes=["ENV PORT=9000", 'ENV MESSAGE="Hello World 1"', "EXPOSE 9000"],
    )
    broken = build_test_image(docker_engine, "lukebond/demo-api:broken", extra_changes=['CMD ["/bin/sh", "-c", "echo broken; exit 1"]'])
    return {"demo": "lukebond/demo-api", "contrived": contrived, "broken": broken}


@pytest.fixture(scope="module")
def suite(tmp_path_factory: pytest.TempPathFactory, docker_engine: DockerEngine, images: dict[str, str]) -> Iterator[SuiteParts]:
    """The whole suite on its own etcd, so etcdctl finds exactly these processes."""
    made = SuiteParts.make(tmp_path_factory.mktemp("e2e"), docker_engine, orchestrator_env={"PAZ_EVENTS_KEEPALIVE": "1"})
    with running(made.etcd, *made.services):
        yield made


def containers(docker_engine: DockerEngine, name: str) -> list:
    return docker_engine.client().containers.list(all=True, filters={"label": f"paz.service={name}"})


def instance_keys(etcd: EtcdServer, name: str) -> list[str]:
    return [f"/paz/services/{name}/{path}" for path in etcd.values_below(f"/paz/services/{name}")]


def events_until(stream: EventStream, services: tuple[str, ...], last: tuple[str, str], timeout: float = 30) -> list[dict[str, Any]]:
    """The stream's events about ``services``, up to and including the ``(type, service)`` event ``last``."""
    found: list[dict[str, Any]] = []
    for _ in range(100):
        found += stream.until(lambda e: e["data"].get("service") in services, 1, timeout=timeout)
        if (found[-1]["event"], found[-1]["data"].get("service")) == last:
            return found
    raise AssertionError(f"no {last} among {[(e['event'], e['data'].get('service')) for e in found]}")


def positions(events: list[dict[str, Any]], service: str) -> dict[str, int]:
    """Index in ``events`` of the first event of each type about ``service``."""
    found: dict[str, int] = {}
    for i, event in enumerate(events):
        if event["data"].get("service") == service:
            kind = event["event"] if event["event"] != "journal" else "journal:" + event["data"]["entry"]["type"]
            found.setdefault(kind, i)
    return found


def test_seed_walkthrough_and_its_events_in_order(suite: SuiteParts, docker_engine: DockerEngine, images: dict[str, str]) -> None:
    suffix = uuid.uuid4().hex[:6]
    demo, contrived = f"demo-api-{suffix}", f"contrived-service-1-{suffix}"
    orchestrator = suite.orchestrator
    stream = EventStream(f"{orchestrator.url}/events")
    try:
        # $ curl -i -XPOST -H "Content-Type: application/json" -d "$SVCDOC" $ORCHESTRATOR_URL/services
        svcdoc = json.dumps({"name": demo, "description": "Very simple HTTP Hello World server",
                             "dockerRepository": "lukebond/demo-api", "loadBalanced": False, "publicFacing": False})
        created = requests.post(f"{orchestrator.url}/services", data=svcdoc, headers={"Content-Type": "application/json"}, timeout=10)
        assert created.status_code == 201, created.text
        # $ curl -i $ORCHESTRATOR_URL/services
        assert demo in [s["name"] for s in orchestrator.request("GET", "/services").json()]
        # $ curl -i -XPATCH ... -d '{"env": {"MESSAGE": "so platform; many service; wow"}}' .../config/next
        patched = orchestrator.request("PATCH", f"/services/{demo}/config/next", json={"env": {"MESSAGE": "so platform; many service; wow"}})
        assert patched.status_code == 200, patched.text
        # $ curl -i -XPOST -H "Content-Type: application/json" -d "$DEPLOY_DOC" $SCHEDULER_URL/hooks/deploy
        deploy_doc = {"serviceName": demo, "dockerRepository": "lukebond/demo-api", "pushedAt": int(time.time())}
        deployed = suite.scheduler.request("POST", "/hooks/deploy", json=deploy_doc, timeout=60)
        assert deployed.status_code in (200, 201), deployed.text

        last = orchestrator.request("GET", f"/services/{demo}/config/last").json()
        assert last["version"] == 1 and last["status"] == "running"
        assert last["config"]["env"] == {"MESSAGE": "so platform; many service; wow"}
        assert [v["version"] for v in orchestrator.request("GET", f"/services/{demo}/config/history").json()] == [1]
        assert orchestrator.request("GET", f"/services/{demo}/config/history/1").json()["dockerRepository"] == "lukebond/demo-api"
        [unit] = orchestrator.request("GET", f"/services/{demo}/units").json()
        assert unit["id"] == f"{demo}-1-1" and unit["state"] == "running" and unit["announced"] is True
        assert requests.get(f"http://{unit['host']}:{unit['port']}/cgi-bin/index", timeout=3).text == "so platform; many service; wow"
        assert orchestrator.request("GET", f"/cluster/units/{unit['id']}/health").json() == {"id": unit["id"], "healthy": True}
        assert orchestrator.request("GET", f"/services/{demo}/units/{unit['id']}/health").status_code == 200
        measured = orchestrator.request("GET", f"/services/{demo}/units/{unit['id']}").json()
        assert measured["stats"]["memoryBytes"] > 0 and measured["stats"]["cpuPercent"] is not None

        # beyond the seed: a version that exits at once fails, and v1 keeps serving
        failed = suite.scheduler.request("POST", "/hooks/deploy", json={"serviceName": demo, "dockerRepository": images["broken"]}, timeout=60)
        assert failed.status_code == 422, failed.text
        history = orchestrator.request("GET", f"/services/{demo}/config/history").json()
        assert [(v["version"], v["status"]) for v in history] == [(2, "failed"), (1, "running")]

        # $ etcdctl --peers=... get /paz/services/paz-service-directory   (and paz-scheduler)
        directory_at = etcdctl_get(suite.etcd.url, "/paz/services/paz-service-directory")
        scheduler_at = etcdctl_get(suite.etcd.url, "/paz/services/paz-scheduler")
        assert directory_at == f"127.0.0.1:{suite.directory.port}" and scheduler_at == f"127.0.0.1:{suite.scheduler.port}"

        # $ curl -XPOST -H "Content-Type: application/json" -d @contrived-service-1.json <directory>/services
        host_port = free_port()
        contrived_json = {"name": contrived, "description": "Test service", "dockerImage": "lukebond/contrived-service-1",
                          "ports": [{"container": 9000, "host": host_port}], "autoDeploy": "always", "numInstances": 1,
                          "conflictsWith": "contrived-service-*"}
        assert requests.post(f"http://{directory_at}/services", json=contrived_json, timeout=10).status_code == 201
        # $ curl -XPOST ... -d '{"serviceName": ..., "dockerRepository": "lukebond/contrived-service-1:0.0.1", "pushedAt": 0}' <scheduler>/hooks/deploy
        hook = {"serviceName": contrived, "dockerRepository": "lukebond/contrived-service-1:0.0.1", "pushedAt": 0}
        answer = requests.post(f"http://{scheduler_at}/hooks/deploy", json=hook, timeout=60)
        assert answer.status_code in (200, 201), answer.text
        # "Hit up port 80 on the box": here its fixed host port, and HAProxy by host name
        assert requests.get(f"http://127.0.0.1:{host_port}/cgi-bin/index", timeout=3).text == "Hello World 1"

        def routed_backend() -> dict | None:  # seen in HAProxy's state, so no request counts against the service yet
            [balancer] = orchestrator.request("GET", "/cluster/load-balancers").json()
            backend = next((b for b in balancer["backends"] if b["service"] == contrived), None)
            live = backend and backend["servers"] and all(s["state"] not in ("DOWN", "MAINT") for s in backend["servers"])
            return backend if live else None

        backend = wait_until(routed_backend, 15, what=f"HAProxy routing {contrived}.paz")
        assert [s["address"] for s in backend["servers"]] == [f"127.0.0.1:{host_port}"]
        assert suite.haproxy_sync.route(f"{contrived}.paz", "/cgi-bin/index").text == "Hello World 1"

        cluster = orchestrator.request("GET", "/cluster").json()
        assert cluster["services"] == 2 and cluster["units"] == {"total": 2, "healthy": 2}
        assert cluster["hosts"]["total"] == 1 and cluster["hosts"]["healthy"] == 1
        assert cluster["loadBalancers"] == {"total": 1, "healthy": 1} and cluster["problems"] == []
        [balancer] = orchestrator.request("GET", "/cluster/load-balancers").json()
        assert orchestrator.request("GET", f"/cluster/load-balancers/{balancer['id']}/health").status_code == 200
        stats = orchestrator.request("GET", f"/services/{contrived}/stats").json()
        assert stats["traffic"]["requests"] == 1 and stats["traffic"]["errorRate"] == 0
        assert stats["totals"]["instancesRunning"] == 1 and stats["instances"][0]["memoryBytes"] > 0
        [host] = orchestrator.request("GET", "/cluster/hosts").json()
        assert orchestrator.request("GET", f"/cluster/hosts/{host['id']}/health").status_code == 200
        assert orchestrator.request("GET", f"/cluster/hosts/{host['id']}").json()["stats"]["unitsRunning"] == 2

        # a container stopped behind the suite's back: its unit is no longer healthy, and says why
        docker_engine.client().containers.get(f"{demo}-1-1").stop(timeout=1)
        sick = wait_until(lambda: (r := orchestrator.request("GET", f"/cluster/units/{demo}-1-1/health")).status_code == 503 and r.json(),
                          15, what="the stopped unit to be unhealthy")
        assert sick["healthy"] is False and "exited" in sick["reason"]

        # $ curl -i -XDELETE $ORCHESTRATOR_URL/services/<name>: its containers and keys go with it
        for name in (contrived, demo):
            deleted = orchestrator.request("DELETE", f"/services/{name}", timeout=60)
            assert deleted.status_code == 200, deleted.text
            assert deleted.json()["stopped"] == [f"{name}-1-1"]
            assert orchestrator.request("GET", f"/services/{name}").status_code == 404
            assert containers(docker_engine, name) == []
            assert instance_keys(suite.etcd, name) == []
        wait_until(lambda: suite.haproxy_sync.route(f"{contrived}.paz", "/cgi-bin/index").status_code == 503, 15,
                   what="HAProxy to stop routing")
        assert orchestrator.request("GET", "/cluster/units").json() == []

        events = events_until(stream, (demo, contrived), ("service-deleted", demo))
    finally:
        stream.close()

    demo_at, contrived_at = positions(events, demo), positions(events, contrived)
    in_order = [
        demo_at["service-created"], demo_at["config-changed"], demo_at["deploy-started"], demo_at["deploy-finished"],
        contrived_at["service-created"], contrived_at["deploy-started"], contrived_at["deploy-finished"],
        demo_at["instance-down"],  # its container was stopped behind the suite's back
        contrived_at["instance-down"], contrived_at["service-deleted"], demo_at["service-deleted"],
    ]
    assert in_order == sorted(in_order), [(e["event"], e["data"].get("service")) for e in events]
    assert demo_at["deploy-started"] < demo_at["instance-up"] < contrived_at["service-created"]
    assert demo_at["deploy-finished"] < demo_at["deploy-failed"] < contrived_at["service-created"]
    assert [(e["data"]["version"], e["event"], e["data"].get("step")) for e in events
            if e["event"].startswith("deploy-") and e["data"]["service"] == demo] == [
        (1, "deploy-started", None), (1, "deploy-progress", "image-pulled"), (1, "deploy-progress", "instance-started"),
        (1, "deploy-finished", None), (1, "deploy-progress", "old-stopped"),
        (2, "deploy-started", None), (2, "deploy-progress", "image-pulled"), (2, "deploy-progress", "instance-started"),
        (2, "deploy-failed", None)]
    assert "was not deployed" in events[demo_at["deploy-failed"]]["data"]["message"]
    assert contrived_at["deploy-started"] < contrived_at["instance-up"] < contrived_at["instance-down"]
    assert demo_at["journal:deploy"] < contrived_at["service-created"] and contrived_at["journal:stop"] < contrived_at["service-deleted"]
    assert {e["data"]["unit"] for e in events if e["event"] == "instance-up"} == {f"{demo}-1-1", f"{contrived}-1-1"}

    replay = EventStream(f"{orchestrator.url}/events", last_event_id=int(events[0]["id"]) - 1)
    try:
        again = events_until(replay, (demo, contrived), ("service-deleted", demo))
    finally:
        replay.close()
    assert [(e["id"], e["event"]) for e in again] == [(e["id"], e["event"]) for e in events]


def test_a_deploy_that_prefers_not_to_wait_answers_at_once_where_to_follow_it(suite: SuiteParts, images: dict[str, str]) -> None:
    """``Prefer: respond-async`` goes through the orchestrator to the scheduler: 202 within a second,
    with a Location on the orchestrator itself whose version then ends running."""
    name = f"async-{uuid.uuid4().hex[:8]}"
    assert suite.orchestrator.request("POST", "/services", json={"name": name, "dockerRepository": images["demo"]}).status_code == 201
    asked = time.monotonic()
    answer = suite.orchestrator.request("POST", f"/services/{name}/deploy", json={}, headers={"Prefer": "respond-async"})
    assert answer.status_code == 202, answer.text
    assert time.monotonic() - asked < 1.0
    assert answer.headers["Preference-Applied"] == "respond-async"
    assert (answer.json()["version"], answer.json()["status"]) == (1, "deploying")
    assert answer.headers["Location"] == f"/services/{name}/config/history/1"
    wait_until(lambda: suite.orchestrator.request("GET", answer.headers["Location"]).json()["status"] == "running", 30,
               what=f"{name} v1 running")
    refused = suite.orchestrator.request("POST", f"/services/{name}/rollback", json={"version": 7}, headers={"Prefer": "respond-async"})
    assert refused.status_code == 404 and "Location" not in refused.headers, refused.text


def test_with_the_scheduler_stopped_services_list_and_config_last_names_it(suite: SuiteParts) -> None:
    name = f"demo-api-{uuid.uuid4().hex[:6]}"
    assert suite.orchestrator.request("POST", "/services", json={"name": name, "dockerRepository": "lukebond/demo-api"}).status_code == 201
    assert suite.orchestrator.request("GET", f"/services/{name}/config/last").status_code == 404  # asked, never deployed
    suite.scheduler.stop()
    wait_until(lambda: etcdctl_get(suite.etcd.url, "/paz/services/paz-scheduler") == "", 10, what="the scheduler's key to go")

    listed = suite.orchestrator.request("GET", "/services")
    assert listed.status_code == 200 and name in [s["name"] for s in listed.json()]
    last = suite.orchestrator.request("GET", f"/services/{name}/config/last")
    assert last.status_code == 503
    assert "paz-scheduler is not announced" in last.json()["error"]["message"]
    refused = suite.orchestrator.request("DELETE", f"/services/{name}")
    assert refused.status_code == 503 and "paz-scheduler" in refused.json()["error"]["message"]
    assert suite.orchestrator.request("GET", f"/services/{name}").status_code == 200
    summary = suite.orchestrator.request("GET", "/cluster").json()
    assert summary["services"] >= 1 and summary["units"] is None
    assert [p["source"] for p in summary["problems"]] == ["paz-scheduler"]
