"""Following Marathon: its event stream, its callbacks and its apps, handed to the engine as routes.

:class:`MarathonSource` follows Marathon: it re-reads every app (the events are only hints, in no
order) when its event stream (``GET /v2/events``, SSE) or a callback (``POST /marathon/events``,
relayed by the HTTP workers through a datagram socket) says something changed, after every
(re)connection, and at least every ``PAZ_MARATHON_RESYNC_SECONDS``; a stream silent for
``PAZ_MARATHON_SILENCE_SECONDS`` is dropped and opened again, and the base URLs (``PAZ_MARATHON_URLS``,
else ``/paz/config/marathon``, else the settings file's ``marathon_hosts``) are tried in turn.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import requests

from paz import keys
from paz.etcd import Store, StoreUnavailable
from paz.settings import parse_base_urls
from paz.sse import EventParser, response_lines

from .marathon_model import MarathonApp, SeedReader, parse_apps
from .model import Malformed
from .settings import SyncSettings

log = logging.getLogger(__name__)

EVENT_TYPES = (
    "status_update_event", "health_status_changed_event", "api_post_event",
    "deployment_success", "deployment_failed", "app_terminated_event",
)


def hint_socket(settings: SyncSettings) -> Path:
    """The datagram socket the HTTP workers tell the engine about callbacks through."""
    return settings.state_dir / "marathon.sock"


def send_hint(settings: SyncSettings, event_type: str) -> bool:
    """Tell the engine Marathon said something changed; False when no engine listens."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        try:
            sock.sendto(event_type.encode()[:200], str(hint_socket(settings)))
        except OSError:
            return False
    return True


def host_addresses(urls: tuple[str, ...]) -> list[str]:
    """The IP addresses Marathon's base URLs resolve to: callbacks are accepted only from these."""
    found: set[str] = set()
    for url in urls:
        host = urlsplit(url).hostname or ""
        try:
            found.update(str(info[4][0]) for info in socket.getaddrinfo(host, None, type=socket.SOCK_STREAM))
        except OSError:
            log.warning("a Marathon host does not resolve", extra={"url": url})
    return sorted(found)


class MarathonUnreachable(Exception):
    """No Marathon base URL answered."""


