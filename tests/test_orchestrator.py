"""The orchestrator against real etcd and a real directory: relaying services and config, passing
errors through, naming an unreachable upstream, and the live event stream (without a scheduler;
tests/test_orchestrator_e2e.py runs it with the whole suite)."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import EtcdServer, EventStream, Service, free_port, running, wait_until


def svcdoc(name: str) -> dict:
    """The seed's SVCDOC, as the walkthrough posts it (config keys at the top level)."""
    return {
        "name": name,
        "description": "Very simple HTTP Hello World server",
        "dockerRepository": "lukebond/demo-api",
        "loadBalanced": False,
        "publicFacing": False,
    }


@pytest.fixture(scope="module")
def dead_port() -> int:
    """A port nothing listens on: where the tests pin a scheduler that is not running."""
    return free_port()


@pytest.fixture(scope="module")
def orchestrator(etcd: EtcdServer, directory: Service, workdir: Path, dead_port: int) -> Iterator[Service]:
    service = Service(
        "paz-orchestrator", etcd, workdir,
        env={"PAZ_SCHEDULER_ADDR": f"127.0.0.1:{dead_port}", "PAZ_EVENTS_KEEPALIVE": "1"},
    ).start()
    yield service
    service.stop()


def test_walkthrough_service_commands_relay_to_the_directory(orchestrator: Service, directory: Service, unique_name: str) -> None:
    created = orchestrator.request("POST", "/services", json=svcdoc(unique_name))
    assert created.status_code == 201, created.text
    assert created.headers["Location"] == f"/services/{unique_name}"
    assert created.json()["config"]["loadBalanced"] is False

    listed = orchestrator.request("GET", "/services")
    assert listed.status_code == 200
    assert unique_name in [s["name"] for s in listed.json()]
    assert orchestrator.request("GET", f"/services/{unique_name}").json() == directory.request("GET", f"/services/{unique_name}").json()
    found = orchestrator.request("GET", "/services", params={"dockerRepository": "lukebond/demo-api:1.0"})
    assert found.status_code == 200 and "name" in found.json()

    patched = orchestrator.request("PATCH", f"/services/{unique_name}/config/next", json={"env": {"MESSAGE": "so platform; many service; wow"}})
    assert patched.status_code == 200, patched.text
    assert patched.json()["env"] == {"MESSAGE": "so platform; many service; wow"}
    assert orchestrator.request("GET", f"/services/{unique_name}/config/next").json()["env"]["MESSAGE"] == "so platform; many service; wow"
    assert directory.request("GET", f"/services/{unique_name}/config").json()["env"]["MESSAGE"] == "so platform; many service; wow"


def test_upstream_errors_pass_through_with_the_request_id(orchestrator: Service, directory: Service, unique_name: str) -> None:
    invalid = orchestrator.request("POST", "/services", json={"name": "X y", "dockerRepository": "no spaces allowed"}, headers={"X-Request-Id": "trace-123"})
    direct = directory.request("POST", "/services", json={"name": "X y", "dockerRepository": "no spaces allowed"}, headers={"X-Request-Id": "trace-123"})
    assert invalid.status_code == 400
    assert invalid.json() == direct.json()
    assert invalid.json()["error"]["requestId"] == "trace-123"  # the directory got the orchestrator's request id
    assert invalid.headers["X-Request-Id"] == "trace-123"

    assert orchestrator.request("POST", "/services", data="{not json", headers={"Content-Type": "application/json"}).status_code == 400
    assert orchestrator.request("POST", "/services", json=svcdoc(unique_name)).status_code == 201
    conflict = orchestrator.request("POST", "/services", json=svcdoc(unique_name))
    assert conflict.status_code == 409 and unique_name in conflict.json()["error"]["message"]

    refused = orchestrator.request("PATCH", f"/services/{unique_name}/config/next", json={"numInstances": 0, "nonsense": 1})
    assert refused.status_code == 400 and "numInstances" in refused.json()["error"]["details"]
    assert orchestrator.request("GET", f"/services/{unique_name}/config/next").json()["numInstances"] == 1

    missing = orchestrator.request("GET", "/services/no-such-service-here")
    assert missing.status_code == 404 and "no-such-service-here" in missing.json()["error"]["message"]
    assert orchestrator.request("GET", "/services/..%2F..%2Fhealth").status_code in (400, 404)
    for hostile in ("a%3Fb=1", "x%23frag", "%24(reboot)%3B", "n%0Aew"):  # ?, #, $(), ; and a newline stay in one path segment
        answer = orchestrator.request("GET", f"/services/{hostile}/config/next")
        assert answer.status_code == 400 and "DNS label" in answer.json()["error"]["message"], hostile


