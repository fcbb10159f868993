"""Marathon's apps as routes: what Marathon says, parsed like etcd's values, and how it is followed.

The model (:class:`MarathonApp`, :func:`parse_apps`, :class:`SeedFile`) turns Marathon's
``GET /v2/apps?embed=apps.tasks`` and the seed's settings file into validated routes: an app
``/a/b/c`` is routed as ``c-b-a.paz`` (Mesos-DNS's naming), on each host name of its
``HAPROXY_{n}_VHOST`` labels, and on a frontend of its own listening on its service port. A bad app,
task or label is skipped with a log line naming it; the rest keeps routing.

:class:`MarathonSource` follows Marathon: it re-reads every app (the events are only hints, in no
order) when its event stream (``GET /v2/events``, SSE) or a callback (``POST /marathon/events``,
relayed by the HTTP workers through a datagram socket) says something changed, after every
(re)connection, and at least every ``PAZ_MARATHON_RESYNC_SECONDS``; a stream silent for
``PAZ_MARATHON_SILENCE_SECONDS`` is dropped and opened again, and the base URLs (``PAZ_MARATHON_URLS``,
else ``/paz/config/marathon``, else the settings file's ``marathon_hosts``) are tried in turn.
"""

from __future__ import annotations

import json
import logging
import re
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import requests

from paz import keys
from paz.etcd_client import Etcd, KeyNotFound, Result, StoreUnavailable
from paz.names import MARATHON_APP_ID, marathon_name
from paz.settings import parse_base_urls
from paz.watch import Watcher

from .model import BasicAuth, Instance, Malformed, RouterSettings, basic_auth, parse_address, parse_host_name
from .settings import SyncSettings

log = logging.getLogger(__name__)

BACKEND_PREFIX = "marathon_"
"""Marathon apps' backends are ``marathon_<name>``: no paz service name has a ``_``, so they never collide."""
EVENT_TYPES = (
    "status_update_event", "health_status_changed_event", "api_post_event",
    "deployment_success", "deployment_failed", "app_terminated_event",
)
_TASK_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
_VHOST_LABEL = re.compile(r"^HAPROXY_[0-9]{1,2}_VHOST$")
RUNNING = "TASK_RUNNING"


# -- the seed's settings file -----------------------------------------------------------------


@dataclass(frozen=True)
class SeedService:
    """One entry of the settings file's ``services``: the seed's per-service settings."""

    port: int | None = None
    backend_port: int | None = None
    auth: BasicAuth | None = None
    refused: str | None = None


@dataclass(frozen=True)
class SeedFile:
    """The seed's JSON settings (``PAZ_MARATHON_SETTINGS``): Marathon's hosts and per-service settings."""

    marathon_urls: tuple[str, ...] = ()
    services: dict[str, SeedService] = field(default_factory=dict)

    def service(self, app_id: str, name: str) -> SeedService:
        """The settings of an app, named in the file by its id (``/a/b``, ``a/b``) or routed name (``b-a``)."""
        for key in (app_id, app_id.lstrip("/"), name):
            if key in self.services:
                return self.services[key]
        return SeedService()


def _port(raw: Any) -> int | None:
    if isinstance(raw, int) and not isinstance(raw, bool) and 0 < raw < 65536:
        return raw
    return None


def parse_seed(text: str) -> SeedFile:
    """The settings file's content; :class:`Malformed` when it is not the seed's shape."""
    try:
        document = json.loads(text)
    except ValueError as exc:
        raise Malformed(f"not JSON: {exc}") from None
    if not isinstance(document, dict):
        raise Malformed("not a JSON object")
    hosts = document.get("marathon_hosts", [])
    if not isinstance(hosts, list) or not all(isinstance(h, str) for h in hosts):
        raise Malformed("marathon_hosts is not a list of host:port")
    try:
        urls = parse_base_urls(",".join(h if "://" in h else f"http://{h}" for h in hosts))
    except ValueError as exc:
        raise Malformed(f"marathon_hosts: {exc}") from None
    confs = document.get("auth_confs", {})
    services = document.get("services", {})
    if not isinstance(confs, dict) or not isinstance(services, dict):
        raise Malformed("services and auth_confs must be objects")
    return SeedFile(urls, {str(name): _seed_service(str(name), raw, confs) for name, raw in services.items()})


