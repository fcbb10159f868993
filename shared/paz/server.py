"""Running a service under gunicorn with exactly one announcer.

A service's process-wide work (its announcer, and tasks such as the scheduler's instance announcer
or haproxy-sync's engine) runs in one companion process that gunicorn's master starts when it is
ready and stops when it exits; workers only answer HTTP. So a service with four workers is still
announced once, and its key is deleted once on a clean stop (SIGTERM or SIGINT).

Why a companion process and not threads in the master: gunicorn forks workers from the master at
any time, and a fork taken while a busy thread holds a lock or an open pipe leaves the new worker
holding it for ever (seen here as a worker hanging on its first request, and as a ``haproxy -c``
pipe that never closed). The companion is a fresh interpreter; it exits by itself as soon as the
master is gone, even one killed with SIGKILL.
"""

from __future__ import annotations

import importlib
import logging
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from typing import Any, Protocol

from flask import Flask
from gunicorn.app.base import BaseApplication

from .announce import Announcer, service_key
from .etcd_client import Etcd
from .logs import configure_logging, logging_config
from .settings import Settings, SettingsError

log = logging.getLogger(__name__)

STOP_SECONDS = 20


class Stoppable(Protocol):
    def stop(self) -> None: ...


BackgroundTask = Callable[[Settings], Stoppable]
"""A module-level callable (it is imported again by name in the companion process)."""


def _import_path(function: Callable[..., Any]) -> str:
    return f"{function.__module__}:{function.__qualname__}"


def _imported(path: str) -> Callable[..., Any]:
    module, _, name = path.partition(":")
    return getattr(importlib.import_module(module), name)


class _Gunicorn(BaseApplication):
    def __init__(self, factory: Callable[[Settings], Flask], settings_of: Callable[[], Settings],
                 settings: Settings, tasks: list[BackgroundTask]) -> None:
        self.factory = factory
        self.settings_of = settings_of
        self.settings = settings
        self.tasks = tasks
        self.companion: subprocess.Popen[bytes] | None = None
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
        argv = [sys.executable, "-m", "paz.server", str(os.getpid()), _import_path(self.settings_of)]
        self.companion = subprocess.Popen(argv + [_import_path(task) for task in self.tasks], stdin=subprocess.DEVNULL)
        log.info("ready", extra={"address": self.settings.address, "companion": self.companion.pid})

    def _on_exit(self, _arbiter: Any) -> None:
        if self.companion:
            self.companion.terminate()
            try:
                self.companion.wait(STOP_SECONDS)
            except subprocess.TimeoutExpired:
                self.companion.kill()
                self.companion.wait()
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
    _Gunicorn(factory, settings_of, settings, tasks or []).run()


def run_companion(master: int, settings_path: str, task_paths: list[str]) -> None:
    """The companion process: the service's announcer and tasks, until SIGTERM or the master is gone."""
    settings = _imported(settings_path)()
    configure_logging(settings.service_name, settings.log_level)
    stopping = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stopping.set())
    announcer = Announcer(Etcd.from_settings(settings), settings.announce_ttl)
    announcer.announce(service_key(settings.service_name), settings.address)
    running: list[Stoppable] = [announcer.start()]
    running.extend(_imported(path)(settings) for path in task_paths)
    while not stopping.wait(0.5) and os.getppid() == master:
        pass
    for task in reversed(running):
        task.stop()


if __name__ == "__main__":
    run_companion(int(sys.argv[1]), sys.argv[2], sys.argv[3:])