def test_scheduler_down_names_it_and_delete_refuses_to_orphan_instances(orchestrator: Service, dead_port: int, unique_name: str) -> None:
    assert orchestrator.request("POST", "/services", json=svcdoc(unique_name)).status_code == 201
    for path in (f"/services/{unique_name}/config/last", f"/services/{unique_name}/config/history",
                 f"/services/{unique_name}/config/history/1", f"/services/{unique_name}/units", "/cluster/units", "/cluster/hosts",
                 f"/services/{unique_name}/logs", f"/services/{unique_name}/logs?follow=true"):
        answer = orchestrator.request("GET", path)
        assert answer.status_code == 503, (path, answer.text)
        assert f"paz-scheduler is unreachable at 127.0.0.1:{dead_port}" in answer.json()["error"]["message"]
    assert orchestrator.request("GET", "/services").status_code == 200

    refused = orchestrator.request("DELETE", f"/services/{unique_name}")
    assert refused.status_code == 503
    assert "was not deleted" in refused.json()["error"]["message"] and "paz-scheduler" in refused.json()["error"]["message"]
    assert orchestrator.request("GET", f"/services/{unique_name}").status_code == 200

    forced = orchestrator.request("DELETE", f"/services/{unique_name}", params={"force": "true"})
    assert forced.status_code == 200
    assert forced.json()["deleted"] is True and "paz-scheduler" in forced.json()["warning"]
    assert orchestrator.request("GET", f"/services/{unique_name}").status_code == 404

    summary = orchestrator.request("GET", "/cluster").json()
    assert summary["hosts"] is None and summary["units"] is None and summary["healthy"] is False
    assert any(p["source"] == "paz-scheduler" and p["status"] == 503 for p in summary["problems"])
    assert isinstance(summary["services"], int)


def test_directory_down_is_a_503_naming_it_and_reads_of_what_etcd_holds_go_on(
        etcd: EtcdServer, directory: Service, workdir: Path, unique_name: str) -> None:
    assert directory.request("POST", "/services", json=svcdoc(unique_name)).status_code == 201
    etcd.put(f"/paz/directory/services/{unique_name}-junk", "not a service document")  # written around the API
    port = free_port()
    lonely = Service("paz-orchestrator", etcd, workdir, env={"PAZ_SERVICE_DIRECTORY_ADDR": f"127.0.0.1:{port}"}).start()
    try:
        for method, path in (("POST", "/services"), ("GET", "/services?consistent=true"), ("GET", "/services/demo-api/config/next")):
            answer = lonely.request(method, path, json={})
            assert answer.status_code == 503, answer.text
            assert answer.json()["error"]["message"].startswith(f"paz-service-directory is unreachable at 127.0.0.1:{port}")
        # the documents are in etcd: the orchestrator answers them from its own view, as the directory would
        assert lonely.request("GET", f"/services/{unique_name}").json() == directory.request("GET", f"/services/{unique_name}").json()
        assert lonely.request("GET", f"/services/{unique_name}/config/next").json() == directory.request("GET", f"/services/{unique_name}/config").json()
        listed = lonely.request("GET", "/services").json()
        assert listed == directory.request("GET", "/services").json() and unique_name in [s["name"] for s in listed]
        assert any(p["source"] == "paz-service-directory" for p in lonely.request("GET", "/cluster").json()["problems"])
    finally:
        lonely.stop()
        etcd.delete(f"/paz/directory/services/{unique_name}-junk")


def _of(name: str):
    return lambda event: event["data"].get("service") == name


def test_events_follow_changes_made_anywhere_and_resume_from_last_event_id(orchestrator: Service, directory: Service, unique_name: str) -> None:
    stream = EventStream(f"{orchestrator.url}/events")
    try:
        assert directory.request("POST", "/services", json=svcdoc(unique_name)).status_code == 201  # straight to the directory
        assert orchestrator.request("PATCH", f"/services/{unique_name}/config/next", json={"env": {"MESSAGE": "hi"}}).ok
        assert orchestrator.request("PATCH", f"/services/{unique_name}/config/next", json={"env": {"MESSAGE": "hi"}}).ok  # no change
        assert orchestrator.request("PATCH", f"/services/{unique_name}/config/next", json={"numInstances": 2}).ok
        assert directory.request("DELETE", f"/services/{unique_name}").status_code == 204
        events = stream.until(_of(unique_name), 4)
    finally:
        stream.close()
    assert [e["event"] for e in events] == ["service-created", "config-changed", "config-changed", "service-deleted"]
    assert events[0]["data"]["dockerRepository"] == "lukebond/demo-api"
    assert events[1]["data"]["changed"] == ["env"] and events[2]["data"]["changed"] == ["numInstances"]
    ids = [int(e["id"]) for e in events]
    assert ids == sorted(ids) and len(set(ids)) == 4
    assert all(e["data"]["id"] == int(e["id"]) and e["data"]["type"] == e["event"] for e in events)

    resumed = EventStream(f"{orchestrator.url}/events?service={unique_name}", last_event_id=ids[0])
    try:
        again = resumed.until(lambda e: True, 3)
    finally:
        resumed.close()
    assert [int(e["id"]) for e in again] == ids[1:]