class MarathonSource:
    """Keeps ``on_apps`` told of Marathon's routable apps (an empty dict when no Marathon is configured)."""

    CONNECT_SECONDS = 2.0
    READ_SECONDS = 5.0
    MAX_BACKOFF_SECONDS = 5.0

    def __init__(self, settings: SyncSettings, on_apps: Callable[[dict[str, MarathonApp]], None],
                 on_status: Callable[[dict[str, Any]], None]) -> None:
        self.settings = settings
        self.on_apps = on_apps
        self.on_status = on_status
        self.seed = SeedReader(settings.marathon_settings)
        self._etcd_urls: tuple[str, ...] = ()
        self._current = 0
        self._reread = threading.Event()
        self._urls_changed = threading.Event()
        self._stop = threading.Event()
        self._stream: requests.Response | None = None
        self._connected = False
        self._session = requests.Session()
        self._hints: socket.socket | None = None
        self._threads: list[threading.Thread] = []
        self.status: dict[str, Any] = {}

    @property
    def urls(self) -> tuple[str, ...]:
        return self.settings.marathon_urls or self._etcd_urls or self.seed.current.marathon_urls

    def start(self) -> "MarathonSource":
        self.seed.read()
        self._hints = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        hint_socket(self.settings).unlink(missing_ok=True)
        self._hints.bind(str(hint_socket(self.settings)))
        self._hints.settimeout(1.0)
        self._reread.set()  # a first read (or, with no Marathon, a first empty answer) at once
        for target, name in ((self._read_loop, "read"), (self._stream_loop, "stream"), (self._hint_loop, "hints")):
            thread = threading.Thread(target=target, name=f"paz-marathon-{name}", daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def stop(self) -> None:
        self._stop.set()
        self._reread.set()
        self._close_stream()
        for thread in self._threads:
            thread.join(timeout=5)
        if self._hints:
            self._hints.close()

    # -- where Marathon is ---------------------------------------------------------------------

    def set_urls(self, raw: str | None) -> None:
        """Follow the Marathon URLs of ``/paz/config/marathon`` (None: the key is not there)."""
        try:
            urls = parse_base_urls(raw or "")
        except ValueError as exc:
            log.warning("skipped Marathon's URLs", extra={"key": keys.MARATHON, "reason": str(exc)})
            urls = ()
        if urls != self._etcd_urls:
            self._etcd_urls = urls
            self._current = 0
            log.info("Marathon's URLs changed", extra={"urls": list(self.urls)})
            self._urls_changed.set()
            self._close_stream()
            self._reread.set()

    # -- reading every app ---------------------------------------------------------------------

    def _read_loop(self) -> None:
        backoff = 0.0
        while not self._stop.is_set():
            self._reread.wait(backoff or self.settings.marathon_resync)
            if self._stop.is_set():
                return
            self._reread.clear()
            try:
                self.read_apps()
                backoff = 0.0
            except MarathonUnreachable as exc:
                backoff = min(max(backoff * 2, 0.2), self.MAX_BACKOFF_SECONDS)
                self._report(lastError=str(exc))
                log.warning("Marathon is unreachable; routes stay as last read", extra={"reason": str(exc)})

    def read_apps(self) -> None:
        """Read every app with its tasks from the first Marathon that answers, and hand them on."""
        seed = self.seed.read()
        urls = self.urls
        if not urls:
            self.on_apps({})
            self._report(urls=[], allowedAddresses=[], apps=0)
            return
        payload, url = self._get_apps(urls)
        if self.settings.marathon_callback_url and self.status.get("registeredWith") != list(urls):
            self.register_callback()
            self.status["registeredWith"] = list(urls)
        reserved = {self.settings.http_port, self.settings.stats_port, self.settings.port}
        try:
            apps = parse_apps(payload, seed, reserved)
        except Malformed as exc:
            raise MarathonUnreachable(f"{url}: {exc}") from None
        self.on_apps(apps)
        if self.status.get("urls") != list(urls) or not self.status.get("allowedAddresses"):  # looked up once per change
            self._report(urls=list(urls), allowedAddresses=host_addresses(urls))
        self._report(readFrom=url, lastReadAt=time.time(), apps=len(apps),
                     appIds={app.name: app.app_id for app in apps.values()}, lastError=None)

    def _get_apps(self, urls: tuple[str, ...]) -> tuple[Any, str]:
        problems = []
        for offset in range(len(urls)):
            url = urls[(self._current + offset) % len(urls)]
            try:
                answer = self._session.get(f"{url}/v2/apps", params={"embed": "apps.tasks"},
                                           timeout=(self.CONNECT_SECONDS, self.READ_SECONDS))
                answer.raise_for_status()
                return answer.json(), url
            except (requests.RequestException, ValueError) as exc:
                problems.append(f"{url}: {type(exc).__name__}: {str(exc)[:200]}")
        raise MarathonUnreachable("; ".join(problems))

    def _report(self, **fields: Any) -> None:
        self.status.update(fields)
        self.on_status(dict(self.status))

    # -- the event stream and callbacks ------------------------------------------------------

    def _stream_loop(self) -> None:
        backoff = 0.0
        while not self._stop.is_set():
            self._urls_changed.clear()
            urls = self.urls
            if not urls:
                self._urls_changed.wait(1.0)
                continue
            url = urls[self._current % len(urls)]
            self._connected = False
            try:
                self._follow(url)
                backoff = 0.0
            except requests.RequestException as exc:
                if self._stop.is_set() or self._urls_changed.is_set():
                    continue
                if self._connected:  # it answered, then dropped or went silent: open it again at once
                    backoff = 0.0
                    log.warning("Marathon's event stream dropped or went silent; reconnecting and reading every app",
                                extra={"url": url, "reason": str(exc)[:300]})
                else:
                    self._current += 1
                    backoff = min(max(backoff * 2, 0.1), self.MAX_BACKOFF_SECONDS)
                    log.warning("Marathon's event stream cannot be opened; trying the next URL", extra={"url": url, "reason": str(exc)[:300]})
                self._report(streaming=None, lastStreamError=f"{url}: {str(exc)[:300]}")
                self._stop.wait(backoff)

    def _follow(self, url: str) -> None:
        """Read ``url``'s event stream until it ends or stays silent; every event of interest asks for a re-read."""
        silence = self.settings.marathon_silence
        with self._session.get(f"{url}/v2/events", params=[("event_type", t) for t in EVENT_TYPES],
                               headers={"Accept": "text/event-stream"}, stream=True,
                               timeout=(self.CONNECT_SECONDS, silence)) as response:
            response.raise_for_status()
            self._stream, self._connected = response, True
            self._reread.set()  # whatever happened while no stream was open
            self._report(streaming=url, streamSince=time.time())
            log.info("following Marathon's event stream", extra={"url": url})
            parser = EventParser()
            for line in response_lines(response):
                event = parser.feed(line)
                if event is not None and event.type in EVENT_TYPES:
                    self._reread.set()
                if self._stop.is_set() or self._urls_changed.is_set():
                    return
        log.warning("Marathon's event stream ended; reconnecting and reading every app", extra={"url": url})
        self._reread.set()
        self._report(streaming=None)

    def _close_stream(self) -> None:
        """End the stream's read by shutting its socket down; the reader then closes the response itself.

        Closing the response here would close a buffer another greenlet is reading (under gevent, a
        RuntimeError: "reentrant call"; with threads, a wait for that read)."""
        stream, self._stream = self._stream, None
        connection = getattr(stream.raw, "connection", None) if stream is not None else None
        if connection is not None and connection.sock is not None:
            with contextlib.suppress(OSError):
                connection.sock.shutdown(socket.SHUT_RDWR)

    def _hint_loop(self) -> None:
        assert self._hints is not None
        while not self._stop.is_set():
            try:
                self._hints.recv(256)
            except (TimeoutError, socket.timeout):
                continue
            except OSError:
                return
            self._reread.set()

    def register_callback(self) -> None:
        """Subscribe ``PAZ_MARATHON_CALLBACK_URL`` to Marathon's events (the seed's mode, Marathon before 1.5)."""
        for url in self.urls:
            try:
                self._session.post(f"{url}/v2/eventSubscriptions", params={"callbackUrl": self.settings.marathon_callback_url},
                                   timeout=(self.CONNECT_SECONDS, self.READ_SECONDS)).raise_for_status()
                log.info("registered the callback with Marathon", extra={"url": url})
            except requests.RequestException as exc:
                log.warning("could not register the callback with Marathon", extra={"url": url, "reason": str(exc)[:300]})


def publish(etcd: Store, before: dict[str, MarathonApp], after: dict[str, MarathonApp]) -> None:
    """Write what changed to ``/paz/marathon/apps`` so the orchestrator's event stream tells it.

    With nothing routed before (a start), keys left by an earlier run for apps now gone are removed too.
    """
    try:
        if not before:
            names = {app.name for app in after.values()}
            for node in etcd.list_prefix(keys.MARATHON_APPS).nodes:
                if keys.relative(node.key, keys.MARATHON_APPS) not in names:
                    etcd.delete(node.key)
        for backend, app in after.items():
            if backend not in before or before[backend].published() != app.published():
                etcd.put(keys.marathon_app(app.name), app.published())
        for backend in before.keys() - after.keys():
            etcd.delete(keys.marathon_app(before[backend].name))
    except StoreUnavailable as exc:
        log.warning("could not publish Marathon's apps to etcd", extra={"reason": str(exc)})
