"""What the orchestrator asks the directory, the scheduler and the load balancers, and how it
combines their answers into cluster views, health and stats.

Every call goes through :class:`paz.upstream.Upstream`, so services are found through etcd, the
request id travels along, and an unreachable service is a 503 that names it. An answer the
orchestrator cannot use (a failure of the service itself, or a body of the wrong shape) is a 502
that names the service.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from http.client import responses
from typing import TYPE_CHECKING, Any, TypeAlias
from urllib.parse import quote

import requests
from flask import has_request_context

from paz import keys
from paz.errors import ApiError, BadGateway, NotFound
from paz.view import EtcdView
from paz.upstream import Upstream, UpstreamError
from paz.web import request_id

if TYPE_CHECKING:
    import httpx

log = logging.getLogger(__name__)

DIRECTORY = "paz-service-directory"
SCHEDULER = "paz-scheduler"
LOAD_BALANCER = "paz-haproxy-sync"
STATS_THREADS = 8
STOP_SECONDS = 180.0
DEPLOY_SECONDS = 300.0
"""How long a deploy or rollback may take: a pull, the instances starting and serving, the old ones drained and stopped."""
"""How long stopping a service may take: the scheduler drains, then Docker waits its stop timeout per container."""
PASSED_ON_FAILURES = (502, 503)
"""Server errors an upstream answers that are passed on as they are: its own upstream or etcd is down."""

Shape = type[dict] | type[list]


def segment(value: str) -> str:
    """``value`` made safe as one path segment of an upstream URL."""
    return quote(value, safe="")


def own_failure(status: int) -> bool:
    """Whether ``status`` is a failure of the upstream itself, not one it passes on."""
    return status >= 500 and status not in PASSED_ON_FAILURES


def failed(service: str, method: str, path: str, what: str) -> BadGateway:
    """The 502 for ``service`` failing, or answering what the orchestrator cannot use."""
    return BadGateway(
        f"{service} could not answer {method} {path}: {what}; its log has this request id",
        {"service": service},
    )


Answer: TypeAlias = "requests.Response | httpx.Response"
"""An upstream's answer, from :meth:`paz.upstream.Upstream.call` or (read whole) :meth:`~paz.upstream.Upstream.opening`."""


def unusable_answer(service: str, method: str, path: str, response: Answer) -> BadGateway | None:
    """Why an answer cannot be passed on (a failure of ``service`` itself, or a body that is not JSON), else None."""
    if own_failure(response.status_code):
        return failed(service, method, path, f"it answered {response.status_code} {responses.get(response.status_code, '')}")
    if response.content and "json" not in response.headers.get("Content-Type", ""):
        return failed(service, method, path, "its answer is not JSON")
    return None


