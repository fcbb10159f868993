"""What the pages show, made from the orchestrator's answers: per-service rows, the config diff,
the problems worth naming. Plain functions of plain data, so the templates only lay them out."""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass, field
from typing import Any

from paz.errors import ApiError


@dataclass
class ServiceRow:
    name: str
    description: str
    image: str
    instances: int = 0
    healthy: int = 0
    versions: set[int] = field(default_factory=set)

    @property
    def running_version(self) -> str:
        return ", ".join(str(v) for v in sorted(self.versions)) or "not running"

    @property
    def health(self) -> str:
        if not self.instances:
            return "no instance"
        return "healthy" if self.healthy == self.instances else f"{self.instances - self.healthy} unhealthy"


def service_rows(services: list[dict[str, Any]], units: list[dict[str, Any]] | None) -> list[ServiceRow]:
    """One row per service: the versions its running units have, how many run and how many are healthy."""
    rows = {s["name"]: ServiceRow(s["name"], s.get("description", ""), s.get("dockerRepository", "")) for s in services}
    for unit in units or []:
        row = rows.get(unit.get("service", ""))
        if row is None or unit.get("state") != "running":
            continue
        row.instances += 1
        row.healthy += bool(unit.get("healthy"))
        row.versions.add(unit.get("version"))
    return sorted(rows.values(), key=lambda row: row.name)


@dataclass(frozen=True)
class DiffRow:
    key: str
    running: str
    next: str

    @property
    def change(self) -> str:
        if self.running == self.next:
            return "same"
        if self.running == "":
            return "added"
        return "removed" if self.next == "" else "changed"


def shown(value: Any) -> str:
    return "" if value is None else json.dumps(value, sort_keys=True)


def config_diff(running: dict[str, Any] | None, upcoming: dict[str, Any]) -> list[DiffRow]:
    """The next config beside the running one, key by key (env key by key too)."""
    running = running or {}
    rows = []
    for key in sorted(set(running) | set(upcoming)):
        if key == "env":
            rows += env_diff(running.get("env") or {}, upcoming.get("env") or {})
        else:
            rows.append(DiffRow(key, shown(running.get(key)), shown(upcoming.get(key))))
    return rows


def env_diff(running: dict[str, str], upcoming: dict[str, str]) -> list[DiffRow]:
    return [DiffRow(f"env.{key}", shown(running.get(key)), shown(upcoming.get(key))) for key in sorted(set(running) | set(upcoming))]


def unhealthy(kind: str, items: list[dict[str, Any]] | None) -> list[str]:
    """A sentence for each item that is not healthy."""
    return [f"{kind} {item.get('id')}: {item_reason(item)}" for item in items or [] if not item.get("healthy")]


def counted(items: list[dict[str, Any]] | None) -> dict[str, int] | None:
    if items is None:
        return None
    return {"total": len(items), "healthy": sum(1 for item in items if item.get("healthy"))}


def item_reason(item: dict[str, Any]) -> str:
    error = item.get("error")
    if isinstance(error, dict):
        return str(error.get("message", "not healthy"))
    if error:
        return str(error)
    state = item.get("state")
    if state and state != "running":
        return f"its state is {state}"
    if item.get("announced") is False:
        return "it runs but is not announced in etcd"
    return "not healthy"


def failures(answers: dict[str, Any]) -> list[str]:
    """A sentence for each question the orchestrator could not answer."""
    return [f"{name}: {answer.message}" for name, answer in answers.items() if isinstance(answer, ApiError)]


EXPIRY_WARNING = dt.timedelta(days=14)
"""How long before its expiry a certificate that will not be renewed is named on the cluster page."""


def certificate_problems(listing: dict[str, Any] | None, now: dt.datetime) -> list[str]:
    """A sentence for each certificate that expires within :data:`EXPIRY_WARNING` and for each failed order.

    A certificate the routers ordered is renewed at two thirds of its life, so one this close to its end
    is one whose renewals fail; one a user brought is renewed by nobody."""
    if not listing:
        return []
    failed = {failure["name"]: failure for failure in listing["failures"]}
    problems = []
    for certificate in listing["certificates"]:
        name, left = certificate["name"], dt.datetime.fromisoformat(certificate["notAfter"]) - now
        if left > EXPIRY_WARNING:
            continue
        when = "has expired" if left.total_seconds() <= 0 else f"expires in {left.days} day(s), at {certificate['notAfter']}"
        if certificate["source"] == "brought":
            problems.append(f"certificate {name} {when}; it was brought, so nothing renews it: paz certs add {name} CERT KEY")
        else:
            reason = failed.pop(name, {}).get("reason", "no renewal has worked yet")
            problems.append(f"certificate {name} {when} and is not renewed: {reason}")
    return problems + [f"certificate for {name} not ordered (attempt {failure['attempts']}): {failure['reason']}; "
                       f"plain HTTP meanwhile, next try at {failure['retryAt']}" for name, failure in sorted(failed.items())]


def answered(value: Any, default: Any = None) -> Any:
    """``value``, unless it is a failure (which the page names separately)."""
    return default if isinstance(value, ApiError) else value

