"""haproxy-sync's figures for Prometheus: applies by kind and duration (counted where the engine runs,
the companion process), certificate orders, and the certificates etcd holds (read when Prometheus asks).

HAProxy's own figures (requests, errors and latencies per backend and server) come from its
built-in exporter at ``/metrics`` on the stats port, not from here.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily

from paz import keys, metrics
from paz.etcd import Store, StoreUnavailable

APPLY_KINDS = ("runtime", "reload")


class RouterFigures:
    """What the engine and the certificate orders count."""

    def __init__(self, registry: CollectorRegistry | None) -> None:
        self.applies = Counter("paz_router_applies", "Changes applied to HAProxy, by kind (runtime: through its Runtime API, "
                               "no reload; reload: a checked, seamless reload).", ("kind",), registry=registry)
        self.apply_seconds = Histogram("paz_router_apply_duration_seconds", "Time to render and apply a change to HAProxy, by kind.",
                                       ("kind",), buckets=metrics.LATENCY_BUCKETS, registry=registry)
        self.apply_failures = Counter("paz_router_apply_failures", "Applies that failed (HAProxy keeps the last good config).",
                                      registry=registry)
        self.orders = Counter("paz_certificate_orders", "ACME certificate orders this router made, by result (issued or failed).",
                              ("result",), registry=registry)
        for kind in APPLY_KINDS:  # every series exists from the start, at 0
            self.applies.labels(kind)
            self.apply_seconds.labels(kind)
        for result in ("issued", "failed"):
            self.orders.labels(result)

    def applied(self, kind: str, seconds: float) -> None:
        self.applies.labels(kind).inc()
        self.apply_seconds.labels(kind).observe(seconds)


router_figures = metrics.per_process(RouterFigures)


def certificate_figures(etcd: Store) -> Iterator[GaugeMetricFamily]:
    """When each certificate the routers serve expires, and how many names' last order failed; nothing while etcd is away."""
    try:
        certificates = etcd.list_prefix(keys.CERTS).nodes
        failures = etcd.list_prefix(keys.ACME_FAILURES).nodes
    except StoreUnavailable:
        return
    expiry = GaugeMetricFamily("paz_certificate_expiry_timestamp_seconds", "When a certificate the routers serve expires "
                               "(Unix time), by host name and source (acme or brought).", labels=("host", "source"))
    for node in certificates:
        try:
            record = json.loads(node.value)
            expires = dt.datetime.fromisoformat(record["notAfter"].replace("Z", "+00:00")).timestamp()
        except (ValueError, KeyError, TypeError, AttributeError):
            continue
        expiry.add_metric((node.key.rsplit("/", 1)[-1], str(record.get("source", ""))), expires)
    yield expiry
    yield GaugeMetricFamily("paz_certificate_failed_orders", "Host names whose last certificate order failed (retried later).",
                            value=len(failures))
