"""The swarm driver: Docker Swarm mode through the docker SDK (never a shell), on the manager at
``DOCKER_HOST``.

A version is a Swarm service ``<service>-<version>`` replicated to ``numInstances``; its tasks are
the instances (a task's slot is the instance number). Service and containers carry the docker
driver's labels (``paz.service``, ``paz.version``, ``paz.port``, ``PAZ_INSTANCE_LABELS``), with env,
volumes (bind mounts) and ports as API arguments. Ports are published in **host mode** (an
ephemeral port on the task's node unless the config fixes one), so an instance is announced as
``<its node's address>:<its published port>``; the ingress routing mesh and service VIPs need IPVS,
which is not always there (not on the machines this was built on), so nothing relies on them.

Rollover is paz's own (engine.py): the new version's service starts beside the old one, and the old
one is removed once the new one serves and is announced. Placement, resolved when a version starts:

* ``conflictsWith``: ``node.id!=`` every node that runs a task of another service matching a
  pattern; a pattern that matches the service itself means one task per node (max replicas 1);
* ``mustShareWith``: ``node.id!=`` every node that runs no task of a matching service (none: 422);
* a fixed host port: one task per node (a host port cannot hold two).

What runs is read from Swarm's task list, where old tasks stay listed while they shut down: a task is
``running`` for paz only when it runs, its desired state is ``running`` and its node is ``ready``.
:class:`TaskEvents` polls that list and reports changes, which is how a task that dies, or whose
node goes down or is drained, loses its key at once (a manager has no events for tasks).
"""

from __future__ import annotations

import contextlib
import fnmatch
import logging
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import docker
from docker.types import ContainerSpec, DNSConfig, EndpointSpec, Mount, Placement, RestartPolicy, ServiceMode, TaskTemplate

from paz.errors import NotFound, Unavailable
from paz.names import SERVICE_NAME
from paz.waiting import poll

from .base import DIED, STARTED, STOPPING, DeployFailed, InstanceSpec, Unit, UnitEvent, ready, unit_id
from .docker import DockerDriver, EngineRefused, explanation, unit_stats
from .logs import LogQuery, LogStream

log = logging.getLogger(__name__)

POLL_SECONDS = 0.25
"""How often :class:`TaskEvents` reads the task list: the delay before a dead task's key goes."""
RESTART_DELAY_NS = 1_000_000_000
DOWN_STATES = ("failed", "complete", "rejected", "orphaned", "node-down", "node-unknown", "node-disconnected")
"""A unit's states after it went down by itself (not asked to stop)."""
FINISHED_TASK_STATES = ("complete", "shutdown", "failed", "rejected", "orphaned", "remove")
ENGINE_LABEL = "paz.engine"
"""A node label naming that node's Docker Engine (``unix://...`` or ``tcp://...``), for units' stats."""


def service_name(service: str, version: int) -> str:
    return f"{service}-{version}"


REPLICAS_BEFORE_LABEL = "paz.replicas-before-rollover"
"""On an old version's Swarm service a fixed-port rollover scaled down: the replicas it had, so a
scheduler started after a crash gives them back if the new version fails."""


def replicas_of(spec: dict[str, Any]) -> int:
    """The replicas a Swarm service spec asks for (0 for a global service)."""
    return (spec.get("Mode") or {}).get("Replicated", {}).get("Replicas", 0)


