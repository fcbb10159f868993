"""paz-scheduler's routes around the deploy: hooks and their token, Docker Hub's webhook, bad input,
concurrent deploys, stop, fixed host ports, health paths, units and hosts, and what the scheduler
answers when Docker or the directory cannot be reached. Real etcd, directory, scheduler and dockerd."""

from __future__ import annotations

import signal
import threading

import pytest
import psutil
import requests

from paz.processes import running
from tests.support import Service, free_port, wait_until
from tests.test_scheduler import containers, deploy, instances, page, register, scheduler_env

TOKEN = "s3cret-token"


@pytest.fixture(scope="module")
def scheduler(etcd, directory, docker_engine, test_image, tmp_path_factory):
    env = scheduler_env(docker_engine, PAZ_HOOK_TOKEN=TOKEN, PAZ_DEPLOY_TIMEOUT="5")
    service = Service("paz-scheduler", etcd, tmp_path_factory.mktemp("sched-api"), env=env).start()
    yield service
    service.stop()


def deploy_with_token(scheduler, name, image=None):
    return deploy(scheduler, name, image, headers={"X-Paz-Token": TOKEN})


def test_env_values_reach_the_container_byte_for_byte(etcd, scheduler, directory, docker_engine, test_image, unique_name):
    hostile = 'say "hi" \'there\'\nline two; $(touch /tmp/pwned) `id` ${HOME} %n \\ end'
    register(directory, unique_name, test_image, env={"MESSAGE": hostile, "OTHER": "a;b\n$(c)\"d\""})
    assert deploy_with_token(scheduler, unique_name, test_image).status_code == 201
    (address,) = instances(etcd, unique_name).values()
    assert page(address) == hostile
    container = docker_engine.client().containers.get(f"{unique_name}-1-1")
    assert container.exec_run(["/bin/sh", "-c", 'printf %s "$OTHER"']).output.decode() == "a;b\n$(c)\"d\""
    assert container.exec_run(["/bin/sh", "-c", "ls /tmp"]).output.decode() == ""
    assert "running the image the engine already has" in scheduler.process.log()  # no registry here


def test_hooks_need_the_token_when_one_is_set(scheduler, directory, test_image, unique_name):
    register(directory, unique_name, test_image)
    for extra in ({}, {"headers": {"X-Paz-Token": "wrong"}}, {"params": {"token": TOKEN[:-1]}}):
        answer = deploy(scheduler, unique_name, **extra)
        assert answer.status_code == 401 and "token" in answer.json()["error"]["message"]
    assert scheduler.request("GET", f"/config/{unique_name}/history").json() == []
    answer = deploy(scheduler, unique_name, params={"token": TOKEN})
    assert answer.status_code == 201 and answer.json()["dockerRepository"] == test_image


def test_bad_input_is_a_4xx_and_records_nothing(scheduler, unique_name):
    hook = "/hooks/deploy?token=" + TOKEN
    cases = [
        ({"data": "not json", "headers": {"Content-Type": "application/json"}}, 400),
        ({"json": {"dockerRepository": "a/b"}}, 400),
        ({"json": {"serviceName": unique_name, "pushedAt": "yesterday"}}, 400),
        ({"json": {"serviceName": unique_name, "dockerRepository": "Not An Image"}}, 400),
        ({"json": {"serviceName": "../etc"}}, 400),
        ({"json": {"serviceName": unique_name}}, 404),
    ]
    for kwargs, status in cases:
        answer = scheduler.request("POST", hook, **kwargs)
        assert answer.status_code == status, (kwargs, answer.text)
        assert answer.json()["error"]["message"]
    assert "directory" in deploy_with_token(scheduler, unique_name).json()["error"]["message"]
    assert scheduler.request("GET", f"/config/{unique_name}/history").json() == []
    assert scheduler.request("GET", f"/config/{unique_name}/version/latest").status_code == 404
    assert scheduler.request("GET", "/journal", params={"limit": "lots"}).status_code == 400
    assert scheduler.request("POST", f"/services/{unique_name}/rollback", json={"version": 0}).status_code == 400
    assert scheduler.request("POST", f"/services/{unique_name}/rollback", json={"version": 7}).status_code == 404


