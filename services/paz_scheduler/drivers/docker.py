"""The docker driver: one Docker Engine through the docker SDK (never a shell).

Each instance is a container named ``<service>-<version>-<instance>`` and labelled ``paz.service``,
``paz.version``, ``paz.instance`` and ``paz.port`` (the container port it is announced with), plus
``PAZ_INSTANCE_LABELS``; the labels are how the scheduler finds its instances again after a restart.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import docker
import requests
from docker.utils import parse_repository_tag

from paz import image_registry
from paz.errors import ApiError, BadGateway, NotFound, Unavailable

from .base import DIED, GONE, STARTED, STOPPING, DeployFailed, InstanceSpec, Unit, UnitEvent, ready, unit_id
from .logs import LogQuery, LogStream, docker_logs

log = logging.getLogger(__name__)

RESTART_POLICY = {"Name": "unless-stopped"}
"""Once an instance serves, Docker restarts it when it crashes (and after the engine restarts), never
when the scheduler stopped it. Until then it has none, so a new version that exits fails its deploy
with its own exit code instead of being restarted in a loop."""
LABELS = ("paz.service", "paz.version", "paz.instance")
NO_STATS = {"cpuPercent": None, "memoryBytes": None, "memoryLimitBytes": None}
TERMINATING_SIGNALS = ("15", "9", "SIGTERM", "SIGKILL", "TERM", "KILL")
EPHEMERAL_PORT_ATTEMPTS = 3
PORT_TAKEN = "address already in use"
"""Docker hands out ephemeral host ports without checking that no other program (another engine on the
machine) holds one; its start then fails with this, and starting again gets the next port."""


class EngineRefused(ApiError):
    """The engine answered, but refused what was asked (a Docker API error nobody handled)."""

    status = 502


class DockerDriver:
    name = "docker"
    self_announcing = False
    rolls_fixed_ports = False

    def __init__(self, settings: Any) -> None:
        self.settings = settings
        self.extra_labels = dict(settings.instance_labels)
        self.where = settings.docker_host or "unix:///var/run/docker.sock"
        self.last_engine_id = "docker"
        self._clients: dict[float, docker.DockerClient] = {}
        self._lock = threading.Lock()

    # -- reaching the engine -------------------------------------------------------------------

    def client(self, timeout: float = 30.0) -> docker.DockerClient:
        """A client of the engine (made on first use and again after a failure), found the Docker way."""
        with self._lock:
            if timeout not in self._clients:
                with self.reaching():
                    self._clients[timeout] = docker.from_env(timeout=timeout)
            return self._clients[timeout]

    @contextlib.contextmanager
    def reaching(self) -> Iterator[None]:
        """Turn "the engine cannot be reached" into a 503 that names it, and an engine's refusal that
        its caller did not handle into a 502 (503 when the engine says it cannot serve: not a swarm
        manager) that names the engine and says why: never a 500."""
        try:
            yield
        except docker.errors.APIError as exc:
            log.warning("docker engine refused", extra={"docker_host": self.where, "reason": explanation(exc)})
            raise EngineRefused(f"The Docker Engine at {self.where} refused: {explanation(exc)}",
                                {"dockerHost": self.where}, status=503 if exc.status_code == 503 else 502) from None
        except (requests.RequestException, docker.errors.DockerException, OSError) as exc:
            self._clients.clear()
            log.warning("docker engine unreachable", extra={"docker_host": self.where, "reason": str(exc)})
            raise Unavailable(
                f"The Docker Engine at {self.where} is unreachable ({exc}); start it or point DOCKER_HOST at it.",
                {"dockerHost": self.where},
            ) from None

    def health(self) -> dict[str, Any]:
        with self.reaching():
            self.client(5.0).ping()
        return {"dockerHost": self.where}

    def label_filter(self, service: str | None = None) -> dict[str, list[str]]:
        wanted = [f"paz.service={service}" if service else "paz.service"]
        return {"label": wanted + [f"{k}={v}" for k, v in self.extra_labels.items()]}

    # -- images ----------------------------------------------------------------------------------

    def prepare(self, image: str) -> None:
        """Pull ``image``; when no registry answers but the engine has it, use that one (and say so)."""
        missing, reason = self._pull(image)
        if reason is None:
            return
        with self.reaching():
            try:
                self.client().images.get(image)
            except docker.errors.ImageNotFound:
                if missing:
                    raise DeployFailed(
                        f"Image {image} does not exist: the registry has no such repository or tag ({reason}), "
                        "and the Docker Engine does not have it either.",
                        {"image": image},
                    ) from None
                if self.in_own_registry(image):
                    raise Unavailable(f"The suite's registry {image_registry.NAME} at {self.settings.registry_address} "
                                      f"cannot give {image} ({reason}) and the Docker Engine does not have it: "
                                      "start the registry (paz up --registry).", {"registry": self.settings.registry_address})
                raise BadGateway(
                    f"Could not pull {image} ({reason}) and the Docker Engine does not have it: "
                    "make the registry reachable, or load the image on the engine.",
                    {"image": image},
                ) from None
        log.warning("pull failed; running the image the engine already has", extra={"image": image, "reason": reason})

    def in_own_registry(self, image: str) -> bool:
        return image.startswith(f"{self.settings.registry_address}/")

    def log_in(self, client: docker.DockerClient, image: str) -> None:
        """Log ``client`` in to the suite's registry with the scheduler's own token (role read) when
        ``image`` is there: its pulls, and a swarm service's tasks on every node, then carry it."""
        if self.in_own_registry(image):
            client.login(image_registry.USER, self.settings.token, registry=self.settings.registry_address)

    def _pull(self, image: str) -> tuple[bool, str | None]:
        """``(registry says it does not exist, why the pull failed)``; ``(False, None)`` when it worked."""
        repository, tag = parse_repository_tag(image)
        client = self.client(self.settings.pull_timeout)
        try:
            with self.reaching():
                try:
                    self.log_in(client, image)
                    client.api.pull(repository, tag=tag or "latest")
                except docker.errors.APIError as exc:
                    return isinstance(exc, docker.errors.NotFound), explanation(exc)
            return False, None
        except Unavailable:
            return False, f"the engine gave no answer within PAZ_PULL_TIMEOUT={self.settings.pull_timeout:g}s"

    # -- instances -------------------------------------------------------------------------------

    def start(self, spec: InstanceSpec) -> Unit:
        """Create and start the container of one instance (replacing a leftover of the same name)."""
        config = spec.config
        with self.reaching():
            ports = self._ports(spec.image, config.get("ports") or [])
        labels = {**self.version_labels(spec, ports), "paz.instance": str(spec.instance)}
        ephemeral, attempt = all(host is None for _, host in ports), 1
        while True:
            try:
                return self._run(spec, labels, ports)
            except DeployFailed as failure:
                if not (ephemeral and PORT_TAKEN in failure.message and attempt < EPHEMERAL_PORT_ATTEMPTS):
                    raise
                attempt += 1
                log.warning("ephemeral host port taken by another program; starting again", extra={"unit": spec.id})

    def _run(self, spec: InstanceSpec, labels: dict[str, str], ports: list[tuple[int, int | None]]) -> Unit:
        """One attempt to create and start the container."""
        config = spec.config
        with self.reaching():
            client = self.client()
            with contextlib.suppress(docker.errors.NotFound):
                client.api.remove_container(spec.id, force=True)
            try:
                container = client.containers.run(
                    spec.image,
                    detach=True,
                    name=spec.id,
                    labels=labels,
                    environment=spec.environment,
                    volumes={host: {"bind": inside, "mode": "rw"} for host, inside in (config.get("volume") or {}).items()},
                    ports={f"{inside}/tcp": (self.settings.instance_host, host) for inside, host in ports},
                    dns=[self.settings.instance_dns] if self.settings.instance_dns else None,
                )
            except docker.errors.APIError as exc:
                raise DeployFailed(f"Docker could not start {spec.id}: {explanation(exc)}", {"unit": spec.id}) from None
            return self._summary(container.id)

    def version_labels(self, spec: InstanceSpec, ports: list[tuple[int, int | None]]) -> dict[str, str]:
        """The labels every instance of ``spec``'s version carries: ``PAZ_INSTANCE_LABELS``, service, version, announced port."""
        labels = {**self.extra_labels, "paz.service": spec.service, "paz.version": str(spec.version)}
        if ports:
            labels["paz.port"] = str(ports[0][0])
        return labels

    def _ports(self, image: str, configured: list[dict[str, int]]) -> list[tuple[int, int | None]]:
        """``(container port, host port or None)`` pairs; without configured ports, the image's exposed TCP ports."""
        if configured:
            return [(p["container"], p.get("host")) for p in configured]
        exposed = self.client().images.get(image).attrs.get("Config", {}).get("ExposedPorts") or {}
        tcp = sorted(int(p.split("/")[0]) for p in exposed if p.endswith("/tcp"))
        return [(port, None) for port in tcp]

    def wait_ready(self, units: list[Unit], health_check: dict[str, Any] | None, timeout: float) -> list[Unit]:
        """Wait until every unit serves; DeployFailed naming each one that exited or did not answer in time."""
        deadline = time.monotonic() + timeout
        with ThreadPoolExecutor(max_workers=max(len(units), 1)) as pool:
            problems = [p for p in pool.map(lambda u: self._wait_one(u, health_check, deadline), units) if p]
        if problems:
            raise DeployFailed("; ".join(problems), {"units": [u.id for u in units]})
        return units

    def _wait_one(self, unit: Unit, health_check: dict[str, Any] | None, deadline: float) -> str | None:
        with self.reaching():
            api = self.client().api
            while True:
                attrs = api.inspect_container(unit.containerId)
                state = attrs["State"]
                if state["Status"] in ("exited", "dead"):
                    return f"{unit.id} exited with code {state.get('ExitCode')}{self._last_words(unit)}"
                if state["Running"] and (unit.address is None or ready(unit.host, unit.port, health_check)):
                    self._keep_restarting(unit)
                    return None
                if time.monotonic() > deadline:
                    what = f"answer at {health_check['path']}" if health_check else "accept connections"
                    return f"{unit.id} did not {what} on {unit.address} in time{self._last_words(unit)}"
                time.sleep(0.05)

    def _keep_restarting(self, unit: Unit) -> None:
        """Give a serving instance its restart policy; a slow engine here costs a warning, not the deploy."""
        try:
            with self.reaching():
                self.client(5.0).api.update_container(unit.containerId, restart_policy=RESTART_POLICY)
        except (EngineRefused, Unavailable) as exc:
            log.warning("could not set the restart policy", extra={"unit": unit.id, "reason": str(exc)})

    def _last_words(self, unit: Unit) -> str:
        with contextlib.suppress(Exception):
            tail = self.client().api.logs(unit.containerId, tail=5).decode("utf-8", "replace").strip()
            if tail:
                return f" (last output: {tail[-300:]!r})"
        return ""

    def units(self, service: str | None = None) -> list[Unit]:
        """Every labelled container (of ``service``), running or not."""
        with self.reaching():
            found = self.client().api.containers(all=True, filters=self.label_filter(service))
        return [container_unit(summary, self.settings.instance_host) for summary in found]

    def _summary(self, container_id: str) -> Unit:
        found = self.client().api.containers(all=True, filters={"id": container_id})
        return container_unit(found[0], self.settings.instance_host)

    def unit(self, unit_id_: str) -> tuple[Unit, dict[str, Any]]:
        """One unit and its resource use (null figures when Docker does not know them)."""
        with self.reaching():
            found = self.client().api.containers(all=True, filters={**self.label_filter(), "name": f"^/{unit_id_}$"})
            if not found:
                raise NotFound(f"No unit {unit_id_}; GET /units lists them.", {"unit": unit_id_})
            unit = container_unit(found[0], self.settings.instance_host)
            return unit, unit_stats(unit, self.client().api)

    def events(self) -> "ContainerEvents":
        """Docker's events of the labelled containers, as unit changes."""
        with self.reaching():
            return ContainerEvents(self.client().events(decode=True, filters={"type": "container", **self.label_filter()}))

    def logs(self, unit: Unit, query: LogQuery) -> LogStream:
        """The container's output, through the engine's ``/containers/<id>/logs``."""
        return self.open_logs(unit, f"/containers/{unit.containerId}/logs", query)

    def open_logs(self, unit: Unit, path: str, query: LogQuery) -> LogStream:
        """Docker's log endpoint ``path`` of ``unit``: a unit the engine no longer has is a 404 naming it."""
        with self.reaching():
            try:
                return docker_logs(self.client().api, path, unit.id, query)
            except docker.errors.NotFound:
                raise NotFound(f"No unit {unit.id}: it is gone from the Docker Engine.", {"unit": unit.id}) from None

    def withdraw(self, units: list[Unit]) -> None:
        """Nothing to do here: the background task withdraws keys once the version is no longer running."""

    def settle(self, service: str, serving: set[int]) -> None:
        """Nothing to settle: a fixed host port is stopped before the new version starts (no rollover held)."""

    def remove(self, units: list[Unit]) -> None:
        """Stop (SIGTERM, then SIGKILL after PAZ_STOP_TIMEOUT) and remove the units' containers, in parallel."""
        def remove_one(unit: Unit) -> None:
            with self.reaching(), contextlib.suppress(docker.errors.NotFound):
                api = self.client(self.settings.stop_timeout + 30).api
                api.stop(unit.containerId, timeout=self.settings.stop_timeout)
                api.remove_container(unit.containerId, force=True)

        with ThreadPoolExecutor(max_workers=max(len(units), 1)) as pool:
            list(pool.map(remove_one, units))

    def unreachable_host(self) -> dict[str, Any]:
        return {"id": self.last_engine_id, "name": self.where, "driver": self.name, "address": self.settings.instance_host,
                "cores": None, "memoryBytes": None, "containersRunning": None, "healthy": False}

    def hosts(self) -> list[dict[str, Any]]:
        """The engine as the one host; ``healthy: false`` when it cannot be reached.

        An unreachable engine keeps the id it was last seen with, so ``/hosts/<id>/health`` of a
        host that went down says "unhealthy" rather than "no such host".
        """
        try:
            with self.reaching():
                info = self.client(5.0).info()
        except Unavailable:
            return [self.unreachable_host()]
        self.last_engine_id = info["ID"]
        return [engine_host(info, self.settings.instance_host)]