class SwarmDriver(DockerDriver):
    """Shares the docker driver's engine access, image handling, ports, labels and stats."""

    name = "swarm"
    self_announcing = False
    rolls_fixed_ports = True

    def __init__(self, settings: Any) -> None:
        super().__init__(settings)
        self._node_engines: dict[str, docker.APIClient] = {}
        self._holding: dict[str, dict[str, int]] = {}
        """New version's service -> {old version's service: its replicas}, while a fixed host port is rolled."""
        self._skipped: set[str | None] = set()

    def health(self) -> dict[str, Any]:
        with self.reaching():
            swarm = self.client(5.0).info().get("Swarm") or {}
        if not swarm.get("ControlAvailable"):
            raise Unavailable(
                f"The Docker Engine at {self.where} is not a swarm manager (swarm state: {swarm.get('LocalNodeState')}); "
                "run docker swarm init there, or point DOCKER_HOST at a manager.",
                {"dockerHost": self.where},
            )
        return {"dockerHost": self.where, "nodeId": swarm.get("NodeID")}

    # -- starting a version ----------------------------------------------------------------------

    def start(self, spec: InstanceSpec) -> Unit:
        """Instance 1 creates the version's service with every replica; the others are its further slots."""
        if spec.instance == 1:
            with self.reaching():
                if any(port.get("host") for port in spec.config.get("ports") or []):
                    self._holding[service_name(spec.service, spec.version)] = self._replicas_of_others(spec)
                self._create_service(spec)
        return Unit(spec.id, spec.service, spec.version, spec.instance, None, None, spec.image, None, "new")

    def _create_service(self, spec: InstanceSpec) -> None:
        config, name = spec.config, service_name(spec.service, spec.version)
        ports = self._ports(spec.image, config.get("ports") or [])
        labels = self.version_labels(spec, ports)
        container = ContainerSpec(
            spec.image, env=spec.environment, labels=labels,
            mounts=[Mount(inside, host, type="bind") for host, inside in (config.get("volume") or {}).items()],
            stop_grace_period=self.settings.stop_timeout * 1_000_000_000,
            dns_config=DNSConfig(nameservers=[self.settings.instance_dns]) if self.settings.instance_dns else None,
        )
        template = TaskTemplate(container, restart_policy=RestartPolicy("any", delay=RESTART_DELAY_NS),
                                placement=self._placement(spec, ports))
        published = [{"Protocol": "tcp", "TargetPort": inside, "PublishMode": "host", **({"PublishedPort": host} if host else {})}
                     for inside, host in ports]
        client = self.client()
        api = client.api
        with contextlib.suppress(docker.errors.NotFound):
            api.remove_service(name)  # a leftover of a deploy that was cut short
        try:
            self.log_in(client, spec.image)
            api.create_service(template, name=name, labels=labels, endpoint_spec=EndpointSpec(ports=published),
                               mode=ServiceMode("replicated", replicas=int(config.get("numInstances") or 1)))
        except docker.errors.APIError as exc:
            raise DeployFailed(f"Swarm could not create the service {name}: {explanation(exc)}", {"service": name}) from None

    def _placement(self, spec: InstanceSpec, ports: list[tuple[int, int | None]]) -> Placement:
        """``conflictsWith`` and ``mustShareWith`` as node constraints, from where services run now."""
        config, where = spec.config, self._nodes_by_service()
        others = {service: nodes for service, nodes in where.items() if service != spec.service}
        avoid: set[str] = set()
        for pattern in config.get("conflictsWith") or []:
            avoid |= {node for service, nodes in others.items() if fnmatch.fnmatchcase(service, pattern) for node in nodes}
        for pattern in config.get("mustShareWith") or []:
            sharing = {node for service, nodes in others.items() if fnmatch.fnmatchcase(service, pattern) for node in nodes}
            if not sharing:
                raise DeployFailed(f"mustShareWith {pattern!r}: no running service of that name to share a node with.")
            avoid |= {node["ID"] for node in self.client().api.nodes()} - sharing
        one_per_node = any(host for _, host in ports) or any(
            fnmatch.fnmatchcase(spec.service, p) for p in config.get("conflictsWith") or [])
        return Placement(constraints=[f"node.id!={node}" for node in sorted(avoid)], maxreplicas=1 if one_per_node else None)

    def _replicas_of_others(self, spec: InstanceSpec) -> dict[str, int]:
        """The other versions' services of ``spec``'s service, with the replicas they had before any
        rollover scaled them down (one cut short by a crash too)."""
        found = self.client().api.services(filters=self.label_filter(spec.service))
        return {s["Spec"]["Name"]: int((s["Spec"].get("Labels") or {}).get(REPLICAS_BEFORE_LABEL) or replicas_of(s["Spec"]))
                for s in found if s["Spec"]["Name"] != service_name(spec.service, spec.version)}

    def _nodes_by_service(self) -> dict[str, set[str]]:
        where: dict[str, set[str]] = {}
        for task, unit in self._tasks():
            if unit.state == "running":
                where.setdefault(unit.service, set()).add(task["NodeID"])
        return where

    # -- waiting until it serves -----------------------------------------------------------------

    def wait_ready(self, units: list[Unit], health_check: dict[str, Any] | None, timeout: float) -> list[Unit]:
        """Wait until a task of every slot runs and serves; DeployFailed at the first task that fails or at the deadline.

        With a fixed host port, the old version gives up one node at a time while new tasks wait
        for one (:meth:`_make_room`); :meth:`settle` ends what that leaves.
        """
        version = service_name(units[0].service, units[0].version) if units else ""
        try:
            return self._wait_serving(units, health_check, time.monotonic() + timeout)
        finally:
            self._holding.pop(version, None)

    def _wait_serving(self, units: list[Unit], health_check: dict[str, Any] | None, deadline: float) -> list[Unit]:
        wanted = {unit.id for unit in units}
        serving: set[str | None] = set()
        while True:
            with self.reaching():
                found = [(task, unit) for task, unit in self._tasks() if unit.id in wanted]
            failed = [(task, unit) for task, unit in found if unit.state in DOWN_STATES]
            if failed:
                task, unit = failed[0]
                raise DeployFailed(f"{unit.id} {_task_problem(task)}{self._last_words(unit)}", {"units": sorted(wanted)})
            running = {unit.id: unit for _, unit in found if unit.state == "running" and unit.address}
            fresh = [u for u in running.values() if u.containerId not in serving]
            with ThreadPoolExecutor(max_workers=max(len(fresh), 1)) as pool:
                answers = list(pool.map(lambda u: ready(u.host, u.port, health_check), fresh))
            serving |= {u.containerId for u, answered in zip(fresh, answers) if answered}
            checked = [u for u in running.values() if u.containerId in serving]
            if len(checked) == len(wanted):
                return sorted(checked, key=lambda u: u.instance)
            if time.monotonic() > deadline:
                raise DeployFailed(self._late(units, running, found, health_check), {"units": sorted(wanted)})
            self._make_room(units, found, len(found) - len(checked))
            time.sleep(0.1)

    def _make_room(self, units: list[Unit], found: list[tuple[dict[str, Any], Unit]], not_serving: int) -> None:
        """Rolling stop-then-start per node, for a fixed host port: when every new task that does not
        serve yet is one Swarm cannot place (pending, with the scheduler's reason, e.g. "host-mode port
        already in use"), scale the old version down by one (Swarm stops one of its tasks, whose key
        goes with it) and wait until that task is gone and the node it freed took a new task."""
        holding = self._holding.get(service_name(units[0].service, units[0].version)) if units else None
        blocked = [unit for task, unit in found if unit.state == "pending" and (task.get("Status") or {}).get("Err")]
        if not holding or not blocked or len(blocked) != not_serving:
            return
        old = next((name for name in holding if self._replicas(name) > 0), None)
        if old is None:
            return
        with self.reaching():
            left = self._replicas(old) - 1
            log.info("fixed host port: stopping one task of the old version", extra={"service": old, "replicas": left})
            service_id = self._scale(old, left, before=holding[old])
            poll(lambda: len(self._live_tasks(service_id)) <= left, self.settings.stop_timeout + 20, 0.1)
            wanted = {unit.id for unit in units}
            poll(lambda: sum(1 for t, u in self._tasks() if u.id in wanted and u.state == "pending") < len(blocked), 10, 0.1)

    def settle(self, service: str, serving: set[int]) -> None:
        """A version's Swarm service a fixed-port rollover scaled down (it carries the replicas it had,
        :data:`REPLICAS_BEFORE_LABEL`) gets them back while its version should serve (the new one
        failed); else, left at 0 replicas, it is removed: it has no task for the retiring to find."""
        with self.reaching():
            for found in self.client().api.services(filters=self.label_filter(service)):
                spec, labels = found["Spec"], found["Spec"].get("Labels") or {}
                if REPLICAS_BEFORE_LABEL not in labels or not self._is_a_version(found):
                    continue
                if int(labels["paz.version"]) in serving:
                    log.info("fixed host port: the old version gets its replicas back", extra={"service": spec["Name"]})
                    self._scale(spec["Name"], int(labels[REPLICAS_BEFORE_LABEL]))
                elif replicas_of(spec) == 0:
                    log.info("fixed host port: removing the old version left at 0 replicas", extra={"service": spec["Name"]})
                    with contextlib.suppress(docker.errors.NotFound):
                        self.client().api.remove_service(found["ID"])

    def _scale(self, name: str, replicas: int, before: int | None = None) -> str:
        """Change only the replicas of service ``name`` (its ID), labelled with ``before``, the replicas
        to give back, while a rollover holds them (the label goes with ``before=None``). The SDK's
        ``Service.scale`` rebuilds the task template, which Swarm takes for a new spec and answers with
        a rolling restart of every task."""
        api = self.client().api
        found = api.inspect_service(name)
        spec = found["Spec"]
        labels = {key: value for key, value in (spec.get("Labels") or {}).items() if key != REPLICAS_BEFORE_LABEL}
        if before is not None:
            labels[REPLICAS_BEFORE_LABEL] = str(before)
        api.update_service(found["ID"], found["Version"]["Index"], task_template=spec["TaskTemplate"], name=spec["Name"],
                           labels=labels, mode={"Replicated": {"Replicas": replicas}},
                           update_config=spec.get("UpdateConfig"), rollback_config=spec.get("RollbackConfig"),
                           endpoint_spec=spec.get("EndpointSpec"))
        return found["ID"]

    def _replicas(self, name: str) -> int:
        with self.reaching():
            return replicas_of(self.client().api.inspect_service(name)["Spec"])

    def _live_tasks(self, service_id: str) -> list[dict[str, Any]]:
        return [t for t in self.client().api.tasks() if t.get("ServiceID") == service_id
                and (t.get("Status") or {}).get("State") not in FINISHED_TASK_STATES]

    @staticmethod
    def _late(units: list[Unit], running: dict[str, Unit], found: list[tuple[dict, Unit]], health_check: dict | None) -> str:
        what = f"answer at {health_check['path']}" if health_check else "accept connections"
        states = {unit.id: unit.state for _, unit in found}
        return "; ".join(
            f"{u.id} did not {what} on {running[u.id].address} in time" if u.id in running
            else f"{u.id} did not run in time (task {states.get(u.id, 'not scheduled')})"
            for u in units
        )

    def _last_words(self, unit: Unit) -> str:
        with contextlib.suppress(Exception):
            raw = self.client(5.0).api.service_logs(service_name(unit.service, unit.version), stdout=True, stderr=True,
                                                    tail=5, is_tty=False)
            tail = (raw if isinstance(raw, bytes) else b"".join(raw)).decode("utf-8", "replace").strip()
            if tail:
                return f" (last output: {tail[-300:]!r})"
        return ""

    # -- what runs -------------------------------------------------------------------------------

    def _tasks(self, service: str | None = None) -> list[tuple[dict[str, Any], Unit]]:
        """Every task of the labelled services (of ``service``), old ones included, with the unit it is."""
        api = self.client().api
        services = {s["ID"]: s for s in api.services(filters=self.label_filter(service)) if self._is_a_version(s)}
        if not services:
            return []
        nodes = {n["ID"]: n for n in api.nodes()}
        return [(task, task_unit(task, services[task["ServiceID"]], nodes.get(task.get("NodeID")) or {}))
                for task in api.tasks() if task.get("ServiceID") in services and task.get("Slot")]

    def _is_a_version(self, service: dict[str, Any]) -> bool:
        """Whether a labelled Swarm service is a version the scheduler made: a service name and a version
        number in its labels. Anything else (made around paz) is left out, with one warning naming it."""
        labels = (service.get("Spec") or {}).get("Labels") or {}
        if SERVICE_NAME.fullmatch(labels.get("paz.service", "")) and labels.get("paz.version", "").isdigit():
            return True
        if service.get("ID") not in self._skipped:
            self._skipped.add(service.get("ID"))
            log.warning("skipped a Swarm service with paz labels that are not a version", extra={"swarmService": service.get("ID")})
        return False

    def _current(self, service: str | None = None) -> list[tuple[dict[str, Any], Unit]]:
        """The current task of each slot of the labelled services (of ``service``), with its unit."""
        with self.reaching():
            return current_tasks(self._tasks(service))

    def units(self, service: str | None = None) -> list[Unit]:
        return [unit for _, unit in self._current(service)]

    def unit(self, unit_id_: str) -> tuple[Unit, dict[str, Any]]:
        """One unit and its resource use, from its node's engine when that can be reached."""
        found = {unit.id: (task, unit) for task, unit in self._current()}
        if unit_id_ not in found:
            raise NotFound(f"No unit {unit_id_}; GET /units lists them.", {"unit": unit_id_})
        task, unit = found[unit_id_]
        try:
            with self.reaching():
                return unit, unit_stats(unit, self._engine_of(task.get("NodeID")))
        except (EngineRefused, Unavailable) as exc:
            log.warning("no stats from the unit's node", extra={"unit": unit.id, "reason": str(exc)})
            return unit, unit_stats(unit, None)

    def _engine_of(self, node_id: str | None) -> docker.APIClient | None:
        """The engine of ``node_id``: the manager's own, or the one its ``paz.engine`` node label names."""
        client = self.client()
        if node_id == client.info()["Swarm"]["NodeID"]:
            return client.api
        address = (client.api.inspect_node(node_id)["Spec"].get("Labels") or {}).get(ENGINE_LABEL) if node_id else None
        if not address:
            return None
        if address not in self._node_engines:
            self._node_engines[address] = docker.APIClient(base_url=address, timeout=10)
        return self._node_engines[address]

    def events(self) -> "TaskEvents":
        with self.reaching():
            return TaskEvents(self)

    def logs(self, unit: Unit, query: LogQuery) -> LogStream:
        """The output of the unit's current task, through the manager's ``/tasks/<id>/logs``
        (Swarm fetches it from the task's node, so it works whichever node runs it)."""
        tasks = {found.id: task for task, found in self._current(unit.service)}
        if unit.id not in tasks:
            raise NotFound(f"No unit {unit.id}: Swarm has no task for it any more.", {"unit": unit.id})
        return self.open_logs(unit, f"/tasks/{tasks[unit.id]['ID']}/logs", query)

    def task_states(self) -> dict[str, tuple[Unit, str]]:
        """``{task id: (unit, why it is down)}`` for every task of the labelled services."""
        with self.reaching():
            return {task["ID"]: (unit, _task_problem(task)) for task, unit in self._tasks()}

    # -- stopping --------------------------------------------------------------------------------

    def remove(self, units: list[Unit]) -> None:
        """Remove the versions' services and wait (bounded) until their tasks have shut down."""
        if not units:
            return
        removed: set[str] = set()
        with self.reaching():
            api = self.client().api
            for name in sorted({service_name(unit.service, unit.version) for unit in units}):
                self._holding.pop(name, None)
                with contextlib.suppress(docker.errors.NotFound):
                    removed.add(api.inspect_service(name)["ID"])
                    api.remove_service(name)
            gone = poll(lambda: not [t for s in removed for t in self._live_tasks(s)], self.settings.stop_timeout + 20, 0.1)
        if not gone:
            log.warning("tasks of removed services still shutting down", extra={"services": sorted(removed)})

    # -- the cluster -----------------------------------------------------------------------------

    def hosts(self) -> list[dict[str, Any]]:
        """Swarm's nodes, with their role, availability and state; ``healthy`` when Swarm says ready (and reachable)."""
        try:
            with self.reaching():
                api = self.client(5.0).api
                nodes, tasks = api.nodes(), api.tasks(filters={"desired-state": "running"})
        except Unavailable:
            return [self.unreachable_host()]
        running: dict[str, int] = {}
        for task in tasks:
            if (task.get("Status") or {}).get("State") == "running":
                running[task.get("NodeID")] = running.get(task.get("NodeID"), 0) + 1
        return [node_host(node, running.get(node["ID"], 0)) for node in sorted(nodes, key=lambda n: n["Description"]["Hostname"])]

