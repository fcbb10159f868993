"""Running a service under its WSGI server with exactly one announcer.

The server is gevent's, in one process (``PAZ_WORKER_CLASS=gevent``, the default: :mod:`paz.green`),
granian's embedded ASGI server, in one process too (``asgi``, the orchestrator's: :mod:`paz.front`),
granian (``granian``: HTTP parsed in Rust, the directory's) or gunicorn (``gthread`` or ``sync``); each
service declares its default (docs/explanation/benchmarks.md says why).

A service's process-wide work (its announcer, and tasks such as the scheduler's instance announcer
or haproxy-sync's engine) runs once per service, whatever its number of workers, so it is announced
once and its key is deleted once on a clean stop (SIGTERM or SIGINT). Where it runs depends on
whether the main process forks:

* gevent's and the embedded ASGI server never fork, and granian's main process forks its workers once, at start, before
  anything of ours runs a thread; so the work runs in the main process (:class:`InProcess`), and a
  small :mod:`~paz.withdrawer` process withdraws the key should the main process be killed. (A
  SIGHUP would make granian fork new workers: nothing here sends one, and the suite's processes
  have no terminal to hang up.)
* gunicorn's master forks workers at any time, and a fork taken while a busy thread holds a lock or
  an open pipe leaves the new worker holding it for ever (seen here as a worker hanging on its first
  request, and as a ``haproxy -c`` pipe that never closed). So there the work runs in a companion
  process (:class:`Companion`) that the master starts when it is ready and stops when it exits: a
  fresh interpreter, which exits by itself as soon as the master is gone, even one killed with
  SIGKILL.
"""

from __future__ import annotations

import ctypes
import logging
import os
import resource
import signal
import subprocess
import sys
import threading
from typing import Any

from flask import Flask

from . import metrics, written
from .lifecycle import GRACE_SECONDS, HEADER_SECONDS, STOP_SECONDS, InProcess, start_background, stop_background
from .logs import configure_logging, logging_config
from .registry import declaration
from .service import Service
from .settings import Settings, SettingsError
from .web import create_app

log = logging.getLogger(__name__)



class Companion:
    """The companion process of one service, started and stopped by the server's main process."""

    def __init__(self, service: Service, settings: Settings) -> None:
        self.service = service
        self.settings = settings
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        argv = [sys.executable, "-m", "paz.server", str(os.getpid()), self.service.package]
        self.process = subprocess.Popen(argv, stdin=subprocess.DEVNULL)
        log.info("ready", extra={"address": self.settings.address, "companion": self.process.pid})

    def stop(self) -> None:
        if self.process:
            self.process.terminate()
            try:
                self.process.wait(STOP_SECONDS)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        log.info("stopped", extra={"address": self.settings.address})


def _gunicorn(service: Service, settings: Settings) -> None:
    """gunicorn's master and workers (``gthread`` or ``sync``), the service's work in a companion.
    gunicorn is imported here only: the gevent and granian servers never need it (about 1 MB a process)."""
    from gunicorn.app.base import BaseApplication

    class Gunicorn(BaseApplication):
        def __init__(self) -> None:
            self.companion = Companion(service, settings)
            super().__init__()

        def load_config(self) -> None:
            options: dict[str, Any] = {
                "bind": f"{settings.host}:{settings.port}",
                "workers": settings.workers,
                "worker_class": settings.worker_class,
                "threads": settings.threads,
                "worker_connections": settings.connections,
                "timeout": 120,
                "graceful_timeout": GRACE_SECONDS,
                "keepalive": HEADER_SECONDS,
                "accesslog": None,
                "errorlog": "-",
                "loglevel": settings.log_level.lower(),
                "logconfig_dict": logging_config(settings.service_name, settings.log_level),
                "proc_name": settings.service_name,
                "control_socket_disable": True,
                "when_ready": lambda _arbiter: self.companion.start(),
                "on_exit": lambda _arbiter: self.companion.stop(),
            }
            for key, value in options.items():
                self.cfg.set(key, value)

        def load(self) -> Flask:
            return create_app(service, settings)

    Gunicorn().run()


