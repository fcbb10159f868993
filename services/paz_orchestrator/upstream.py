"""What the orchestrator asks the directory, the scheduler and the load balancers, and how it
combines their answers into cluster views, health and stats.

Every call goes through :class:`paz.upstream.Upstream`, so services are found through etcd, the
request id travels along, and an unreachable service is a 503 that names it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import quote

import requests
from flask import Response, has_request_context

from paz.announce import SERVICES_PREFIX
from paz.errors import ApiError, NotFound
from paz.etcd_client import Etcd
from paz.upstream import Upstream
from paz.web import request_id

DIRECTORY = "paz-service-directory"
SCHEDULER = "paz-scheduler"
LOAD_BALANCER = "paz-haproxy-sync"
STATS_THREADS = 8
STOP_SECONDS = 180.0
"""How long stopping a service may take: the scheduler drains, then Docker waits its stop timeout per container."""
RELAYED_HEADERS = ("Content-Type", "Location", "Retry-After")


def segment(value: str) -> str:
    """``value`` made safe as one path segment of an upstream URL."""
    return quote(value, safe="")


def relay(response: requests.Response) -> Response:
    """An upstream's answer given back as it was: status, body and the headers that matter."""
    relayed = Response(response.content, status=response.status_code)
    for header in RELAYED_HEADERS:
        if header in response.headers:
            relayed.headers[header] = response.headers[header]
    return relayed


def problem(exc: ApiError) -> dict[str, Any]:
    return {"status": exc.status, "message": exc.message}


def _weighted_mean(pairs: Iterable[tuple[float | None, float]]) -> float | None:
    """Mean of values weighted by counts, ignoring unknown values; None when nothing is known."""
    known = [(value, weight) for value, weight in pairs if value is not None]
    total = sum(weight for _, weight in known)
    if not known:
        return None
    if total == 0:
        return round(sum(value for value, _ in known) / len(known), 2)
    return round(sum(value * weight for value, weight in known) / total, 2)