class TaskEvents:
    """Changes of Swarm's tasks as :class:`UnitEvent`s, from the task list read every ``POLL_SECONDS``.

    A task that ran and now has failed, completed or lost its node is ``died``; one that ran and is
    now wanted shut down (a removal, a drain, a scale-down) or is gone is ``stopping``.
    """

    def __init__(self, driver: SwarmDriver, interval: float = POLL_SECONDS) -> None:
        self.driver, self.interval = driver, interval
        self.seen = driver.task_states()
        self._closed = threading.Event()

    def __iter__(self) -> Iterator[UnitEvent]:
        while not self._closed.wait(self.interval):
            current = self.driver.task_states()
            yield from task_changes(self.seen, current)
            self.seen = current

    def close(self) -> None:
        self._closed.set()


def task_unit(task: dict[str, Any], service: dict[str, Any], node: dict[str, Any]) -> Unit:
    """The unit a task of a version's Swarm service is (``GET /tasks``, ``/services``, ``/nodes`` entries):
    its slot is the instance, and it is reached at its node's address on the port that publishes ``paz.port``."""
    labels = service["Spec"]["Labels"]
    status = task.get("Status") or {}
    port_label = labels.get("paz.port")
    published = next((p.get("PublishedPort") for p in (status.get("PortStatus") or {}).get("Ports") or []
                      if str(p.get("TargetPort")) == port_label and p.get("PublishedPort")), None)
    name, version = labels["paz.service"], int(labels["paz.version"])
    return Unit(
        id=unit_id(name, version, task["Slot"]), service=name, version=version, instance=task["Slot"],
        host=node_address(node) if published else None, port=published,
        image=service["Spec"]["TaskTemplate"]["ContainerSpec"]["Image"],
        containerId=(status.get("ContainerStatus") or {}).get("ContainerID"), state=_unit_state(task, node),
    )