def test_events_for_instances_coming_and_going(orchestrator: Service, etcd: EtcdServer, unique_name: str) -> None:
    stream = EventStream(f"{orchestrator.url}/events?service={unique_name}")
    try:
        etcd.put(f"/paz/services/{unique_name}/3/1", "127.0.0.1:40001", ttl=1)  # as the scheduler announces
        etcd.put(f"/paz/services/{unique_name}/3/2", "127.0.0.1:40002", ttl=30)
        etcd.delete(f"/paz/services/{unique_name}/3/2")
        events = stream.until(lambda e: True, 4, timeout=20)
    finally:
        stream.close()
    kinds = {(e["event"], e["data"]["unit"], e["data"].get("reason")) for e in events}
    assert kinds == {
        ("instance-up", f"{unique_name}-3-1", None), ("instance-up", f"{unique_name}-3-2", None),
        ("instance-down", f"{unique_name}-3-2", "withdrawn"), ("instance-down", f"{unique_name}-3-1", "expired"),
    }
    assert events[0]["data"]["address"] == "127.0.0.1:40001"


def test_events_etcd_forgot_come_from_the_hub_and_are_lost_only_when_neither_holds_them(
    orchestrator: Service, etcd: EtcdServer, workdir: Path, unique_name: str,
) -> None:
    first = etcd.index()
    etcd.put(f"/paz/directory/services/{unique_name}", json.dumps(svcdoc(unique_name)))
    etcd.forget_events()

    held = EventStream(f"{orchestrator.url}/events?service={unique_name}", last_event_id=first)
    try:
        created = held.next()
    finally:
        held.close()
    assert (created["event"], int(created["id"])) == ("service-created", first + 1)  # etcd forgot it; the hub did not

    late = Service("paz-orchestrator", etcd, workdir)  # started after etcd forgot: its hub never held it either
    with running(late):
        stream = EventStream(f"{late.url}/events", last_event_id=first)
        try:
            lost = stream.next()
        finally:
            stream.close()
    assert lost["event"] == "events-lost"
    assert lost["data"]["from"] == first + 1 and "no longer holds" in lost["data"]["message"]
    assert int(lost["id"]) > first


def test_events_keep_alive_and_refuse_bad_ids(orchestrator: Service) -> None:
    assert orchestrator.request("GET", "/events", headers={"Last-Event-ID": "abc"}).status_code == 400
    stream = EventStream(f"{orchestrator.url}/events?service=nothing-happens-here", read_timeout=5)
    try:
        assert stream.response.headers["Content-Type"].startswith("text/event-stream")
        lines = [next(stream.lines) for _ in range(6)]  # PAZ_EVENTS_KEEPALIVE is 1 s here
    finally:
        stream.close()
    assert lines[0].startswith("retry: ")
    assert ": keep-alive" in lines


def test_event_streams_are_bounded_per_worker_and_in_time(etcd: EtcdServer, directory: Service, workdir: Path) -> None:
    bounded = Service(
        "paz-orchestrator", etcd, workdir,
        env={"PAZ_WORKERS": "1", "PAZ_EVENTS_MAX_CLIENTS": "1", "PAZ_EVENTS_MAX_SECONDS": "2", "PAZ_EVENTS_KEEPALIVE": "0.5"},
    ).start()
    try:
        first = EventStream(f"{bounded.url}/events")
        second = bounded.request("GET", "/events")
        assert second.status_code == 503 and second.headers["Retry-After"] == "5"
        assert "event streams" in second.json()["error"]["message"]
        assert bounded.request("GET", "/services").status_code == 200  # requests still get a thread
        assert first.next(timeout=10) is None  # the stream ends by itself after PAZ_EVENTS_MAX_SECONDS
        assert any("reconnect" in c for c in first.comments)
        first.close()
        def slot_free() -> bool:
            with bounded.request("GET", "/events", stream=True) as answer:
                return answer.status_code == 200

        wait_until(slot_free, 5, what="a free stream slot")
    finally:
        bounded.stop()


