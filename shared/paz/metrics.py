"""What a service measures, in Prometheus' text format at ``GET /metrics``.

Every service counts its requests by method, route template (``/services/<name>``, never the raw
path, so a scan of random paths adds no series) and status, with a latency histogram per route;
the parts add the suite's own figures (deploys, instances, the etcd watch, event streams, router
applies, certificates) through :func:`figures` or, for what is read from etcd when Prometheus asks,
:meth:`Exporter.add`.

One service is one target however many processes serve it: prometheus-client's multiprocess mode.
The server's main process makes a fresh folder (:func:`share`) before it starts workers and the
companion process; each process writes its figures into its own memory-mapped files there, and the
worker that answers ``/metrics`` adds them all up. Nothing here depends on how many workers there
are, or on which process does the background work. A process the server did not start (an app made
in a test, a benchmark) keeps its figures in memory, for itself.
"""

from __future__ import annotations

import atexit
import bisect
import functools
import os
import re
import shutil
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TypeVar

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest, values
from prometheus_client.metrics_core import Metric
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead

FOLDER_ENV = "PROMETHEUS_MULTIPROC_DIR"
"""prometheus-client's own variable: the folder every process of one server writes its figures to."""
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
UNMATCHED = "(unmatched)"
"""The route of a request no route matched (a 404 or 405): one series, whatever the path was."""

