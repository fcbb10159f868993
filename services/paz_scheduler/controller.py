"""The deploy controller: it makes each service run what its desired record says, from whatever it finds.

A deploy, a rollback, a scale (a deploy with another ``numInstances``) and a stop are requests that
only write what they want: ``/paz/scheduler/desired/<name>`` (the version with its image and a
snapshot of its config, or ``stopped``) and the version's document, ``deploying``. This controller,
run once per scheduler (:mod:`paz.lifecycle`), and only in the scheduler that leads
(``/paz/leaders/paz-scheduler``, bound to a lease it keeps alive), carries them out:

* a work queue per service: a thread per service with a desired record, woken by any change below
  ``/paz/scheduler`` that concerns the service (through the process's one view of etcd), and every
  ``RESYNC_SECONDS`` besides; wake-ups while it works merge into one more pass;
* each pass is level-triggered: it reads the desired record (from etcd's leader), the version
  documents and the runtime's units, takes the next step, and writes status back: the version's
  ``status`` and ``progress`` (which the orchestrator's event stream turns into ``deploy-*``
  events) and, once the world matches the record, ``observed`` on the record itself (what a request
  waiting for the deploy follows, like Kubernetes' ``observedGeneration``);
* while it works on a service it holds ``/paz/scheduler/locks/<name>``, bound to the same lease, so a
  scheduler that dies lets go of it within the lease's TTL, and one that only lost the lead cannot
  overlap with the next leader.

The steps of a deploy are those the request took before (see :meth:`DeployController.roll_out`):
pull, start the new instances beside the old ones, wait until they serve, mark the version
``running`` (the announcer then announces them), retire the old version (withdraw, drain, stop).

**After a crash the controller resumes; it does not roll back.** A version still ``deploying`` when
a pass begins is rolled out again from the pull: the instances it had started are removed first
(they never served and may be half made), then pulled and started afresh; the old version keeps
serving throughout, so this costs seconds, never availability, and the version ends ``running`` or
``failed`` (its instances did not serve within ``PAZ_DEPLOY_TIMEOUT``) by itself. So is a version
marked ``running`` before it was waited for (a fixed host port that the driver rolls node by node) whose
wait was cut short: it has no ``deployedAt``. A version already ``running`` whose old version was still
draining has the old one retired. Any unit with paz's labels
that belongs to no wanted version (the desired one, or one still ``running`` while the desired one
is not serving yet) is retired. A ``deploying`` version that is not the desired one (a newer deploy
was written first, or its request died before handing it over) ends ``replaced`` without serving.
Resuming was chosen over rolling back because the desired record still says what the user asked
for: rolling back would silently drop a deploy that only needs another try.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from paz import keys
from paz.errors import ApiError
from paz.etcd import AlreadyExists, Change, CompareFailed, KeyNotFound, Lease, Store, StoreUnavailable
from paz.contracts.times import iso_now
from paz.leadership import Leadership
from paz.secrets import Keyring, opened
from paz.view import EtcdView, Listener
from paz.waiting import poll

from .drivers.base import Driver, InstanceSpec, Unit
from .figures import deploy_figures
from .images import ImageKeeper, RegistryGate
from .store import SchedulerStore

log = logging.getLogger(__name__)

PART = "paz-scheduler"
RESYNC_SECONDS = 30.0
"""How often a service is looked at with nothing waking it: what catches a stray unit."""
RETRY_SECONDS = (1.0, 2.0, 5.0, 10.0)
"""How long a service's queue waits after a failed pass, the 1st, 2nd, ... time in a row."""
ANNOUNCE_WAIT_SECONDS = 10.0
"""How long a deploy waits for the announcer to announce (or withdraw) instance keys."""


class ServiceQueue:
    """The work queue of one service: a thread that runs the controller's passes, one at a time."""

    def __init__(self, controller: "DeployController", name: str) -> None:
        self.controller, self.name = controller, name
        self.wake = threading.Event()
        self.wake.set()
        self.thread = threading.Thread(target=self._run, name=f"paz-deploys-{name}", daemon=True)

    def _run(self) -> None:
        failures, stop = 0, self.controller.stopping
        while not stop.is_set():
            self.wake.wait(RESYNC_SECONDS if failures == 0 else RETRY_SECONDS[min(failures, len(RETRY_SECONDS)) - 1])
            self.wake.clear()
            if stop.is_set() or not self.controller.leadership.leading.is_set():
                continue
            try:
                self.controller.pass_over(self.name)
                failures = 0
            except (ApiError, StoreUnavailable, ServiceBusy) as exc:
                failures += 1
                log.warning("pass failed, retrying", extra={"service": self.name, "reason": str(exc), "failures": failures})
            except Exception:
                failures += 1
                log.exception("pass failed, retrying", extra={"service": self.name, "failures": failures})


