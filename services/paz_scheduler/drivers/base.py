"""What every runtime driver deals in: the instance to start, the unit it becomes, and how a deploy fails."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

import requests

from paz import keys
from paz.errors import ApiError

from .logs import LogQuery, LogStream


def unit_id(service: str, version: int, instance: int) -> str:
    """``<service>-<version>-<instance>``: the unit id, container name and fleet unit name (without suffix)."""
    return f"{service}-{version}-{instance}"


def instance_key(service: str, version: int, instance: int) -> str:
    """``/paz/services/<service>/<version>/<instance>``: where a running instance is announced."""
    return keys.instance(service, version, instance)


class DeployFailed(ApiError):
    """The new version could not be made to serve: its image, command or health is at fault.

    422, not a 5xx: the request was understood and the scheduler and its dependencies worked, but
    what it asks to run does not serve; repeating it will not help until the image or config changes.
    """

    status = 422


@dataclass(frozen=True)
class InstanceSpec:
    """One instance to start: which service, version and instance number, with what image and config."""

    service: str
    version: int
    instance: int
    image: str
    config: dict[str, Any] = field(default_factory=dict)
    secrets: dict[str, str] = field(default_factory=dict, repr=False)
    """The config's secrets opened: for the container's environment only (never shown: ``repr=False``)."""

    @property
    def id(self) -> str:
        return unit_id(self.service, self.version, self.instance)

    @property
    def environment(self) -> dict[str, str]:
        """The container's environment: the config's env, and its secrets over it."""
        return {**(self.config.get("env") or {}), **self.secrets}


@dataclass(frozen=True)
class Unit:
    """A running (or stopped) instance as the runtime reports it."""

    id: str
    service: str
    version: int
    instance: int
    host: str | None
    port: int | None
    image: str
    containerId: str | None
    state: str

    @property
    def key(self) -> str:
        return instance_key(self.service, self.version, self.instance)

    @property
    def address(self) -> str | None:
        """``host:port`` it is reached at, or None when it publishes no port."""
        return f"{self.host}:{self.port}" if self.host and self.port else None

    def as_json(self, announced: bool) -> dict[str, Any]:
        return {**asdict(self), "announced": announced, "healthy": self.state == "running" and announced}


@dataclass(frozen=True)
class UnitEvent:
    """A change the runtime reports about one unit, as the background task needs it.

    ``action``: ``started``; ``stopping`` (asked to stop: withdraw now and never announce it again
    until it starts); ``died`` (went down by itself: withdraw now, and journal it if its version
    was serving); ``gone`` (removed). ``runtimeId`` is the unit's ``containerId``.
    """

    action: str
    service: str
    version: int
    instance: int
    runtimeId: str | None
    detail: str = ""

    @property
    def key(self) -> str:
        return instance_key(self.service, self.version, self.instance)

    @property
    def unit_id(self) -> str:
        return unit_id(self.service, self.version, self.instance)


STARTED, STOPPING, DIED, GONE = "started", "stopping", "died", "gone"


class UnitEvents(Protocol):
    """The runtime's stream of unit changes; ``close`` (from another thread) ends the iteration."""

    def __iter__(self) -> Iterator[UnitEvent]: ...
    def close(self) -> None: ...


class Driver(Protocol):
    """A runtime the scheduler deploys onto (``docker``, ``swarm`` or ``fleet``).

    The deploy controller (controller.py) uses ``prepare``, ``start``, ``wait_ready``, ``withdraw``,
    ``remove`` and ``settle``;
    the background task that announces instances (reconcile.py) uses only ``units`` (what runs, with
    its address: a unit is announced when its ``state`` is ``running`` and it answers) and
    ``events`` (what changed, to act before the next re-list).
    """

    name: str
    self_announcing: bool
    """True when the runtime announces instances itself (fleet's sidekick units): no background task then."""
    rolls_fixed_ports: bool
    """True when the driver replaces a version holding a fixed host port node by node itself (swarm);
    otherwise the deploy stops the old version before it starts the new one."""

    def health(self) -> dict[str, Any]: ...
    def prepare(self, image: str) -> None: ...
    def start(self, spec: InstanceSpec) -> Unit: ...
    def wait_ready(self, units: list[Unit], health_check: dict[str, Any] | None, timeout: float) -> list[Unit]:
        """Wait until every unit serves; the units as they serve (with their addresses), or DeployFailed."""

    def units(self, service: str | None = None) -> list[Unit]: ...
    def unit(self, unit_id: str) -> tuple[Unit, dict[str, Any]]: ...
    def events(self) -> UnitEvents:
        """Follow the runtime's changes from now on; raises ApiError when the runtime cannot be reached."""

    def withdraw(self, units: list[Unit]) -> None:
        """Take ``units`` out of service before they are stopped (where the runtime announces them)."""

    def remove(self, units: list[Unit]) -> None: ...
    def settle(self, service: str, serving: set[int]) -> None:
        """At the end of a deploy pass, undo what a rollover the driver rolls itself (``rolls_fixed_ports``)
        left half done, a failure's or a crash's: an old version in ``serving`` (the versions that should
        serve now) gets back what the rollover took from it; one that is not, and has nothing left, goes."""

    def hosts(self) -> list[dict[str, Any]]: ...
    def logs(self, unit: Unit, query: LogQuery) -> LogStream:
        """``unit``'s output (stdout and stderr apart, each line with its time) as ``query`` bounds it.

        The stream is opened before this returns, so a unit the runtime no longer has is a NotFound
        naming it here, not an empty stream; a runtime that keeps no logs the scheduler can read
        raises Unsupported (501) saying what to run instead.
        """


def accepts_connections(host: str, port: int, timeout: float = 0.5, hold: float = 0.05) -> bool:
    """True when ``host:port`` accepts a connection and keeps it open.

    Docker's userland proxy accepts on a published port even before the container listens, then
    closes at once; so a connection that is closed within ``hold`` seconds does not count.
    """
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.settimeout(hold)
            try:
                return sock.recv(1) != b""
            except socket.timeout:
                return True
    except OSError:
        return False


def ready(host: str, port: int, health_check: dict[str, Any] | None) -> bool:
    """Whether an instance serves: its HTTP health path answers below 400, or else it accepts TCP."""
    if not health_check:
        return accepts_connections(host, port)
    try:
        answer = requests.get(
            f"http://{host}:{port}{health_check['path']}", timeout=health_check.get("timeoutSeconds", 1), allow_redirects=False
        )
        return answer.status_code < 400
    except requests.RequestException:
        return False
