"""The docker driver's reading of the Docker Engine's answers (shaped as the Engine API documents them) as units."""

from __future__ import annotations

import pytest

from paz_scheduler.drivers.base import DIED, GONE, STARTED, STOPPING, Unit, UnitEvent
from paz_scheduler.drivers.docker import _stats, _unit_event, container_unit, engine_host

pytestmark = pytest.mark.unit

LABELS = {"paz.service": "web", "paz.version": "3", "paz.instance": "2", "paz.port": "8080", "team": "shop"}


def summary(state: str = "running", ports: list[dict] | None = None, labels: dict | None = None) -> dict:
    """An entry of ``GET /containers/json?all=1``."""
    return {
        "Id": "8dfafdbc3a40", "Names": ["/web-3-2"], "Image": "registry.local:5000/web:3", "ImageID": "sha256:ab12",
        "Command": "/bin/httpd -f", "Created": 1_700_000_000, "State": state, "Status": "Up 2 minutes",
        "Ports": [{"IP": "0.0.0.0", "PrivatePort": 8080, "PublicPort": 32771, "Type": "tcp"},
                  {"IP": "::", "PrivatePort": 8080, "PublicPort": 32771, "Type": "tcp"}] if ports is None else ports,
        "Labels": LABELS if labels is None else labels,
    }


def test_a_running_container_is_a_unit_reached_at_its_published_port() -> None:
    assert container_unit(summary(), "10.0.0.9") == Unit(
        id="web-3-2", service="web", version=3, instance=2, host="10.0.0.9", port=32771,
        image="registry.local:5000/web:3", containerId="8dfafdbc3a40", state="running")


@pytest.mark.parametrize(("ports", "why"), [
    ([], "publishes nothing"),
    ([{"PrivatePort": 8080, "Type": "tcp"}], "exposed but not published"),
    ([{"IP": "0.0.0.0", "PrivatePort": 9090, "PublicPort": 32772, "Type": "tcp"}], "publishes another port"),
])
def test_a_container_not_publishing_its_announced_port_has_no_address(ports: list[dict], why: str) -> None:
    unit = container_unit(summary(ports=ports), "10.0.0.9")
    assert (unit.host, unit.port, unit.address) == (None, None, None), why


@pytest.mark.parametrize("state", ["created", "restarting", "exited", "paused", "dead"])
def test_a_unit_has_the_container_state(state: str) -> None:
    unit = container_unit(summary(state, ports=[]), "10.0.0.9")
    assert unit.state == state and unit.as_json(announced=False)["healthy"] is False


def test_a_unit_is_healthy_only_running_and_announced() -> None:
    unit = container_unit(summary(), "10.0.0.9")
    assert unit.as_json(announced=True)["healthy"] is True and unit.as_json(announced=False)["healthy"] is False
    assert unit.key == "/paz/services/web/3/2"


def event(action: str, **attributes: str) -> dict:
    """A ``GET /events`` message about a container (``Type: container``)."""
    return {"Type": "container", "Action": action, "status": action, "id": "8dfafdbc3a40", "from": "web:3",
            "Actor": {"ID": "8dfafdbc3a40", "Attributes": {**LABELS, "image": "web:3", "name": "web-3-2", **attributes}},
            "scope": "local", "time": 1_700_000_000, "timeNano": 1_700_000_000_000_000_000}


@pytest.mark.parametrize(("message", "expected"), [
    (event("start"), UnitEvent(STARTED, "web", 3, 2, "8dfafdbc3a40")),
    (event("stop"), UnitEvent(STOPPING, "web", 3, 2, "8dfafdbc3a40")),
    (event("kill", signal="15"), UnitEvent(STOPPING, "web", 3, 2, "8dfafdbc3a40")),
    (event("kill", signal="SIGKILL"), UnitEvent(STOPPING, "web", 3, 2, "8dfafdbc3a40")),
    (event("die", exitCode="137"), UnitEvent(DIED, "web", 3, 2, "8dfafdbc3a40", "exit code 137")),
    (event("die"), UnitEvent(DIED, "web", 3, 2, "8dfafdbc3a40", "exit code ?")),
    (event("destroy"), UnitEvent(GONE, "web", 3, 2, "8dfafdbc3a40")),
    (event("kill", signal="1"), None),  # SIGHUP: a reload, not a stop
    (event("create"), None),
    (event("exec_start: sh"), None),
    (event("health_status: unhealthy"), None),
])
def test_a_container_event_is_the_unit_change_it_means(message: dict, expected: UnitEvent | None) -> None:
    assert _unit_event(message) == expected


@pytest.mark.parametrize("attributes", [
    {"paz.service": ""}, {"paz.version": "latest"}, {"paz.instance": "-1"}, {"paz.version": "3; rm -rf /"},
])
def test_an_event_of_a_container_the_scheduler_did_not_make_is_ignored(attributes: dict) -> None:
    assert _unit_event(event("start", **attributes)) is None
    assert _unit_event({"Type": "container", "Action": "start", "Actor": {"ID": "x", "Attributes": {}}}) is None


def stats(total: int, pre_total: int, system: int, pre_system: int, **memory: object) -> dict:
    """A ``GET /containers/<id>/stats?stream=false`` sample."""
    return {
        "cpu_stats": {"cpu_usage": {"total_usage": total}, "system_cpu_usage": system, "online_cpus": 2},
        "precpu_stats": {"cpu_usage": {"total_usage": pre_total}, "system_cpu_usage": pre_system, "online_cpus": 2},
        "memory_stats": memory,
    }


@pytest.mark.parametrize(("sample", "figures"), [
    (stats(300, 100, 2000, 1000, usage=50_000_000, limit=1_000_000_000, stats={"inactive_file": 10_000_000}),
     {"cpuPercent": 40.0, "memoryBytes": 40_000_000, "memoryLimitBytes": 1_000_000_000}),  # cgroup v2
    (stats(300, 100, 2000, 1000, usage=50_000_000, limit=2048, stats={"cache": 20_000_000}),
     {"cpuPercent": 40.0, "memoryBytes": 30_000_000, "memoryLimitBytes": 2048}),  # cgroup v1
    (stats(300, 100, 1000, 1000, usage=5), {"cpuPercent": None, "memoryBytes": 5, "memoryLimitBytes": None}),  # no system time passed
    ({"cpu_stats": {}, "precpu_stats": {}, "memory_stats": {}}, {"cpuPercent": None, "memoryBytes": None, "memoryLimitBytes": None}),
])
def test_a_stats_sample_becomes_cpu_percent_and_memory_without_page_cache(sample: dict, figures: dict) -> None:
    assert _stats(sample) == figures


def test_the_engine_is_one_host() -> None:
    info = {"ID": "7TRN:IPZB:QYBB", "Name": "box", "NCPU": 4, "MemTotal": 8_272_408_576, "ContainersRunning": 3,
            "ServerVersion": "20.10.24"}
    assert engine_host(info, "10.0.0.9") == {
        "id": "7TRN:IPZB:QYBB", "name": "box", "driver": "docker", "address": "10.0.0.9", "cores": 4,
        "memoryBytes": 8_272_408_576, "containersRunning": 3, "healthy": True}
