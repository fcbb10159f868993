"""The live event stream: etcd's changes under ``/paz``, told as Server-Sent Events.

Every stream fans out from the process's one etcd watch (:class:`paz.view.EtcdView`): the
:class:`EventHub` turns each change into an event once, keeps the last ``PAZ_EVENTS_BUFFER`` events
in order from the worker's start, and wakes the streams waiting on it; a stream is a coroutine of the
server's event loop (:mod:`paz.front`), holding no thread and no etcd watch of its own. It still sees a change whoever made it: the
orchestrator, a direct call to the directory or scheduler, or an instance's key expiring.

An event's ``id`` is the etcd index of the change. A client that reconnects with ``Last-Event-ID: N``
(or ``?lastEventId=N``) gets every change from N+1: from the hub when it still holds them, else from
etcd's own history (etcd v2 keeps the last 1000 changes); when neither does, an ``events-lost``
event says so and the stream goes on from now. The view being read anew after etcd cleared its
history (or came back as a new member) is an ``events-lost`` too, when something changed unseen.

A client that falls ``PAZ_EVENTS_BUFFER`` events behind (it reads too slowly) is cut off with a
comment saying so, without slowing the others; it reconnects with its last id. A stream sends a
keep-alive comment when nothing happened for ``events_keepalive`` seconds and ends after
``events_max_seconds`` with a ``retry`` hint; a worker serves at most ``PAZ_EVENTS_MAX_CLIENTS``
streams at once (503 with Retry-After beyond that).
"""

from __future__ import annotations

import asyncio
import bisect
import json
import logging
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import Gauge

from paz import keys, metrics
from paz.errors import Unavailable
from paz.names import marathon_name
from paz.etcd import EXPIRE, Change, HistoryCompacted, Store, StoreUnavailable, Watch
from paz.view import EtcdView, Listener

from .settings import OrchestratorSettings

log = logging.getLogger(__name__)

WATCHED = keys.ROOT
RETRY_MS = 2000


@dataclass
class Event:
    """One event of the stream: its etcd index, its type and what it is about."""

    id: int
    type: str
    service: str | None = None
    data: dict[str, Any] = field(default_factory=dict)

    def sse(self) -> str:
        """The event as a stream sends it (made once: the hub sends the same event to every stream)."""
        if self._sse is None:
            body = {"id": self.id, "type": self.type, "service": self.service, **self.data}
            self._sse = f"id: {self.id}\nevent: {self.type}\ndata: {json.dumps(body, separators=(',', ':'))}\n\n"
        return self._sse

    _sse: str | None = field(default=None, init=False, repr=False, compare=False)


def _document(value: str | None) -> dict[str, Any]:
    try:
        document = json.loads(value or "")
    except ValueError:
        return {}
    return document if isinstance(document, dict) else {}


def _directory_event(result: Change, name: str) -> Event | None:
    index = result.revision
    if result.gone:
        return Event(index, "service-deleted", name)
    document = _document(result.value)
    if result.previous is None:
        return Event(index, "service-created", name, {"dockerRepository": document.get("dockerRepository")})
    before = _document(result.previous).get("config", {})
    after = document.get("config", {})
    changed = sorted(key for key in set(before) | set(after) if before.get(key) != after.get(key))
    if not changed:
        return None
    return Event(index, "config-changed", name, {"changed": changed})


def _instance_event(result: Change, path: str) -> Event | None:
    """``<svc>/<version>/<instance>`` keys: instance-up when an address appears, instance-down when it goes."""
    parts = path.split("/")
    if len(parts) != 3 or result.folder:
        return None
    service, version, instance = parts
    data = {"unit": f"{service}-{version}-{instance}", "version": version, "instance": instance}
    if result.gone:
        reason = "expired" if result.kind == EXPIRE else "withdrawn"
        return Event(result.revision, "instance-down", service, {**data, "reason": reason})
    if result.previous == result.value:
        return None  # the same address written again (after an etcd outage): nothing changed
    return Event(result.revision, "instance-up", service, {**data, "address": result.value})


DEPLOY_EVENTS = {"deploying": "deploy-started", "running": "deploy-finished", "failed": "deploy-failed"}
"""The scheduler's version statuses that start or end a deploy (replaced and stopped show in the journal)."""


def _scheduler_event(result: Change) -> Event | None:
    """Version documents tell a deploy's progress; journal entries everything else the scheduler did."""
    if result.gone:
        return None
    document = _document(result.value)
    version = keys.parse_version_document(result.key)
    if version is not None:
        status = document.get("status")
        before = _document(result.previous)
        if status == before.get("status"):
            return _progress_event(result, version, document, before)
        event_type = DEPLOY_EVENTS.get(str(status))
        if event_type is None:
            return None
        shown = ("version", "dockerRepository", "status", "pushedAt", "deployedAt", "message")
        return Event(result.revision, event_type, version[0], {k: document[k] for k in shown if k in document})
    entry = keys.relative(result.key, keys.JOURNAL)
    if entry and "/" not in entry and result.previous is None:
        return Event(result.revision, "journal", document.get("service"), {"entry": document})
    return None


