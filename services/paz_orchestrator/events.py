"""The live event stream: etcd's changes under ``/paz``, told as Server-Sent Events.

Each client's stream is its own etcd watch (``waitIndex`` moving past every change it reads), so
the stream needs no shared state between gunicorn workers and sees a change whoever made it: the
orchestrator, a direct call to the directory or scheduler, or an instance's key expiring.

An event's ``id`` is the etcd index of the change. A client that reconnects with ``Last-Event-ID: N``
(or ``?lastEventId=N``) gets every change from N+1 that etcd still holds (etcd v2 keeps the last
1000); when etcd no longer holds them, an ``events-lost`` event says so and the stream goes on from now.

Every stream holds one gunicorn thread, so a worker serves at most ``stream_limit`` streams at once
(503 with Retry-After beyond that), sends a keep-alive comment when nothing happened for
``events_keepalive`` seconds (which also finds clients that went away), and ends each stream after
``events_max_seconds`` with a ``retry`` hint: EventSource clients reconnect with their last id.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from paz import keys
from paz.errors import Unavailable
from paz.etcd_client import Etcd, IndexCleared, Result, StoreUnavailable, WatchTimedOut

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
        body = {"id": self.id, "type": self.type, "service": self.service, **self.data}
        return f"id: {self.id}\nevent: {self.type}\ndata: {json.dumps(body, separators=(',', ':'))}\n\n"


def _document(value: str | None) -> dict[str, Any]:
    try:
        document = json.loads(value or "")
    except ValueError:
        return {}
    return document if isinstance(document, dict) else {}


def _previous(result: Result) -> Result | None:
    return getattr(result, "_prev_node", None)


def _directory_event(result: Result, name: str) -> Event | None:
    index = result.modifiedIndex
    if result.action in keys.GONE:
        return Event(index, "service-deleted", name)
    previous = _previous(result)
    document = _document(result.value)
    if previous is None or previous.value is None:
        return Event(index, "service-created", name, {"dockerRepository": document.get("dockerRepository")})
    before = _document(previous.value).get("config", {})
    after = document.get("config", {})
    changed = sorted(key for key in set(before) | set(after) if before.get(key) != after.get(key))
    if not changed:
        return None
    return Event(index, "config-changed", name, {"changed": changed})


def _instance_event(result: Result, path: str) -> Event | None:
    """``<svc>/<version>/<instance>`` keys: instance-up when an address appears, instance-down when it goes."""
    parts = path.split("/")
    if len(parts) != 3 or result.dir:
        return None
    service, version, instance = parts
    data = {"unit": f"{service}-{version}-{instance}", "version": version, "instance": instance}
    if result.action in keys.GONE:
        reason = "expired" if result.action == "expire" else "withdrawn"
        return Event(result.modifiedIndex, "instance-down", service, {**data, "reason": reason})
    previous = _previous(result)
    if previous is not None and previous.value == result.value:
        return None  # the same address written again (after an etcd outage): nothing changed
    return Event(result.modifiedIndex, "instance-up", service, {**data, "address": result.value})


DEPLOY_EVENTS = {"deploying": "deploy-started", "running": "deploy-finished", "failed": "deploy-failed"}
"""The scheduler's version statuses that start or end a deploy (replaced and stopped show in the journal)."""


def _scheduler_event(result: Result) -> Event | None:
    """Version documents tell a deploy's progress; journal entries everything else the scheduler did."""
    if result.action not in keys.WRITTEN:
        return None
    document = _document(result.value)
    version = keys.parse_version_document(result.key)
    if version is not None:
        status = document.get("status")
        before = _document(getattr(_previous(result), "value", None))
        if status == before.get("status"):
            return _progress_event(result, version, document, before)
        event_type = DEPLOY_EVENTS.get(str(status))
        if event_type is None:
            return None
        shown = ("version", "dockerRepository", "status", "pushedAt", "deployedAt", "message")
        return Event(result.modifiedIndex, event_type, version[0], {k: document[k] for k in shown if k in document})
    entry = keys.relative(result.key, keys.JOURNAL)
    if entry and "/" not in entry and _previous(result) is None:
        return Event(result.modifiedIndex, "journal", document.get("service"), {"entry": document})
    return None


