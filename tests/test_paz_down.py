"""``paz up`` on a machine where no Docker Engine answers, then ``paz down``, on the suite's own ports."""

from __future__ import annotations


import pytest
import requests

from paz.processes import running
from tests.support import paz_command as paz, suite_pids as pids


def test_without_docker_all_but_deploying_works_and_down_leaves_no_process(tmp_path_factory):
    state = tmp_path_factory.mktemp("paz-down")
    env = {"DOCKER_HOST": f"unix://{state}/no-docker-here.sock"}
    up = paz(state, "up", env=env)
    try:
        assert up.returncode == 0, up.stdout + up.stderr
        assert "no Docker Engine answers" in up.stderr and "deploys answer 503" in up.stderr
        admin = {"Authorization": f"Bearer {(state / 'admin.token').read_text().strip()}"}
        created = requests.post("http://127.0.0.1:9000/services", json={"name": "no-docker", "dockerRepository": "a/b"},
                                headers=admin, timeout=10)
        assert created.status_code == 201, created.text
        deploy = requests.post("http://127.0.0.1:9002/hooks/deploy", timeout=30, headers=admin,
                               json={"serviceName": "no-docker", "dockerRepository": "a/b", "pushedAt": 0})
        assert deploy.status_code == 503 and "Docker" in deploy.json()["error"]["message"], deploy.text
        status = paz(state, "status", env=env)
        assert status.returncode == 1 and any(
            line.startswith("scheduler") and "degraded: docker" in line for line in status.stdout.splitlines()), status.stdout
    except BaseException:
        paz(state, "down", env=env)
        raise
    started = pids(state)
    haproxy_pids = [int(p.read_text()) for p in (state / "haproxy").glob("*.pid")]
    assert set(started) >= {"etcd", "service-directory", "scheduler", "haproxy-sync", "orchestrator"}
    down = paz(state, "down", env=env)
    assert down.returncode == 0
    for pid in [*started.values(), *haproxy_pids]:
        assert not running(pid), pid
    for url in ("http://127.0.0.1:9001/health", "http://127.0.0.1:8080/", "http://127.0.0.1:2379/health"):
        with pytest.raises(requests.ConnectionError):
            requests.get(url, timeout=2)
