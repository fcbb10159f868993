"""Metrics a person can graph: every service's ``GET /metrics``, HAProxy's own exporter, and a real
Prometheus (Debian's) that finds every target through the orchestrator's ``/prometheus/targets``.

The whole suite runs here on its own etcd (the scheduler on the tests' Docker Engine), each service
with two worker processes, so a figure counted by one worker must show in the answer of any.
"""

from __future__ import annotations

import html
import json
import re
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from tests.support import (
    ROOT, DockerEngine, IdServer, Service, build_test_image, instance, running,
    SuiteParts, wait_until,
)
from tests.support.prometheus import Prometheus


@pytest.fixture(scope="module")
def suite(tmp_path_factory: pytest.TempPathFactory, docker_engine: DockerEngine) -> Iterator[SuiteParts]:
    made = SuiteParts.make(tmp_path_factory.mktemp("metrics"), docker_engine, web=True)
    with running(made.etcd, *made.services):
        yield made


def samples(text: str, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    """The samples called ``name`` in ``text`` (parsed with prometheus-client's own parser), by their labels."""
    return {
        tuple(sorted(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name
    }


def scrape(service: Service) -> str:
    answer = service.request("GET", "/metrics")
    assert answer.status_code == 200, answer.text
    assert answer.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    return answer.text


def requests_counted(text: str, method: str, route: str, status: int) -> float:
    return samples(text, "paz_http_requests_total").get((("method", method), ("route", route), ("status", str(status))), 0)


@pytest.mark.parametrize("part", ["directory", "scheduler", "haproxy_sync", "orchestrator", "web"])
def test_every_service_counts_the_request_made_just_before_by_route_and_status(suite: SuiteParts, part: str) -> None:
    service: Service = getattr(suite, part)
    before = scrape(service)
    stray = f"/no-such-route-{uuid.uuid4().hex}"
    for _ in range(3):  # two workers: the answers come from either, the figures from both
        assert service.request("GET", "/openapi.json").status_code == 200
        assert service.request("GET", stray).status_code == 404
    def counted() -> str | None:  # each worker moves its counts into the figures within a second
        text = scrape(service)
        added = [requests_counted(text, "GET", route, status) - requests_counted(before, "GET", route, status)
                 for route, status in (("/openapi.json", 200), ("(unmatched)", 404))]
        assert all(n <= 3 for n in added), added
        return text if added == [3, 3] else None

    after = wait_until(counted, 5, interval=0.2, what="both requests counted three times")
    assert stray not in after  # a route's template, never the raw path
    latency = samples(after, "paz_http_request_duration_seconds_count")
    assert latency[(("method", "GET"), ("route", "/openapi.json"))] >= 3
    assert samples(after, "paz_etcd_watch_reconnects_total") == {(): 0}
    assert samples(after, "paz_etcd_watch_lag_seconds") == {(): 0}


def test_the_directorys_fast_read_is_counted_under_its_route(suite: SuiteParts) -> None:
    name = f"metrics-{uuid.uuid4().hex[:6]}"
    assert suite.directory.request("POST", "/services", json={"name": name, "dockerRepository": "paz-test/hello"}).status_code == 201
    before = requests_counted(scrape(suite.directory), "GET", "/services/<name>", 200)
    for _ in range(4):
        assert suite.directory.request("GET", f"/services/{name}").status_code == 200
    wait_until(lambda: requests_counted(scrape(suite.directory), "GET", "/services/<name>", 200) - before == 4, 5, interval=0.2,
               what="four reads counted")
    assert name not in scrape(suite.directory)


def test_each_part_shows_its_own_figures(suite: SuiteParts) -> None:
    router = scrape(suite.haproxy_sync)
    assert samples(router, "paz_router_applies_total").keys() == {(("kind", "reload"),), (("kind", "runtime"),)}
    assert sum(samples(router, "paz_router_applies_total").values()) >= 1  # the first config haproxy-sync applied
    assert samples(router, "paz_certificate_failed_orders") == {(): 0}
    scheduler = scrape(suite.scheduler)
    assert samples(scheduler, "paz_deploys_total").keys() == {(("result", "failed"),), (("result", "succeeded"),)}
    assert samples(scrape(suite.orchestrator), "paz_event_stream_clients") == {(): 0}
    with requests.get(f"{suite.orchestrator.url}/events", stream=True, timeout=10) as stream:
        chunks = stream.iter_content(chunk_size=None)  # held: dropped, it would close the connection
        next(chunks)  # the stream's first chunk: it is open
        assert samples(scrape(suite.orchestrator), "paz_event_stream_clients") == {(): 1}
    wait_until(lambda: samples(scrape(suite.orchestrator), "paz_event_stream_clients") == {(): 0}, 5, what="the closed stream uncounted")
    assert "paz_router_applies_total" not in scrape(suite.directory)


def test_haproxys_exporter_counts_the_requests_to_a_services_backend(suite: SuiteParts, servers: list[IdServer]) -> None:
    name = f"routed-{uuid.uuid4().hex[:6]}"
    suite.etcd.put(f"/paz/services/{name}/1/1", instance(servers, "one").address)
    wait_until(lambda: suite.haproxy_sync.route(f"{name}.paz").text == "one", 15, what=f"{name}.paz routed")
    exporter = f"http://127.0.0.1:{suite.haproxy_sync.stats_port}/metrics"

    def backend_requests() -> float:
        answer = requests.get(exporter, timeout=5)
        assert answer.status_code == 200
        return samples(answer.text, "haproxy_backend_http_requests_total").get((("proxy", name),), 0)

    before = backend_requests()
    for _ in range(5):
        assert suite.haproxy_sync.route(f"{name}.paz").status_code == 200
    assert backend_requests() - before == 5


@pytest.fixture(scope="module")
def metrics_image(docker_engine: DockerEngine) -> str:
    """The tests' busybox web app that also answers Prometheus at /metrics.txt (``paz_test_app_up 1``)."""
    return build_test_image(docker_engine, "paz-test/metrics", extra_changes=[
        'CMD ["/bin/sh", "-c", "mkdir -p /www && echo paz_test_app_up 1 > /www/metrics.txt && exec /serve"]'])


def test_a_real_prometheus_finds_every_target_through_the_orchestrator_and_scrapes_an_app(
        suite: SuiteParts, metrics_image: str, tmp_path: Path) -> None:
    name = f"scraped-{uuid.uuid4().hex[:6]}"
    created = suite.orchestrator.request("POST", "/services", json={
        "name": name, "dockerRepository": "paz-test/metrics", "ports": [{"container": 8000}], "metrics": {"path": "/metrics.txt"}})
    assert created.status_code == 201, created.text
    deployed = suite.scheduler.request("POST", "/hooks/deploy", json={"serviceName": name, "dockerRepository": metrics_image}, timeout=60)
    assert deployed.status_code in (200, 201), deployed.text

    scheduler = scrape(suite.scheduler)
    assert samples(scheduler, "paz_deploys_total")[(("result", "succeeded"),)] >= 1
    assert samples(scheduler, "paz_deploy_duration_seconds_count")[(("result", "succeeded"),)] >= 1
    assert samples(scheduler, "paz_instances_wanted")[(("service", name),)] == 1
    wait_until(lambda: samples(scrape(suite.scheduler), "paz_instances_running").get((("service", name),)) == 1, 15,
               what=f"{name}'s instance counted running")
    listed = suite.orchestrator.request("GET", "/prometheus/targets").json()
    [app] = [t for t in listed if t["labels"].get("service") == name]
    assert app["labels"] == {"part": "app", "host": "127.0.0.1", "service": name, "version": "1", "unit": f"{name}-1-1",
                             "__metrics_path__": "/metrics.txt"}

    parts = {"paz-service-directory", "paz-scheduler", "paz-haproxy-sync", "paz-orchestrator", "paz-web", "haproxy", "app"}
    prometheus = Prometheus(tmp_path / "prometheus", suite.orchestrator.url).start()
    try:
        seen_up = prometheus.wait_until_up(parts)
        assert seen_up == parts
        by_part = {t["labels"]["part"]: t for t in prometheus.targets()}
        assert by_part["paz-scheduler"]["labels"]["job"] == "paz" and by_part["haproxy"]["labels"]["job"] == "haproxy"
        assert by_part["haproxy"]["labels"]["load_balancer"] == "paz-haproxy-sync"
        scraped = wait_until(lambda: prometheus.query(f'paz_test_app_up{{service="{name}"}}'), 15, what="the app's figure")
        assert scraped[0]["metric"]["unit"] == f"{name}-1-1" and scraped[0]["value"][1] == "1"
        assert {s["metric"]["part"]: s["value"][1] for s in prometheus.query("max by (part) (max_over_time(up[1m]))")} == dict.fromkeys(parts, "1")
        the_grafana_dashboard_asks_what_prometheus_has(prometheus)
        the_dashboards_chart_reads_the_last_hour_from_prometheus_and_falls_back_to_live(suite, prometheus, name, tmp_path)
    finally:
        prometheus.stop()


def the_grafana_dashboard_asks_what_prometheus_has(prometheus: Prometheus) -> None:
    """Every query of docs/grafana/paz.json is one Prometheus takes, and each paz figure it reads is there."""
    dashboard = json.loads((ROOT / "docs" / "grafana" / "paz.json").read_text())
    for target in (target for panel in dashboard["panels"] for target in panel["targets"]):
        expression = target["expr"].replace("$__rate_interval", "1m").replace("$service", ".*")
        prometheus.query(expression)  # asserts Prometheus accepted it
        for name in set(re.findall(r"\b(paz_\w+?)(?:_bucket)?\b[{\[)]", expression)) - {"paz_certificate_expiry_timestamp_seconds"}:
            assert prometheus.query(name) or prometheus.query(f"{name}_bucket"), f"no {name} in Prometheus, which {panel_of(dashboard, target)} reads"


def panel_of(dashboard: dict, target: dict) -> str:
    return next(panel["title"] for panel in dashboard["panels"] if target in panel["targets"])


def chart_history(web: Service, name: str) -> list[list[float | None]] | None:
    page = web.request("GET", f"/services/{name}")
    assert page.status_code == 200, page.text
    found = re.search(r"data-history='([^']*)'", page.text)
    return json.loads(html.unescape(found.group(1))) if found else None


def the_dashboards_chart_reads_the_last_hour_from_prometheus_and_falls_back_to_live(
        suite: SuiteParts, prometheus: Prometheus, name: str, tmp_path: Path) -> None:
    assert chart_history(suite.web, name) is None  # no Prometheus given: live figures only
    web = Service("paz-web", suite.etcd, tmp_path, env={"PAZ_PROMETHEUS_URL": prometheus.url,
                                                        "PAZ_WEB_SECRET_FILE": str(tmp_path / "web-secret")})
    with running(web):
        for _ in range(20):
            assert suite.haproxy_sync.route(f"{name}.paz", "/cgi-bin/index").status_code == 200

        def requests_charted() -> list[list[float | None]] | None:
            history = chart_history(web, name)
            return history if history and any(rate for rate in history[1] if rate) else None

        history = wait_until(requests_charted, 30, interval=1, what="the chart's last hour showing the requests")
        assert len(history) == 4 and len(history[0]) == 120 and history[0][-1] - history[0][0] == 3600 - 30
        prometheus.stop()
        assert chart_history(web, name) is None  # Prometheus gone: the page still answers, the chart goes live


def test_a_metrics_port_prometheus_could_not_reach_is_refused_and_changes_nothing(suite: SuiteParts) -> None:
    name = f"unreachable-{uuid.uuid4().hex[:6]}"
    created = suite.orchestrator.request("POST", "/services", json={"name": name, "dockerRepository": "paz-test/metrics",
                                                                     "ports": [{"container": 8000}, {"container": 9100}]})
    assert created.status_code == 201, created.text
    for patch in ({"metrics": {"path": "/metrics", "port": 9100}}, {"metrics": {"path": "/metrics$(id)\n"}}):
        refused = suite.orchestrator.request("PATCH", f"/services/{name}/config/next", json=patch)
        assert refused.status_code == 400 and "metrics" in refused.text, refused.text
    assert "metrics" not in suite.orchestrator.request("GET", f"/services/{name}/config/next").json()
    fixed = {"ports": [{"container": 8000}, {"container": 9100, "host": 19100}], "metrics": {"path": "/metrics", "port": 9100}}
    assert suite.orchestrator.request("PATCH", f"/services/{name}/config/next", json=fixed).status_code == 200
