"""The swarm driver on a real single-node swarm: a dockerd of the tests' own, in a network namespace
they make, initialised as a swarm manager; the whole suite around it (etcd, directory, scheduler with
``PAZ_DRIVER=swarm``, haproxy-sync with HAProxy, orchestrator) on free loopback ports.

One swarm and one suite serve the module; each test uses its own service names.
"""

from __future__ import annotations

import contextlib
import json
import queue
import threading
import time
from collections.abc import Iterator

import pytest
import requests

from tests.support import SESSION_ID, TEST_LABEL, Service, build_test_image, etcdctl_get, wait_until
from paz.suite import make_swarm_manager
from tests.support.docker_suite import KNOWN_STDERR, KNOWN_STDOUT, build_talking_image, say
from tests.support.swarm import SwarmCluster, SwarmSuite, page, started, swarm_scheduler_env
from tests.test_dns import fetch_by_paz_name
from tests.test_scheduler import deploy
from tests.test_scheduler_crash import kill_at_every_moment, version_document

IMAGE = "paz-test/hello:1"
EXIT_IMAGE = "paz-test/hello:exit"
SILENT_IMAGE = "paz-test/hello:silent"
TALKING_IMAGE = "paz-test/talking:1"


@pytest.fixture(scope="module")
def swarm() -> Iterator[SwarmCluster]:
    with started(SwarmCluster(1, octet=1)) as cluster:
        build_test_image(cluster.manager, IMAGE)
        build_test_image(cluster.manager, EXIT_IMAGE, extra_changes=['CMD ["/bin/sh", "-c", "echo broken; exit 1"]'])
        build_test_image(cluster.manager, SILENT_IMAGE, extra_changes=['CMD ["sleep", "3600"]'])  # runs, never serves
        build_talking_image(cluster.manager, TALKING_IMAGE)
        yield cluster


