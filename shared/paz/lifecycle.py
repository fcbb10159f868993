"""What every server of a service does alike: the work run once per service, and its deadlines.

:mod:`paz.server` says where that work runs (in the main process, or in a companion process).
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys

from . import etcd, keys, withdrawer
from .announce import Announcer
from .service import Service, Stoppable
from .settings import Settings

log = logging.getLogger("paz.server")

STOP_SECONDS = 20
"""How long a companion or withdrawer process may take to end."""
HEADER_SECONDS = 5
"""How long a client may take to send a request's headers (gevent: each of its line and headers; granian: its header timeout)."""
GRACE_SECONDS = 10
"""How long open requests (event streams among them) may go on after SIGTERM."""


def start_background(service: Service, settings: Settings) -> list[Stoppable]:
    """The service's announcer and background tasks, started: what runs once per service."""
    announcer = Announcer(etcd.from_settings(settings), settings.announce_ttl)
    announcer.announce(keys.suite_service(settings.service_name), settings.address)
    running: list[Stoppable] = [announcer.start()]
    running.extend(task(settings) for task in service.tasks)
    return running


def stop_background(running: list[Stoppable]) -> None:
    """Stop what :func:`start_background` started, the announcer (which withdraws the key) last."""
    for task in reversed(running):
        task.stop()


class InProcess:
    """The announcer and tasks of a service, run in its main process (one that never forks), and the
    :mod:`~paz.withdrawer` beside it that withdraws the key should this process be killed."""

    def __init__(self, service: Service, settings: Settings) -> None:
        self.service = service
        self.settings = settings
        self.running: list[Stoppable] = []
        self.withdrawer: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        key = keys.suite_service(self.settings.service_name)
        # -S skips site-packages and with it the .pth of an editable install: every import path is given
        paths = [os.path.dirname(os.path.dirname(os.path.abspath(__file__))), *(path for path in sys.path if path)]
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(paths)}
        self.withdrawer = subprocess.Popen(withdrawer.argv(key, self.settings.address), stdin=subprocess.PIPE, env=env)
        log.info("ready", extra={"address": self.settings.address, "withdrawer": self.withdrawer.pid})
        self.running = start_background(self.service, self.settings)  # announced: callers may come

    def stop(self) -> None:
        stop_background(self.running)
        if self.withdrawer and self.withdrawer.stdin:
            try:
                self.withdrawer.stdin.write(withdrawer.CLEAN + b"\n")
                self.withdrawer.stdin.close()
            except OSError:  # it is gone already
                pass
            self.withdrawer.wait(STOP_SECONDS)
        log.info("stopped", extra={"address": self.settings.address})
