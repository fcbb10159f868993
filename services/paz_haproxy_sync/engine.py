"""The watch → render → apply loop, run once per haproxy-sync as its ``paz.server`` background task.

One :class:`~paz.view.EtcdView` (one etcd watch) keeps ``/paz/services``, the directory's documents
and ``/paz/config/domain`` in memory and tells the engine of each change; each change wakes the applier, which
applies it at once. Changes that come while an apply runs are gathered into the next one, so a burst
costs as many applies as it lasts apply times, and a change alone waits for nothing. An apply renders
the whole config and:

* applies it through HAProxy's Runtime API without a reload when only servers of existing backends
  were added, removed or re-addressed, and installs the checked file once changes pause (so a later
  reload agrees, and checking a large config never delays the next change);
* otherwise checks it, moves it into place and reloads HAProxy seamlessly.

Nothing is applied until the view has read etcd once, so a haproxy-sync started
while etcd is down keeps HAProxy serving the last good config. The HTTP workers learn what happened
from ``status.json`` and the config file in ``PAZ_HAPROXY_DIR``.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from typing import Any

from paz import etcd, keys
from paz.errors import ApiError
from paz.etcd import PUT, Change, Store
from paz.names import is_service_name
from paz.secrets import Keyring
from paz.view import EtcdView, Listener, below

from .certs import BadCertificate, Certificate, from_stored
from .dns import NameServer
from .figures import router_figures
from .haproxy import Haproxy, HaproxyError
from .marathon import MarathonSource, publish
from .marathon_model import MarathonApp
from .model import (
    Instance, Malformed, RouterSettings, Table,
    parse_domain, parse_instance, parse_router_settings,
)
from .orders import CertificateOrders
from .render import render, server_line
from .settings import SyncSettings
from .status import StatusFile
from .tls import CertificateFiles

log = logging.getLogger(__name__)

Servers = dict[str, dict[str, str]]


@dataclass(frozen=True)
class Applied:
    """What HAProxy runs: the config's structure and each backend's servers (name → address)."""

    structure: str
    servers: Servers


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


class Engine:
    TICK_SECONDS = 1.0
    SAVE_AFTER_SECONDS = 0.2
    SAVE_AT_LEAST_EVERY = 2.0
    MAX_RUNTIME_COMMANDS = 400

    def __init__(self, settings: SyncSettings, etcd: Store) -> None:
        self.settings = settings
        self.haproxy = Haproxy(settings)
        self._lock = threading.RLock()
        self._instances: dict[str, Instance] = {}
        self._routers: dict[str, RouterSettings] = {}
        self._domain: str | None = None
        self._loaded = False
        self._applied: Applied | None = None
        self._pending_deletes: set[str] = set()
        self._unsaved: Table | None = None
        """The table of runtime changes whose config is not installed yet (rendered when changes pause)."""
        self._unsaved_since = 0.0
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.name_server: NameServer | None = None
        self._status = StatusFile(settings.status_path)
        self._etcd = etcd
        self._marathon: dict[str, MarathonApp] | None = None  # None until Marathon's apps were read (or found unconfigured)
        self.marathon = MarathonSource(settings, self._on_marathon, lambda status: self._status.update(marathon=status))
        self.keyring = Keyring(settings.secrets_key_file)
        self.tls = CertificateFiles(settings, self.haproxy)
        self._certificates: dict[str, Certificate] = {}
        self._failures: dict[str, dict[str, Any]] = {}
        self._served: frozenset[str] = frozenset()
        self.orders: CertificateOrders | None = None
        self.followed: dict[str, Callable[..., None]] = {
            keys.SERVICES: self._on_instance, keys.DIRECTORY: self._on_document, keys.DOMAIN: self._on_domain,
            keys.MARATHON: self._on_marathon_urls, keys.CERTS: self._on_certificate, keys.ACME_FAILURES: self._on_failure,
        }
        self.view = EtcdView(etcd, tuple(self.followed))

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> "Engine":
        """Adopt the running HAProxy, then follow etcd. A HAProxy to start starts at the first apply, on the
        routes etcd holds (no reload right after its start, which kept the suite unrouted for a second or
        two after paz up on a loaded machine), or on the last good config at the first tick without etcd."""
        self.settings.state_dir.mkdir(parents=True, exist_ok=True)
        self.tls.prepare()
        self._served = self.tls.served()
        pid = self.haproxy.master_pid()
        if pid:
            log.info("adopted the running haproxy", extra={"pid": pid})
        self._status.update(haproxyPid=pid)
        router_figures()  # its series exist, at 0, before the first apply
        self.view.listen(Listener(changed=self._on_change, reloaded=self._on_reload))
        self.marathon.start()
        if self.settings.router_listen:
            self.name_server = NameServer(self.settings.router_listen, self.settings.dns_port, self.settings.router_address,
                                          self.routed_names, self.settings.dns_upstream).start()
        self._thread = threading.Thread(target=self._run, name="paz-haproxy-apply", daemon=True)
        self._thread.start()
        if self.settings.ordering:
            self.orders = CertificateOrders(self.settings, self._etcd, self.keyring, self._https_names,
                                            lambda: dict(self._certificates), lambda: dict(self._failures)).start()
        return self

    def stop(self) -> None:
        """Stop following etcd; stop HAProxy too unless ``PAZ_HAPROXY_KEEP`` asks to leave it serving."""
        self._stop.set()
        self._wake.set()
        if self.orders:
            self.orders.stop()
        self.marathon.stop()
        self.view.stop()
        if self.name_server:
            self.name_server.stop()
        if self._thread:
            self._thread.join(timeout=10)
        if not self.settings.keep_haproxy:
            self.haproxy.stop()

    def _start_haproxy(self) -> None:
        try:
            self.tls.prepare()
            if self.haproxy.installed() is None:
                self.haproxy.install(render(Table(None, {}), self.settings))
            self.haproxy.start()
        except HaproxyError as exc:
            self._failed(exc)

    # -- the view of etcd --------------------------------------------------------------------

    def _on_change(self, change: Change) -> None:
        for prefix, on_change in self.followed.items():
            if below(change.key, prefix) or below(prefix, change.key):
                on_change(change)

    def _on_reload(self, _lost: bool, _index: int) -> None:
        """Forget what was held and take the view's keys again, under one lock: the applier never sees a half-read tree."""
        with self._lock:
            self._instances.clear()
            self._routers.clear()
            self._certificates.clear()
            self._failures.clear()
            self._domain = None
            self.marathon.set_urls(self.view.get(keys.MARATHON))
            for prefix, on_change in self.followed.items():
                for node in self.view.nodes(prefix):
                    on_change(Change(node.key, PUT, node.value, node.revision), wake=False)
            self._loaded = True
        log.info("read from etcd", extra={"keys": sum(len(self.view.nodes(p)) for p in self.followed)})
        self._wake.set()

    def _on_instance(self, event: Change, wake: bool = True) -> None:
        with self._lock:
            for key in [k for k in self._instances if k == event.key or k.startswith(event.key + "/")]:
                del self._instances[key]
            if not event.gone:
                try:
                    self._instances[event.key] = parse_instance(event.key, event.value)
                except Malformed as exc:
                    log.warning("skipped an instance key", extra={"key": event.key, "reason": str(exc)})
        if wake:
            self._wake.set()

    def _on_document(self, event: Change, wake: bool = True) -> None:
        name = event.key.removeprefix(keys.DIRECTORY + "/")
        with self._lock:
            if event.gone and below(keys.DIRECTORY, event.key):
                self._routers.clear()
            elif event.gone:
                self._routers.pop(name, None)
            elif not is_service_name(name):
                log.warning("skipped a directory document", extra={"key": event.key, "reason": "not a service name"})
            else:
                self._routers[name], problems = parse_router_settings(name, event.value)
                for problem in problems:
                    log.warning("directory document problem", extra={"key": event.key, "reason": problem})
        if wake:
            self._wake.set()

    def _on_domain(self, event: Change, wake: bool = True) -> None:
        try:
            domain = None if event.gone else parse_domain(event.value)
        except Malformed as exc:
            log.warning("skipped the domain", extra={"key": event.key, "reason": str(exc)})
            domain = None
        with self._lock:
            self._domain = domain
        if wake:
            self._wake.set()

    def _on_certificate(self, event: Change, wake: bool = True) -> None:
        name = event.key.removeprefix(keys.CERTS + "/")
        try:
            certificate = None if event.gone else from_stored(name, event.value or "", self.keyring)
        except (BadCertificate, ApiError) as exc:
            log.warning("skipped a certificate", extra={"key": event.key, "reason": str(exc)})
            certificate = None
        with self._lock:
            if event.gone and below(keys.CERTS, event.key):
                self._certificates.clear()
            elif certificate is None:
                self._certificates.pop(name, None)
            else:
                self._certificates[name] = certificate
        if wake:
            self._wake.set()

    def _on_failure(self, event: Change, wake: bool = True) -> None:
        name = event.key.removeprefix(keys.ACME_FAILURES + "/")
        with self._lock:
            if event.gone and below(keys.ACME_FAILURES, event.key):
                self._failures.clear()
            elif event.gone:
                self._failures.pop(name, None)
            else:
                try:
                    self._failures[name] = json.loads(event.value or "")
                except ValueError:
                    log.warning("skipped an order failure record", extra={"key": event.key})

    def _on_marathon_urls(self, event: Change, wake: bool = True) -> None:
        self.marathon.set_urls(None if event.gone else event.value)

    def _on_marathon(self, apps: dict[str, MarathonApp]) -> None:
        with self._lock:
            before, self._marathon = self._marathon, apps
        if before != apps:
            self._wake.set()
            publish(self._etcd, before or {}, apps)

    def table(self) -> Table | None:
        """The routing table, or None until the view has read etcd once."""
        with self._lock:
            if not self._loaded:
                return None
            services: dict[str, dict[str, Instance]] = {name: {} for name in self._routers}
            for key in sorted(self._instances):
                instance = self._instances[key]
                services.setdefault(instance.service, {})[instance.name] = instance
            routed = {name: tuple(s.values()) for name, s in services.items()}
            routers = dict(self._routers)
            marathon = self._marathon or {}
            for backend, app in marathon.items():
                routed[backend], routers[backend] = app.servers, app.router
            return Table(self._domain, routed, routers, dict(marathon), self._served)

    def _https_names(self) -> dict[str, str] | None:
        table = self.table()
        return table.https_names() if table else None

    def routed_names(self) -> set[str]:
        """The services the router serves as ``<service>.paz``: what the name server answers in ``.paz``."""
        table = self.table()
        return set(table.services) - set(table.marathon) if table else set()

    # -- applying ----------------------------------------------------------------------------

    def _run(self) -> None:
        while not self._stop.is_set():
            woke = self._wake.wait(self.SAVE_AFTER_SECONDS if self._unsaved else self.TICK_SECONDS)
            if self._stop.is_set():
                break
            self._wake.clear()
            try:
                if not woke or time.monotonic() - self._unsaved_since > self.SAVE_AT_LEAST_EVERY:
                    self._save()
                self.apply()
                if woke and self.orders:
                    self.orders.wake.set()  # a name may want a certificate now
            except Exception as exc:  # noqa: BLE001 - reported in status.json and retried at the next tick
                self._failed(exc)
        try:
            self._save()
        except HaproxyError as exc:
            self._failed(exc)

    def _save(self) -> None:
        """Install the config of runtime changes once changes pause, so rendering and checking it never
        delays the next one."""
        table, self._unsaved = self._unsaved, None
        if table is not None:
            self.haproxy.install(render(table, self.settings))

    def apply(self) -> None:
        """Bring HAProxy to what etcd says, by the Runtime API when that is enough, else by a reload."""
        began = time.monotonic()
        table, running = self.table(), self.haproxy.master_pid() is not None
        if table is None:  # etcd not read yet: HAProxy serves the last good config (or none) meanwhile
            if not running:
                self._start_haproxy()
            return
        table = self._sync_certificates(table, running)
        structure = render(table, self.settings, servers=False)
        servers = {name: {i.name: i.address for i in instances} for name, instances in table.services.items()}
        if running and self._applied and self._applied.structure == structure:
            if self._applied.servers == servers:
                self._retry_deletes()
                return
            if self._apply_runtime(table, self._applied.servers, servers):
                self._unsaved_since = self._unsaved_since if self._unsaved else time.monotonic()
                self._unsaved = table
                self._applied = Applied(structure, servers)
                self._done("runtime", table, began)
                return
        self._apply_reload(render(table, self.settings), running)
        self._applied = Applied(structure, servers)
        self._done("reload", table, began)

    def _sync_certificates(self, table: Table, running: bool) -> Table:
        """Serve the certificates etcd holds, in the running HAProxy when it takes them; else they go
        to the files only and the reload that follows loads them. The table then knows which names
        have one (plain HTTP redirects on those)."""
        with self._lock:
            wanted = dict(self._certificates)
        try:
            self.tls.sync(wanted, running)
        except HaproxyError as exc:
            log.warning("certificate change refused at runtime, reloading instead", extra={"reason": str(exc)})
            self.tls.sync(wanted, running=False)
            self._applied = None
        self._served = self.tls.served()
        return replace(table, certified=self._served)

    def _apply_reload(self, text: str, running: bool) -> None:
        if running and self._applied is None and text == self.haproxy.installed():
            return  # the HAProxy just adopted already runs exactly this
        self._unsaved = None
        self.haproxy.install(text)
        if running:
            self.haproxy.reload()
        else:
            self.haproxy.start()
        self._pending_deletes.clear()

    def _apply_runtime(self, table: Table, old: Servers, new: Servers) -> bool:
        """Add, re-address and remove servers in place; False when a reload must do it instead."""
        changes = [(backend, old[backend], new[backend]) for backend in new if old.get(backend) != new[backend]]
        if sum(len(a) + len(b) for _, a, b in changes) > self.MAX_RUNTIME_COMMANDS:
            return False
        try:
            for backend, before, after in changes:
                router = table.settings_of(backend)
                for name in after.keys() - before.keys():
                    self._add_server(backend, name, after[name], router)
                for name in after.keys() & before.keys():
                    if after[name] != before[name]:
                        self._readdress(backend, name, after[name])
                for name in before.keys() - after.keys():
                    self.haproxy.command(f"set server {backend}/{name} state maint")
                    self._pending_deletes.add(f"{backend}/{name}")
        except HaproxyError as exc:
            log.warning("runtime change refused, reloading instead", extra={"reason": str(exc)})
            return False
        self._retry_deletes()
        return True

    def _add_server(self, backend: str, name: str, address: str, router: RouterSettings) -> None:
        self._pending_deletes.discard(f"{backend}/{name}")
        answer = self.haproxy.command(f"add server {backend}/{server_line(name, address, router)}")
        if "New server registered" not in answer:
            raise HaproxyError(f"add server {backend}/{name}: {answer.strip()}")
        if router.health is not None:
            self.haproxy.command(f"enable health {backend}/{name}")
        self.haproxy.command(f"enable server {backend}/{name}")

    def _readdress(self, backend: str, name: str, address: str) -> None:
        host, _, port = address.rpartition(":")
        answer = self.haproxy.command(f"set server {backend}/{name} addr {host} port {port}")
        if "change" not in answer:
            raise HaproxyError(f"set server {backend}/{name} addr: {answer.strip()}")

    def _retry_deletes(self) -> None:
        """Delete servers put in maintenance; HAProxy refuses while they still carry connections."""
        for server in sorted(self._pending_deletes):
            answer = self.haproxy.command(f"del server {server}")
            if "Server deleted" in answer or "No such" in answer:
                self._pending_deletes.discard(server)

    # -- status for the HTTP workers -----------------------------------------------------------

    def _done(self, how: str, table: Table, began: float) -> None:
        router_figures().applied(how, time.monotonic() - began)
        count = sum(len(servers) for servers in table.services.values())
        log.info("applied", extra={"how": how, "services": len(table.services), "servers": count})
        self._status.update(
            haproxyPid=self.haproxy.master_pid(), lastAppliedAt=now(), lastApply=how,
            services=len(table.services), servers=count, lastError=None,
        )

    def _failed(self, exc: Exception) -> None:
        router_figures().apply_failures.inc()
        log.error("apply failed; HAProxy keeps the last good config", extra={"reason": str(exc)})
        self._status.update(haproxyPid=self.haproxy.master_pid(), lastError=str(exc), lastErrorAt=now())


def start_engine(settings: SyncSettings) -> Engine:
    """The background task :func:`paz.server.serve` runs once per service."""
    return Engine(settings, etcd.from_settings(settings)).start()