def _seed_service(name: str, raw: Any, confs: dict[str, Any]) -> SeedService:
    if not isinstance(raw, dict):
        return SeedService(refused=f"services.{name} is not an object")
    port, backend_port = _port(raw.get("port")), _port(raw.get("backend_port"))
    if ("port" in raw and port is None) or ("backend_port" in raw and backend_port is None):
        return SeedService(refused=f"services.{name}: port and backend_port must be whole numbers from 1 to 65535")
    conf = raw.get("authConf")
    if conf is None:
        return SeedService(port, backend_port)
    auth, problem = basic_auth(confs.get(conf) if isinstance(conf, str) else None)
    if auth is None:
        return SeedService(refused=f"services.{name}: authConf {conf!r} does not name a valid entry of auth_confs ({problem})")
    return SeedService(port, backend_port, auth)


class SeedReader:
    """The settings file, read again when it changes; a bad file keeps the last good one (and says so)."""

    def __init__(self, path: str) -> None:
        self.path = Path(path) if path else None
        self._stamp: float | None = None
        self.current = SeedFile()

    def read(self) -> SeedFile:
        if self.path is None:
            return self.current
        try:
            stamp = self.path.stat().st_mtime
            if stamp != self._stamp:
                self._stamp = stamp
                self.current = parse_seed(self.path.read_text())
                log.info("read the Marathon settings file", extra={"path": str(self.path), "services": len(self.current.services)})
        except (OSError, Malformed) as exc:
            log.error("the Marathon settings file cannot be used; keeping the last good one", extra={"path": str(self.path), "reason": str(exc)})
        return self.current


# -- Marathon's apps --------------------------------------------------------------------------


@dataclass(frozen=True)
class MarathonApp:
    """A Marathon app as haproxy-sync routes it."""

    app_id: str
    name: str
    hosts: tuple[str, ...]
    service_port: int | None
    servers: tuple[Instance, ...]
    router: RouterSettings = RouterSettings()

    @property
    def backend(self) -> str:
        return BACKEND_PREFIX + self.name

    def published(self) -> str:
        """What ``/paz/marathon/apps/<name>`` holds (and the orchestrator's events tell)."""
        return json.dumps({
            "app": self.app_id, "hosts": list(self.hosts), "servicePort": self.service_port,
            "servers": sorted(server.address for server in self.servers),
        }, sort_keys=True)


def routed_name(app_id: Any) -> str:
    """``c-b-a`` for ``/a/b/c`` (Mesos-DNS's naming); :class:`Malformed` for an id Marathon would not make."""
    if not isinstance(app_id, str) or not MARATHON_APP_ID.match(app_id):
        raise Malformed(f"app id {app_id!r} is not /<label>[/<label>...] of lowercase letters, digits and '-'")
    name = marathon_name(app_id)
    if len(name) > 63:
        raise Malformed(f"app id {app_id!r} makes the name {name!r}, longer than a DNS label (63)")
    return name


def parse_apps(payload: Any, seed: SeedFile, reserved_ports: set[int]) -> dict[str, MarathonApp]:
    """Every app of ``GET /v2/apps?embed=apps.tasks`` that can be routed, by backend name."""
    raw_apps = payload.get("apps") if isinstance(payload, dict) else None
    if not isinstance(raw_apps, list):
        raise Malformed("Marathon's answer to GET /v2/apps has no apps list")
    apps: dict[str, MarathonApp] = {}
    taken_ports = set(reserved_ports)
    for raw in sorted((a for a in raw_apps if isinstance(a, dict)), key=lambda a: str(a.get("id"))):
        try:
            app = parse_app(raw, seed)
        except Malformed as exc:
            log.warning("skipped a Marathon app", extra={"app": str(raw.get("id"))[:200], "reason": str(exc)})
            continue
        if app.backend in apps:
            log.warning("skipped a Marathon app", extra={"app": app.app_id, "reason": f"{app.name} is routed for another app"})
            continue
        if app.service_port in taken_ports:
            log.warning("Marathon app routed without its service port", extra={"app": app.app_id, "reason": f"port {app.service_port} is taken"})
            app = MarathonApp(app.app_id, app.name, app.hosts, None, app.servers, app.router)
        taken_ports.add(app.service_port or 0)
        apps[app.backend] = app
    return apps


