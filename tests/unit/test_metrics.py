"""The shared metrics plumbing: one process's figures in Prometheus' text format, and a dead worker's live gauges dropped."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from paz import metrics

pytestmark = pytest.mark.unit


def test_a_process_the_server_did_not_start_answers_its_own_figures_by_route_template() -> None:
    exporter = metrics.Exporter()
    metrics.figures().request("GET", "/services/<name>", 200, 0.003)
    text = exporter.exposition().decode()
    counted = {tuple(sorted(s.labels.items())): s.value for family in text_string_to_metric_families(text)
               for s in family.samples if s.name == "paz_http_requests_total"}
    assert counted[(("method", "GET"), ("route", "/services/<name>"), ("status", "200"))] >= 1


def test_the_live_gauges_of_a_process_that_is_gone_are_dropped_and_its_counters_kept(tmp_path: Path) -> None:
    gone = int(Path("/proc/sys/kernel/pid_max").read_text()) + 1  # no process can have it
    for name in (f"gauge_livesum_{gone}.db", f"gauge_livemax_{gone}.db", f"counter_{gone}.db", f"gauge_livesum_{os.getpid()}.db"):
        (tmp_path / name).write_bytes(b"")
    metrics._forget_dead_processes(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([f"counter_{gone}.db", f"gauge_livesum_{os.getpid()}.db"])
