"""The scheduler's requests: deploys, rollbacks and stops are recorded as what is wanted, then followed.

A deploy reads the service's config from the directory, checks that the runtime answers (so an
unreachable engine is a 503 before a version is taken), takes the next version number
(compare-and-swap), writes the service's desired record (``/paz/scheduler/desired/<name>``: the
version, its image, a snapshot of its config, the instance count) and the version's document,
``deploying``. The deploy controller (:mod:`.controller`, in the scheduler that leads) carries it
out and writes the version's status back. A caller that waits is answered from that status, read
from the process's view of etcd: the version once it serves and the old one is stopped, or the
reason it failed; a caller that prefers not to wait (``Prefer: respond-async``) is answered at once.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

from docker.utils import parse_repository_tag

from paz import keys
from paz.contracts.times import iso_now
from paz.errors import ApiError, Conflict, NotFound, Unavailable
from paz.etcd import Store
from paz.secrets import sealed_of
from paz.upstream import Upstream
from paz.view import EtcdView

from .controller import version_document
from .drivers.base import Driver, Unit
from .drivers.logs import LogLine, LogQuery, LogStream, merged
from .store import SchedulerStore

log = logging.getLogger(__name__)

DIRECTORY = "paz-service-directory"
WAIT_MARGIN_SECONDS = 60.0
"""Beyond the pull and deploy timeouts, how long a waiting request follows a version (draining, a
leader taking over) before it answers 202 with where to follow it instead."""


class Scheduler:
    def __init__(self, settings: Any, store: SchedulerStore, driver: Driver, upstream: Upstream, view: EtcdView) -> None:
        self.settings = settings
        self.store = store
        self.driver = driver
        self.upstream = upstream
        self.view = view
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

    # -- what is wanted ----------------------------------------------------------------------------

    def deploy(self, name: str, image: str | None, pushed_at: str | None, request_id: str) -> dict[str, Any]:
        """Want ``image`` (default: the service's repository) with the directory's current config; the new version's document."""
        document = self.service(name)
        config = {**document["config"], "secrets": sealed_of(self.etcd, name)}  # the answer shows only their names
        return self._want(name, image or document["dockerRepository"], config, pushed_at, request_id, "deploy")

    def pushed(self, repository: str, tag: str, request_id: str) -> dict[str, Any]:
        """A push of ``repository:tag`` to the suite's registry: deploy it to every service that follows the
        repository with autoDeploy ``always`` (once: a push it runs already is not deployed again); a push
        nobody follows is journaled and runs nothing."""
        followed = f"{self.settings.registry_address}/{repository}"
        image = f"{followed}:{tag}"
        services = [document for document in self.upstream.json(DIRECTORY, "GET", "/services", params=self.CONSISTENT)
                    if parse_repository_tag(document["dockerRepository"])[0] == followed]
        answer: dict[str, Any] = {"image": image, "deployed": [], "ignored": []}
        if not services:
            self.store.journal("push-ignored", repository, f"{image} was pushed, but no service has dockerRepository "
                               f"{followed}: nothing was deployed.", image=image)
            answer["ignored"].append({"service": None, "reason": f"no service follows {followed}"})
        for document in services:
            reason = self._not_deployed_on_push(document, image)
            if reason:
                answer["ignored"].append({"service": document["name"], "reason": reason})
                continue
            version = self.deploy(document["name"], image, iso_now(), request_id)["version"]
            answer["deployed"].append({"service": document["name"], "version": version})
        log.info("registry push", extra={"image": image, "deployed": answer["deployed"], "ignored": answer["ignored"]})
        return answer

    def _not_deployed_on_push(self, document: dict[str, Any], image: str) -> str | None:
        name, auto = document["name"], document["config"].get("autoDeploy")
        if auto != "always":
            return f"{name} has autoDeploy {auto!r}; only 'always' deploys on a push."
        latest = self.store.latest_number(name)
        if latest is not None and self.store.version(name, latest).get("dockerRepository") == image:
            return f"{name} v{latest} is {image} already."
        return None

    def rollback(self, name: str, version: int, request_id: str) -> dict[str, Any]:
        """Want recorded ``version``'s image and config again, as a new version."""
        old = self.store.version(name, version)
        return self._want(name, old["dockerRepository"], old["config"], old.get("pushedAt"), request_id, "rollback",
                          rollback_of=version)

    def _want(self, name: str, image: str, config: dict[str, Any], pushed_at: str | None, request_id: str, kind: str,
              rollback_of: int | None = None) -> dict[str, Any]:
        self.driver.units(name)  # an unreachable runtime fails here, before a version is taken
        version = self.store.next_version(name)
        record = {"id": uuid.uuid4().hex, "service": name, "kind": kind, "version": version, "image": image,
                  "config": config, "instances": int(config.get("numInstances") or 1), "pushedAt": pushed_at,
                  "rollbackOf": rollback_of, "requestId": request_id, "at": iso_now()}
        self.store.want(record)
        document = self.store.create_version(version_document(record))
        log.info("deploy wanted", extra={"service": name, "version": version, "image": image, "kind": kind})
        return document

    def stop(self, name: str, request_id: str) -> list[str]:
        """Want no instance of ``name`` and wait until none runs; the ids of the units there were."""
        ids = sorted(unit.id for unit in self.driver.units(name))
        record = {"id": uuid.uuid4().hex, "service": name, "kind": "stop", "stopped": True,
                  "version": self.store.latest_number(name) or 0, "units": ids, "requestId": request_id, "at": iso_now()}
        held, revision = self.store.want(record)
        if held["id"] != record["id"]:
            raise Conflict(f"v{held['version']} of {name} was deployed while it was being stopped; stop it again.",
                           {"service": name})
        if self._follow(revision, lambda: self._stopped(name, record["id"])) is None:
            raise Unavailable(f"{name} is not stopped yet after {self._patience():g}s; is a scheduler leading? "
                              "GET /health says which one leads.", {"service": name})
        return ids

    # -- following what was wanted ---------------------------------------------------------------

    def awaited(self, document: dict[str, Any]) -> dict[str, Any] | None:
        """The version's document once it serves and the old one is stopped; None when it is still
        under way after the wait. A version that failed raises its reason (422 when it did not serve,
        or the status of the engine's refusal); one that a newer deploy or a stop superseded, 409."""
        name, version = document["service"], document["version"]
        revision = self.etcd.get(keys.version_document(name, version)).revision
        return self._follow(revision, lambda: self._outcome(name, version))

    def _patience(self) -> float:
        return self.settings.pull_timeout + self.settings.deploy_timeout + WAIT_MARGIN_SECONDS

    def _follow(self, revision: int, outcome: Any) -> Any:
        """Call ``outcome`` each time the view moves (from ``revision`` on) until it answers something."""
        deadline = time.monotonic() + self._patience()
        self.view.wait_for(revision, self._patience())
        index = self.view.index
        while True:
            found = outcome()
            if found is not None or time.monotonic() >= deadline:
                return found
            index = self.view.wait_past(index, min(1.0, max(0.0, deadline - time.monotonic())))

    def _record(self, key: str) -> dict[str, Any] | None:
        value = self.view.get(key)
        return json.loads(value) if value else None

    def _outcome(self, name: str, version: int) -> dict[str, Any] | None:
        document = self._record(keys.version_document(name, version)) or {}
        desired = self._record(keys.desired(name)) or {}
        status = document.get("status")
        if status == "failed":
            raise ApiError(document.get("message", f"v{version} of {name} was not deployed."),
                           {"service": name, "version": version}, status=document.get("failureStatus", 422))
        if status == "running" and (desired.get("version") != version or desired.get("observed") == desired.get("id")):
            return document
        if status in ("replaced", "stopped"):
            if document.get("deployedAt"):
                return document  # it served, then a newer version took over
            raise Conflict(document.get("message", f"v{version} of {name} never served."), {"service": name, "version": version})
        return None

    def _stopped(self, name: str, record_id: str) -> bool | None:
        desired = self._record(keys.desired(name)) or {}
        if desired.get("id") != record_id:
            raise Conflict(f"v{desired.get('version')} of {name} was deployed while it was being stopped; stop it again.",
                           {"service": name})
        return True if desired.get("observed") == record_id else None

    # -- what runs -------------------------------------------------------------------------------

    def units(self, service: str | None = None) -> list[dict[str, Any]]:
        return [unit.as_json(self._announced(unit)) for unit in sorted(self.driver.units(service), key=_order)]

    def unit(self, unit_id: str) -> dict[str, Any]:
        unit, stats = self.driver.unit(unit_id)
        return {**unit.as_json(self._announced(unit)), "stats": stats}

    def logs(self, service: str, unit_id: str | None, query: LogQuery, gone: Callable[[], bool] = lambda: False) -> "LogSession":
        """The output of ``service``'s units (or of one, ``unit_id``), merged in time order.

        Every stream is opened before this returns, so an unknown service or unit, or a driver
        without logs, is an error answer rather than an empty stream. A followed stream holds one of
        PAZ_LOGS_MAX_FOLLOWERS places in this process until it ends (PAZ_LOGS_MAX_SECONDS at most, or
        once ``gone()`` says its client left).
        """
        units = self._units_of(service, unit_id)
        if query.follow and not self.followers.acquire(blocking=False):
            raise Unavailable(
                f"This scheduler already follows {self.settings.logs_max_followers} log streams "
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
        session.lines = merged(session.streams, query, self.settings.logs_max_seconds, gone)
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
