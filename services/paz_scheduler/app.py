"""The scheduler, declared: deploy hooks, versioned zero-downtime deploys through a runtime driver,
history and journal; its companion process runs the deploy controller while this scheduler leads
(:mod:`.controller`) and keeps instance keys in etcd (:mod:`.reconcile`)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from flask import Flask

from paz import keys
from paz.context import Paz
from paz.etcd import Store
from paz.secrets import check_settings
from paz.service import Service
from paz.settings import (
    Settings, SettingsError, env, parse_choice, parse_host, parse_ip, parse_labels, parse_positive_float,
    parse_positive_int, parse_seconds, parse_url,
)
from paz.upstream import Upstream

from .controller import PART
from .drivers import make_driver
from .engine import Scheduler
from .reconcile import start_background
from .routes import bp
from .store import SchedulerStore

DRIVERS = ("docker", "fleet", "swarm")


@dataclass(frozen=True)
class SchedulerSettings(Settings):
    driver: str = env("PAZ_DRIVER", parse_choice(*DRIVERS), "docker")
    docker_host: str = env("DOCKER_HOST", str, "")
    instance_host: str = env("PAZ_INSTANCE_HOST", parse_host, "127.0.0.1")
    instance_labels: tuple[tuple[str, str], ...] = env("PAZ_INSTANCE_LABELS", parse_labels, ())
    instance_dns: str = env("PAZ_INSTANCE_DNS", parse_ip, "")
    """The name server of instances (Docker's ``dns`` option): the suite's, which answers ``<service>.paz``
    and forwards every other name; empty: Docker's default."""
    instance_ttl: int = env("PAZ_INSTANCE_TTL", parse_positive_int, 30)
    fleet_url: str = env("PAZ_FLEET_URL", parse_url, "")
    deploy_timeout: float = env("PAZ_DEPLOY_TIMEOUT", parse_positive_float, 60.0)
    drain_seconds: float = env("PAZ_DRAIN_SECONDS", parse_seconds, 2.0)
    stop_timeout: int = env("PAZ_STOP_TIMEOUT", parse_positive_int, 10)
    pull_timeout: float = env("PAZ_PULL_TIMEOUT", parse_positive_float, 15.0)
    leader_ttl: int = env("PAZ_LEADER_TTL", parse_positive_int, 10)
    """Seconds of the lease by which one scheduler leads: a standby takes over within them when the leader dies."""
    probe_interval: float = env("PAZ_PROBE_INTERVAL", parse_positive_float, 2.0)
    logs_max_seconds: float = env("PAZ_LOGS_MAX_SECONDS", parse_positive_float, 600.0)
    logs_max_clients: int = env("PAZ_LOGS_MAX_FOLLOWERS", parse_positive_int, 0)

    @property
    def logs_max_followers(self) -> int:
        """Followed log streams one worker serves at once: by default all threads but four, kept for requests."""
        return self.logs_max_clients or max(1, self.threads - 4)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.driver == "fleet" and not self.fleet_url:
            raise SettingsError("PAZ_DRIVER=fleet needs PAZ_FLEET_URL, fleet's API base URL (e.g. http://127.0.0.1:49153)")


def attach_scheduler(app: Flask, paz: Paz) -> None:
    settings = paz.settings
    driver = make_driver(settings)
    paz.health_checks[driver.name] = driver.health
    paz.health_checks["leader"] = lambda: leader(paz.etcd, settings.address)
    app.extensions["paz.scheduler"] = Scheduler(settings, SchedulerStore(paz.etcd), driver,
                                                Upstream(paz.discovery, token=settings.token), paz.view)


def leader(etcd: Store, address: str) -> dict[str, Any]:
    """Which scheduler leads (runs the deploy controller): its address, and whether it is this one."""
    value = etcd.value(keys.leader(PART))
    leading = json.loads(value)["address"] if value else None
    return {"leader": leading, "leads": leading == address}


service = Service(
    name="scheduler", port=9002,
    description="Deploy hooks, versioned zero-downtime deploys through a runtime driver, history and journal.",
    blueprint=bp, settings=SchedulerSettings, extend=attach_scheduler, tasks=(start_background,), checks=(check_settings,),
    watches=(keys.SCHEDULER_SERVICES, keys.DESIRED),
)
