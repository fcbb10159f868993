"""The scheduler's figures for Prometheus: rollouts by result and duration, instances wanted and running."""

from __future__ import annotations

import json
from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily

from paz import keys, metrics
from paz.view import EtcdView


class DeployFigures:
    """Rollouts by result, counted where the controller runs (the leading scheduler's companion process)."""

    def __init__(self, registry: CollectorRegistry | None) -> None:
        self.deploys = Counter("paz_deploys", "Rollouts the scheduler finished, by result (succeeded or failed).",
                               ("result",), registry=registry)
        self.seconds = Histogram("paz_deploy_duration_seconds", "Time from a rollout's pull to its new instances serving "
                                 "and the old ones retired (or to its failure), by result.",
                                 ("result",), buckets=metrics.SLOW_BUCKETS, registry=registry)
        for result in ("succeeded", "failed"):  # both series exist from the start, so a rate of failures is 0, not absent
            self.deploys.labels(result)
            self.seconds.labels(result)

    def finished(self, result: str, seconds: float) -> None:
        self.deploys.labels(result).inc()
        self.seconds.labels(result).observe(seconds)


deploy_figures = metrics.per_process(DeployFigures)


def instance_figures(view: EtcdView) -> Iterator[GaugeMetricFamily]:
    """Instances each service should run (its desired record; 0 once stopped) and those running and
    announced (the instance keys in etcd), read from the worker's view when Prometheus asks."""
    wanted = GaugeMetricFamily("paz_instances_wanted", "Instances a service should run, as its last deploy, scale or stop said.",
                               labels=("service",))
    running = GaugeMetricFamily("paz_instances_running", "Instances of a service running and announced (accepting connections).",
                                labels=("service",))
    counts: dict[str, int] = {}
    for node in view.nodes(keys.SERVICES):
        parts = node.key[len(keys.SERVICES) + 1:].split("/")
        if len(parts) == 3 and node.value:
            counts[parts[0]] = counts.get(parts[0], 0) + 1
    for node in view.children(keys.DESIRED):
        try:
            record = json.loads(node.value)
        except ValueError:
            continue
        name = node.key.rsplit("/", 1)[-1]
        wanted.add_metric((name,), 0 if record.get("stopped") else int(record.get("instances") or 0))
        running.add_metric((name,), counts.pop(name, 0))
    for name, count in counts.items():  # announced with no desired record (left from before one was written)
        running.add_metric((name,), count)
    yield wanted
    yield running
