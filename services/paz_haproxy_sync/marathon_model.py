"""Marathon's apps as routes, parsed like etcd's values: nothing from Marathon is trusted.

:func:`parse_apps` turns Marathon's ``GET /v2/apps?embed=apps.tasks`` and the seed's settings file
(:class:`SeedFile`) into validated routes: an app ``/a/b/c`` is routed as ``c-b-a.paz`` (Mesos-DNS's
naming), on each host name of its ``HAPROXY_{n}_VHOST`` labels, and on a frontend of its own listening
on its service port. A bad app, task or label is skipped with a log line naming it; the rest keeps
routing.
"""

from __future__ import annotations

import json
import logging
import re
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from paz.names import MARATHON_APP_ID, marathon_name
from paz.settings import parse_base_urls

from .model import BasicAuth, Instance, Malformed, RouterSettings, basic_auth, parse_address, parse_host_name

log = logging.getLogger(__name__)

BACKEND_PREFIX = "marathon_"
"""Marathon apps' backends are ``marathon_<name>``: no paz service name has a ``_``, so they never collide."""
WARN_AGAIN_SECONDS = 600.0
_warned: dict[tuple[str, str, str], float] = {}


def warn_once(message: str, app: str, reason: str) -> None:
    """Log what was skipped, once per app and reason every ten minutes: every event re-reads every app."""
    key, now = (message, app, reason), time.monotonic()
    if _warned.get(key, 0.0) > now:
        return
    if len(_warned) > 10000:
        _warned.clear()
    _warned[key] = now + WARN_AGAIN_SECONDS
    log.warning(message, extra={"app": app, "reason": reason})


_TASK_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}\Z")
_VHOST_LABEL = re.compile(r"^HAPROXY_[0-9]{1,2}_VHOST\Z")
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
            warn_once("skipped a Marathon app", str(raw.get("id"))[:200], str(exc))
            continue
        if app.backend in apps:
            warn_once("skipped a Marathon app", app.app_id, f"{app.name} is routed for another app")
            continue
        if app.service_port in taken_ports:
            warn_once("Marathon app routed without its service port", app.app_id, f"port {app.service_port} is taken")
            app = replace(app, service_port=None)
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
                warn_once("skipped a Marathon vhost label", app_id, f"{key}: {exc}")
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
        warn_once("skipped a Marathon task", app_id, str(exc))
        return None