def container_unit(summary: dict[str, Any], host: str) -> Unit:
    """The unit a labelled container is, from its entry in Docker's ``GET /containers/json``: reached at
    ``host`` on the host port that publishes its ``paz.port`` label's container port, if one does."""
    labels = summary["Labels"]
    port_label = labels.get("paz.port")
    host_port = next(
        (p["PublicPort"] for p in summary.get("Ports") or [] if str(p.get("PrivatePort")) == port_label and p.get("PublicPort")),
        None,
    )
    service, version, instance = labels["paz.service"], int(labels["paz.version"]), int(labels["paz.instance"])
    return Unit(
        id=unit_id(service, version, instance),
        service=service,
        version=version,
        instance=instance,
        host=host if host_port else None,
        port=host_port,
        image=summary["Image"],
        containerId=summary["Id"],
        state=summary["State"],
    )


def engine_host(info: dict[str, Any], address: str) -> dict[str, Any]:
    """The one host of the docker driver, from the engine's ``GET /info``."""
    return {"id": info["ID"], "name": info.get("Name"), "driver": DockerDriver.name, "address": address,
            "cores": info.get("NCPU"), "memoryBytes": info.get("MemTotal"),
            "containersRunning": info.get("ContainersRunning"), "healthy": True}


class ContainerEvents:
    """Docker's container events as :class:`UnitEvent`s: a container that dies is ``died`` (with its
    exit code), one sent SIGTERM or SIGKILL (``docker stop``, ``docker kill``) is ``stopping``."""

    def __init__(self, stream: Any) -> None:
        self.stream = stream

    def __iter__(self) -> Iterator[UnitEvent]:
        for event in self.stream:
            change = _unit_event(event)
            if change is not None:
                yield change

    def close(self) -> None:
        self.stream.close()


