"""Two schedulers against one etcd: one leads (runs the deploy controller and announces instances),
the other answers reads and accepts deploys. Killing the leader (SIGKILL of its process group) in the
middle of a deploy: the standby takes over within the lease's TTL and finishes the deploy, and a
bounded load through HAProxy meanwhile sees no failed request.

Real etcd, directory, schedulers, haproxy-sync with HAProxy, and Docker Engine.
"""

from __future__ import annotations

import json
import time
from typing import Any

from tests.support import HaproxySync, Service, wait_until
from tests.support.swarm import RouterLoad
from tests.test_scheduler import containers, deploy, register, scheduler_env

LEADER_TTL = 3


def leader(scheduler: Service) -> dict[str, Any]:
    return scheduler.request("GET", "/health").json()["checks"]["leader"]


def version_document(etcd, name: str, version: int) -> dict[str, Any]:
    node = etcd.get(f"/paz/scheduler/services/{name}/versions/{version}")
    return json.loads(node["value"]) if node else {}


def test_the_standby_finishes_the_deploy_of_a_leader_that_died(etcd, directory, docker_engine, test_image, unique_name,
                                                               tmp_path):
    name = unique_name
    env = scheduler_env(docker_engine, PAZ_LEADER_TTL=str(LEADER_TTL), PAZ_DRAIN_SECONDS="1")
    first = Service("paz-scheduler", etcd, tmp_path, env=env, own_group=True).start()
    wait_until(lambda: leader(first)["leads"], LEADER_TTL * 3, what="the first scheduler to lead")
    second = Service("paz-scheduler", etcd, tmp_path, env=env, own_group=True).start()
    (tmp_path / "router").mkdir()
    router = HaproxySync(etcd, tmp_path / "router").start()
    try:
        assert leader(second) == {"ok": True, "leader": f"127.0.0.1:{first.port}", "leads": False}
        register(directory, name, test_image, numInstances=2, env={"MESSAGE": "v1"})
        assert deploy(second, name).status_code == 201  # a standby accepts deploys: the leader carries them out
        wait_until(lambda: router.route(f"{name}.paz", "/cgi-bin/index").text == "v1", 15, what="v1 through HAProxy")

        directory.request("PATCH", f"/services/{name}/config", json={"env": {"MESSAGE": "v2"}}).raise_for_status()
        with RouterLoad(router, name) as load:
            load.flowing()
            answer = deploy(second, name, headers={"Prefer": "respond-async"})
            assert answer.status_code == 202, answer.text
            wait_until(lambda: (version_document(etcd, name, 2).get("progress") or {}).get("step") == "instance-started",
                       15, interval=0.005, what="v2's first instance started")
            first.process.kill_group()
            killed = time.monotonic()
            wait_until(lambda: leader(second)["leads"], LEADER_TTL * 3, what="the standby to lead")
            took_over = time.monotonic() - killed
            wait_until(lambda: version_document(etcd, name, 2)["status"] == "running", 30, what="v2 running")
            wait_until(lambda: sorted(c.name for c in containers(docker_engine, name)) == [f"{name}-2-1", f"{name}-2-2"],
                       15, what="only v2's containers left")
            wait_until(lambda: load.bodies[-1] == "v2", 10, what="v2 through HAProxy")
            load.flowing()
        assert took_over <= LEADER_TTL + 2, took_over
        assert load.failures == [], load.failures[:5]
        assert set(load.bodies) == {"v1", "v2"}
        assert leader(second) == {"ok": True, "leader": f"127.0.0.1:{second.port}", "leads": True}
        assert deploy(second, name).status_code == 201  # and the next deploy goes through at once
    finally:
        router.stop()
        second.stop()
        first.stop()