def _progress_event(result: Change, version: tuple[str, int], document: dict[str, Any], before: dict[str, Any]) -> Event | None:
    """deploy-progress when a deploy records its next step (image-pulled, instance-started, old-stopped)."""
    progress = document.get("progress")
    if not isinstance(progress, dict) or progress == before.get("progress"):
        return None
    return Event(result.revision, "deploy-progress", version[0], {"version": document.get("version"), **progress})



def _marathon_event(result: Change) -> Event | None:
    """haproxy-sync's routes of Marathon apps, and changes the orchestrator forwarded to Marathon."""
    name = keys.relative(result.key, keys.MARATHON_APPS)
    if name and "/" not in name:
        if result.gone:
            return Event(result.revision, "marathon-app-unrouted", name, {"source": "marathon"})
        return Event(result.revision, "marathon-app-routed", name, {"source": "marathon", **_document(result.value)})
    if keys.relative(result.key, keys.MARATHON_CHANGES) and not result.gone:
        change = _document(result.value)
        routed = marathon_name(str(change.get("app", ""))) or None
        return Event(result.revision, "marathon-change-forwarded", routed, {"source": "marathon", **change})
    return None


def describe(result: Change) -> Event | None:
    """The event an etcd change means, or None when it means nothing a user follows."""
    key = result.key or ""
    if keys.relative(key, keys.MARATHON_ROOT):
        return _marathon_event(result)
    name = keys.relative(key, keys.DIRECTORY)
    if name and "/" not in name:
        return _directory_event(result, name)
    if keys.relative(key, keys.SCHEDULER):
        return _scheduler_event(result)
    instance = keys.relative(key, keys.SERVICES)
    return _instance_event(result, instance) if instance else None




def _lost(first: int, now: int) -> Event:
    message = (
        f"etcd no longer holds the changes from index {first} to {now}: events in between are lost; "
        "read GET /services and GET /cluster/units for the current state"
    )
    return Event(now, "events-lost", None, {"from": first, "to": now, "message": message})


