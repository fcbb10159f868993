"""The one place instance keys are written: a background task of the scheduler, run once per
scheduler (see :mod:`paz.server`), and acting only while that scheduler leads (see
:mod:`.controller`): a key is bound to one announcer's lease, so two announcing at once would lose
each other's keys when one of them dies. A standby lets go of every key without deleting it; the
leader puts each key again on its own lease (the same value: routers see no change).

It depends only on the :class:`~.drivers.base.Driver` protocol (``units`` and ``events``), so it
works the same for every driver that does not announce by itself (``docker``, ``swarm``). It
announces ``/paz/services/<service>/<version>/<instance>`` = ``host:port`` for every unit that is
running, belongs to a version marked ``running`` in etcd, and accepts connections; and withdraws
every other key it holds. It reconciles:

* at once when a version's status changes in etcd (the view of ``/paz/scheduler/services``), which
  is how the deploy controller (:mod:`.controller`) hands instances over to it;
* at once on a unit event from the runtime (Docker's container events, Swarm's task states): a
  unit that dies or is being stopped loses its key before anything else is done;
* every ``PAZ_PROBE_INTERVAL`` seconds, probing each instance (two failed probes in a row withdraw it).

Its state is rebuilt from the runtime's units and etcd on start, so a restarted scheduler knows
every instance again. Keys are not deleted when it stops: instances keep serving while the
scheduler restarts, and keys of a scheduler that is gone expire after ``PAZ_INSTANCE_TTL``.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from paz import keys
from paz.announce import Announcer
from paz import etcd
from paz.errors import ApiError
from paz.etcd import Change, StoreUnavailable
from paz.view import EtcdView, Listener

from .controller import DeployController
from .drivers import make_driver
from .drivers.base import DIED, GONE, STARTED, STOPPING, Driver, Unit, UnitEvent, accepts_connections, ready
from .store import SchedulerStore

log = logging.getLogger(__name__)

FAILED_PROBES_TO_WITHDRAW = 2
PRUNE_SECONDS = 60


class InstanceAnnouncer:
    """Keeps instance keys in etcd in line with the runtime's running units and the versions' status."""

    def __init__(self, settings: Any, driver: Driver, store: etcd.Store, view: EtcdView, leading: threading.Event) -> None:
        self.settings = settings
        self.leading = leading
        """Set while this scheduler leads: only the leader announces, so one lease holds each key."""
        self.etcd = store
        self.store = SchedulerStore(self.etcd)
        self.driver = driver
        self.announcer = Announcer(self.etcd, settings.instance_ttl)
        self.versions: dict[tuple[str, int], dict[str, Any]] = {}
        self.failures: dict[str, int] = {}
        self.stopping: set[str] = set()
        """Units the runtime is stopping (by containerId): still running until their stop timeout, never announced again."""
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._events: Any = None
        self.view = view
        self._pool = ThreadPoolExecutor(max_workers=16, thread_name_prefix="paz-probe")

    def start(self) -> "InstanceAnnouncer":
        self.announcer.start()
        self.view.listen(Listener(changed=self._on_change, reloaded=self._on_reload))
        for target, name in ((self._loop, "paz-reconcile"), (self._follow_runtime, "paz-runtime-events")):
            threading.Thread(target=target, name=name, daemon=True).start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        events = self._events
        if events is not None:
            events.close()
        self.announcer.stop(withdraw=False)
        self._pool.shutdown(wait=False)

    # -- versions' status, from etcd -------------------------------------------------------------

    def _on_reload(self, _lost: bool, _index: int) -> None:
        versions = {}
        for node in self.view.nodes(keys.SCHEDULER_SERVICES):
            parsed = keys.parse_version_document(node.key)
            if parsed and node.value:
                versions[parsed] = json.loads(node.value)
        with self._lock:
            self.versions = versions
        self._wake.set()

    def _on_change(self, change: Change) -> None:
        parsed = keys.parse_version_document(change.key)
        if not parsed:
            return
        with self._lock:
            before = (self.versions.get(parsed) or {}).get("status")
            if change.value and not change.gone:
                self.versions[parsed] = json.loads(change.value)
            else:
                self.versions.pop(parsed, None)
            changed = (self.versions.get(parsed) or {}).get("status") != before
        if changed:  # a deploy's progress notes change nothing that is announced
            self._wake.set()

    def _serving(self, unit: Unit) -> dict[str, Any] | None:
        """The version document of ``unit`` when its version is to be announced."""
        with self._lock:
            document = self.versions.get((unit.service, unit.version))
        return document if document and document.get("status") == "running" else None

    # -- reconciling -----------------------------------------------------------------------------

    def _loop(self) -> None:
        pruned_at = float("-inf")
        while not self._stop.is_set():
            self._wake.clear()
            try:
                if time.monotonic() - pruned_at > PRUNE_SECONDS:
                    self.etcd.remove_empty_folders(keys.SERVICES)  # left by keys that expired
                    pruned_at = time.monotonic()
                self.reconcile()
            except (ApiError, StoreUnavailable) as exc:
                log.warning("reconcile failed, retrying", extra={"reason": str(exc)})
            except Exception:
                log.exception("reconcile failed, retrying")
            self._wake.wait(self.settings.probe_interval)

    def reconcile(self) -> None:
        """Announce what serves, withdraw the rest (while this scheduler leads; otherwise let go of
        every key, leaving it in etcd for the leader to keep)."""
        if not self.leading.is_set():
            self.announcer.forget()
            return
        try:
            units = self.driver.units()
        except ApiError:
            self._probe_held()  # the engine is unreachable: keep only keys whose address still answers
            raise
        with self._lock:
            stopping = set(self.stopping)
        candidates = [u for u in units if u.state == "running" and u.address and u.containerId not in stopping
                      and self._serving(u)]
        verdicts = dict(zip(candidates, self._pool.map(self._probe, candidates)))
        with self._lock:  # a unit the runtime began to stop while it was probed is not announced again
            verdicts = {unit: healthy for unit, healthy in verdicts.items() if unit.containerId not in self.stopping}
        held = self.announcer.keys
        wanted: dict[str, str] = {}
        failures: dict[str, int] = {}
        for unit, healthy in verdicts.items():
            failures[unit.key] = 0 if healthy else self.failures.get(unit.key, 0) + 1
            if healthy or (unit.key in held and failures[unit.key] < FAILED_PROBES_TO_WITHDRAW):
                wanted[unit.key] = unit.address
        self.failures = failures
        for key in set(held) - set(wanted):
            self.announcer.withdraw(key)
        for key, address in wanted.items():
            if held.get(key) != address:
                self.announcer.announce(key, address)

    def _probe_held(self) -> None:
        held = self.announcer.keys
        for (key, address), answers in zip(held.items(), self._pool.map(_accepts, held.values())):
            self.failures[key] = 0 if answers else self.failures.get(key, 0) + 1
            if self.failures[key] >= FAILED_PROBES_TO_WITHDRAW:
                self.announcer.withdraw(key)

    def _probe(self, unit: Unit) -> bool:
        document = self._serving(unit) or {}
        return ready(unit.host, unit.port, (document.get("config") or {}).get("healthCheck"))

    # -- the runtime's events -----------------------------------------------------------------

    def _follow_runtime(self) -> None:
        """Withdraw a dying or stopping unit's key at once; on any other change, reconcile."""
        while not self._stop.is_set():
            try:
                self._events = self.driver.events()
                self._wake.set()  # events may have been missed while not following
                for event in self._events:
                    self._on_unit_event(event)
            except Exception as exc:  # the runtime went away, or the stream broke: follow it again
                if not self._stop.is_set():
                    log.warning("runtime events interrupted", extra={"reason": str(exc)})
                    self._stop.wait(1.0)

    def _on_unit_event(self, event: UnitEvent) -> None:
        with self._lock:
            if event.action in (STARTED, GONE):
                self.stopping.discard(event.runtimeId)
            elif event.action == STOPPING:
                self.stopping.add(event.runtimeId)
        if event.action != STARTED and self.leading.is_set():
            self.announcer.withdraw(event.key)
            with self._lock:
                serving = (self.versions.get((event.service, event.version)) or {}).get("status") == "running"
            if event.action == DIED and serving:
                self._journal_down(event)
        self._wake.set()

    def _journal_down(self, event: UnitEvent) -> None:
        message = f"{event.unit_id} stopped ({event.detail or 'no reason given'}) while serving; its key was withdrawn"
        try:
            self.store.journal("instance-down", event.service, message, event.version)
        except StoreUnavailable as exc:
            log.warning("could not journal instance-down", extra={"unit": event.unit_id, "reason": str(exc)})


def _accepts(address: str) -> bool:
    host, _, port = address.rpartition(":")
    return accepts_connections(host, int(port))


def start_background(settings: Any) -> "Background":
    """The scheduler's process-wide work, started once per scheduler: the deploy controller
    (which acts only while this scheduler leads) and the instance announcer, unless the driver's
    runtime announces instances itself (fleet). Both follow one view of etcd."""
    store = etcd.from_settings(settings)
    view = EtcdView(store, (keys.SCHEDULER_SERVICES, keys.DESIRED))
    driver = make_driver(settings)
    controller = DeployController(settings, driver, store, view)
    parts: list[Any] = [] if driver.self_announcing else [
        InstanceAnnouncer(settings, driver, store, view, controller.leadership.leading).start()]
    parts.append(controller.start())
    return Background(view, parts)


class Background:
    """What :func:`start_background` started, stopped together."""

    def __init__(self, view: EtcdView, parts: list[Any]) -> None:
        self.view, self.parts = view, parts

    def stop(self) -> None:
        for part in reversed(self.parts):
            part.stop()
        self.view.stop()