MOVE_SECONDS = 1.0
"""How often a process moves the requests it counted into the figures: how late ``/metrics`` may show another worker's."""
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
"""Seconds, for what answers in milliseconds: requests, router applies."""
SLOW_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)
"""Seconds, for what takes seconds to minutes: deploys, certificate orders."""
T = TypeVar("T")
_METHODS = frozenset(("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "CONNECT"))
FOLDER_PREFIX = "paz-metrics-"
"""The figures' folder of a server whose pid is 123 is ``<temp>/paz-metrics-123-<random>``."""
_LIVE_GAUGE_FILE = re.compile(r"^gauge_live\w+_(\d+)\.db$")


def share() -> None:
    """Make the folder for the figures of every process this server starts (in its main process, once).

    A fresh folder per start: figures begin at zero with the server, as Prometheus expects of a
    restarted target, and the folder goes when the server exits. One that a server killed outright
    left behind (SIGKILL, the OOM killer: no exit handler ran) goes when the next server starts; the
    folder's name carries its server's pid to tell.
    """
    _remove_left_behind()
    path = tempfile.mkdtemp(prefix=f"{FOLDER_PREFIX}{os.getpid()}-")
    os.environ[FOLDER_ENV] = path
    atexit.register(shutil.rmtree, path, True)


def _remove_left_behind() -> None:
    for folder in Path(tempfile.gettempdir()).glob(f"{FOLDER_PREFIX}*-*"):
        pid = folder.name[len(FOLDER_PREFIX):].split("-", 1)[0]
        if pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(folder, ignore_errors=True)


def _shared() -> bool:
    return os.path.isdir(os.environ.get(FOLDER_ENV, ""))


@functools.cache
def _process_registry() -> CollectorRegistry | None:
    """Where the figures this process makes go: None in multiprocess mode (their files are read instead).

    Whether a value is kept in memory or in the server's folder is chosen when a figure is made;
    prometheus-client decides it at its import, which in a worker came before the main process
    called :func:`share`, so it is decided again here, before this process makes its first figure.
    """
    values.ValueClass = values.get_value_class()
    return None if _shared() else CollectorRegistry()


def per_process(make: Callable[[CollectorRegistry | None], T]) -> Callable[[], T]:
    """A function answering the figures ``make`` makes, made once per process on first use.

    Each part declares its figures as a class taking the registry (``registry=`` of every figure)
    and reaches them through the function this answers, so a service shows only its parts' figures.
    """
    return functools.cache(lambda: make(_process_registry()))


class Figures:
    """What every process of every service records: its requests and its view of etcd."""

    def __init__(self, registry: CollectorRegistry | None) -> None:
        self.requests = Counter("paz_http_requests", "HTTP requests answered, by method, route template and status.",
                                ("method", "route", "status"), registry=registry)
        self.latency = Histogram("paz_http_request_duration_seconds", "Time to answer an HTTP request, by method and route template.",
                                 ("method", "route"), buckets=LATENCY_BUCKETS, registry=registry)
        self.watch_reconnects = Counter("paz_etcd_watch_reconnects", "Times a process's etcd watch came back after etcd did not answer it.",
                                        registry=registry)
        self.watch_lag = Gauge("paz_etcd_watch_lag_seconds", "How long a process's view of etcd has gone without etcd's answer "
                               "(0 while its watch follows etcd); the largest over the service's processes.",
                               registry=registry, multiprocess_mode="livemax")
        self._tallies: dict[tuple[str, str, int], _Tally] = {}
        self._mover: threading.Thread | None = None

    def request(self, method: str, route: str, status: int, seconds: float) -> None:
        """Count one answered request (a method HTTP does not define counts as ``OTHER``: a client cannot add series)."""
        key = (method if method in _METHODS else "OTHER", route, status)
        tally = self._tallies.get(key)
        if tally is None:
            tally = self._tallies.setdefault(key, _Tally(self.requests.labels(*key), self.latency.labels(*key[:2])))
            self._start_mover()
        tally.add(seconds)

    def move(self) -> None:
        """Move the requests counted since the last move into the figures Prometheus reads."""
        for tally in list(self._tallies.values()):
            tally.move()

    def _start_mover(self) -> None:
        if self._mover is None:
            self._mover = threading.Thread(target=self._move_every, name="paz-metrics", daemon=True)
            self._mover.start()

    def _move_every(self) -> None:
        while True:
            time.sleep(MOVE_SECONDS)
            self.move()


figures = per_process(Figures)


class _Tally:
    """One route's requests in one process, queued as they are answered and moved into the figures
    every :data:`MOVE_SECONDS` (and before this process answers ``/metrics``).

    Counting a request straight into prometheus-client's multiprocess files costs two locked file
    writes and cost the directory's hot read a third of its rate (bench/directory_metrics.py); a
    deque's append is atomic and cheap, in threads and in gevent's greenlets alike, and the mover
    adds up what it takes off in one write per figure.
    """

    def __init__(self, counter: Counter, histogram: Histogram) -> None:
        self.counter, self.histogram = counter, histogram
        self._answered: deque[float] = deque()

    def add(self, seconds: float) -> None:
        self._answered.append(seconds)

    def move(self) -> None:
        total, per_bucket = 0.0, [0] * (len(LATENCY_BUCKETS) + 1)
        for _ in range(len(self._answered)):  # what is there now; later ones wait for the next move
            seconds = self._answered.popleft()
            total += seconds
            per_bucket[bisect.bisect_left(LATENCY_BUCKETS, seconds)] += 1
        if any(per_bucket):
            self.counter.inc(sum(per_bucket))
            observe_many(self.histogram, total, per_bucket)


def observe_many(histogram: Histogram, total: float, per_bucket: list[int]) -> None:
    """Add observations to ``histogram`` (a labelled child) at once: their ``total`` and how many fell in each bucket.

    prometheus-client observes one value at a time; this writes its sum and bucket values directly
    (their attributes ``_sum`` and ``_buckets``), which tests/unit/test_metrics.py checks against
    ``observe`` so that a release that changes them fails there.
    """
    histogram._sum.inc(total)
    for bucket, count in zip(histogram._buckets, per_bucket):
        if count:
            bucket.inc(count)


class _Callback:
    """A collector that calls ``collect`` when Prometheus asks (figures read from etcd, say)."""

    def __init__(self, collect: Callable[[], Iterable[Metric]]) -> None:
        self.collect = collect


class Exporter:
    """What ``GET /metrics`` answers for one app: every process's figures, plus the app's own callbacks."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        if _shared():
            MultiProcessCollector(self.registry)
        else:
            self.registry.register(_Callback(_process_registry().collect))

    def add(self, collect: Callable[[], Iterable[Metric]]) -> None:
        """Add figures computed when Prometheus asks; ``collect`` yields prometheus-client metric families."""
        self.registry.register(_Callback(collect))

    def exposition(self) -> bytes:
        """The text Prometheus scrapes."""
        figures().move()
        if _shared():
            _forget_dead_processes(Path(os.environ[FOLDER_ENV]))
        return generate_latest(self.registry)


def _forget_dead_processes(folder: Path) -> None:
    """Drop the live gauges of processes that are gone (a worker restarted); their counters stay, as counters must."""
    for entry in folder.glob("gauge_live*.db"):
        match = _LIVE_GAUGE_FILE.match(entry.name)
        if match and not _alive(int(match.group(1))):
            mark_process_dead(int(match.group(1)), str(folder))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