class Bell:
    """Wakes every coroutine of one event loop that waits on it; rung from any thread."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self._next: asyncio.Future[None] = loop.create_future()

    def ring(self) -> None:
        try:
            self.loop.call_soon_threadsafe(self._ring)
        except RuntimeError:  # the loop is closed: the server stopped, no stream waits
            pass

    def _ring(self) -> None:
        rung, self._next = self._next, self.loop.create_future()
        rung.set_result(None)

    async def wait(self, timeout: float) -> None:
        """Until the next ring, or ``timeout`` seconds."""
        await asyncio.wait((self._next,), timeout=timeout)


class EventHub:
    """The events of the process's one etcd watch, in order: the last ``size`` of them are held.

    A stream reads from a cursor (the id of the last event it sent) and waits on the hub's bell in
    the event loop; the watch thread describes each change once and rings it.
    """

    def __init__(self, view: EtcdView, size: int) -> None:
        self.view = view
        self.size = size
        self._events: list[Event] = []
        self._floor: int | None = None
        """Every event after this index is held (None until the view is read)."""
        self._reached = 0
        self._changed = threading.Lock()
        self._bell: Bell | None = None
        self._listening = False

    def follow(self) -> "EventHub":
        """Start holding events now (the worker's start), so a client resuming later finds them here."""
        with self._changed:
            if not self._listening:
                self._listening = True
                self.view.listen(Listener(changed=self._on_change, reloaded=self._on_reload))
        return self

    @property
    def reached(self) -> int:
        """The etcd index the hub has seen every change up to (waits for etcd's first read, or raises
        StoreUnavailable: never asked in the event loop)."""
        self.follow()
        self.view.index  # noqa: B018 - waits for the first read, or raises StoreUnavailable
        return self._reached

    def holds(self, cursor: int) -> bool:
        """Whether every event after ``cursor`` is still held."""
        self.follow()
        with self._changed:
            return self._floor is not None and cursor >= self._floor

    async def read(self, cursor: int, timeout: float) -> tuple[list[Event] | None, int]:
        """The events after ``cursor`` (waiting up to ``timeout`` for one) and the cursor after them;
        None when the hub no longer holds them all (the reader fell behind)."""
        if self._reached <= cursor:
            if self._bell is None:
                self._bell = Bell(asyncio.get_running_loop())
            deadline = time.monotonic() + timeout
            while self._reached <= cursor and (remaining := deadline - time.monotonic()) > 0:
                await self._bell.wait(remaining)
        with self._changed:
            if self._floor is None or cursor < self._floor:
                return None, cursor
            first = bisect.bisect_right(self._events, cursor, key=lambda event: event.id)
            return self._events[first:], max(cursor, self._reached)

    def _reach(self, index: int) -> None:
        """Record that every change up to ``index`` is seen, and wake the waiting streams (lock held)."""
        self._reached = max(self._reached, index)
        if self._bell is not None:
            self._bell.ring()

    def _on_change(self, change: Change) -> None:
        event = describe(change)
        with self._changed:
            if event is not None:
                self._events.append(event)
                self._trim()
            self._reach(change.revision)

    def _on_reload(self, lost: bool, index: int) -> None:
        with self._changed:
            if self._floor is None:
                self._floor = index
            elif lost:
                self._events.append(_lost(self._reached + 1, index))
                self._trim()
            self._reach(index)

    def _trim(self) -> None:
        if len(self._events) > 2 * self.size:
            dropped = len(self._events) - self.size
            self._floor = self._events[dropped - 1].id
            del self._events[:dropped]


stream_clients = metrics.per_process(lambda registry: Gauge(
    "paz_event_stream_clients", "Clients following the orchestrator's event stream now.",
    registry=registry, multiprocess_mode="livesum"))


class EventStreams:
    """Opens event streams for clients, at most ``settings.stream_limit`` at once in this worker."""

    HISTORY_WAIT_SECONDS = 1.0

    def __init__(self, etcd: Store, view: EtcdView, settings: OrchestratorSettings) -> None:
        self.etcd = etcd
        self.view = view
        self.hub = EventHub(view, settings.events_buffer).follow()
        self.keepalive = settings.events_keepalive
        self.max_seconds = settings.events_max_seconds
        self.limit = settings.stream_limit
        stream_clients()  # shown, at 0, before the first client
        self._active = 0
        self._lock = threading.Lock()

    def open(self, since: int | None, service: str | None = None) -> AsyncIterator[bytes]:
        """A stream of changes after index ``since`` (after now when None), of one service or all,
        for the event loop to send (the checks run here, in the request's thread)."""
        with self._lock:
            if self._active >= self.limit:
                raise Unavailable(
                    f"This orchestrator worker already serves {self.limit} event streams (PAZ_EVENTS_MAX_CLIENTS); "
                    "retry in a few seconds.",
                    {"retryAfterSeconds": 5},
                )
        cursor = since if since is not None else self.hub.reached
        return self._stream(cursor, service)

    async def _stream(self, cursor: int, service: str | None) -> AsyncIterator[bytes]:
        """Counted from its first chunk to its end (a response never sent holds no slot)."""
        with self._lock:
            self._active += 1
        stream_clients().inc()
        deadline = time.monotonic() + self.max_seconds
        log.debug("event stream opened", extra={"from_index": cursor + 1, "filter_service": service})
        wanted = (lambda event: True) if service is None else (lambda event: event.service == service or event.type == "events-lost")
        try:
            yield f"retry: {RETRY_MS}\n: paz-orchestrator events from etcd index {cursor + 1}\n\n".encode()
            if not self.hub.holds(cursor):
                history = self._from_history(cursor, wanted)
                while isinstance(chunk := await asyncio.to_thread(_step, history), str):
                    yield chunk.encode()
                cursor = chunk.value
            while (remaining := deadline - time.monotonic()) > 0:
                events, cursor = await self.hub.read(cursor, min(self.keepalive, remaining))
                if events is None:
                    yield f": this client fell more than {self.hub.size} events behind; reconnect with Last-Event-ID\n\n".encode()
                    return
                chunk = "".join(event.sse() for event in events if wanted(event))
                yield (chunk or self._idle()).encode()
            yield b": stream ends after PAZ_EVENTS_MAX_SECONDS; reconnect with Last-Event-ID to go on\n\n"
        finally:
            with self._lock:
                self._active -= 1
            stream_clients().dec()
            log.debug("event stream closed", extra={"next_index": cursor + 1})

    def _idle(self) -> str:
        away = self.view.away
        return f": {away}; the stream goes on when etcd is back\n\n" if away else ": keep-alive\n\n"

    def _from_history(self, cursor: int, wanted: Callable[[Event], bool]) -> Iterator[str]:
        """The changes after ``cursor`` that the hub never held, read from etcd's history up to the hub's floor
        (through a watch of this stream's own, closed when done: the hub serves the rest). It blocks, so
        the stream runs it in a thread, a step at a time."""
        until = self.hub.reached
        watch: Watch | None = None
        try:
            while not self.hub.holds(cursor):
                try:
                    watch = watch or self.etcd.watch(WATCHED, cursor + 1)
                    change = watch.next(self.HISTORY_WAIT_SECONDS)
                except HistoryCompacted:
                    yield _lost(cursor + 1, until).sse()
                    return until
                except StoreUnavailable as exc:
                    if watch is not None:
                        watch.close()
                    watch = None
                    yield f": {exc}; retrying\n\n"
                    time.sleep(self.HISTORY_WAIT_SECONDS)
                    continue
                if change is None:
                    return until  # nothing more happened below /paz
                event = describe(change)
                if event is not None and wanted(event):
                    yield event.sse()
                cursor = change.revision
            return cursor
        finally:
            if watch is not None:
                watch.close()


def _step(chunks: Iterator[str]) -> str | StopIteration:
    """The next chunk of ``chunks``, or the StopIteration that carries its return value (which cannot
    cross into a future raised)."""
    try:
        return next(chunks)
    except StopIteration as stop:
        return stop