class ServiceBusy(Exception):
    """Another scheduler (one that led until a moment ago) still holds the service's lock."""


class DeployController:
    """Converges every service that has a desired record to it; see the module's docstring."""

    def __init__(self, settings: Any, driver: Driver, etcd: Store, view: EtcdView) -> None:
        self.settings, self.driver, self.etcd, self.view = settings, driver, etcd, view
        self.store = SchedulerStore(etcd)
        self.keyring = Keyring(settings.secrets_key_file)
        self.images = ImageKeeper(settings, self.store, RegistryGate(etcd, self.keyring), view)
        self.leadership = Leadership(etcd, PART, settings.address, settings.leader_ttl)
        self.queues: dict[str, ServiceQueue] = {}
        self.stopping = threading.Event()
        self._lock = threading.Lock()

    # -- waking ---------------------------------------------------------------------------------

    def start(self) -> "DeployController":
        deploy_figures()  # its series exist, at 0, before the first rollout ends
        self.view.listen(Listener(changed=self._on_change, reloaded=self._on_reload))
        threading.Thread(target=self._lead, name="paz-leadership", daemon=True).start()
        return self

    def stop(self) -> None:
        self.stopping.set()
        for queue in list(self.queues.values()):
            queue.wake.set()
        self.leadership.resign()

    def _lead(self) -> None:
        while not self.stopping.is_set():
            self.leadership.beat()
            if self.leadership.gained.is_set():
                self.leadership.gained.clear()
                self._on_reload(False, 0)
            self.stopping.wait(self.leadership.ttl / 3)

    def _on_reload(self, _lost: bool, _index: int) -> None:
        for node in self.view.children(keys.DESIRED):
            self.enqueue(node.key.rsplit("/", 1)[-1])

    def _on_change(self, change: Change) -> None:
        name = service_of(change.key)
        if name and (name in self.queues or self.view.get(keys.desired(name)) is not None):
            self.enqueue(name)

    def enqueue(self, name: str) -> None:
        with self._lock:
            queue = self.queues.get(name)
            if queue is None:
                queue = self.queues[name] = ServiceQueue(self, name)
                queue.thread.start()
        queue.wake.set()

    # -- one pass -------------------------------------------------------------------------------

    def pass_over(self, name: str) -> None:
        """Read what ``name`` should run and what runs, and take it the rest of the way, under its lock."""
        with self._locked(name):
            desired = self.store.desired(name)
            if not desired:
                return
            extra = {"service": name, "request_id": desired.get("requestId")}
            self._supersede(name, desired, extra)
            if desired.get("stopped"):
                self._stop(name, desired, extra)
            else:
                self._converge(name, desired, extra)
            if desired.get("observed") != desired["id"]:
                self.store.observe(name, desired["id"])
            # after observing: a request waiting for the pass does not wait for this clean-up too
            self.driver.settle(name, self._serving(name, desired))

    def _serving(self, name: str, desired: dict[str, Any]) -> set[int]:
        """The versions of ``name`` that should serve once a pass is over: none when it is stopped, the
        desired one when it was deployed, else those still ``running`` (the desired one failed)."""
        if desired.get("stopped"):
            return set()
        running = {document["version"]: document for document in self.store.versions_with_status(name, "running")}
        if (running.get(desired["version"]) or {}).get("deployedAt"):
            return {desired["version"]}
        return set(running) - {desired["version"]}

    def _locked(self, name: str) -> "_ServiceLock":
        lease = self.leadership.lease
        if lease is None:
            raise ServiceBusy("no lease yet")
        return _ServiceLock(self.etcd, keys.deploy_lock(name), self.leadership.value, lease)

    def _supersede(self, name: str, desired: dict[str, Any], extra: dict[str, Any]) -> None:
        """End every ``deploying`` version older than the desired one (or, for a stop, every one): it
        will never be rolled out. A newer one is left alone: its record is being written (requests
        write the record before the version's document) and the next pass rolls it out."""
        for document in self.store.versions_with_status(name, "deploying"):
            if document["version"] < desired["version"] or (desired.get("stopped") and document["version"] == desired["version"]):
                why = "the service was stopped" if desired.get("stopped") else f"v{desired['version']} was deployed after it"
                self.store.update_version(name, document["version"], status="replaced",
                                          message=f"v{document['version']} of {name} never served: {why}.")
                log.info("version superseded", extra={**extra, "version": document["version"]})

    def _converge(self, name: str, desired: dict[str, Any], extra: dict[str, Any]) -> None:
        document = self.store.create_version(version_document(desired))
        if document["status"] == "deploying" or (document["status"] == "running" and not document.get("deployedAt")):
            self.roll_out(desired, document, extra)
            document = self.store.version(name, desired["version"])
        units = self.driver.units(name)
        if document["status"] == "running":
            self.retire(name, [u for u in units if u.version != desired["version"]], "replaced")
        else:
            serving = {d["version"] for d in self.store.versions_with_status(name, "running")}
            self.retire(name, [u for u in units if u.version not in serving], "replaced")
        if desired.get("observed") != desired["id"] and document["status"] == "running":
            self.store.journal(desired["kind"], name, _summary(desired, units), desired["version"])
            self.images.prune(name)

    def _stop(self, name: str, desired: dict[str, Any], extra: dict[str, Any]) -> None:
        units = self.driver.units(name)
        self.retire(name, units, "stopped")
        for document in self.store.versions_with_status(name, "running"):
            self.store.update_version(name, document["version"], status="stopped")
        if desired.get("observed") != desired["id"]:
            ids = sorted(desired.get("units") or [])
            self.store.journal("stop", name, f"stopped {len(ids)} instance(s)" + (f": {', '.join(ids)}" if ids else ""))
            log.info("service stopped", extra={**extra, "units": ids})

    # -- a rollout ------------------------------------------------------------------------------

    def roll_out(self, desired: dict[str, Any], document: dict[str, Any], extra: dict[str, Any]) -> None:
        """Take a ``deploying`` version to ``running`` (or ``failed``), from the pull.

        A service with a fixed host port cannot run two versions on one machine, so there the old
        version is retired before the new one starts (a short outage), unless the driver rolls such
        a version node by node itself (``rolls_fixed_ports``: swarm); then the new version is marked
        ``running`` before it is waited for, so each new instance is announced as soon as it serves.
        """
        name, version, image, config = desired["service"], desired["version"], desired["image"], desired["config"]
        units = self.driver.units(name)
        self.driver.remove([u for u in units if u.version == version])  # what a pass cut short had started
        previous = [u for u in units if u.version != version]
        fixed_port = any(port.get("host") for port in config.get("ports") or [])
        stop_first = fixed_port and not self.driver.rolls_fixed_ports
        log.info("deploy started", extra={**extra, "version": version, "image": image, "kind": desired["kind"]})
        began = time.monotonic()
        started: list[Unit] = []
        try:
            self.driver.prepare(image)
            self._progress(name, version, step="image-pulled", image=image)
            if stop_first:
                self.retire(name, previous, "replaced")
                self._progress(name, version, step="old-stopped", stopped=sorted(u.id for u in previous))
            started = self._start(name, version, image, config, started, announce_while_starting=fixed_port and not stop_first)
            self.store.update_version(name, version, status="running", deployedAt=iso_now())
            self._await_keys(started, present=True)
            log.info("new instances announced", extra={**extra, "version": version})
        except ApiError as exc:
            self._fail(name, version, started, exc, [] if stop_first else previous, extra)
            deploy_figures().finished("failed", time.monotonic() - began)
            return
        if not stop_first:
            self.retire(name, previous, "replaced")
            self._progress(name, version, step="old-stopped", stopped=sorted(u.id for u in previous))
        log.info("deploy done", extra={**extra, "version": version, "units": [u.id for u in started]})
        deploy_figures().finished("succeeded", time.monotonic() - began)

    def _start(self, name: str, version: int, image: str, config: dict[str, Any], started: list[Unit],
               announce_while_starting: bool) -> list[Unit]:
        """Start the version's instances (into ``started``, so a failure removes them) and wait until they serve."""
        total = int(config.get("numInstances") or 1)
        secrets = opened(config.get("secrets"), self.keyring)
        for instance in range(1, total + 1):
            started.append(self.driver.start(InstanceSpec(name, version, instance, image, config, secrets)))
            self._progress(name, version, step="instance-started", unit=started[-1].id, started=instance, total=total)
        if announce_while_starting:
            self.store.update_version(name, version, status="running")
        log.info("instances started, waiting until they serve", extra={"service": name, "units": [u.id for u in started]})
        return self.driver.wait_ready(started, config.get("healthCheck"), self.settings.deploy_timeout)

    def _progress(self, name: str, version: int, **progress: Any) -> None:
        """Record how far the deploy is on its version document (``progress``): the event stream tells it."""
        self.store.update_version(name, version, progress=progress)

    def _fail(self, name: str, version: int, started: list[Unit], exc: ApiError, previous: list[Unit],
              extra: dict[str, Any]) -> None:
        """Undo a deploy that did not make it; the ``previous`` units were never touched."""
        self.driver.remove(started)
        serving = sorted({unit.version for unit in previous if unit.state == "running"})
        outcome = f"v{', v'.join(map(str, serving))} keeps serving." if serving else "No other version of it is running."
        message = f"v{version} of {name} was not deployed: {exc.message.rstrip('.')}. {outcome}"
        self.store.update_version(name, version, status="failed", message=message, failureStatus=exc.status)
        self.store.journal("deploy-failed", name, message, version)
        log.warning("deploy failed", extra={**extra, "version": version, "reason": message})

    def retire(self, name: str, units: list[Unit], status: str) -> None:
        """Withdraw ``units``' keys, let requests in flight drain, then stop them.

        Marking their versions ``status`` makes the announcer withdraw docker instances' keys;
        fleet's driver stops their sidekicks instead.
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

        The announcer writes and deletes these keys; a deploy only waits for it. The runtime's own
        sidekicks announce under fleet, so nothing is awaited there.
        """
        if self.driver.self_announcing:
            return True
        wanted = [unit.key for unit in units if unit.address]
        initially = [key for key in wanted if self.etcd.get(key) is not None]

        def waiting() -> list[str]:
            return [key for key in wanted if (self.etcd.get(key) is not None) != present]

        if not poll(lambda: not waiting(), ANNOUNCE_WAIT_SECONDS, 0.05):
            if present:
                raise ApiError(
                    f"The new instances answer but were not announced within {ANNOUNCE_WAIT_SECONDS:g}s "
                    f"({', '.join(waiting())}); the scheduler's announcer is not working: see its logs.",
                    status=503,
                )
            log.warning("keys still present after withdrawal", extra={"keys": waiting()})
        return bool(initially)


