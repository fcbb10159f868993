"""The scheduler's app factory and settings."""

from __future__ import annotations

import re
from dataclasses import dataclass

from flask import Flask

from paz.settings import Settings, SettingsError, env, parse_host, parse_positive_float, parse_positive_int
from paz.upstream import Upstream
from paz.web import create_app as create_paz_app

from .drivers import make_driver
from .engine import Scheduler
from .routes import bp
from .store import SchedulerStore

NAME = "scheduler"
PORT = 9002
_LABEL_KEY = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/-]{0,127}$")


def parse_driver(raw: str) -> str:
    if raw not in ("docker", "swarm", "fleet"):
        raise ValueError("expected docker, swarm or fleet")
    return raw


def parse_labels(raw: str) -> tuple[tuple[str, str], ...]:
    """``k=v,k2=v2`` into pairs; the ``paz.`` labels the scheduler sets itself cannot be given."""
    pairs = []
    for item in (part.strip() for part in raw.split(",") if part.strip()):
        key, sep, value = item.partition("=")
        if not sep or not _LABEL_KEY.match(key) or any(c in value for c in "\n\r\0"):
            raise ValueError(f"{item!r} is not key=value (keys: letters, digits, '.', '_', '/', '-')")
        if key in ("paz.service", "paz.version", "paz.instance", "paz.port"):
            raise ValueError(f"{key} is set by the scheduler itself")
        pairs.append((key, value))
    return tuple(pairs)


def parse_seconds(raw: str) -> float:
    value = float(raw)
    if value < 0:
        raise ValueError("expected a number of seconds, 0 or more")
    return value


def parse_url(raw: str) -> str:
    if not re.match(r"^https?://[^\s/]+(/\S*)?$", raw):
        raise ValueError("expected http://host:port")
    return raw.rstrip("/")


@dataclass(frozen=True)
class SchedulerSettings(Settings):
    driver: str = env("PAZ_DRIVER", parse_driver, "docker")
    docker_host: str = env("DOCKER_HOST", str, "")
    instance_host: str = env("PAZ_INSTANCE_HOST", parse_host, "127.0.0.1")
    instance_labels: tuple[tuple[str, str], ...] = env("PAZ_INSTANCE_LABELS", parse_labels, ())
    instance_ttl: int = env("PAZ_INSTANCE_TTL", parse_positive_int, 30)
    fleet_url: str = env("PAZ_FLEET_URL", parse_url, "")
    hook_token: str = env("PAZ_HOOK_TOKEN", str, "")
    deploy_timeout: float = env("PAZ_DEPLOY_TIMEOUT", parse_positive_float, 60.0)
    drain_seconds: float = env("PAZ_DRAIN_SECONDS", parse_seconds, 2.0)
    stop_timeout: int = env("PAZ_STOP_TIMEOUT", parse_positive_int, 10)
    pull_timeout: float = env("PAZ_PULL_TIMEOUT", parse_positive_float, 15.0)
    probe_interval: float = env("PAZ_PROBE_INTERVAL", parse_positive_float, 2.0)


def settings_from_env() -> SchedulerSettings:
    settings = SchedulerSettings.from_env(name=NAME, port=PORT)
    if settings.driver == "fleet" and not settings.fleet_url:
        raise SettingsError("PAZ_DRIVER=fleet needs PAZ_FLEET_URL, fleet's API base URL (e.g. http://127.0.0.1:49153)")
    return settings


def create_app(settings: SchedulerSettings | None = None) -> Flask:
    settings = settings or settings_from_env()
    app = create_paz_app(
        settings,
        [bp],
        description="Deploy hooks, versioned zero-downtime deploys through a runtime driver, history and journal.",
    )
    paz = app.extensions["paz"]
    driver = make_driver(settings)
    paz.health_checks[driver.name] = driver.health
    app.extensions["paz.scheduler"] = Scheduler(settings, SchedulerStore(paz.etcd), driver, Upstream(paz.discovery))
    return app
