"""The swarm driver's reading of Swarm's tasks, services and nodes (shaped as the Engine API documents them) as units and hosts."""

from __future__ import annotations

import pytest

from paz_scheduler.drivers.base import DIED, STARTED, STOPPING, Unit
from paz_scheduler.drivers.swarm import _task_problem, current_tasks, node_address, node_host, replicas_of, task_changes, task_unit

pytestmark = pytest.mark.unit

SERVICE = {"ID": "svc1", "Spec": {
    "Name": "web-3", "Labels": {"paz.service": "web", "paz.version": "3", "paz.port": "8080"},
    "TaskTemplate": {"ContainerSpec": {"Image": "web:3"}}, "Mode": {"Replicated": {"Replicas": 2}},
}}


def node(state: str = "ready", addr: str = "10.0.0.7", manager: dict | None = None, node_id: str = "n1") -> dict:
    """An entry of ``GET /nodes``."""
    found = {"ID": node_id, "Description": {"Hostname": "box", "Resources": {"NanoCPUs": 4_000_000_000, "MemoryBytes": 8_000_000_000}},
             "Status": {"State": state, "Addr": addr}, "Spec": {"Role": "worker", "Availability": "active"}}
    return {**found, "ManagerStatus": manager} if manager else found


def task(state: str = "running", desired: str = "running", slot: int = 2, index: int = 10, published: int | None = 30001,
         exit_code: int | None = None, err: str | None = None) -> dict:
    """An entry of ``GET /tasks``."""
    status: dict = {"Timestamp": "2024-01-01T00:00:00Z", "State": state, "Message": state,
                    "ContainerStatus": {"ContainerID": "c0ffee", "PID": 677, **({"ExitCode": exit_code} if exit_code is not None else {})},
                    "PortStatus": {"Ports": [{"Protocol": "tcp", "TargetPort": 8080, "PublishedPort": published, "PublishMode": "host"}]
                                   if published else []}}
    if err:
        status["Err"] = err
    return {"ID": f"task-{slot}-{index}", "Version": {"Index": index}, "ServiceID": "svc1", "Slot": slot, "NodeID": "n1",
            "Status": status, "DesiredState": desired}


def test_a_running_task_is_a_unit_at_its_node_address_and_published_port() -> None:
    assert task_unit(task(), SERVICE, node()) == Unit(
        id="web-3-2", service="web", version=3, instance=2, host="10.0.0.7", port=30001, image="web:3",
        containerId="c0ffee", state="running")


@pytest.mark.parametrize(("found", "on", "state"), [
    (task(), node(), "running"),
    (task(desired="shutdown"), node(), "stopping"),
    (task(), node("down"), "node-down"),
    (task(), node("unknown"), "node-unknown"),
    (task(), {}, "node-unknown"),
    (task("failed", desired="shutdown"), node(), "failed"),
    (task("preparing"), node(), "preparing"),
])
def test_a_task_is_running_for_paz_only_when_wanted_and_its_node_is_ready(found: dict, on: dict, state: str) -> None:
    assert task_unit(found, SERVICE, on).state == state


def test_a_task_that_publishes_no_port_has_no_address() -> None:
    unit = task_unit(task(published=None), SERVICE, node())
    assert (unit.host, unit.port) == (None, None)


@pytest.mark.parametrize(("found", "address"), [
    (node(addr="10.0.0.7"), "10.0.0.7"),
    (node(addr="0.0.0.0", manager={"Leader": True, "Reachability": "reachable", "Addr": "192.168.1.5:2377"}), "192.168.1.5"),
    (node(addr="0.0.0.0"), None),
    ({}, None),
])
def test_a_node_is_reached_at_its_address_or_else_its_manager_address(found: dict, address: str | None) -> None:
    assert node_address(found) == address


def test_the_current_task_of_a_slot_is_the_wanted_one_then_the_newest() -> None:
    old = (task("shutdown", "shutdown", index=5), task_unit(task("shutdown", "shutdown", index=5), SERVICE, node()))
    new = (task("running", index=9), task_unit(task(index=9), SERVICE, node()))
    newest_failed = (task("failed", "shutdown", index=12), task_unit(task("failed", "shutdown", index=12), SERVICE, node()))
    other = (task(slot=1), task_unit(task(slot=1), SERVICE, node()))
    assert current_tasks([old, newest_failed, new, other]) == [new, other]
    assert current_tasks([old, newest_failed]) == [newest_failed]


@pytest.mark.parametrize(("spec", "replicas"), [({"Mode": {"Replicated": {"Replicas": 3}}}, 3), ({"Mode": {"Global": {}}}, 0), ({}, 0)])
def test_replicas_of_a_service_spec(spec: dict, replicas: int) -> None:
    assert replicas_of(spec) == replicas


def reading(*tasks: dict) -> dict[str, tuple[Unit, str]]:
    return {t["ID"]: (task_unit(t, SERVICE, node()), _task_problem(t)) for t in tasks}


@pytest.mark.parametrize(("before", "after", "changes"), [
    (reading(), reading(task()), [(STARTED, "")]),
    (reading(task("starting")), reading(task()), [(STARTED, "")]),
    (reading(task()), reading(task()), []),
    (reading(task()), reading(task(desired="shutdown")), [(STOPPING, "")]),
    (reading(task()), reading(), [(STOPPING, "")]),
    (reading(task()), reading(task("failed", "shutdown", exit_code=2)), [(DIED, "exited with code 2")]),
    (reading(task()), reading(task("rejected", err="no suitable node")), [(DIED, "rejected: no suitable node")]),
])
def test_two_readings_of_the_task_list_make_the_unit_changes(before: dict, after: dict, changes: list[tuple[str, str]]) -> None:
    assert [(change.action, change.detail) for change in task_changes(before, after)] == changes
    assert all(change.unit_id == "web-3-2" for change in task_changes(before, after))


@pytest.mark.parametrize(("found", "healthy"), [
    (node(), True),
    (node("down"), False),
    (node(manager={"Leader": True, "Reachability": "reachable", "Addr": "10.0.0.7:2377"}), True),
    (node(manager={"Leader": False, "Reachability": "unreachable", "Addr": "10.0.0.7:2377"}), False),
])
def test_a_node_is_a_healthy_host_when_ready_and_reachable(found: dict, healthy: bool) -> None:
    host = node_host(found, 2)
    assert (host["healthy"], host["driver"], host["cores"], host["containersRunning"]) == (healthy, "swarm", 4.0, 2)
    assert host["leader"] is bool(found.get("ManagerStatus", {}).get("Leader"))
