"""The fleet driver: per instance a service unit and an announce sidekick, submitted through fleet's API.

As paz did on CoreOS: ``<service>-<version>-<instance>.service`` runs the container with ``docker
run``; ``<...>-announce.service`` (bound to it, on the same machine) keeps the instance key
``/paz/services/<service>/<version>/<instance>`` = ``$COREOS_PRIVATE_IPV4:<host port>`` alive in
etcd with a TTL and removes it when it stops. ``conflictsWith`` becomes ``[X-Fleet] Conflicts``,
``mustShareWith`` ``MachineOf`` (resolved to a unit of that service fleet already has).

Every value from a user is one systemd-quoted argument (``"..."`` with ``\\``, ``"``, ``$``, ``%``
and control characters escaped), so env values with quotes, newlines, ``$()`` or ``;`` reach
``docker run`` as data; the sidekick's shell script holds only validated names and numbers.
Units go to fleet's HTTP API: ``PUT /fleet/v1/units/<name>`` with ``desiredState: launched``,
``DELETE`` to remove, ``GET /fleet/v1/state`` and ``/machines`` to see what runs where.
"""

from __future__ import annotations

import fnmatch
import re
from typing import Any
from urllib.parse import quote as url_quote

import requests

from paz.errors import BadGateway, NotFound, Unavailable, Unsupported
from paz.waiting import poll

from .base import DeployFailed, InstanceSpec, Unit, instance_key
from .logs import LogQuery, LogStream

Option = dict[str, str]
UNIT_NAME = re.compile(r"^(?P<service>[a-z][a-z0-9-]*[a-z0-9])-(?P<version>\d+)-(?P<instance>\d+)\.service\Z")
ANNOUNCE_TTL = 60
ETCDCTL = "/usr/bin/etcdctl"


def systemd_quote(value: str) -> str:
    """``value`` as one double-quoted systemd argument that systemd hands to the program unchanged."""
    out = []
    for char in value:
        if char in '\\"':
            out.append("\\" + char)
        elif char in "$%":
            out.append(char * 2)  # $$ and %% stop variable and specifier expansion
        elif char == "\n":
            out.append("\\n")
        elif ord(char) < 32 or ord(char) == 127:
            out.append(f"\\x{ord(char):02x}")
        else:
            out.append(char)
    return '"' + "".join(out) + '"'


def command(program: str, *args: str) -> str:
    """A command line for ExecStart and friends: a fixed program path, then quoted arguments."""
    return " ".join([program, *(systemd_quote(arg) for arg in args)])


def _option(section: str, name: str, value: str) -> Option:
    return {"section": section, "name": name, "value": value}


def service_unit(spec: InstanceSpec, machine_of: list[str], labels: dict[str, str] | None = None) -> list[Option]:
    """The options of the unit that runs one instance's container (with extra ``labels``: PAZ_INSTANCE_LABELS)."""
    config = spec.config
    run = ["run", "--rm", "--name", spec.id]
    paz_labels = {"paz.service": spec.service, "paz.version": str(spec.version), "paz.instance": str(spec.instance)}
    for key, value in {**(labels or {}), **paz_labels}.items():
        run += ["--label", f"{key}={value}"]
    for port in config.get("ports") or []:
        run += ["-p", f"{port['host']}:{port['container']}" if port.get("host") else str(port["container"])]
    for name, value in sorted((config.get("env") or {}).items()):
        run += ["-e", f"{name}={value}"]
    for host, inside in sorted((config.get("volume") or {}).items()):
        run += ["-v", f"{host}:{inside}"]
    run.append(spec.image)
    options = [
        _option("Unit", "Description", f"paz {spec.service} v{spec.version} instance {spec.instance}"),
        _option("Unit", "After", "docker.service"),
        _option("Unit", "Requires", "docker.service"),
        _option("Service", "TimeoutStartSec", "0"),
        _option("Service", "Restart", "on-failure"),
        _option("Service", "RestartSec", "5"),
        _option("Service", "ExecStartPre", "-" + command("/usr/bin/docker", "kill", spec.id)),
        _option("Service", "ExecStartPre", "-" + command("/usr/bin/docker", "rm", spec.id)),
        # "-": when no registry answers, docker run uses the machine's own copy of the image.
        _option("Service", "ExecStartPre", "-" + command("/usr/bin/docker", "pull", spec.image)),
        _option("Service", "ExecStart", command("/usr/bin/docker", *run)),
        _option("Service", "ExecStop", command("/usr/bin/docker", "stop", spec.id)),
    ]
    options += [_option("X-Fleet", "Conflicts", f"{pattern}-*.service") for pattern in config.get("conflictsWith") or []]
    options += [_option("X-Fleet", "MachineOf", unit) for unit in machine_of]
    return options