@pytest.fixture(scope="module")
def suite(swarm: SwarmCluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[SwarmSuite]:
    with started(SwarmSuite(swarm, tmp_path_factory.mktemp("swarm-suite"))) as running_suite:
        yield running_suite


def swarm_services(swarm: SwarmCluster, name: str) -> list[str]:
    return sorted(s.name for s in swarm.manager.client().services.list(filters={"label": f"paz.service={name}"}))


def swarm_service_labels(swarm: SwarmCluster, name: str) -> list[dict[str, str]]:
    """The labels of every Swarm service of ``name``: a version's service may outlive its containers
    (scaled to 0, or its tasks not placed yet), and is left behind just the same."""
    return [s.attrs["Spec"]["Labels"] for s in swarm.manager.client().services.list(filters={"label": f"paz.service={name}"})]


def test_the_seed_walkthrough_runs_on_swarm(swarm, suite):
    """The paz README's curl walkthrough (seeds/000_...txt) with PAZ_DRIVER=swarm."""
    orchestrator, scheduler = suite.orchestrator.url, suite.scheduler.url
    client = swarm.manager.client()
    client.images.get(IMAGE).tag("lukebond/demo-api", "latest")
    build_test_image(swarm.manager, "lukebond/contrived-service-1:0.0.1",
                     extra_changes=["ENV PORT=9000", "ENV MESSAGE=\"Hello World 1\"", "EXPOSE 9000"])
    svcdoc = {"name": "demo-api", "description": "Very simple HTTP Hello World server",
              "dockerRepository": "lukebond/demo-api", "loadBalanced": False, "publicFacing": False}
    assert requests.post(f"{orchestrator}/services", json=svcdoc, timeout=10).status_code == 201
    assert "demo-api" in [s["name"] for s in requests.get(f"{orchestrator}/services", timeout=10).json()]
    patched = requests.patch(f"{orchestrator}/services/demo-api/config/next", timeout=10,
                             json={"env": {"MESSAGE": "so platform; many service; wow"}})
    assert patched.status_code == 200, patched.text
    deploy_doc = {"serviceName": "demo-api", "dockerRepository": "lukebond/demo-api", "pushedAt": int(time.time())}
    deployed = requests.post(f"{scheduler}/hooks/deploy", json=deploy_doc, timeout=90)
    assert deployed.status_code == 201, deployed.text
    assert wait_until(lambda: suite.through("demo-api"), 20, what="demo-api through HAProxy") == "so platform; many service; wow"
    (address,) = suite.announced("demo-api").values()
    assert address.startswith(f"{swarm.manager.address}:")  # the node's address and the task's published port
    assert swarm_services(swarm, "demo-api") == ["demo-api-1"]

    directory_address = etcdctl_get(suite.etcd.url, "/paz/services/paz-service-directory")
    contrived = {"name": "contrived-service-1", "description": "Test service", "dockerImage": "lukebond/contrived-service-1",
                 "ports": [{"container": 9000, "host": 80}], "autoDeploy": "always", "numInstances": 1,
                 "conflictsWith": "contrived-service-*"}
    assert requests.post(f"http://{directory_address}/services", json=contrived, timeout=10).status_code == 201
    scheduler_address = etcdctl_get(suite.etcd.url, "/paz/services/paz-scheduler")
    deployed = requests.post(f"http://{scheduler_address}/hooks/deploy", timeout=90, json={
        "serviceName": "contrived-service-1", "dockerRepository": "lukebond/contrived-service-1:0.0.1", "pushedAt": 0})
    assert deployed.status_code == 201, deployed.text
    assert wait_until(lambda: suite.through("contrived-service-1"), 20, what="contrived-service-1") == "Hello World 1"
    assert page(f"{swarm.manager.address}:80") == "Hello World 1"  # "hit up port 80" on the node

    (host,) = requests.get(f"{orchestrator}/cluster/hosts", timeout=10).json()
    assert (host["driver"], host["role"], host["availability"], host["state"], host["healthy"]) == (
        "swarm", "manager", "active", "ready", True)
    assert host["address"] == swarm.manager.address and host["id"] == swarm.node_id(swarm.manager)
    units = requests.get(f"{orchestrator}/cluster/units", timeout=10).json()
    assert sorted(u["id"] for u in units) == ["contrived-service-1-1-1", "demo-api-1-1"]

    for service in ("demo-api", "contrived-service-1"):
        assert requests.delete(f"{orchestrator}/services/{service}", timeout=60).status_code in (200, 204)
        assert swarm_services(swarm, service) == []
        assert client.containers.list(filters={"label": f"paz.service={service}"}) == []
        assert etcdctl_get(suite.etcd.url, f"/paz/services/{service}") == ""
        assert requests.get(f"{orchestrator}/services/{service}", timeout=10).status_code == 404


def test_a_rollover_under_load_through_haproxy_fails_no_request(swarm, suite, unique_name):
    suite.register(unique_name, IMAGE, numInstances=2, env={"MESSAGE": "v1"})
    assert suite.deploy(unique_name).status_code == 201
    assert sorted(suite.announced(unique_name)) == ["1/1", "1/2"]
    suite.redeploy_under_load(unique_name, "v1", "v2")
    assert sorted(suite.announced(unique_name)) == ["2/1", "2/2"]
    assert swarm_services(swarm, unique_name) == [f"{unique_name}-2"]


def test_a_killed_scheduler_finishes_or_fails_the_deploy_on_swarm(swarm, suite, unique_name, tmp_path):
    """As tests/test_scheduler_crash.py, with the swarm driver: the suite's scheduler steps down (a clean
    stop hands the lead over at once) for one the test kills and starts again."""
    suite.register(unique_name, IMAGE, numInstances=3)
    env = swarm_scheduler_env(swarm.manager, PAZ_LEADER_TTL="3", PAZ_DRAIN_SECONDS="3")
    suite.scheduler.stop()
    try:
        scheduler = kill_at_every_moment(
            suite.etcd, unique_name, lambda: Service("paz-scheduler", suite.etcd, tmp_path, env=env, own_group=True).start(),
            lambda: swarm.manager.client().containers.list(all=True, filters={"label": f"paz.service={unique_name}"}),
            lambda: swarm_service_labels(swarm, unique_name),
            deploy_seconds=30.0)  # a swarm rollover: service made, tasks serving, old tasks drained and removed
        scheduler.stop()
    finally:
        suite.scheduler.start()


def test_a_task_reaches_another_service_by_its_paz_name(swarm, suite, unique_name):
    """Issue 22 on the swarm driver: a task's container asks the suite's name server for
    ``<service>.paz`` and reaches that service through the router."""
    server, client = f"{unique_name}-b", f"{unique_name}-a"
    suite.register(server, IMAGE, env={"MESSAGE": "hello from b"})
    suite.register(client, IMAGE)
    for name in (server, client):
        answer = suite.deploy(name)
        assert answer.status_code == 201, answer.text
    (unit,) = suite.scheduler.request("GET", "/units", params={"service": client}).json()
    inside = swarm.manager.client().containers.get(unit["containerId"])
    assert inside.attrs["HostConfig"]["Dns"] == [suite.router_address]
    wait_until(lambda: suite.through(server) == "hello from b", 10, what=f"{server}.paz routed")
    fetch_by_paz_name(inside, server, "hello from b", f"{unique_name}-nothing")


def test_a_failing_version_is_removed_and_the_old_one_keeps_serving(swarm, suite, unique_name):
    suite.register(unique_name, IMAGE, env={"MESSAGE": "good"})
    assert suite.deploy(unique_name).status_code == 201
    before = suite.announced(unique_name)
    answer = suite.deploy(unique_name, EXIT_IMAGE)
    assert answer.status_code == 422, answer.text
    message = answer.json()["error"]["message"]
    assert f"{unique_name}-2-1 exited with code 1" in message and "v1 keeps serving" in message, message
    assert suite.announced(unique_name) == before and page(before["1/1"]) == "good"
    assert swarm_services(swarm, unique_name) == [f"{unique_name}-1"]
    assert suite.scheduler.request("GET", f"/config/{unique_name}/version/2").json()["status"] == "failed"


def test_a_killed_task_is_replaced_and_announced_again(swarm, suite, unique_name):
    suite.register(unique_name, IMAGE, numInstances=2, env={"MESSAGE": "alive"})
    assert suite.deploy(unique_name).status_code == 201
    old = suite.announced(unique_name)["1/1"]
    (unit,) = [u for u in suite.scheduler.request("GET", "/units", params={"service": unique_name}).json() if u["instance"] == 1]
    started = time.monotonic()
    swarm.manager.client().containers.get(unit["containerId"]).kill()
    wait_until(lambda: "1/1" not in suite.announced(unique_name), 3, interval=0.02, what="the killed task's key to go")
    assert time.monotonic() - started < 3 and "1/2" in suite.announced(unique_name)
    new = wait_until(lambda: suite.announced(unique_name).get("1/1"), 20, what="the replacement task announced")
    assert new != old and new.startswith(f"{swarm.manager.address}:") and page(new) == "alive"
    down = suite.scheduler.request("GET", "/journal", params={"service": unique_name, "limit": 5}).json()
    assert any(e["type"] == "instance-down" and f"{unique_name}-1-1" in e["message"] for e in down), down


def test_hostile_env_values_arrive_byte_for_byte(swarm, suite, unique_name):
    hostile = 'say "hi" \'there\'\nline two; $(touch /tmp/pwned) `id` ${HOME} %n \\ end'
    suite.register(unique_name, IMAGE, env={"MESSAGE": hostile, "OTHER": "a;b\n$(c)\"d\""}, volume={"/tmp": "/host-tmp"},
                   secrets={"SECRET": hostile})
    assert suite.deploy(unique_name).status_code == 201
    (address,) = suite.announced(unique_name).values()
    assert page(address) == hostile
    (unit,) = suite.scheduler.request("GET", "/units", params={"service": unique_name}).json()
    container = swarm.manager.client().containers.get(unit["containerId"])
    assert container.exec_run(["/bin/sh", "-c", 'printf %s "$OTHER"']).output.decode() == "a;b\n$(c)\"d\""
    assert container.exec_run(["/bin/sh", "-c", 'printf %s "$SECRET"']).output.decode() == hostile  # a secret, opened
    assert container.exec_run(["/bin/sh", "-c", "ls /tmp"]).output.decode() == ""
    assert any(m["Type"] == "bind" and m["Destination"] == "/host-tmp" for m in container.attrs["Mounts"])


def test_units_hosts_and_stats_come_from_swarm(swarm, suite, unique_name):
    suite.register(unique_name, IMAGE, numInstances=2)
    assert suite.deploy(unique_name).status_code == 201
    # a Swarm service made around paz, with its labels but not a version, is left out
    swarm.manager.client().services.create(IMAGE, name=f"{unique_name}-stray", labels={
        "paz.service": unique_name, "paz.version": "two; rm -rf /", TEST_LABEL: SESSION_ID})
    units = suite.scheduler.request("GET", "/units", params={"service": unique_name}).json()
    assert [(u["id"], u["state"], u["announced"], u["host"]) for u in units] == [
        (f"{unique_name}-1-1", "running", True, swarm.manager.address), (f"{unique_name}-1-2", "running", True, swarm.manager.address)]
    one = suite.scheduler.request("GET", f"/units/{unique_name}-1-1").json()
    assert one["stats"]["memoryBytes"] > 0
    host = suite.orchestrator.request("GET", f"/cluster/hosts/{swarm.node_id(swarm.manager)}").json()
    assert host["stats"]["unitsRunning"] >= 2 and host["cores"] >= 1


def test_logs_of_a_swarm_task_come_through_the_orchestrator(swarm, suite, unique_name):
    """A task's output, read through the manager's /tasks/<id>/logs: per unit, per service, followed."""
    suite.register(unique_name, TALKING_IMAGE, numInstances=2)
    assert suite.deploy(unique_name).status_code == 201
    orchestrator, unit = suite.orchestrator.url, f"{unique_name}-1-2"

    def logs(path: str, **params: str) -> requests.Response:
        return requests.get(f"{orchestrator}/services/{unique_name}{path}", params=params, timeout=10)

    wanted = {f"{u} | {text}" for u in (f"{unique_name}-1-1", unit) for text in (KNOWN_STDOUT, KNOWN_STDERR)}
    wait_until(lambda: wanted <= set(logs("/logs").text.splitlines()), 10, what="both tasks' lines")
    assert [(line["stream"], line["text"]) for line in map(json.loads, logs(f"/units/{unit}/logs", format="json",
                                                                        stream="stderr").text.splitlines())] == [("stderr", KNOWN_STDERR)]
    (task_unit,) = [u for u in suite.scheduler.request("GET", "/units", params={"service": unique_name}).json() if u["id"] == unit]
    container = swarm.manager.client().containers.get(task_unit["containerId"])
    with requests.get(f"{orchestrator}/services/{unique_name}/units/{unit}/logs", params={"follow": "true", "tail": "0"},
                      stream=True, timeout=(5, 10)) as followed:
        assert followed.status_code == 200
        arrived: queue.Queue[str] = queue.Queue()

        def read() -> None:
            with contextlib.suppress(requests.RequestException):  # closed at the end of the test
                for line in followed.iter_lines(decode_unicode=True):
                    arrived.put(line)

        threading.Thread(target=read, daemon=True).start()
        for attempt in range(3):  # the first line may come before Swarm has attached the follower
            say(container, f"a line after the request {attempt}")
            with contextlib.suppress(queue.Empty):
                assert arrived.get(timeout=3) == f"a line after the request {attempt}"
                break
        else:
            raise AssertionError("no followed line arrived")
    gone = logs(f"/units/{unique_name}-7-1/logs")
    assert gone.status_code == 404 and f"{unique_name}-7-1" in gone.text


def test_a_fixed_host_port_on_one_node_deploys_stop_then_start(swarm, suite, unique_name):
    suite.register(unique_name, IMAGE, ports=[{"container": 8000, "host": 8081}], env={"MESSAGE": "one"})
    assert suite.deploy(unique_name).status_code == 201
    assert page(f"{swarm.manager.address}:8081") == "one"
    suite.configure(unique_name, env={"MESSAGE": "two"})
    answer = suite.deploy(unique_name)
    assert answer.status_code == 201, answer.text
    assert page(f"{swarm.manager.address}:8081") == "two"
    assert suite.announced(unique_name) == {"2/1": f"{swarm.manager.address}:8081"}
    # a version that fails gives the node back: the old one runs again on the port
    answer = suite.deploy(unique_name, EXIT_IMAGE)
    assert answer.status_code == 422, answer.text
    wait_until(lambda: suite.announced(unique_name) == {"2/1": f"{swarm.manager.address}:8081"}, 20, what="v2 announced again")
    assert page(f"{swarm.manager.address}:8081") == "two" and swarm_services(swarm, unique_name) == [f"{unique_name}-2"]


def test_a_scheduler_killed_mid_rollover_of_a_fixed_port_finishes_it_or_gives_the_port_back(swarm, suite, unique_name, tmp_path):
    """The old version scaled to 0 to free its node's port, the scheduler killed while it waits for the
    new one. A new version that never serves: the scheduler started after the kill ends it ``failed``
    and gives the old one its replica back (before, the new version stayed ``running``, unserved, for
    good, and the old one at 0). How many to give back is a label on the old Swarm service: the killed
    scheduler's memory of it died with it. A new version that serves: it ends ``running`` and the old
    version's service goes. The service stopped meanwhile: no Swarm service of it is left (the old
    version's, at 0 replicas, has no task for the stop to find)."""
    address = f"{swarm.manager.address}:8082"
    suite.register(unique_name, IMAGE, ports=[{"container": 8000, "host": 8082}], env={"MESSAGE": "one"})
    assert suite.deploy(unique_name).status_code == 201 and page(address) == "one"
    env = swarm_scheduler_env(swarm.manager, PAZ_LEADER_TTL="3", PAZ_DEPLOY_TIMEOUT="8")
    schedulers: list[Service] = []

    def killed_at_zero_replicas(image: str) -> None:
        """Deploy ``image`` with a scheduler that is killed once the old version is at 0 replicas; start another."""
        old = swarm.manager.client().services.get(f"{unique_name}-{latest_running()}")
        answer = deploy(schedulers[-1], unique_name, image, headers={"Prefer": "respond-async"}, timeout=10)
        assert answer.status_code == 202, answer.text
        wait_until(lambda: old.reload() or old.attrs["Spec"]["Mode"]["Replicated"]["Replicas"] == 0, 60,
                   what="the old version scaled to 0 to free the port")
        assert old.attrs["Spec"]["Labels"]["paz.replicas-before-rollover"] == "1"
        schedulers.pop().process.kill_group()
        schedulers.append(Service("paz-scheduler", suite.etcd, tmp_path, env=env, own_group=True).start())

    def latest_running() -> int:
        return max(v for v in range(1, 10) if (version_document(suite.etcd, unique_name, v) or {}).get("status") == "running")

    suite.scheduler.stop()
    try:
        schedulers.append(Service("paz-scheduler", suite.etcd, tmp_path, env=env, own_group=True).start())
        killed_at_zero_replicas(SILENT_IMAGE)
        wait_until(lambda: version_document(suite.etcd, unique_name, 2)["status"] == "failed", 90, what="v2 failed")
        wait_until(lambda: suite.through(unique_name) == "one", 30, what="v1 serving through HAProxy again")
        assert suite.announced(unique_name) == {"1/1": address} and page(address) == "one"
        assert swarm_services(swarm, unique_name) == [f"{unique_name}-1"]
        (old,) = swarm.manager.client().services.list(filters={"name": f"{unique_name}-1"})
        assert old.attrs["Spec"]["Mode"]["Replicated"]["Replicas"] == 1
        assert "paz.replicas-before-rollover" not in old.attrs["Spec"]["Labels"]

        suite.configure(unique_name, env={"MESSAGE": "three"})
        killed_at_zero_replicas(IMAGE)
        wait_until(lambda: version_document(suite.etcd, unique_name, 3).get("deployedAt"), 90, what="v3 deployed")
        wait_until(lambda: swarm_services(swarm, unique_name) == [f"{unique_name}-3"], 30, what="v1's service removed")
        wait_until(lambda: suite.through(unique_name) == "three", 30, what="v3 serving through HAProxy")
        assert version_document(suite.etcd, unique_name, 3)["status"] == "running" and page(address) == "three"

        killed_at_zero_replicas(SILENT_IMAGE)  # then stopped before the next scheduler leads
        stopped = schedulers[-1].request("POST", f"/services/{unique_name}/stop", timeout=90)
        assert stopped.status_code == 200, stopped.text
        wait_until(lambda: swarm_services(swarm, unique_name) == [], 30, what="no Swarm service of it left")
        assert suite.through(unique_name) is None
    finally:
        for scheduler in schedulers:
            scheduler.stop()
        suite.scheduler.start()


def test_paz_up_makes_an_engine_in_no_swarm_a_single_node_manager():
    """What ``paz up --driver swarm`` does to the engine at DOCKER_HOST before the scheduler starts."""
    lone = SwarmCluster(1, octet=2)
    try:
        lone.start(init=False)
        engine = lone.manager
        assert engine.client().info()["Swarm"]["LocalNodeState"] == "inactive"
        said = make_swarm_manager(engine.host, engine.address)
        node = engine.client().info()["Swarm"]
        assert node["ControlAvailable"] is True
        assert said == f"made the Docker Engine at {engine.host} a single-node swarm manager (node {node['NodeID']}, address {engine.address})"
        assert make_swarm_manager(engine.host, engine.address).endswith(f"is a swarm manager already (node {node['NodeID']})")
    finally:
        lone.stop()