def _has_shape(answer: Any, shape: Shape) -> bool:
    if shape is list:
        return isinstance(answer, list) and all(isinstance(item, dict) for item in answer)
    return isinstance(answer, dict)


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

    def __init__(self, upstream: Upstream, view: EtcdView) -> None:
        self.upstream = upstream
        self.view = view

    def ask(self, service: str, method: str, path: str, shape: Shape, **kwargs: Any) -> Any:
        """The JSON body of ``service``'s 2xx answer to ``method path``, an object or a list of objects as ``shape`` says.

        An error it answers is raised with its own status (:class:`~paz.upstream.UpstreamError`),
        except a failure of its own, which is a 502, as is a body of another shape.
        """
        try:
            answer = self.upstream.json(service, method, path, **kwargs)
        except UpstreamError as exc:
            if own_failure(exc.status):
                raise failed(service, method, path, f"it answered {exc.status}: {exc.message}") from exc
            raise
        if not _has_shape(answer, shape):
            raise failed(service, method, path, f"its answer is not {'an object' if shape is dict else 'a list of objects'}")
        return answer

    # Services
    def service(self, name: str) -> dict[str, Any]:
        """The directory's document of ``name`` (its 404 when there is none)."""
        return self.ask(DIRECTORY, "GET", f"/services/{segment(name)}", dict)

    def stop_service(self, name: str) -> list[str]:
        """Stop every instance of ``name`` through the scheduler; the ids of those it stopped."""
        answer = self.ask(SCHEDULER, "POST", f"/services/{segment(name)}/stop", dict, timeout=STOP_SECONDS)
        return list(answer.get("stopped", []))

    # Units and hosts (the scheduler's view)
    def units(self, service: str | None = None) -> list[dict[str, Any]]:
        params = {"service": service} if service else None
        return self.ask(SCHEDULER, "GET", "/units", list, params=params)

    def unit(self, unit_id: str) -> dict[str, Any]:
        """One unit with its Docker stats."""
        return self.ask(SCHEDULER, "GET", f"/units/{segment(unit_id)}", dict)

    def unit_state(self, unit_id: str, service: str | None = None) -> dict[str, Any]:
        """One unit without stats (cheap: no Docker stats sample), or 404."""
        for unit in self.units(service):
            if unit.get("id") == unit_id:
                return unit
        where = f"service {service!r}" if service else "the cluster"
        raise NotFound(f"No unit {unit_id!r} in {where}; GET /cluster/units lists them.", {"unit": unit_id})

    def hosts(self) -> list[dict[str, Any]]:
        return self.ask(SCHEDULER, "GET", "/hosts", list)

    def host(self, host_id: str) -> dict[str, Any]:
        return self.ask(SCHEDULER, "GET", f"/hosts/{segment(host_id)}", dict)

    def units_with_stats(self, units: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """``units`` with each one's ``stats`` (Docker samples them, so they are asked for in parallel)."""
        trace = {"X-Request-Id": request_id()} if has_request_context() else {}  # the pool's threads have no request

        def with_stats(unit: dict[str, Any]) -> dict[str, Any]:
            try:
                return self.ask(SCHEDULER, "GET", f"/units/{segment(str(unit.get('id')))}", dict, headers=trace)
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
            for node in self.view.children(keys.SERVICES)
            if node.value
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
            answer["backends"] = self.ask(name, "GET", "/backends", list)
            answer["healthy"] = self.upstream.call(name, "GET", "/health").ok
        except ApiError as exc:
            answer["error"] = problem(exc)
        return answer

    def exporters(self) -> dict[str, str]:
        """Each load balancer's HAProxy exporter address, as its /health tells it; one that does not answer is left out."""
        found = {}
        for name in self.load_balancer_names():
            try:
                health = self.upstream.call(name, "GET", "/health").json()
                found[name] = health["checks"]["haproxy"]["exporter"]
            except (ApiError, ValueError, KeyError, TypeError) as exc:
                log.info("no exporter address from a load balancer", extra={"load_balancer": name, "reason": str(exc)})
        return found

    # Stats
    def service_stats(self, name: str) -> dict[str, Any]:
        """Traffic from every load balancer's backend for ``name``, and each instance's CPU and memory."""
        per_balancer, backends = [], []
        for balancer in self.load_balancers():
            for backend in balancer["backends"]:
                if backend.get("service") == name:
                    backends.append(backend)
                    per_balancer.append({"loadBalancer": balancer["id"], **(backend.get("stats") or {})})
        if backends and all(backend.get("source") == "marathon" for backend in backends):
            return _marathon_stats(name, backends, per_balancer)
        self.service(name)
        instances = self.units_with_stats([u for u in self.units(name) if u.get("state") == "running"])
        instance_stats = [{**(u.get("stats") or {}), "id": u.get("id"), "host": u.get("host")} for u in instances]
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

        services = attempt(DIRECTORY, lambda: self.ask(DIRECTORY, "GET", "/services", list))
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


def _marathon_stats(name: str, backends: list[dict[str, Any]], per_balancer: list[dict[str, Any]]) -> dict[str, Any]:
    """A Marathon app's traffic and its tasks as the load balancers route them (Marathon gives no CPU or memory here)."""
    tasks = {server.get("name"): server.get("address") for backend in backends for server in backend.get("servers") or []}
    answer = {
        "service": name, "source": "marathon", "traffic": _traffic(per_balancer),
        "instances": [{"id": str(task), "host": address} for task, address in sorted(tasks.items(), key=lambda t: str(t[0]))],
        "totals": {"instancesRunning": len(tasks), "cpuPercent": None, "memoryBytes": None},
    }
    app = next((b["marathonApp"] for b in backends if isinstance(b.get("marathonApp"), str)), None)
    return {**answer, "marathonApp": app} if app else answer


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