def etcdctl_announce(api: str, key: str, value: str) -> str:
    """The shell command that writes ``key`` = ``value`` for ANNOUNCE_TTL seconds in etcdctl's ``api``
    (v2: a key with a TTL; v3: a key on a new lease, which etcd revokes when its TTL runs out)."""
    if api == "3":
        lease = f"$({ETCDCTL} lease grant {ANNOUNCE_TTL} | cut -d ' ' -f 2)"
        return f'{ETCDCTL} put --lease="{lease}" {key} {value}'
    return f"{ETCDCTL} set --ttl {ANNOUNCE_TTL} {key} {value}"


def announce_unit(spec: InstanceSpec, etcd_api: str) -> list[Option]:
    """The sidekick that keeps the instance key alive while the instance runs (none without a port),
    with etcdctl speaking ``etcd_api``, the API the suite runs on."""
    port = (spec.config.get("ports") or [{}])[0].get("container")
    key = instance_key(spec.service, spec.version, spec.instance)
    announce = etcdctl_announce(etcd_api, key, '"$COREOS_PRIVATE_IPV4:$port"')
    script = (
        f"while true; do port=$(/usr/bin/docker port {spec.id} {int(port)}/tcp | head -n 1 | sed 's/.*://'); "
        f'if [ -n "$port" ]; then {announce} >/dev/null; fi; '
        f"sleep {ANNOUNCE_TTL // 2}; done"
    )
    return [
        _option("Unit", "Description", f"announce paz {spec.service} v{spec.version} instance {spec.instance}"),
        _option("Unit", "BindsTo", f"{spec.id}.service"),
        _option("Unit", "After", f"{spec.id}.service"),
        _option("Service", "EnvironmentFile", "/etc/environment"),
        _option("Service", "Environment", f"ETCDCTL_API={etcd_api}"),
        _option("Service", "ExecStart", command("/bin/sh", "-c", script)),
        _option("Service", "ExecStop", "-" + command(ETCDCTL, "del" if etcd_api == "3" else "rm", key)),
        _option("X-Fleet", "MachineOf", f"{spec.id}.service"),
    ]


def unit_text(options: list[Option]) -> str:
    """The unit file fleet writes from ``options`` (sections in order of first appearance)."""
    sections: dict[str, list[str]] = {}
    for option in options:
        sections.setdefault(option["section"], []).append(f"{option['name']}={option['value']}")
    return "\n".join(f"[{name}]\n" + "\n".join(lines) + "\n" for name, lines in sections.items())


def fleet_unit(unit: dict[str, Any], state: dict[str, Any], machines: dict[str, str]) -> Unit | None:
    """The instance a fleet unit (``GET /fleet/v1/units``) runs, with its ``state`` (``/state``) and the address
    of its machine among ``machines`` (id: address); None for a unit that is not an instance's service unit."""
    match = UNIT_NAME.match(unit["name"])
    if not match:
        return None
    image = next((o["value"].rsplit(" ", 1)[-1].strip('"') for o in unit.get("options", []) if o["name"] == "ExecStart"), "")
    return Unit(
        id=unit["name"].removesuffix(".service"), service=match["service"], version=int(match["version"]),
        instance=int(match["instance"]), host=machines.get(unit.get("machineID") or state.get("machineID")), port=None,
        image=image, containerId=None, state=state.get("systemdSubState") or unit.get("currentState") or "unknown",
    )