def test_openapi_documents_every_route(orchestrator: Service) -> None:
    paths = orchestrator.request("GET", "/openapi.json").json()["paths"]
    for path in ("/services", "/services/{name}", "/services/{name}/config/next", "/services/{name}/config/last",
                 "/services/{name}/config/history/{version}", "/cluster", "/cluster/hosts/{host_id}/health",
                 "/cluster/units/{unit_id}/health", "/services/{name}/units/{unit_id}/health",
                 "/cluster/load-balancers/{lb_id}/health", "/services/{name}/stats", "/events"):
        assert path in paths, path
    assert json.dumps(paths["/services/{name}"]["delete"]).count("force") >= 1


def test_host_is_unhealthy_while_its_engine_does_not_answer(own_etcd: EtcdServer, tmp_path: Path) -> None:
    scheduler = Service("paz-scheduler", own_etcd, tmp_path, env={"DOCKER_HOST": f"unix://{tmp_path}/no-engine.sock"})
    orchestrator = Service("paz-orchestrator", own_etcd, tmp_path)
    with running(scheduler, orchestrator):
        [host] = orchestrator.request("GET", "/cluster/hosts").json()
        assert host["healthy"] is False
        health = orchestrator.request("GET", f"/cluster/hosts/{host['id']}/health")
        assert health.status_code == 503 and health.json()["healthy"] is False and health.json()["reason"]
        summary = orchestrator.request("GET", "/cluster").json()
        assert summary["hosts"] == {"total": 1, "healthy": 0} and summary["healthy"] is False


def test_event_stream_survives_an_etcd_restart(own_etcd: EtcdServer, tmp_path: Path) -> None:
    orchestrator = Service("paz-orchestrator", own_etcd, tmp_path, env={"PAZ_EVENTS_KEEPALIVE": "0.5"})
    with running(orchestrator):
        stream = EventStream(f"{orchestrator.url}/events")
        try:
            own_etcd.put("/paz/directory/services/before", json.dumps(svcdoc("before")))
            assert stream.next()["data"]["service"] == "before"
            own_etcd.stop()
            wait_until(lambda: "etcd is unreachable" in next(stream.lines), 10, interval=0, what="the stream to say etcd is unreachable")
            own_etcd.start()
            after = [f"after-{i}" for i in range(5)]
            for name in after:
                own_etcd.put(f"/paz/directory/services/{name}", json.dumps(svcdoc(name)))
            events = stream.until(lambda e: True, len(after))
        finally:
            stream.close()
    assert [(e["event"], e["data"]["service"]) for e in events] == [("service-created", name) for name in after]
    ids = [int(e["id"]) for e in events]
    assert ids == sorted(ids)


def test_one_etcd_watch_per_worker_however_many_streams(own_etcd: EtcdServer, tmp_path: Path) -> None:
    orchestrator = Service("paz-orchestrator", own_etcd, tmp_path, env={"PAZ_WORKERS": "1", "PAZ_EVENTS_KEEPALIVE": "0.5"})
    with running(orchestrator):
        streams = [EventStream(f"{orchestrator.url}/events") for _ in range(20)]
        try:
            own_etcd.put("/paz/directory/services/seen", json.dumps(svcdoc("seen")))
            assert all(stream.next()["data"]["service"] == "seen" for stream in streams)
            samples = []  # the view re-issues its watch after each change: a moment may show none
            for _ in range(10):
                samples.append(own_etcd.watchers())
                time.sleep(0.1)
        finally:
            for stream in streams:
                stream.close()
    assert max(samples) == 1, samples  # the process's view; the announcer watches nothing


def test_a_slow_client_is_cut_off_and_the_others_go_on(own_etcd: EtcdServer, tmp_path: Path) -> None:
    orchestrator = Service("paz-orchestrator", own_etcd, tmp_path, env={"PAZ_WORKERS": "1", "PAZ_EVENTS_BUFFER": "5"})
    with running(orchestrator):
        slow = socket.socket()
        slow.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        slow.connect(("127.0.0.1", orchestrator.port))
        slow.sendall(b"GET /events HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")  # and reads nothing for now
        fast = EventStream(f"{orchestrator.url}/events?service=busy")
        try:
            for i in range(60):  # 100 kB addresses: the slow client's socket buffers fill up
                address = f"127.0.0.1:{41000 + i}" + "0" * 100_000
                own_etcd.put("/paz/services/busy/1/1", address)
                assert fast.next(timeout=5)["data"]["address"] == address  # each change reaches the reader at once
            slow.settimeout(10)
            received = b""
            while b"events behind" not in received:
                chunk = slow.recv(1 << 20)
                assert chunk, "the slow stream closed without saying why"
                received += chunk
            assert b"fell more than 5 events behind; reconnect with Last-Event-ID" in received
        finally:
            slow.close()
            fast.close()