def test_dockerhub_hook_deploys_only_when_auto_deploy_is_always(etcd, scheduler, directory, docker_engine, test_image, unique_name):
    repository = f"paz-test/{unique_name}"
    docker_engine.client().images.get(test_image).tag(repository, "2")
    register(directory, unique_name, repository, autoDeploy="always", env={"MESSAGE": "pushed"})
    body = {"push_data": {"pushed_at": 1417566161, "tag": "2", "pusher": "someone"},
            "repository": {"repo_name": repository, "name": unique_name, "status": "Active"}, "callback_url": "x"}
    answer = scheduler.request("POST", "/hooks/dockerhub", params={"token": TOKEN}, json=body, timeout=60)
    assert answer.status_code == 201, answer.text
    assert (answer.json()["dockerRepository"], answer.json()["pushedAt"]) == (f"{repository}:2", "2014-12-03T00:22:41Z")
    assert {page(a) for a in instances(etcd, unique_name).values()} == {"pushed"}

    directory.request("PATCH", f"/services/{unique_name}/config", json={"autoDeploy": "never"}).raise_for_status()
    answer = scheduler.request("POST", "/hooks/dockerhub", params={"token": TOKEN}, json=body)
    assert answer.status_code == 202 and answer.json()["deployed"] is False and "never" in answer.json()["reason"]
    assert len(scheduler.request("GET", f"/config/{unique_name}/history").json()) == 1

    body["repository"]["repo_name"] = f"paz-test/nobody-{unique_name}"
    assert scheduler.request("POST", "/hooks/dockerhub", params={"token": TOKEN}, json=body).status_code == 404