def _granian(service: Service, settings: Settings) -> None:
    """granian's WSGI server: HTTP parsed in Rust, the app in ``PAZ_THREADS`` blocking threads per worker."""
    from granian import Granian
    from granian.constants import Interfaces
    from granian.http import HTTP1Settings
    from granian.log import LogLevels

    configure_logging(settings.service_name, settings.log_level)
    os.environ[GRANIAN_PACKAGE] = service.package
    os.environ[GRANIAN_PARENT] = str(os.getpid())
    background = InProcess(service, settings)

    class Server(Granian):
        def startup(self, *args: Any) -> None:
            super().startup(*args)
            background.start()  # after the workers are forked: none of them holds a copy of its threads

    server = Server(
        "paz.server:granian_worker_app", factory=True, interface=Interfaces.WSGI,
        address=settings.host, port=settings.port, workers=settings.workers, blocking_threads=settings.threads,
        http1_settings=HTTP1Settings(header_read_timeout=HEADER_SECONDS * 1000),
        backlog=2048, log_level=LogLevels(settings.log_level.lower()), workers_kill_timeout=GRACE_SECONDS,
        log_dictconfig=logging_config(settings.service_name, settings.log_level),
    )
    server.on_shutdown(background.stop)
    server.serve()


GRANIAN_PACKAGE, GRANIAN_PARENT = "PAZ_GRANIAN_PACKAGE", "PAZ_GRANIAN_PARENT"
PR_SET_PDEATHSIG = 1


def granian_worker_app() -> Flask:
    """The app of a granian worker, which dies with its main process.

    granian's workers outlive a main process killed with SIGKILL and go on answering on its port
    (seen when paz up's supervisor restarted the directory: two generations served at once), so
    each worker asks the kernel for SIGTERM when its parent dies, and exits if that already happened.

    Until granian sets the worker's own signal handlers (after this returns), a SIGTERM would run the
    main process's handler, copied by the fork, and be lost: a worker stopped while it started served
    on (seen when a test stopped a 4-worker directory at once). The default handler ends it.
    """
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != int(os.environ[GRANIAN_PARENT]):
        os.kill(os.getpid(), signal.SIGTERM)
    return create_app(declaration(os.environ[GRANIAN_PACKAGE]))


def serve(service: Service) -> None:
    """Run ``service`` until SIGTERM; a bad setting exits 2 with its reason."""
    try:
        settings = service.settings_from_env()
        for check in service.checks:
            check(settings)
    except SettingsError as exc:
        print(f"paz: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    if settings.worker_class in ("gevent", "asgi"):  # one process, every connection a greenlet or a coroutine
        _allow_open_files(settings.connections + 256)
        if settings.worker_class == "gevent":
            from .green import serve_green  # patched already (paz.launch)

            serve_green(service, settings)
        else:
            from .front import serve_front

            serve_front(service, settings)
        return
    _allow_open_files(settings.workers * settings.connections + 256)
    written.share()
    if settings.metrics:
        metrics.share()  # the workers' figures add up in one folder; a gevent server's are in its own memory
    if settings.worker_class == "granian":
        _granian(service, settings)
    else:
        _gunicorn(service, settings)


def _allow_open_files(wanted: int) -> None:
    """Raise this process's open-file limit (inherited by the workers) towards ``wanted``, within the hard limit.

    Each gevent worker may hold ``PAZ_CONNECTIONS`` sockets; a common soft limit is 1024.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft != resource.RLIM_INFINITY and soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))


def run_companion(master: int, package: str) -> None:
    """The companion process: the service's announcer and tasks, until SIGTERM or the master is gone."""
    service = declaration(package)
    settings = service.settings_from_env()
    configure_logging(settings.service_name, settings.log_level)
    stopping = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stopping.set())
    running = start_background(service, settings)
    while not stopping.wait(0.5) and os.getppid() == master:
        pass
    stop_background(running)


if __name__ == "__main__":
    run_companion(int(sys.argv[1]), sys.argv[2])
