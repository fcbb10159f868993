"""The traffic chart's last hour, from the Prometheus that scrapes the suite (``PAZ_PROMETHEUS_URL``).

The figures are those of HAProxy's own exporter for the service's backend (every router summed):
requests per second, 5xx answers per second, and the response time (ms, HAProxy's average over its
last 1024 requests, averaged over the routers). With no Prometheus configured, or one that does not
answer within :data:`TIMEOUT_SECONDS`, there is no history and the chart draws live figures from
the moment the page opens, as it always did.
"""

from __future__ import annotations

import logging
import math
import time
from typing import Any

import requests

from paz.names import is_service_name

log = logging.getLogger(__name__)

HOUR = 3600
STEP_SECONDS = 30
TIMEOUT_SECONDS = 2.0
QUERIES = (
    'sum(rate(haproxy_backend_http_requests_total{{proxy="{name}"}}[1m]))',
    'sum(rate(haproxy_backend_http_responses_total{{proxy="{name}",code="5xx"}}[1m]))',
    'avg(haproxy_backend_response_time_average_seconds{{proxy="{name}"}}) * 1000',
)
"""Requests/s, 5xx/s and response ms, in the chart's order; ``name`` is a service name (letters, digits, '-')."""

Series = list[list[float | None]]


def last_hour(prometheus_url: str, name: str, now: float | None = None) -> Series | None:
    """``[times, requests/s, 5xx/s, ms]`` every :data:`STEP_SECONDS` over the last hour (None where
    Prometheus has no figure), or None when there is no Prometheus to ask or it fails."""
    if not prometheus_url or not is_service_name(name):
        return None
    end = int(now if now is not None else time.time())  # not rounded to a step: the last point is the latest scrape
    times = list(range(end - HOUR + STEP_SECONDS, end + 1, STEP_SECONDS))
    series: Series = [[float(t) for t in times]]
    try:
        for query in QUERIES:
            answer = requests.get(f"{prometheus_url}/api/v1/query_range", timeout=TIMEOUT_SECONDS, params={
                "query": query.format(name=name), "start": times[0], "end": times[-1], "step": STEP_SECONDS})
            answer.raise_for_status()
            series.append(aligned(answer.json(), times))
    except (requests.RequestException, ValueError, KeyError, TypeError) as exc:
        log.warning("Prometheus did not answer; the traffic chart starts from live figures", extra={"reason": str(exc)})
        return None
    return series


def aligned(answer: dict[str, Any], times: list[int]) -> list[float | None]:
    """A ``query_range`` answer's one series as a value (or None) at each of ``times``."""
    found = answer["data"]["result"]
    values = {int(float(t)): float(v) for t, v in found[0]["values"]} if found else {}
    return [round(values[t], 3) if t in values and math.isfinite(values[t]) else None for t in times]
