"""Deploys, rollbacks and stops: versioned, one at a time per service, without downtime.

A deploy (the docker driver; fleet differs only where noted):

1. takes the service's deploy lock and the next version number (compare-and-swap), and records the
   version as ``deploying``;
2. pulls the image (or uses the engine's own copy when no registry answers);
3. starts the new instances beside the old ones and waits until each accepts connections (or
   answers its ``healthCheck.path``);
4. marks the version ``running``: the scheduler's background task (one per scheduler, in gunicorn's
   master) announces its instances in etcd, and the deploy waits until their keys are there;
5. marks the old versions ``replaced``: their keys are withdrawn; after ``PAZ_DRAIN_SECONDS`` for
   requests in flight, their containers are stopped and removed.

If step 2 or 3 fails, the new instances are removed, the version is marked ``failed``, the journal
records ``deploy-failed`` and the old version keeps serving. A service with a fixed host port
cannot run two versions on one machine, so there the old version is retired before step 3
(stop-then-start: a short outage, and none of the old version left if the new one fails), unless
the driver rolls such a version node by node itself (``rolls_fixed_ports``: swarm); then the new
version is marked ``running`` before step 3, so each new instance is announced as soon as it serves.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

from paz.waiting import poll
from paz.errors import ApiError, NotFound, Unavailable
from paz.etcd import KeyNotFound, Store, StoreUnavailable
from paz.upstream import Upstream

from .drivers.base import Driver, InstanceSpec, Unit
from .drivers.logs import LogLine, LogQuery, LogStream, merged
from .schemas import iso_now
from .store import DeployLock, SchedulerStore

log = logging.getLogger(__name__)

DIRECTORY = "paz-service-directory"
ANNOUNCE_WAIT_SECONDS = 10.0
"""How long a deploy waits for the background task to announce (or withdraw) instance keys."""


class Scheduler:
    def __init__(self, settings: Any, store: SchedulerStore, driver: Driver, upstream: Upstream) -> None:
        self.settings = settings
        self.store = store
        self.driver = driver
        self.upstream = upstream
        self.followers = threading.BoundedSemaphore(settings.logs_max_followers)

    @property
    def etcd(self) -> Store:
        return self.store.etcd

    # -- the directory ---------------------------------------------------------------------------

    # A deploy runs the config the directory holds now: read from etcd itself, not from a directory
    # worker's view, which may not have a PATCH made a moment ago through another worker.
    CONSISTENT = {"consistent": "true"}

    def service(self, name: str) -> dict[str, Any]:
        """The directory's document of ``name`` (its 404 passes through, saying the service is not there)."""
        return self.upstream.json(DIRECTORY, "GET", f"/services/{name}", params=self.CONSISTENT)

    def service_of_repository(self, repository: str) -> dict[str, Any]:
        return self.upstream.json(DIRECTORY, "GET", "/services", params={"dockerRepository": repository, **self.CONSISTENT})

    # -- deploys ---------------------------------------------------------------------------------

    def deploy(self, name: str, image: str | None = None, pushed_at: str | None = None) -> dict[str, Any]:
        """Deploy ``image`` (default: the service's repository) with the directory's current config."""
        document = self.service(name)
        image = image or document["dockerRepository"]
        return self._roll_out(name, image, document["config"], pushed_at, "deploy")

    def rollback(self, name: str, version: int) -> dict[str, Any]:
        """Deploy recorded ``version``'s image and config again, as a new version."""
        old = self.store.version(name, version)
        return self._roll_out(name, old["dockerRepository"], old["config"], old.get("pushedAt"), "rollback", rollback_of=version)

    def stop(self, name: str) -> list[str]:
        """Stop every instance of ``name`` and withdraw their keys; the ids of the units stopped."""
        with self._lock(name):
            units = self.driver.units(name)
            self._retire(name, units, "stopped")
            ids = sorted(unit.id for unit in units)
            self.store.journal("stop", name, f"stopped {len(ids)} instance(s)" + (f": {', '.join(ids)}" if ids else ""))
            return ids

    def _lock(self, name: str) -> DeployLock:
        wait = self.settings.deploy_timeout + 30
        return self.store.locked(name, uuid.uuid4().hex, ttl=int(2 * wait), wait=wait)

    def _roll_out(
        self, name: str, image: str, config: dict[str, Any], pushed_at: str | None, kind: str, rollback_of: int | None = None
    ) -> dict[str, Any]:
        with self._lock(name):
            previous = self.driver.units(name)  # also: an unreachable runtime fails here, before a version is taken
            version = self._new_version(name, image, config, pushed_at, rollback_of)
            log.info("deploy started", extra={"service": name, "version": version, "image": image, "kind": kind})
            fixed_port = any(port.get("host") for port in config.get("ports") or [])
            stop_first = fixed_port and not self.driver.rolls_fixed_ports
            started: list[Unit] = []
            try:
                self.driver.prepare(image)
                self._progress(name, version, step="image-pulled", image=image)
                if stop_first:
                    self._retire(name, previous, "replaced")
                    self._progress(name, version, step="old-stopped", stopped=sorted(u.id for u in previous))
                started = self._start(name, version, image, config, announce_while_starting=fixed_port and not stop_first)
                document = self.store.update_version(name, version, status="running", deployedAt=iso_now())
                self._await_keys(started, present=True)
                log.info("new instances announced", extra={"service": name, "version": version})
            except ApiError as exc:
                self._fail(name, version, started, exc, [] if stop_first else previous)
                raise
            except StoreUnavailable:
                self.driver.remove(started)  # cannot be recorded; at least nothing half-deployed keeps running
                raise
            if not stop_first:
                self._retire(name, previous, "replaced")
                self._progress(name, version, step="old-stopped", stopped=sorted(u.id for u in previous))
            self.store.journal(kind, name, self._summary(kind, version, image, started, rollback_of), version)
            log.info("deploy done", extra={"service": name, "version": version, "units": [u.id for u in started]})
            return document

    def _new_version(
        self, name: str, image: str, config: dict[str, Any], pushed_at: str | None, rollback_of: int | None
    ) -> int:
        """Take the next version number and record it as ``deploying``."""
        version = self.store.next_version(name)
        document: dict[str, Any] = {
            "service": name, "version": version, "dockerRepository": image, "config": config,
            "pushedAt": pushed_at, "deployedAt": None, "status": "deploying",
        }
        if rollback_of is not None:
            document["rollbackOf"] = rollback_of
        self.store.create_version(document)
        return version

    def _start(
        self, name: str, version: int, image: str, config: dict[str, Any], announce_while_starting: bool = False
    ) -> list[Unit]:
        """Start the version's instances and wait until they serve.

        ``announce_while_starting``: the driver rolls a fixed host port node by node, stopping old
        instances while new ones start, so the version is marked ``running`` at once and each new
        instance is announced as soon as it serves (the background task probes it first), before the
        old version's last instance stops.
        """
        started: list[Unit] = []
        total = int(config.get("numInstances") or 1)
        try:
            for instance in range(1, total + 1):
                started.append(self.driver.start(InstanceSpec(name, version, instance, image, config)))
                self._progress(name, version, step="instance-started", unit=started[-1].id, started=instance, total=total)
            if announce_while_starting:
                self.store.update_version(name, version, status="running")
            log.info("instances started, waiting until they serve", extra={"units": [u.id for u in started]})
            started = self.driver.wait_ready(started, config.get("healthCheck"), self.settings.deploy_timeout)
        except ApiError:
            self.driver.remove(started)
            raise
        return started

    def _progress(self, name: str, version: int, **progress: Any) -> None:
        """Record how far the deploy is on its version document (``progress``): the event stream tells it."""
        self.store.update_version(name, version, progress=progress)

    def _fail(self, name: str, version: int, started: list[Unit], exc: ApiError, previous: list[Unit]) -> None:
        """Undo a deploy that did not make it; the ``previous`` units were never touched."""
        self.driver.remove(started)
        serving = sorted({unit.version for unit in previous if unit.state == "running"})
        outcome = f"v{', v'.join(map(str, serving))} keeps serving." if serving else "No other version of it is running."
        exc.message = f"v{version} of {name} was not deployed: {exc.message.rstrip('.')}. {outcome}"
        self.store.update_version(name, version, status="failed", message=exc.message)
        self.store.journal("deploy-failed", name, exc.message, version)
        log.warning("deploy failed", extra={"service": name, "version": version, "reason": exc.message})

    def _retire(self, name: str, units: list[Unit], status: str) -> None:
        """Withdraw ``units``' keys, let requests in flight drain, then stop them.

        Marking their versions ``status`` makes the background task withdraw docker instances'
        keys; fleet's driver stops their sidekicks instead.
        """
        if not units:
            return
        for version in sorted({unit.version for unit in units}):
            try:
                if self.store.version(name, version)["status"] in ("running", "deploying"):
                    self.store.update_version(name, version, status=status)
            except (ApiError, KeyNotFound):
                log.info("unit of an unrecorded version", extra={"service": name, "version": version})
        self.driver.withdraw(units)
        announced = self._await_keys(units, present=False)
        log.info("retiring instances", extra={"units": [u.id for u in units], "status": status})
        if announced and self.settings.drain_seconds:
            time.sleep(self.settings.drain_seconds)
        self.driver.remove(units)

    def _await_keys(self, units: list[Unit], present: bool) -> bool:
        """Wait until ``units``' instance keys are (or are no longer) in etcd; whether any was there at the start.

        The background task writes and deletes these keys; a deploy only waits for it. The runtime's
        own sidekicks announce under fleet, so nothing is awaited there.
        """
        if self.driver.self_announcing:
            return True
        keys = [unit.key for unit in units if unit.address]
        initially = [key for key in keys if self.etcd.get(key) is not None]

        def waiting() -> list[str]:
            return [key for key in keys if (self.etcd.get(key) is not None) != present]

        if not poll(lambda: not waiting(), ANNOUNCE_WAIT_SECONDS, 0.05):
            if present:
                raise ApiError(
                    f"The new instances answer but were not announced within {ANNOUNCE_WAIT_SECONDS:g}s "
                    f"({', '.join(waiting())}); the scheduler's announcer is not working: see its logs.",
                    status=503,
                )
            log.warning("keys still present after withdrawal", extra={"keys": waiting()})
        return bool(initially)

    @staticmethod
    def _summary(kind: str, version: int, image: str, units: list[Unit], rollback_of: int | None) -> str:
        what = f"rolled back to v{rollback_of} as v{version}" if kind == "rollback" else f"deployed v{version}"
        return f"{what} ({image}): {len(units)} instance(s) {', '.join(u.id for u in units)}"

    # -- what runs -------------------------------------------------------------------------------

    def units(self, service: str | None = None) -> list[dict[str, Any]]:
        return [unit.as_json(self._announced(unit)) for unit in sorted(self.driver.units(service), key=_order)]

    def unit(self, unit_id: str) -> dict[str, Any]:
        unit, stats = self.driver.unit(unit_id)
        return {**unit.as_json(self._announced(unit)), "stats": stats}

    def logs(self, service: str, unit_id: str | None, query: LogQuery) -> "LogSession":
        """The output of ``service``'s units (or of one, ``unit_id``), merged in time order.

        Every stream is opened before this returns, so an unknown service or unit, or a driver
        without logs, is an error answer rather than an empty stream. A followed stream holds one of
        PAZ_LOGS_MAX_FOLLOWERS places in this worker until it ends (PAZ_LOGS_MAX_SECONDS at most).
        """
        units = self._units_of(service, unit_id)
        if query.follow and not self.followers.acquire(blocking=False):
            raise Unavailable(
                f"This scheduler worker already follows {self.settings.logs_max_followers} log streams "
                "(PAZ_LOGS_MAX_FOLLOWERS); retry in a few seconds, or read without follow.",
                {"retryAfterSeconds": 5},
            )
        session = LogSession(query, self.followers if query.follow else None)
        try:
            for unit in units:
                session.streams.append(self.driver.logs(unit, query))
        except BaseException:
            session.close()
            raise
        session.lines = merged(session.streams, query, self.settings.logs_max_seconds)
        return session

    def _units_of(self, service: str, unit_id: str | None) -> list[Unit]:
        self.service(service)  # the directory's 404 when there is no such service
        units = sorted(self.driver.units(service), key=_order)
        if unit_id is None:
            return units
        chosen = [unit for unit in units if unit.id == unit_id]
        if not chosen:
            raise NotFound(f"No unit {unit_id} in service {service}: it is gone, or never was; "
                           f"GET /services/{service}/units lists them.", {"unit": unit_id})
        return chosen

    def _announced(self, unit: Unit) -> bool:
        return self.etcd.get(unit.key) is not None


class LogSession:
    """One request's log lines. ``close`` (the answer's end, however it ends, even before its first
    line) closes the runtime's streams and gives back the follower's place, once."""

    def __init__(self, query: LogQuery, place: threading.BoundedSemaphore | None) -> None:
        self.query = query
        self.place = place
        self.streams: list[LogStream] = []
        self.lines: Iterator[LogLine] = iter(())
        self._closed = False

    def __iter__(self) -> Iterator[LogLine]:
        return self.lines

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for stream in self.streams:
            stream.close()
        if self.place is not None:
            self.place.release()


def _order(unit: Unit) -> tuple[str, int, int]:
    return unit.service, unit.version, unit.instance