def current_tasks(tasks: list[tuple[dict[str, Any], Unit]]) -> list[tuple[dict[str, Any], Unit]]:
    """One task per slot (old tasks stay listed while they shut down): the one Swarm wants running, else the newest."""
    current: dict[str, tuple[dict[str, Any], Unit]] = {}
    for task, unit in tasks:
        held = current.get(unit.id)
        if held is None or _rank(task) > _rank(held[0]):
            current[unit.id] = (task, unit)
    return list(current.values())


def node_host(node: dict[str, Any], containers_running: int) -> dict[str, Any]:
    """A Swarm node (``GET /nodes``) as a host; ``healthy`` when Swarm says ready (and, for a manager, reachable)."""
    description, status, spec = node.get("Description") or {}, node.get("Status") or {}, node.get("Spec") or {}
    manager = node.get("ManagerStatus")
    resources = description.get("Resources") or {}
    return {
        "id": node["ID"], "name": description.get("Hostname"), "driver": SwarmDriver.name, "address": node_address(node),
        "role": spec.get("Role"), "availability": spec.get("Availability"), "state": status.get("State"),
        "leader": bool(manager and manager.get("Leader")),
        "cores": resources.get("NanoCPUs", 0) / 1e9 or None, "memoryBytes": resources.get("MemoryBytes"),
        "containersRunning": containers_running,
        "healthy": status.get("State") == "ready" and (not manager or manager.get("Reachability") == "reachable"),
    }


