"""The orchestrator's Prometheus discovery from etcd's keys, the config paz up gives Prometheus, and the chart's hour read from it."""

from __future__ import annotations

import json

import pytest

from paz import prometheus
from paz.contracts.service_document import ConfigSchema
from paz.etcd import Node
from paz_orchestrator.targets import targets, version_config

pytestmark = pytest.mark.unit

CONFIGS = {
    ("api", 3): {"ports": [{"container": 8000}], "metrics": {"path": "/metrics"}},
    ("worker", 1): {"ports": [{"container": 8000}, {"container": 9100, "host": 19100}], "metrics": {"path": "/m", "port": 9100}},
    ("quiet", 1): {"ports": [{"container": 8000}]},
}


def node(key: str, value: str) -> Node:
    return Node(key, value, 1)


def test_suite_processes_routers_and_declaring_instances_are_listed_with_their_labels() -> None:
    announced = [
        node("/paz/services/paz-orchestrator", "10.0.0.1:9000"),
        node("/paz/services/api/3/1", "10.0.0.2:32768"),
        node("/paz/services/worker/1/2", "10.0.0.3:32769"),
        node("/paz/services/quiet/1/1", "10.0.0.3:32770"),
        node("/paz/services/api/3/2", ""),  # withdrawn
    ]
    found = targets(announced, lambda service, version: CONFIGS.get((service, version)), {"paz-haproxy-sync": "10.0.0.1:1936"})
    assert found == [
        {"targets": ["10.0.0.2:32768"], "labels": {"host": "10.0.0.2", "part": "app", "service": "api", "version": "3",
                                                   "unit": "api-3-1", "__metrics_path__": "/metrics"}},
        {"targets": ["10.0.0.3:19100"], "labels": {"host": "10.0.0.3", "part": "app", "service": "worker", "version": "1",
                                                   "unit": "worker-1-2", "__metrics_path__": "/m"}},
        {"targets": ["10.0.0.1:1936"], "labels": {"host": "10.0.0.1", "part": "haproxy", "load_balancer": "paz-haproxy-sync"}},
        {"targets": ["10.0.0.1:9000"], "labels": {"host": "10.0.0.1", "part": "paz-orchestrator"}},
    ]


def test_a_version_document_that_is_not_json_lists_no_instance() -> None:
    config_of = version_config({"/paz/scheduler/services/api/versions/3": "{not json"}.get)
    assert targets([node("/paz/services/api/3/1", "10.0.0.2:1")], config_of, {}) == []


@pytest.mark.parametrize("config", [
    {"metrics": {"path": "/metrics", "port": 9100}},
    {"metrics": {"path": "/metrics", "port": 9100}, "ports": [{"container": 8000}, {"container": 9100}]},
    {"metrics": {"path": "/metrics?x=$(id)"}},
    {"metrics": {"path": "/metrics\nfoo: bar"}},
    {"metrics": {"path": "metrics"}},
])
def test_a_metrics_declaration_prometheus_could_not_reach_is_refused(config: dict) -> None:
    assert ConfigSchema().validate(config).keys() == {"metrics"}


def test_prometheus_sends_the_suites_token_to_the_suite_only() -> None:
    jobs = {job["job_name"]: job for job in json.loads(prometheus.config("http://127.0.0.1:9000", "/state/read.token"))["scrape_configs"]}
    assert jobs["paz"]["authorization"] == {"credentials_file": "/state/read.token"}
    assert "authorization" not in jobs["apps"] and "authorization" not in jobs["haproxy"]
    assert all(job["http_sd_configs"][0]["url"] == "http://127.0.0.1:9000/prometheus/targets" for job in jobs.values())


def test_the_charts_hour_has_a_value_or_none_at_each_step() -> None:
    from paz_web.history import aligned, last_hour

    answer = {"data": {"result": [{"values": [[1030, "2.5"], [1090, "NaN"]]}]}}
    assert aligned(answer, [1000, 1030, 1060, 1090]) == [None, 2.5, None, None]
    assert aligned({"data": {"result": []}}, [1000]) == [None]
    assert last_hour("", "demo-api") is None  # no Prometheus: live figures only
