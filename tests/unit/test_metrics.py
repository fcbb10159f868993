"""The shared metrics plumbing: one process's figures in Prometheus' text format, and a dead worker's live gauges dropped."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from paz import metrics

pytestmark = pytest.mark.unit


def test_a_process_the_server_did_not_start_answers_its_own_figures_by_route_template() -> None:
    exporter = metrics.Exporter()
    metrics.figures().request("GET", "/services/<name>", 200, 0.003)
    text = exporter.exposition().decode()  # counted at once: the process answering moves its own counts first
    counted = {tuple(sorted(s.labels.items())): s.value for family in text_string_to_metric_families(text)
               for s in family.samples if s.name == "paz_http_requests_total"}
    assert counted[(("method", "GET"), ("route", "/services/<name>"), ("status", "200"))] >= 1


def test_the_live_gauges_of_a_process_that_is_gone_are_dropped_and_its_counters_kept(tmp_path: Path) -> None:
    gone = int(Path("/proc/sys/kernel/pid_max").read_text()) + 1  # no process can have it
    for name in (f"gauge_livesum_{gone}.db", f"gauge_livemax_{gone}.db", f"counter_{gone}.db", f"gauge_livesum_{os.getpid()}.db"):
        (tmp_path / name).write_bytes(b"")
    metrics._forget_dead_processes(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([f"counter_{gone}.db", f"gauge_livesum_{os.getpid()}.db"])


def test_a_figures_folder_a_killed_server_left_behind_goes_and_a_live_ones_stays(tmp_path: Path, monkeypatch) -> None:
    """A server killed outright runs no exit handler: the next server to start removes its folder."""
    gone = int(Path("/proc/sys/kernel/pid_max").read_text()) + 1  # no process can have it
    for name in (f"paz-metrics-{gone}-x1y2", f"paz-metrics-{os.getpid()}-a3b4", "paz-metrics-9abc_de", "other-1-2"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "counter_1.db").write_bytes(b"")
    monkeypatch.setattr(metrics.tempfile, "gettempdir", lambda: str(tmp_path))
    metrics._remove_left_behind()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([f"paz-metrics-{os.getpid()}-a3b4", "paz-metrics-9abc_de", "other-1-2"])


def test_observations_added_at_once_read_as_the_same_observations_one_by_one() -> None:
    one_by_one, at_once = CollectorRegistry(), CollectorRegistry()
    values = [0.0004, 0.003, 0.003, 0.2, 42.0]
    expected = Histogram("t", "t", ("route",), buckets=metrics.LATENCY_BUCKETS, registry=one_by_one).labels("/x")
    for value in values:
        expected.observe(value)
    per_bucket = [0.0] * (len(metrics.LATENCY_BUCKETS) + 1)
    for value in values:
        per_bucket[next((i for i, bound in enumerate(metrics.LATENCY_BUCKETS) if value <= bound), -1)] += 1
    metrics.observe_many(Histogram("t", "t", ("route",), buckets=metrics.LATENCY_BUCKETS, registry=at_once).labels("/x"),
                         sum(values), per_bucket)
    assert generate_latest(at_once).split(b"\n# HELP t_created")[0] == generate_latest(one_by_one).split(b"\n# HELP t_created")[0]