def test_concurrent_deploys_get_distinct_versions_and_one_wins(etcd, scheduler, directory, docker_engine, test_image, unique_name):
    register(directory, unique_name, test_image)
    answers: list[requests.Response] = []
    threads = [threading.Thread(target=lambda: answers.append(deploy_with_token(scheduler, unique_name))) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(90)
    first, second = sorted(answers, key=lambda a: a.json().get("version") or a.json()["error"]["details"]["version"])
    assert second.status_code == 201 and second.json()["version"] == 2
    # v1 served first, or v2 was wanted before the controller came to v1: then v1 never served
    assert first.status_code == 201 or (first.status_code == 409 and "v1 of" in first.json()["error"]["message"]
                                        and "never served: v2 was deployed after it" in first.json()["error"]["message"]), first.text
    assert sorted(instances(etcd, unique_name)) == ["2/1"]
    assert [c.name for c in containers(docker_engine, unique_name)] == [f"{unique_name}-2-1"]


def test_stop_withdraws_every_instance(etcd, scheduler, directory, docker_engine, test_image, unique_name):
    register(directory, unique_name, test_image, numInstances=2)
    assert deploy_with_token(scheduler, unique_name).status_code == 201
    answer = scheduler.request("POST", f"/services/{unique_name}/stop", timeout=60)
    assert answer.json() == {"stopped": [f"{unique_name}-1-1", f"{unique_name}-1-2"]}
    assert instances(etcd, unique_name) == {}
    assert containers(docker_engine, unique_name) == []
    assert scheduler.request("GET", f"/config/{unique_name}/version/1").json()["status"] == "stopped"
    entry = scheduler.request("GET", "/journal", params={"service": unique_name, "limit": 1}).json()[0]
    assert entry["type"] == "stop"


def test_a_fixed_host_port_deploys_stop_then_start(etcd, scheduler, directory, docker_engine, test_image, unique_name):
    port = free_port()
    register(directory, unique_name, test_image, ports=[{"container": 8000, "host": port}], env={"MESSAGE": "one"})
    assert deploy_with_token(scheduler, unique_name).status_code == 201
    assert page(f"127.0.0.1:{port}") == "one"
    directory.request("PATCH", f"/services/{unique_name}/config", json={"env": {"MESSAGE": "two"}}).raise_for_status()
    assert deploy_with_token(scheduler, unique_name).status_code == 201
    assert page(f"127.0.0.1:{port}") == "two"
    assert instances(etcd, unique_name) == {"2/1": f"127.0.0.1:{port}"}


def test_a_health_path_must_answer(etcd, scheduler, directory, docker_engine, test_image, unique_name):
    register(directory, unique_name, test_image, healthCheck={"path": "/cgi-bin/index"})
    assert deploy_with_token(scheduler, unique_name).status_code == 201
    directory.request("PATCH", f"/services/{unique_name}/config", json={"healthCheck": {"path": "/missing"}}).raise_for_status()
    answer = deploy_with_token(scheduler, unique_name)
    assert answer.status_code == 422
    assert "did not answer at /missing" in answer.json()["error"]["message"]
    assert sorted(instances(etcd, unique_name)) == ["1/1"]


def test_units_and_hosts(scheduler, directory, docker_engine, test_image, unique_name):
    register(directory, unique_name, test_image)
    assert deploy_with_token(scheduler, unique_name).status_code == 201
    unit = scheduler.request("GET", f"/units/{unique_name}-1-1").json()
    assert (unit["service"], unit["version"], unit["instance"], unit["state"], unit["healthy"]) == (unique_name, 1, 1, "running", True)
    assert unit["stats"]["memoryBytes"] > 0 and unit["containerId"]
    assert scheduler.request("GET", f"/units/{unique_name}-9-9").status_code == 404
    (host,) = scheduler.request("GET", "/hosts").json()
    assert host["healthy"] is True and host["driver"] == "docker" and host["cores"] >= 1
    assert scheduler.request("GET", f"/hosts/{host['id']}").json() == host


def test_docker_unreachable_is_a_clear_503(etcd, directory, docker_engine, tmp_path, unique_name, test_image):
    register(directory, unique_name, test_image)
    env = scheduler_env(docker_engine, DOCKER_HOST=f"unix://{tmp_path}/no-docker.sock")
    with_no_docker = Service("paz-scheduler", etcd, tmp_path, env=env).start()
    try:
        answer = deploy(with_no_docker, unique_name)
        assert answer.status_code == 503 and "Docker Engine" in answer.json()["error"]["message"]
        assert with_no_docker.request("GET", "/units").status_code == 503
        assert with_no_docker.request("GET", "/hosts").json()[0]["healthy"] is False
        assert with_no_docker.request("GET", "/health").status_code == 503
    finally:
        with_no_docker.stop()


def test_an_engine_that_refuses_is_a_503_naming_it_and_the_reason(etcd, directory, docker_engine, tmp_path, unique_name,
                                                                  test_image):
    """The swarm driver on an engine in no swarm (one that left it): Docker refuses every call."""
    register(directory, unique_name, test_image)
    not_a_manager = Service("paz-scheduler", etcd, tmp_path, env=scheduler_env(docker_engine, PAZ_DRIVER="swarm")).start()
    try:
        for path, body in (("/hooks/deploy", {"serviceName": unique_name}), (f"/services/{unique_name}/stop", None)):
            answer = not_a_manager.request("POST", path, json=body)
            assert answer.status_code == 503, answer.text
            message = answer.json()["error"]["message"]
            assert f"The Docker Engine at {docker_engine.host} refused" in message and "not a swarm manager" in message
        assert not_a_manager.request("GET", f"/config/{unique_name}/history").json() == []
        assert containers(docker_engine, unique_name) == []
    finally:
        not_a_manager.stop()


def test_directory_unreachable_is_a_clear_503(own_etcd, docker_engine, tmp_path, unique_name):
    lonely = Service("paz-scheduler", own_etcd, tmp_path, env=scheduler_env(docker_engine)).start()
    try:
        answer = deploy(lonely, unique_name)
        assert answer.status_code == 503 and "paz-service-directory" in answer.json()["error"]["message"]
    finally:
        lonely.stop()


def _children(pid: int) -> dict[int, str]:
    """``{pid: command line}`` of the processes whose parent is ``pid``."""
    return {child.pid: " ".join(child.cmdline()) for child in psutil.Process(pid).children()}


def test_one_process_announces_and_its_withdrawer_goes_with_it(etcd, docker_engine, tmp_path):
    """gevent serves in one process, which announces; whatever PAZ_WORKERS says, its one child is the withdrawer."""
    scheduler = Service("paz-scheduler", etcd, tmp_path, env=scheduler_env(docker_engine, PAZ_WORKERS="3")).start()
    try:
        children = _children(scheduler.process.proc.pid)
        assert len(children) == 1 and "paz.withdrawer" in next(iter(children.values())), children
        scheduler.stop(signal.SIGKILL)  # the main process dies without cleaning up
        wait_until(lambda: not running(next(iter(children))), 5, what="the withdrawer to exit after its service")
    finally:
        scheduler.stop()


def test_docker_stop_withdraws_the_key_once_and_never_announces_it_again(etcd, scheduler, directory, docker_engine,
                                                                         test_image, unique_name):
    register(directory, unique_name, test_image)
    assert deploy_with_token(scheduler, unique_name, test_image).status_code == 201
    key = f"/paz/services/{unique_name}/1/1"
    index = etcd.get(key)["modifiedIndex"]
    container = docker_engine.client().containers.get(f"{unique_name}-1-1")
    # the test image's PID 1 ignores SIGTERM: it keeps running (and answering) for the whole stop timeout
    stopper = threading.Thread(target=container.stop, kwargs={"timeout": 3})
    stopper.start()
    actions = etcd.changes(key, index, 6)  # every change of the key while the container is stopped, in order
    stopper.join(10)
    assert actions == (["compareAndDelete"] if etcd.api == "2" else ["DELETE"]), actions
    assert instances(etcd, unique_name) == {}


def test_retired_versions_and_stopped_services_leave_no_folder_in_etcd(etcd, scheduler, directory, test_image, unique_name):
    """``etcdctl ls /paz/services`` shows the suite and the services with live instances, nothing else."""
    register(directory, unique_name, test_image)
    assert deploy_with_token(scheduler, unique_name).status_code == 201
    assert deploy_with_token(scheduler, unique_name).status_code == 201
    assert etcd.listing(f"/paz/services/{unique_name}") == [f"/paz/services/{unique_name}/2"]
    scheduler.request("POST", f"/services/{unique_name}/stop", timeout=60).raise_for_status()
    assert etcd.listing(f"/paz/services/{unique_name}") is None
    assert f"/paz/services/{unique_name}" not in etcd.listing("/paz/services")