class _ServiceLock:
    """``/paz/scheduler/locks/<name>`` held by this scheduler, bound to its lease, for one pass."""

    def __init__(self, etcd: Store, key: str, holder: str, lease: Lease) -> None:
        self.etcd, self.key, self.holder, self.lease = etcd, key, holder, lease

    def __enter__(self) -> "_ServiceLock":
        try:
            self.etcd.create(self.key, self.holder, self.lease)
        except AlreadyExists:
            if self.etcd.value(self.key) != self.holder:
                raise ServiceBusy(f"{self.key} is held by another scheduler until its lease runs out") from None
        return self

    def __exit__(self, *_: Any) -> None:
        try:
            self.etcd.delete(self.key, if_value=self.holder)
        except (CompareFailed, StoreUnavailable):
            pass  # gone already, or left to the lease


def version_document(desired: dict[str, Any]) -> dict[str, Any]:
    """The document a desired deploy's version starts with: ``deploying``."""
    document = {
        "service": desired["service"], "version": desired["version"], "dockerRepository": desired["image"],
        "config": desired["config"], "pushedAt": desired.get("pushedAt"), "deployedAt": None, "status": "deploying",
    }
    if desired.get("rollbackOf") is not None:
        document["rollbackOf"] = desired["rollbackOf"]
    return document


def service_of(key: str) -> str | None:
    """The service a key below ``/paz/scheduler`` concerns (its desired record or its versions)."""
    for folder in (keys.DESIRED, keys.SCHEDULER_SERVICES):
        below = keys.relative(key, folder)
        if below:
            return below.split("/", 1)[0]
    return None


def _summary(desired: dict[str, Any], units: list[Unit]) -> str:
    version, image = desired["version"], desired["image"]
    mine = sorted(u.id for u in units if u.version == version)
    what = f"rolled back to v{desired['rollbackOf']} as v{version}" if desired["kind"] == "rollback" else f"deployed v{version}"
    return f"{what} ({image}): {len(mine)} instance(s) {', '.join(mine)}"
