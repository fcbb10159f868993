"""A deploy belongs to the controller, not to the request that asked for it: the scheduler killed
(SIGKILL of its whole process group, as the OOM killer or a power cut would) at several moments of a
3-instance deploy, then started again, finishes or fails the deploy by itself, leaves no container
that no running version owns, and deploys again at once. Also: ``Prefer: respond-async``.

Real etcd, directory, scheduler (one gevent process) and Docker Engine.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from typing import Any

import requests

from tests.support import Service, wait_until
from tests.test_scheduler import containers, deploy, register, scheduler_env

RESTART_BUDGET_SECONDS = 30


def version_document(etcd, name: str, version: int) -> dict[str, Any] | None:
    node = etcd.get(f"/paz/scheduler/services/{name}/versions/{version}")
    return json.loads(node["value"]) if node else None


def latest(etcd, name: str) -> int:
    node = etcd.get(f"/paz/scheduler/services/{name}/latest")
    return int(node["value"]) if node else 0


def owned_by_one_running_version(etcd, found: list[dict[str, str]], name: str) -> bool:
    """Every runtime object whose labels are ``found`` belongs to one version of ``name``, whose status is ``running``:
    the pass cut short is over (during a rollover two versions are ``running`` until the old one is retired)."""
    versions = {labels["paz.version"] for labels in found}
    return len(versions) <= 1 and all((version_document(etcd, name, int(v)) or {}).get("status") == "running" for v in versions)


def async_deploy(scheduler: Service, name: str) -> requests.Response:
    return deploy(scheduler, name, headers={"Prefer": "respond-async"}, timeout=5)


def before_a_version_is_taken(etcd, scheduler: Service, name: str) -> None:
    threading.Thread(target=lambda: _quietly(lambda: deploy(scheduler, name)), daemon=True).start()


def while_pulling(etcd, scheduler: Service, name: str) -> None:
    version = async_deploy(scheduler, name).json()["version"]
    wait_until(lambda: version_document(etcd, name, version)["status"] == "deploying", 5, interval=0.005,
               what=f"v{version} recorded")


def with_some_instances_started(etcd, scheduler: Service, name: str) -> None:
    version = async_deploy(scheduler, name).json()["version"]
    wait_until(lambda: (version_document(etcd, name, version).get("progress") or {}).get("step") == "instance-started",
               15, interval=0.005, what=f"v{version}'s first instance started")


def while_the_old_version_drains(etcd, scheduler: Service, name: str) -> None:
    version = async_deploy(scheduler, name).json()["version"]
    wait_until(lambda: version_document(etcd, name, version)["status"] == "running", 20, interval=0.005,
               what=f"v{version} running")
    wait_until(lambda: version_document(etcd, name, version - 1)["status"] == "replaced", 10, interval=0.005,
               what=f"v{version - 1} draining")


def _quietly(call: Callable[[], Any]) -> None:
    try:
        call()
    except requests.RequestException:
        pass  # the scheduler was killed under it


MOMENTS = [before_a_version_is_taken, while_pulling, with_some_instances_started, while_the_old_version_drains]


def kill_at_every_moment(etcd, name: str, start: Callable[[], Service], containers_of: Callable[[], list],
                         services_of: Callable[[], list[dict[str, str]]] = lambda: [], deploy_seconds: float = 15.0) -> Service:
    """Deploy ``name`` (3 instances) with a scheduler from ``start``, then at each of :data:`MOMENTS`
    kill the scheduler's process group, start another, and check what a person would: the version
    ends running or failed, the containers (and, with ``services_of``, the labels of a runtime's
    record of a version: a Swarm service, which may hold no container) left are those of one running
    version, and the next deploy goes through at once (within ``deploy_seconds``: a whole rollover,
    never a lock's timeout). Answers the scheduler running at the end."""
    scheduler = start()
    try:
        assert deploy(scheduler, name).status_code == 201
        for moment in MOMENTS:
            moment(etcd, scheduler, name)
            scheduler.process.kill_group()
            scheduler = start()
            restarted = time.monotonic()
            version = latest(etcd, name)
            wait_until(lambda: version_document(etcd, name, version)["status"] in ("running", "failed"),
                       RESTART_BUDGET_SECONDS, what=f"v{version} to end running or failed after a kill {moment.__name__}")
            wait_until(lambda: owned_by_one_running_version(etcd, [c.labels for c in containers_of()] + services_of(), name),
                       max(1.0, RESTART_BUDGET_SECONDS - (time.monotonic() - restarted)),
                       what=f"only one running version's instances left after a kill {moment.__name__}")
            started = time.monotonic()
            answer = deploy(scheduler, name)
            assert answer.status_code == 201, (moment.__name__, answer.text)
            assert time.monotonic() - started < deploy_seconds, moment.__name__
            wait_until(lambda: sorted(c.labels["paz.version"] for c in containers_of()) == [str(answer.json()["version"])] * 3,
                       10, what=f"only v{answer.json()['version']}'s 3 containers after a kill {moment.__name__}")
            wait_until(lambda: {labels["paz.version"] for labels in services_of()} <= {str(answer.json()["version"])},
                       10, what=f"no record of another version than v{answer.json()['version']} after a kill {moment.__name__}")
    except BaseException:
        scheduler.stop()
        raise
    return scheduler


def test_a_killed_scheduler_finishes_or_fails_the_deploy_it_was_doing(etcd, directory, docker_engine, test_image,
                                                                     unique_name, tmp_path):
    register(directory, unique_name, test_image, numInstances=3, env={"MESSAGE": "hello"})
    env = scheduler_env(docker_engine, PAZ_DRAIN_SECONDS="3")
    scheduler = kill_at_every_moment(etcd, unique_name, lambda: Service("paz-scheduler", etcd, tmp_path, env=env, own_group=True).start(),
                                     lambda: containers(docker_engine, unique_name))
    scheduler.stop()


def test_prefer_respond_async_answers_at_once_and_the_deploy_completes(etcd, directory, docker_engine, test_image,
                                                                      unique_name, tmp_path):
    register(directory, unique_name, test_image, numInstances=2)
    scheduler = Service("paz-scheduler", etcd, tmp_path, env=scheduler_env(docker_engine)).start()
    try:
        started = time.monotonic()
        answer = deploy(scheduler, unique_name, headers={"Prefer": "respond-async"})
        assert time.monotonic() - started < 1.0
        assert answer.status_code == 202, answer.text
        assert answer.headers["Preference-Applied"] == "respond-async"
        assert (answer.json()["version"], answer.json()["status"]) == (1, "deploying")
        follow = answer.headers["Location"]
        assert follow.endswith(f"/config/{unique_name}/version/1")
        wait_until(lambda: scheduler.request("GET", follow).json()["status"] == "running", 30, what="v1 running")
        wait_until(lambda: sorted(etcd.values_below(f"/paz/services/{unique_name}")) == ["1/1", "1/2"], 10,
                   what="both instances announced")

        answer = scheduler.request("POST", f"/services/{unique_name}/rollback", json={"version": 1},
                                   headers={"Prefer": "respond-async"})
        assert answer.status_code == 202 and answer.json()["rollbackOf"] == 1
        wait_until(lambda: scheduler.request("GET", answer.headers["Location"]).json()["status"] == "running", 30,
                   what="the rollback running")
        wait_until(lambda: sorted(c.name for c in containers(docker_engine, unique_name)) == [
            f"{unique_name}-2-1", f"{unique_name}-2-2"], 15, what="v1's containers removed")
    finally:
        scheduler.stop()