def _progress_event(result: Result, version: tuple[str, int], document: dict[str, Any], before: dict[str, Any]) -> Event | None:
    """deploy-progress when a deploy records its next step (image-pulled, instance-started, old-stopped)."""
    progress = document.get("progress")
    if not isinstance(progress, dict) or progress == before.get("progress"):
        return None
    return Event(result.modifiedIndex, "deploy-progress", version[0], {"version": document.get("version"), **progress})


def describe(result: Result) -> Event | None:
    """The event an etcd change means, or None when it means nothing a user follows."""
    key = result.key or ""
    name = keys.relative(key, keys.DIRECTORY)
    if name and "/" not in name:
        return _directory_event(result, name)
    if keys.relative(key, keys.SCHEDULER):
        return _scheduler_event(result)
    instance = keys.relative(key, keys.SERVICES)
    return _instance_event(result, instance) if instance else None


class EventStreams:
    """Opens event streams for clients, at most ``settings.stream_limit`` at once in this worker."""

    def __init__(self, etcd: Etcd, settings: OrchestratorSettings) -> None:
        self.etcd = etcd
        self.keepalive = settings.events_keepalive
        self.max_seconds = settings.events_max_seconds
        self.limit = settings.stream_limit
        self._active = 0
        self._lock = threading.Lock()

    def current_index(self) -> int:
        """etcd's index now (raises StoreUnavailable when etcd is down)."""
        return self.etcd.read("/").etcd_index

    def open(self, since: int | None, service: str | None = None) -> Iterator[str]:
        """A stream of changes after index ``since`` (after now when None), of one service or all."""
        with self._lock:
            if self._active >= self.limit:
                raise Unavailable(
                    f"This orchestrator worker already serves {self.limit} event streams (PAZ_EVENTS_MAX_CLIENTS); "
                    "retry in a few seconds.",
                    {"retryAfterSeconds": 5},
                )
        next_index = (since if since is not None else self.current_index()) + 1
        return self._stream(next_index, service)

    def _stream(self, next_index: int, service: str | None) -> Iterator[str]:
        with self._lock:
            self._active += 1
        deadline = time.monotonic() + self.max_seconds
        log.info("event stream opened", extra={"from_index": next_index, "filter_service": service})
        try:
            yield f"retry: {RETRY_MS}\n: paz-orchestrator events from etcd index {next_index}\n\n"
            while (remaining := deadline - time.monotonic()) > 0:
                chunk, next_index = self._next(next_index, min(self.keepalive, remaining))
                if isinstance(chunk, Event):
                    if service is None or chunk.service == service or chunk.type == "events-lost":
                        yield chunk.sse()
                elif chunk:
                    yield chunk
            yield ": stream ends after PAZ_EVENTS_MAX_SECONDS; reconnect with Last-Event-ID to go on\n\n"
        finally:
            with self._lock:
                self._active -= 1
            log.info("event stream closed", extra={"next_index": next_index})

    def _next(self, next_index: int, timeout: float) -> tuple[Event | str | None, int]:
        """The next thing to send (an event, a comment, or None) and the index to wait from after it."""
        try:
            result = self.etcd.wait(WATCHED, next_index, timeout=timeout)
        except WatchTimedOut:
            return ": keep-alive\n\n", next_index
        except IndexCleared:
            return self._lost(next_index)
        except StoreUnavailable as exc:
            time.sleep(min(1.0, timeout))
            return f": {exc}; retrying\n\n", next_index
        return describe(result), result.modifiedIndex + 1

    def _lost(self, next_index: int) -> tuple[Event | str, int]:
        try:
            now = self.current_index()
        except StoreUnavailable as exc:
            return f": {exc}; retrying\n\n", next_index
        message = (
            f"etcd no longer holds the changes from index {next_index} to {now}: events in between are lost; "
            "read GET /services and GET /cluster/units for the current state"
        )
        return Event(now, "events-lost", None, {"from": next_index, "to": now, "message": message}), now + 1