def _unit_event(event: dict[str, Any]) -> UnitEvent | None:
    """A container event as the unit change it is; None for other events and for containers the scheduler did not make."""
    actor = event.get("Actor") or {}
    labels = actor.get("Attributes") or {}
    action = event.get("Action")
    if not (labels.get("paz.service") and labels.get("paz.version", "").isdigit() and labels.get("paz.instance", "").isdigit()):
        return None
    if action == "stop" or (action == "kill" and labels.get("signal") in TERMINATING_SIGNALS):
        kind, detail = STOPPING, ""
    elif action == "die":
        kind, detail = DIED, f"exit code {labels.get('exitCode', '?')}"
    elif action in ("start", "destroy"):
        kind, detail = (STARTED if action == "start" else GONE), ""
    else:
        return None
    return UnitEvent(kind, labels["paz.service"], int(labels["paz.version"]), int(labels["paz.instance"]),
                     actor.get("ID") or event.get("id"), detail)


def unit_stats(unit: Unit, api: docker.APIClient | None) -> dict[str, Any]:
    """A running unit's resource use from the engine it runs on; null figures when that engine is unknown or it does not run."""
    if api is None or unit.state != "running" or not unit.containerId:
        return dict(NO_STATS)
    return _stats(api.stats(unit.containerId, stream=False))


def explanation(exc: docker.errors.APIError) -> str:
    return str(exc.explanation or exc)


def _stats(raw: dict[str, Any]) -> dict[str, Any]:
    """Docker's stats sample as cpuPercent (of one core = 100), memoryBytes (without page cache) and the limit."""
    cpu, pre = raw.get("cpu_stats") or {}, raw.get("precpu_stats") or {}
    cpu_delta = (cpu.get("cpu_usage") or {}).get("total_usage", 0) - (pre.get("cpu_usage") or {}).get("total_usage", 0)
    system_delta = cpu.get("system_cpu_usage", 0) - pre.get("system_cpu_usage", 0)
    cores = cpu.get("online_cpus") or len((cpu.get("cpu_usage") or {}).get("percpu_usage") or []) or 1
    memory = raw.get("memory_stats") or {}
    usage = memory.get("usage")
    cache = (memory.get("stats") or {}).get("inactive_file", (memory.get("stats") or {}).get("cache", 0))
    return {
        "cpuPercent": round(cpu_delta / system_delta * cores * 100, 2) if system_delta > 0 and pre else None,
        "memoryBytes": usage - cache if usage is not None else None,
        "memoryLimitBytes": memory.get("limit"),
    }