def _sum(values: Iterable[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return round(sum(known), 2) if known else None


class Cluster:
    """The directory, the scheduler and the load balancers, as one cluster."""

    def __init__(self, upstream: Upstream, etcd: Etcd) -> None:
        self.upstream = upstream
        self.etcd = etcd

    # Calls relayed as they are
    def directory(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        return self.upstream.call(DIRECTORY, method, path, **kwargs)

    def scheduler(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        return self.upstream.call(SCHEDULER, method, path, **kwargs)

    # Services
    def stop_service(self, name: str) -> list[str]:
        """Stop every instance of ``name`` through the scheduler; the ids of those it stopped."""
        answer = self.upstream.json(SCHEDULER, "POST", f"/services/{segment(name)}/stop", timeout=STOP_SECONDS)
        return list(answer.get("stopped", []))

    # Units and hosts (the scheduler's view)
    def units(self, service: str | None = None) -> list[dict[str, Any]]:
        params = {"service": service} if service else None
        return self.upstream.json(SCHEDULER, "GET", "/units", params=params)

    def unit(self, unit_id: str) -> dict[str, Any]:
        """One unit with its Docker stats."""
        return self.upstream.json(SCHEDULER, "GET", f"/units/{segment(unit_id)}")

    def unit_state(self, unit_id: str, service: str | None = None) -> dict[str, Any]:
        """One unit without stats (cheap: no Docker stats sample), or 404."""
        for unit in self.units(service):
            if unit["id"] == unit_id:
                return unit
        where = f"service {service!r}" if service else "the cluster"
        raise NotFound(f"No unit {unit_id!r} in {where}; GET /cluster/units lists them.", {"unit": unit_id})

    def hosts(self) -> list[dict[str, Any]]:
        return self.upstream.json(SCHEDULER, "GET", "/hosts")

    def host(self, host_id: str) -> dict[str, Any]:
        return self.upstream.json(SCHEDULER, "GET", f"/hosts/{segment(host_id)}")

    def units_with_stats(self, units: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """``units`` with each one's ``stats`` (Docker samples them, so they are asked for in parallel)."""
        trace = {"X-Request-Id": request_id()} if has_request_context() else {}  # the pool's threads have no request

        def with_stats(unit: dict[str, Any]) -> dict[str, Any]:
            try:
                return self.upstream.json(SCHEDULER, "GET", f"/units/{segment(unit['id'])}", headers=trace)
            except ApiError as exc:
                return {**unit, "stats": None, "statsError": problem(exc)}

        if not units:
            return []
        with ThreadPoolExecutor(min(STATS_THREADS, len(units))) as pool:
            return list(pool.map(with_stats, units))

    def host_with_stats(self, host_id: str) -> dict[str, Any]:
        """A host and the totals of the units running on it."""
        host = self.host(host_id)
        only_host = len(self.hosts()) == 1  # then every unit runs on it, published or not
        names = {str(host.get(key)) for key in ("id", "name", "address") if host.get(key)}
        units = [u for u in self.units() if only_host or str(u.get("host")) in names]
        measured = self.units_with_stats([u for u in units if u.get("state") == "running"])
        stats = [u.get("stats") or {} for u in measured]
        host["stats"] = {
            "units": len(units),
            "unitsRunning": len(measured),
            "cpuPercent": _sum(s.get("cpuPercent") for s in stats),
            "memoryBytes": _sum(s.get("memoryBytes") for s in stats),
        }
        return host

    # Load balancers (every haproxy-sync announced in etcd)
    def load_balancer_names(self) -> list[str]:
        """``paz-haproxy-sync`` and any ``paz-haproxy-sync-<suffix>`` announced (or pinned)."""
        names = {
            node.key.rsplit("/", 1)[-1]
            for node in self.etcd.children(SERVICES_PREFIX)
            if not node.dir and node.value
        }
        names = {n for n in names if n == LOAD_BALANCER or n.startswith(LOAD_BALANCER + "-")}
        settings = self.upstream.discovery.settings
        if settings and settings.override(LOAD_BALANCER):
            names.add(LOAD_BALANCER)
        return sorted(names)

    def load_balancer(self, name: str) -> dict[str, Any]:
        if name not in self.load_balancer_names():
            raise NotFound(f"No load balancer {name!r} is announced; GET /cluster/load-balancers lists them.", {"id": name})
        return self._balancer(name)

    def load_balancers(self) -> list[dict[str, Any]]:
        return [self._balancer(name) for name in self.load_balancer_names()]

    def _balancer(self, name: str) -> dict[str, Any]:
        """One load balancer: address, health and its backends (with HAProxy's stats); ``error`` when it fails."""
        answer: dict[str, Any] = {"id": name, "address": None, "healthy": False, "backends": []}
        try:
            answer["address"] = self.upstream.discovery.address(name)
            answer["backends"] = self.upstream.json(name, "GET", "/backends")
            answer["healthy"] = self.upstream.call(name, "GET", "/health").ok
        except ApiError as exc:
            answer["error"] = problem(exc)
        return answer

    # Stats
    def service_stats(self, name: str) -> dict[str, Any]:
        """Traffic from every load balancer's backend for ``name``, and each instance's CPU and memory."""
        per_balancer = []
        for balancer in self.load_balancers():
            for backend in balancer["backends"]:
                if backend.get("service") == name:
                    per_balancer.append({"loadBalancer": balancer["id"], **(backend.get("stats") or {})})
        instances = self.units_with_stats([u for u in self.units(name) if u.get("state") == "running"])
        instance_stats = [{"id": u["id"], "host": u.get("host"), **(u.get("stats") or {})} for u in instances]
        return {
            "service": name,
            "traffic": _traffic(per_balancer),
            "instances": instance_stats,
            "totals": {
                "instancesRunning": len(instance_stats),
                "cpuPercent": _sum(s.get("cpuPercent") for s in instance_stats),
                "memoryBytes": _sum(s.get("memoryBytes") for s in instance_stats),
            },
        }

    # The whole cluster, counted
    def summary(self) -> dict[str, Any]:
        """Counts of hosts, services, units and load balancers; a part whose source is down is null."""
        problems: list[dict[str, Any]] = []

        def attempt(source: str, read: Callable[[], Any]) -> Any:
            try:
                return read()
            except ApiError as exc:
                problems.append({"source": source, **problem(exc)})
                return None

        services = attempt(DIRECTORY, lambda: self.directory_json("/services"))
        hosts = attempt(SCHEDULER, self.hosts)
        units = attempt(SCHEDULER, self.units) if hosts is not None else None
        balancers = self.load_balancers()
        return {
            "services": None if services is None else len(services),
            "hosts": _counted(hosts),
            "units": _counted(units),
            "loadBalancers": _counted(balancers),
            "healthy": not problems and all(
                part is not None and all(item.get("healthy") for item in part) for part in (hosts, units, balancers)
            ),
            "problems": problems,
        }

    def directory_json(self, path: str) -> Any:
        return self.upstream.json(DIRECTORY, "GET", path)


def _counted(items: list[dict[str, Any]] | None) -> dict[str, int] | None:
    if items is None:
        return None
    return {"total": len(items), "healthy": sum(1 for item in items if item.get("healthy"))}


def _traffic(per_balancer: list[dict[str, Any]]) -> dict[str, Any] | None:
    """Request rate, counts, error rate and response time summed over the load balancers routing a service."""
    if not per_balancer:
        return None
    requests_total = _sum(b.get("requests") for b in per_balancer)
    errors = _sum(b.get("errors5xx") for b in per_balancer)
    return {
        "requestRate": _sum(b.get("requestRate") for b in per_balancer),
        "requests": requests_total,
        "errors5xx": errors,
        "errorRate": round(errors / requests_total, 4) if requests_total and errors is not None else 0.0,
        "responseTimeMs": _weighted_mean((b.get("responseTimeMs"), b.get("requests") or 0) for b in per_balancer),
        "loadBalancers": per_balancer,
    }