class FleetDriver:
    name = "fleet"
    self_announcing = True
    rolls_fixed_ports = False
    POLL_SECONDS = 0.5

    def __init__(self, settings: Any) -> None:
        self.settings = settings
        self.base = f"{settings.fleet_url}/fleet/v1"
        self.session = requests.Session()

    def _call(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        try:
            answer = self.session.request(method, self.base + path, timeout=10, **kwargs)
        except requests.RequestException as exc:
            raise Unavailable(f"fleet is unreachable at {self.settings.fleet_url} ({exc}); check PAZ_FLEET_URL and fleetd.",
                              {"fleetUrl": self.settings.fleet_url}) from None
        if answer.status_code >= 400 and not (method == "DELETE" and answer.status_code == 404):
            raise BadGateway(f"fleet answered {method} {path} with {answer.status_code}: {answer.text[:300]}", {"fleetUrl": self.settings.fleet_url})
        return answer

    def _pages(self, path: str, field: str) -> list[dict[str, Any]]:
        items, token = [], None
        for _ in range(100):
            body = self._call("GET", path, params={"nextPageToken": token} if token else None).json()
            items += body.get(field) or []
            token = body.get("nextPageToken")
            if not token:
                break
        return items

    def health(self) -> dict[str, Any]:
        self._call("GET", "/machines")
        return {"fleetUrl": self.settings.fleet_url}

    def prepare(self, image: str) -> None:
        """Nothing: each machine pulls in the unit's ExecStartPre (and keeps its own copy when that fails)."""

    def start(self, spec: InstanceSpec) -> Unit:
        if spec.secrets:
            raise DeployFailed(
                f"{spec.service} has secrets ({', '.join(sorted(spec.secrets))}), which the fleet driver does not pass: "
                "fleet keeps unit files in its etcd in clear. Deploy it with the docker or swarm driver, or remove them "
                f"(PATCH /services/{spec.service}/config/next with secrets set to null).", {"service": spec.service})
        machine_of = self._machine_of(spec)
        self._submit(f"{spec.id}.service", service_unit(spec, machine_of, dict(self.settings.instance_labels)))
        if (spec.config.get("ports") or []):
            self._submit(f"{spec.id}-announce.service", announce_unit(spec, self.settings.etcd_api))
        return Unit(spec.id, spec.service, spec.version, spec.instance, None, None, spec.image, None, "launched")

    def _submit(self, name: str, options: list[Option]) -> None:
        self._call("PUT", f"/units/{url_quote(name)}", json={"name": name, "desiredState": "launched", "options": options})

    def _machine_of(self, spec: InstanceSpec) -> list[str]:
        """A unit of each ``mustShareWith`` service that fleet has (the same instance number if it can)."""
        names = sorted(unit["name"] for unit in self._pages("/units", "units"))
        chosen = []
        for pattern in spec.config.get("mustShareWith") or []:
            matches = [n for n in names if (m := UNIT_NAME.match(n)) and fnmatch.fnmatchcase(m["service"], pattern)]
            if not matches:
                raise DeployFailed(f"mustShareWith {pattern!r}: fleet has no unit of such a service to share a machine with.")
            same = [n for n in matches if UNIT_NAME.match(n)["instance"] == str(spec.instance)]
            chosen.append((same or matches)[-1])
        return chosen

    def _states(self) -> dict[str, dict[str, Any]]:
        return {state["name"]: state for state in self._pages("/state", "states")}

    def wait_ready(self, units: list[Unit], health_check: dict[str, Any] | None, timeout: float) -> list[Unit]:
        """Wait until systemd reports every unit active and running on its machine."""

        def waiting() -> list[str]:
            states = self._states()
            failed = [u.id for u in units if states.get(f"{u.id}.service", {}).get("systemdActiveState") == "failed"]
            if failed:
                raise DeployFailed(f"{', '.join(failed)} failed to start (fleet journal -f {failed[0]}.service tells why)")
            return [u.id for u in units if states.get(f"{u.id}.service", {}).get("systemdSubState") != "running"]

        if not poll(lambda: not waiting(), timeout, self.POLL_SECONDS):
            raise DeployFailed(f"{', '.join(waiting())} did not reach running in time")
        return units

    def units(self, service: str | None = None) -> list[Unit]:
        states, machines = self._states(), {m["id"]: m["address"] for m in self.hosts()}
        found = [fleet_unit(unit, states.get(unit["name"], {}), machines) for unit in self._pages("/units", "units")]
        return [unit for unit in found if unit is not None and (not service or unit.service == service)]

    def unit(self, unit_id: str) -> tuple[Unit, dict[str, Any]]:
        for unit in self.units():
            if unit.id == unit_id:
                return unit, {"cpuPercent": None, "memoryBytes": None, "memoryLimitBytes": None}
        raise NotFound(f"No unit {unit_id}; GET /units lists them.", {"unit": unit_id})

    def events(self) -> Any:
        """Never followed: fleet's sidekicks announce instances themselves (``self_announcing``)."""
        raise NotImplementedError("fleet's units announce themselves; nothing follows its events")

    def withdraw(self, units: list[Unit]) -> None:
        """Destroy the sidekicks: each removes its instance key as it stops."""
        for unit in units:
            self._call("DELETE", f"/units/{url_quote(unit.id)}-announce.service")

    def settle(self, service: str, serving: set[int]) -> None:
        """Nothing to settle: a fixed host port is stopped before the new version starts (no rollover held)."""

    def remove(self, units: list[Unit]) -> None:
        """Destroy the units in fleet: systemd stops the container, and the sidekick removes its key."""
        for unit in units:
            for name in (f"{unit.id}-announce.service", f"{unit.id}.service"):
                self._call("DELETE", f"/units/{url_quote(name)}")

    def hosts(self) -> list[dict[str, Any]]:
        machines = self._pages("/machines", "machines")
        return [{"id": m["id"], "name": (m.get("metadata") or {}).get("hostname", m["id"]), "driver": self.name,
                 "address": m.get("primaryIP"), "cores": None, "memoryBytes": None, "containersRunning": None, "healthy": True}
                for m in machines]

    def logs(self, unit: Unit, query: LogQuery) -> LogStream:
        """fleet keeps an instance's output in the systemd journal of its machine, which its API does not serve."""
        raise Unsupported(
            f"The fleet driver cannot read logs: fleet keeps them in the journal of the unit's machine; run "
            f"fleetctl journal{' -f' if query.follow else ''} {unit.id}.service",
            {"unit": unit.id, "command": ["fleetctl", "journal", *(["-f"] if query.follow else []), f"{unit.id}.service"]},
        )
