"""Running a service under gunicorn with exactly one announcer.

The announcer (and any other process-wide task a service has, such as the scheduler's Docker
event listener) runs in gunicorn's master, started when the master is ready and stopped when it
exits; workers only answer HTTP. So a service with four workers is still announced once, and its
key is deleted once on a clean stop (SIGTERM or SIGINT).
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from typing import Any, Protocol

from flask import Flask
from gunicorn.app.base import BaseApplication

from .announce import Announcer, service_key
from .etcd_client import Etcd
from .logs import logging_config
from .settings import Settings, SettingsError

log = logging.getLogger(__name__)


class Stoppable(Protocol):
    def stop(self) -> None: ...


BackgroundTask = Callable[[Settings], Stoppable]


class _Gunicorn(BaseApplication):
    def __init__(self, factory: Callable[[Settings], Flask], settings: Settings, tasks: list[BackgroundTask]) -> None:
        self.factory = factory
        self.settings = settings
        self.tasks = tasks
        self.running: list[Stoppable] = []
        super().__init__()

    def load_config(self) -> None:
        options: dict[str, Any] = {
            "bind": f"{self.settings.host}:{self.settings.port}",
            "workers": self.settings.workers,
            "worker_class": "gthread",
            "threads": self.settings.threads,
            "timeout": 120,
            "graceful_timeout": 10,
            "keepalive": 5,
            "accesslog": None,
            "errorlog": "-",
            "loglevel": self.settings.log_level.lower(),
            "logconfig_dict": logging_config(self.settings.service_name, self.settings.log_level),
            "proc_name": self.settings.service_name,
            "control_socket_disable": True,
            "when_ready": self._when_ready,
            "on_exit": self._on_exit,
        }
        for key, value in options.items():
            self.cfg.set(key, value)

    def load(self) -> Flask:
        return self.factory(self.settings)

    def _when_ready(self, _arbiter: Any) -> None:
        announcer = Announcer(Etcd.from_settings(self.settings), self.settings.announce_ttl)
        announcer.announce(service_key(self.settings.service_name), self.settings.address)
        self.running.append(announcer.start())
        self.running.extend(task(self.settings) for task in self.tasks)
        log.info("ready", extra={"address": self.settings.address})

    def _on_exit(self, _arbiter: Any) -> None:
        for task in reversed(self.running):
            task.stop()
        log.info("stopped", extra={"address": self.settings.address})


def serve(
    factory: Callable[[Settings], Flask],
    settings_of: Callable[[], Settings],
    tasks: list[BackgroundTask] | None = None,
) -> None:
    """Run the service made by ``factory`` until SIGTERM; a bad setting exits 2 with its reason."""
    try:
        settings = settings_of()
    except SettingsError as exc:
        print(f"paz: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    _Gunicorn(factory, settings, tasks or []).run()