def parse_app(raw: dict[str, Any], seed: SeedFile) -> MarathonApp:
    """One app; :class:`Malformed` naming the rule when it cannot be routed at all."""
    app_id = raw.get("id")
    name = routed_name(app_id)
    settings = seed.service(app_id, name)
    if settings.refused:
        raise Malformed(settings.refused)
    service_port = settings.port or _service_port(raw)
    must_be_healthy = isinstance(raw.get("healthChecks"), list) and len(raw["healthChecks"]) > 0
    tasks = raw.get("tasks") if isinstance(raw.get("tasks"), list) else []
    servers = [
        server for task in tasks
        if (server := _server(app_id, name, task, settings.backend_port, len(raw["healthChecks"]) if must_be_healthy else 0))
    ]
    hosts = (f"{name}.paz", *_vhosts(app_id, raw.get("labels")))
    router = RouterSettings(auth=settings.auth)
    return MarathonApp(app_id, name, tuple(dict.fromkeys(hosts)), service_port, tuple(sorted(servers, key=lambda s: s.name)), router)


def _service_port(raw: dict[str, Any]) -> int | None:
    """The app's first service port: ``portDefinitions[0].port``, else ``container.portMappings[0].servicePort``."""
    definitions = raw.get("portDefinitions")
    if isinstance(definitions, list) and definitions and isinstance(definitions[0], dict):
        return _port(definitions[0].get("port"))
    container = raw.get("container") if isinstance(raw.get("container"), dict) else {}
    docker = container.get("docker") if isinstance(container.get("docker"), dict) else {}
    mappings = container.get("portMappings") or docker.get("portMappings")
    if isinstance(mappings, list) and mappings and isinstance(mappings[0], dict):
        return _port(mappings[0].get("servicePort"))
    return None


def _vhosts(app_id: str, labels: Any) -> list[str]:
    hosts = []
    for key, value in (labels.items() if isinstance(labels, dict) else []):
        if not isinstance(key, str) or not _VHOST_LABEL.match(key):
            continue
        for host in str(value).split(","):
            try:
                hosts.append(parse_host_name(host.strip()))
            except Malformed as exc:
                log.warning("skipped a Marathon vhost label", extra={"app": app_id, "label": key, "reason": str(exc)})
    return hosts


_RESOLVED: dict[str, tuple[str, float]] = {}
RESOLVED_SECONDS = 60.0


def address_of(raw: str) -> str:
    """:func:`~.model.parse_address` remembered for a minute: every event re-reads every task, and agents'
    host names would otherwise be looked up again each time."""
    known = _RESOLVED.get(raw)
    if known and known[1] > time.monotonic():
        return known[0]
    if len(_RESOLVED) > 10000:
        _RESOLVED.clear()
    address = parse_address(raw)
    _RESOLVED[raw] = (address, time.monotonic() + RESOLVED_SECONDS)
    return address