def task_changes(before: dict[str, tuple[Unit, str]], after: dict[str, tuple[Unit, str]]) -> Iterator[UnitEvent]:
    """The events between two readings of the task list."""
    for task_id, (unit, _) in after.items():
        earlier = before.get(task_id)
        if unit.state == "running" and (earlier is None or earlier[0].state != "running"):
            yield _event(STARTED, unit, "")
    for task_id, (unit, _) in before.items():
        now, why = after.get(task_id, (None, ""))
        if unit.state == "running" and (now is None or now.state != "running"):
            died = now is not None and now.state in DOWN_STATES
            yield _event(DIED if died else STOPPING, unit, why if died else "")


def _event(action: str, unit: Unit, detail: str) -> UnitEvent:
    return UnitEvent(action, unit.service, unit.version, unit.instance, unit.containerId, detail)


def _unit_state(task: dict[str, Any], node: dict[str, Any]) -> str:
    """The task's state, except that a running task Swarm wants shut down is ``stopping`` and one on a
    node that is not ready is ``node-<its state>``: neither is announced."""
    state = (task.get("Status") or {}).get("State") or "unknown"
    node_state = (node.get("Status") or {}).get("State")
    if state == "running" and node_state != "ready":
        return f"node-{node_state or 'unknown'}"
    if state == "running" and task.get("DesiredState") != "running":
        return "stopping"
    return state


def _task_problem(task: dict[str, Any]) -> str:
    status = task.get("Status") or {}
    code = (status.get("ContainerStatus") or {}).get("ExitCode")
    if status.get("State") in ("failed", "complete") and code is not None:
        return f"exited with code {code}"
    return f"{status.get('State')}: {status.get('Err') or status.get('Message') or 'no reason given'}"


def _rank(task: dict[str, Any]) -> tuple[bool, int]:
    """Which task of a slot is its unit: the one Swarm wants running, then the newest."""
    return task.get("DesiredState") == "running", (task.get("Version") or {}).get("Index", 0)


def node_address(node: dict[str, Any]) -> str | None:
    """The address a node's host-mode ports are reached at: Swarm's own view of it (a manager that
    reports 0.0.0.0 gives its manager address instead)."""
    address = (node.get("Status") or {}).get("Addr")
    if address and address != "0.0.0.0":
        return address
    manager = (node.get("ManagerStatus") or {}).get("Addr")
    return manager.rsplit(":", 1)[0] if manager else None
