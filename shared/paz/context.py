"""What a service's routes reach in the running app: its settings, etcd, the process's view, discovery.

:func:`paz.web.create_app` makes one :class:`Paz` per app and hands it to the service's ``extend``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from flask import current_app

from .discovery import Discovery
from .etcd import Store
from .metrics import Exporter
from .settings import Settings
from .view import EtcdView
from .written import WriteMark

HealthCheck = Callable[[], dict[str, Any]]


@dataclass
class Paz:
    """What a service's routes reach through :func:`paz_context`."""

    settings: Settings
    etcd: Store
    view: EtcdView
    discovery: Discovery
    written: WriteMark = field(default_factory=WriteMark.from_env)
    health_checks: dict[str, HealthCheck] = field(default_factory=dict)
    spec: dict[str, Any] | None = None
    metrics: Exporter | None = None
    """What ``GET /metrics`` answers; None when ``PAZ_METRICS=false``. A part adds figures read when Prometheus asks with ``metrics.add``."""


def paz_context() -> Paz:
    return current_app.extensions["paz"]