def _server(app_id: str, name: str, task: Any, backend_port: int | None, checks: int) -> Instance | None:
    """The server a task stands for, or None when it is not running, not healthy, or not routable."""
    if not isinstance(task, dict) or task.get("state", RUNNING if task.get("startedAt") else None) != RUNNING:
        return None
    results = task.get("healthCheckResults") if isinstance(task.get("healthCheckResults"), list) else []
    if checks and (len(results) < checks or not all(isinstance(r, dict) and r.get("alive") is True for r in results)):
        return None
    ports = task.get("ports") if isinstance(task.get("ports"), list) else []
    if backend_port:  # the seed's backend_port: the task port equal to it
        port = backend_port if backend_port in ports else None
    else:
        port = ports[0] if ports else None
    try:
        if not isinstance(task.get("id"), str) or not _TASK_ID.match(task["id"]):
            raise Malformed(f"task id {str(task.get('id'))[:100]!r} is not letters, digits, '.', '_', ':' and '-'")
        if _port(port) is None or not isinstance(task.get("host"), str):
            raise Malformed(f"task {task['id']} has no host and port to route to (backend_port {backend_port})")
        return Instance(BACKEND_PREFIX + name, task["id"], address_of(f"{task['host']}:{port}"))
    except Malformed as exc:
        log.warning("skipped a Marathon task", extra={"app": app_id, "reason": str(exc)})
        return None


# -- following Marathon -----------------------------------------------------------------------


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

    def __init__(self, settings: SyncSettings, etcd: Etcd, on_apps: Callable[[dict[str, MarathonApp]], None],
                 on_status: Callable[[dict[str, Any]], None]) -> None:
        self.settings = settings
        self.on_apps = on_apps
        self.on_status = on_status
        self.seed = SeedReader(settings.marathon_settings)
        self.watcher = Watcher(etcd, keys.MARATHON, self._on_key, self._on_key_reset)
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
        self.watcher.start()
        for target, name in ((self._read_loop, "read"), (self._stream_loop, "stream"), (self._hint_loop, "hints")):
            thread = threading.Thread(target=target, name=f"paz-marathon-{name}", daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def stop(self) -> None:
        self._stop.set()
        self._reread.set()
        self.watcher.stop()
        self._close_stream()
        for thread in self._threads:
            thread.join(timeout=5)
        if self._hints:
            self._hints.close()

    # -- where Marathon is ---------------------------------------------------------------------

    def _on_key(self, event: Result) -> None:
        self._set_urls("" if event.action in keys.GONE or event.dir else event.value or "")

    def _on_key_reset(self, tree: Result | None) -> None:
        self._set_urls(tree.value or "" if tree is not None and not tree.dir else "")

    def _set_urls(self, raw: str) -> None:
        try:
            urls = parse_base_urls(raw)
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
            pending = b""
            for chunk in response.iter_content(chunk_size=None if response.raw.chunked else 1):
                pending += chunk
                *lines, pending = pending.split(b"\n")
                if any(line.startswith(b"event:") and line[6:].strip().decode(errors="replace") in EVENT_TYPES for line in lines):
                    self._reread.set()
                if self._stop.is_set() or self._urls_changed.is_set():
                    return
        log.warning("Marathon's event stream ended; reconnecting and reading every app", extra={"url": url})
        self._reread.set()
        self._report(streaming=None)

    def _close_stream(self) -> None:
        stream, self._stream = self._stream, None
        if stream is not None:
            stream.close()

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


def publish(etcd: Etcd, before: dict[str, MarathonApp], after: dict[str, MarathonApp]) -> None:
    """Write what changed to ``/paz/marathon/apps`` so the orchestrator's event stream tells it.

    With nothing routed before (a start), keys left by an earlier run for apps now gone are removed too.
    """
    try:
        if not before:
            names = {app.name for app in after.values()}
            for node in etcd.children(keys.MARATHON_APPS):
                if keys.relative(node.key, keys.MARATHON_APPS) not in names:
                    etcd.delete(node.key)
        for backend, app in after.items():
            if backend not in before or before[backend].published() != app.published():
                etcd.write(keys.marathon_app(app.name), app.published())
        for backend in before.keys() - after.keys():
            etcd.delete(keys.marathon_app(before[backend].name))
    except (StoreUnavailable, KeyNotFound) as exc:
        log.warning("could not publish Marathon's apps to etcd", extra={"reason": str(exc)})
