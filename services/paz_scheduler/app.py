"""The scheduler, declared: deploy hooks, versioned zero-downtime deploys through a runtime driver,
history and journal; beside the app it runs the deploy controller while this scheduler leads
(:mod:`.controller`) and keeps instance keys in etcd (:mod:`.reconcile`)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from flask import Flask

from paz import keys
from paz.context import Paz
from paz.etcd import Store
from paz.secrets import Keyring, check_settings
from paz.service import Service
from paz.settings import (
    Settings, SettingsError, env, parse_choice, parse_host, parse_ip, parse_labels, parse_positive_float,
    parse_positive_int, parse_seconds, parse_url,
)
from paz.upstream import Upstream

from .controller import PART
from .drivers import make_driver
from .engine import Scheduler
from .images import RegistryGate
from .figures import instance_figures
from .reconcile import start_background
from .routes import bp
from .store import SchedulerStore

DRIVERS = ("docker", "fleet", "swarm")
GREEN_FOLLOWERS = 256
"""Followed log streams by default under gevent: two file descriptors each, far within PAZ_CONNECTIONS."""


@dataclass(frozen=True)
class SchedulerSettings(Settings):
    driver: str = env("PAZ_DRIVER", parse_choice(*DRIVERS), "docker")
    """The runtime: ``docker``, ``swarm`` or ``fleet``."""
    docker_host: str = env("DOCKER_HOST", str, "")
    """The Docker Engine (a swarm manager with ``swarm``); empty: Docker's default socket. Docker's own variables (``DOCKER_TLS_VERIFY``) apply too."""
    instance_host: str = env("PAZ_INSTANCE_HOST", parse_host, "127.0.0.1")
    """Address container ports are published on and announced with."""
    instance_labels: tuple[tuple[str, str], ...] = env("PAZ_INSTANCE_LABELS", parse_labels, ())
    """Extra labels ``k=v,k2=v2`` on every container; the scheduler only manages containers carrying them."""
    instance_dns: str = env("PAZ_INSTANCE_DNS", parse_ip, "")
    """The name server of instances (Docker's ``dns`` option): the suite's, which answers ``<service>.paz``
    and forwards every other name; empty: Docker's default."""
    instance_ttl: int = env("PAZ_INSTANCE_TTL", parse_positive_int, 30)
    """TTL of instance keys in seconds (refreshed every third of it)."""
    fleet_url: str = env("PAZ_FLEET_URL", parse_url, "")
    """fleet's API base URL (needed with ``PAZ_DRIVER=fleet``)."""
    deploy_timeout: float = env("PAZ_DEPLOY_TIMEOUT", parse_positive_float, 60.0)
    """Seconds new instances have to serve."""
    drain_seconds: float = env("PAZ_DRAIN_SECONDS", parse_seconds, 2.0)
    """Wait between withdrawing old keys and stopping old containers."""
    stop_timeout: int = env("PAZ_STOP_TIMEOUT", parse_positive_int, 10)
    """Seconds a container has after SIGTERM before SIGKILL."""
    pull_timeout: float = env("PAZ_PULL_TIMEOUT", parse_positive_float, 15.0)
    """Seconds a pull may take before the engine's own copy is used."""
    leader_ttl: int = env("PAZ_LEADER_TTL", parse_positive_int, 10)
    """Seconds of the lease by which one scheduler leads: a standby takes over within them when the leader dies."""
    probe_interval: float = env("PAZ_PROBE_INTERVAL", parse_positive_float, 2.0)
    """Seconds between health probes of announced instances (two failed probes withdraw a key)."""
    keep_versions: int = env("PAZ_KEEP_VERSIONS", parse_positive_int, 10)
    """How many of a service's newest versions keep their image in the suite's registry (for rollback);
    older ones are deleted from it once a deploy serves."""
    logs_max_seconds: float = env("PAZ_LOGS_MAX_SECONDS", parse_positive_float, 600.0)
    """How long a followed log stream lasts at most (then it ends; follow again)."""
    logs_max_followers: int = env("PAZ_LOGS_MAX_FOLLOWERS", parse_positive_int, 0)
    """Followed log streams this scheduler serves at once (beyond: 503). Empty: 256 under gevent
    (each holds a greenlet and a connection to the engine), the threads minus 4 under a threaded worker
    (each holds a thread; four are kept for requests)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.logs_max_followers:  # frozen: the default depends on the worker class, known only now
            default = GREEN_FOLLOWERS if self.worker_class == "gevent" else max(1, self.threads - 4)
            object.__setattr__(self, "logs_max_followers", default)
        if self.driver == "fleet" and not self.fleet_url:
            raise SettingsError("PAZ_DRIVER=fleet needs PAZ_FLEET_URL, fleet's API base URL (e.g. http://127.0.0.1:49153)")


def attach_scheduler(app: Flask, paz: Paz) -> None:
    settings = paz.settings
    driver = make_driver(settings)
    paz.health_checks[driver.name] = driver.health
    paz.health_checks["leader"] = lambda: leader(paz.etcd, settings.address)
    if paz.metrics:
        paz.metrics.add(lambda: instance_figures(paz.view))
    app.extensions["paz.scheduler"] = Scheduler(settings, SchedulerStore(paz.etcd), driver,
                                                Upstream(paz.discovery, token=settings.token), paz.view)
    app.extensions["paz.registry_gate"] = RegistryGate(paz.etcd, Keyring(settings.secrets_key_file))


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
