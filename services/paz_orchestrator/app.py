"""The orchestrator's app factory and settings."""

from __future__ import annotations

from dataclasses import dataclass

from flask import Flask

from paz.settings import Settings, env, parse_positive_float, parse_positive_int
from paz.upstream import Upstream
from paz.web import create_app as create_paz_app

from .events import EventStreams
from .routes import bp
from .upstream import Cluster

NAME = "orchestrator"
PORT = 9000
THREADS = 32
"""Default threads per worker: every open event stream holds one (see :class:`EventStreams`)."""


@dataclass(frozen=True)
class OrchestratorSettings(Settings):
    upstream_timeout: float = env("PAZ_UPSTREAM_TIMEOUT", parse_positive_float, 10.0)
    events_keepalive: float = env("PAZ_EVENTS_KEEPALIVE", parse_positive_float, 15.0)
    events_max_seconds: float = env("PAZ_EVENTS_MAX_SECONDS", parse_positive_float, 600.0)
    events_max_clients: int = env("PAZ_EVENTS_MAX_CLIENTS", parse_positive_int, 0)

    @property
    def stream_limit(self) -> int:
        """Event streams one worker serves at once: by default all threads but four, kept for requests."""
        return self.events_max_clients or max(1, self.threads - 4)


def settings_from_env() -> OrchestratorSettings:
    return OrchestratorSettings.from_env(name=NAME, port=PORT, threads=THREADS)


def create_app(settings: OrchestratorSettings | None = None) -> Flask:
    settings = settings or settings_from_env()
    app = create_paz_app(
        settings,
        [bp],
        description="Central command for the paz platform: services, cluster, health, stats and live events.",
    )
    paz = app.extensions["paz"]
    upstream = Upstream(paz.discovery, settings.upstream_timeout)
    app.extensions["paz.cluster"] = Cluster(upstream, paz.etcd)
    app.extensions["paz.events"] = EventStreams(paz.etcd, settings)
    return app
