"""The swarm driver on a real three-node swarm: three dockerd, each in a network namespace the test
makes (veth pairs on a test bridge, 10.203.0.11-13), joined as one manager and two workers; the suite
(scheduler with ``PAZ_DRIVER=swarm`` on the manager, HAProxy on the host) around it.

Each node carries the label ``paz.engine`` naming its engine's socket, so units' stats come from the
node they run on.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

import requests

from paz.auth import TokenStore
from tests.support import build_test_image, free_port, wait_until
from tests.support.image_registry import Registry
from tests.support.swarm import RouterLoad, SwarmCluster, SwarmSuite, page, started

IMAGE = "paz-test/hello:1"


@pytest.fixture(scope="module")
def swarm() -> Iterator[SwarmCluster]:
    with started(SwarmCluster(3, octet=0, registry_port=free_port())) as cluster:
        manager = cluster.manager.client()
        for node in cluster.nodes:
            build_test_image(node, IMAGE)
            found = manager.nodes.get(cluster.node_id(node))
            found.update({**found.attrs["Spec"], "Labels": {"paz.engine": node.host}})
        yield cluster


@pytest.fixture(scope="module")
def suite(swarm: SwarmCluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[SwarmSuite]:
    with started(SwarmSuite(swarm, tmp_path_factory.mktemp("swarm3-suite"))) as running_suite:
        yield running_suite


def addresses(suite: SwarmSuite, name: str) -> dict[str, str]:
    """``{"<version>/<instance>": node address}`` of the announced instances."""
    return {key: value.rsplit(":", 1)[0] for key, value in suite.announced(name).items()}


def unit_nodes(suite: SwarmSuite, name: str) -> list[str]:
    return sorted(u["host"] for u in suite.scheduler.request("GET", "/units", params={"service": name}).json())


def set_availability(swarm: SwarmCluster, node_id: str, availability: str) -> None:
    node = swarm.manager.client().nodes.get(node_id)
    node.update({**node.attrs["Spec"], "Availability": availability})


def test_three_instances_land_on_three_nodes_and_a_drained_node_s_key_follows_its_task(swarm, suite, unique_name):
    suite.register(unique_name, IMAGE, numInstances=3, env={"MESSAGE": "spread"})
    assert suite.deploy(unique_name).status_code == 201
    where = addresses(suite, unique_name)
    assert sorted(where) == ["1/1", "1/2", "1/3"]
    assert sorted(where.values()) == [node.address for node in swarm.nodes]  # three nodes, one task each
    hosts = suite.orchestrator.request("GET", "/cluster/hosts").json()
    assert sorted((h["address"], h["role"], h["state"], h["healthy"]) for h in hosts) == [
        ("10.203.0.11", "manager", "ready", True), ("10.203.0.12", "worker", "ready", True), ("10.203.0.13", "worker", "ready", True)]

    worker = swarm.nodes[2]
    (moving,) = [key for key, address in where.items() if address == worker.address]
    unit = suite.scheduler.request("GET", f"/units/{unique_name}-{moving.replace('/', '-')}").json()
    assert unit["host"] == worker.address and unit["stats"]["memoryBytes"] > 0  # from the worker's own engine
    wait_until(lambda: suite.through(unique_name) == "spread", 10, what="the service through HAProxy")
    try:
        with RouterLoad(suite.router, unique_name) as load:
            load.flowing()
            set_availability(swarm, swarm.node_id(worker), "drain")
            wait_until(lambda: addresses(suite, unique_name).get(moving) not in (None, worker.address), 30,
                       what="the drained node's instance announced on another node")
            load.flowing()
        assert load.failures == [], load.failures[:5]
        assert worker.address not in addresses(suite, unique_name).values()
        assert page(suite.announced(unique_name)[moving]) == "spread"
        drained = [h for h in suite.orchestrator.request("GET", "/cluster/hosts").json() if h["address"] == worker.address]
        assert drained[0]["availability"] == "drain"
    finally:
        set_availability(swarm, swarm.node_id(worker), "active")


def test_conflicts_with_and_must_share_with_place_tasks_by_node(swarm, suite, unique_name):
    base, sharing, apart, alone = f"{unique_name}-db", f"{unique_name}-app", f"{unique_name}-web", f"{unique_name}-one"
    suite.register(base, IMAGE)
    assert suite.deploy(base).status_code == 201
    (db_node,) = unit_nodes(suite, base)
    suite.register(sharing, IMAGE, numInstances=2, mustShareWith=[f"{unique_name}-d*"])
    suite.register(apart, IMAGE, numInstances=2, conflictsWith=[base])
    suite.register(alone, IMAGE, numInstances=3, conflictsWith=[f"{unique_name}-o*"])
    for service in (sharing, apart, alone):
        assert suite.deploy(service).status_code == 201
    assert unit_nodes(suite, sharing) == [db_node, db_node]
    assert db_node not in unit_nodes(suite, apart)
    assert unit_nodes(suite, alone) == sorted(node.address for node in swarm.nodes)  # conflicts with itself: one per node
    suite.register(f"{unique_name}-lost", IMAGE, mustShareWith=["nothing-like-it"])
    answer = suite.deploy(f"{unique_name}-lost")
    assert answer.status_code == 422 and "mustShareWith 'nothing-like-it'" in answer.json()["error"]["message"]
    for service in (base, sharing, apart, alone):
        assert suite.scheduler.request("POST", f"/services/{service}/stop", timeout=60).status_code == 200



def test_a_fixed_host_port_rolls_node_by_node_without_a_failed_request(swarm, suite, unique_name):
    # as many instances as nodes: no node is free, every node goes through stop-then-start in turn
    suite.register(unique_name, IMAGE, numInstances=3, ports=[{"container": 8000, "host": 8090}], env={"MESSAGE": "one"})
    assert suite.deploy(unique_name).status_code == 201
    first = set(addresses(suite, unique_name).values())
    assert first == {node.address for node in swarm.nodes} and {page(f"{node}:8090") for node in first} == {"one"}
    suite.redeploy_under_load(unique_name, "one", "two")
    second = suite.announced(unique_name)
    assert sorted(second) == ["2/1", "2/2", "2/3"] and all(address.endswith(":8090") for address in second.values())
    assert {page(address) for address in second.values()} == {"two"}
    assert suite.scheduler.request("POST", f"/services/{unique_name}/stop", timeout=60).status_code == 200


def test_a_node_that_goes_down_loses_its_keys_and_its_tasks_come_back_elsewhere(swarm, suite, unique_name):
    suite.register(unique_name, IMAGE, numInstances=3, env={"MESSAGE": "anywhere"})
    assert suite.deploy(unique_name).status_code == 201
    worker = swarm.nodes[1]
    (lost,) = [key for key, address in addresses(suite, unique_name).items() if address == worker.address]
    worker.process.stop()  # its daemon, and with it its containers, go away
    try:
        wait_until(lambda: addresses(suite, unique_name).get(lost) != worker.address, 10, interval=0.05,
                   what="the down node's key withdrawn")
        wait_until(lambda: addresses(suite, unique_name).get(lost) not in (None, worker.address), 60,
                   what="the task rescheduled on another node and announced there")
        assert page(suite.announced(unique_name)[lost]) == "anywhere"
        down = [h for h in suite.orchestrator.request("GET", "/cluster/hosts").json() if h["address"] == worker.address]
        assert (down[0]["state"], down[0]["healthy"]) == ("down", False)
    finally:
        worker.start_dockerd(swarm.registry)
        worker.wait_answering()
        wait_until(lambda: swarm.ready_nodes() == len(swarm.nodes), 60, what="the node back in the swarm")
    assert suite.scheduler.request("POST", f"/services/{unique_name}/stop", timeout=60).status_code == 200


def test_a_pushed_image_runs_on_every_node_where_the_registry_is_its_only_source(swarm, suite, unique_name, tmp_path):
    """The registry listens on the test bridge, where the nodes reach it (and list it as an insecure
    registry); the scheduler, announced there too, is its token realm. The image is pushed from the
    manager, then removed there: no node has it but through the registry."""
    store = TokenStore(suite.etcd.store())
    read, deploy = (store.create(role, f"swarm {role}")[0] for role in ("read", "deploy"))
    scheduler = suite.scheduler
    scheduler.stop()
    scheduler.process.env.update({"PAZ_TOKEN": read, "PAZ_REGISTRY_ADDR": swarm.registry, "PAZ_HOST": swarm.bridge.gateway})
    scheduler.start(wait=False)
    here = f"http://{swarm.bridge.gateway}:{scheduler.port}"
    wait_until(lambda: (suite.etcd.get("/paz/services/paz-scheduler") or {}).get("value") == here.removeprefix("http://")
               and requests.get(f"{here}/health", timeout=2).ok, 30, what="the scheduler announced on the bridge")
    registry = Registry(suite.etcd, tmp_path, port=int(swarm.registry.rsplit(":", 1)[1]), host=swarm.bridge.gateway)
    with started(registry):
        image = f"{swarm.registry}/{unique_name}:1"
        manager = swarm.manager.client()
        local = build_test_image(swarm.manager, f"paz-test/{unique_name}:1")
        manager.images.get(local).tag(f"{swarm.registry}/{unique_name}", "1")
        pushed = manager.images.push(f"{swarm.registry}/{unique_name}", tag="1", auth_config={"username": "paz", "password": deploy})
        assert '"error"' not in pushed, pushed
        for tag in (image, local):
            manager.images.remove(tag, force=True)
        assert not [node for node in swarm.nodes if node.client().images.list(name=f"{swarm.registry}/{unique_name}")]
        suite.register(unique_name, image, numInstances=3, env={"MESSAGE": "from the registry"})
        body = {"serviceName": unique_name}
        answer = requests.post(f"{here}/hooks/deploy", json=body, timeout=120)
        assert answer.status_code == 201, answer.text
        where = addresses(suite, unique_name)
        assert sorted(where.values()) == [node.address for node in swarm.nodes]
        assert {page(address) for address in suite.announced(unique_name).values()} == {"from the registry"}
        assert all(node.client().images.list(name=f"{swarm.registry}/{unique_name}") for node in swarm.nodes)
        assert requests.post(f"{here}/services/{unique_name}/stop", timeout=60).status_code == 200
