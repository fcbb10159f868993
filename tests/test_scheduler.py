"""paz-scheduler with the docker driver, end to end: a real etcd, the real directory and scheduler
(gunicorn processes), a real Docker Engine and a tiny busybox image built by the tests.

The scenario follows issue 3's acceptance list in order: v1 with two instances, a zero-downtime v2
under a loop of requests, a v3 that exits at once, a killed container, a scheduler restart, and a
rollback to v1.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
import requests

from tests.support import SESSION_ID, TEST_LABEL, Service, build_test_image, wait_until

EXIT_IMAGE = "paz-test/hello:exit"


def scheduler_env(docker_engine: Any, **extra: str) -> dict[str, str]:
    return {
        "DOCKER_HOST": docker_engine.host,
        "PAZ_INSTANCE_LABELS": f"{TEST_LABEL}={SESSION_ID}",
        "PAZ_DEPLOY_TIMEOUT": "15",
        "PAZ_DRAIN_SECONDS": "0.5",
        "PAZ_STOP_TIMEOUT": "2",
        "PAZ_PROBE_INTERVAL": "0.5",
        "PAZ_LEADER_TTL": "3",
        **extra,
    }


@pytest.fixture(scope="session")
def exit_image(docker_engine) -> str:
    """The test image, but its command exits at once with status 1."""
    return build_test_image(docker_engine, EXIT_IMAGE, extra_changes=['CMD ["/bin/sh", "-c", "echo broken; exit 1"]'])


def register(directory: Service, name: str, image: str, **config: Any) -> None:
    answer = directory.request("POST", "/services", json={"name": name, "dockerRepository": image, "config": config})
    assert answer.status_code == 201, answer.text


def deploy(scheduler: Service, name: str, image: str | None = None, **kwargs: Any) -> requests.Response:
    body = {"serviceName": name, "pushedAt": int(time.time()), **({"dockerRepository": image} if image else {})}
    kwargs.setdefault("timeout", 60)
    return scheduler.request("POST", "/hooks/deploy", json=body, **kwargs)


def instances(etcd, name: str) -> dict[str, str]:
    """``{"<version>/<instance>": "host:port"}`` as announced in etcd."""
    return etcd.values_below(f"/paz/services/{name}")


def page(address: str) -> str:
    answer = requests.get(f"http://{address}/cgi-bin/index", timeout=2)
    answer.raise_for_status()
    return answer.text


def containers(docker_engine, name: str) -> list:
    return docker_engine.client().containers.list(all=True, filters={"label": f"paz.service={name}"})


class RequestLoop:
    """Requests the service's instances, read from the announced keys before each request, like a router would."""

    def __init__(self, etcd, name: str, limit: int = 3000, seconds: float = 60.0) -> None:
        self.etcd, self.name, self.limit, self.seconds = etcd, name, limit, seconds
        self.bodies: list[str] = []
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> "RequestLoop":
        self._thread.start()
        return self

    def __exit__(self, *_: Any) -> None:
        self._stop.set()
        self._thread.join(10)

    def _run(self) -> None:
        deadline = time.monotonic() + self.seconds
        for count in range(self.limit):
            if self._stop.is_set() or time.monotonic() > deadline:
                return
            addresses = sorted(instances(self.etcd, self.name).values())
            if not addresses:
                self.failures.append("no instance announced")
                continue
            address = addresses[count % len(addresses)]
            try:
                self.bodies.append(page(address))
            except requests.RequestException as exc:
                self.failures.append(f"{address}: {exc}")
            time.sleep(0.01)


def test_deploys_are_zero_downtime_and_survive_failures_kills_and_restarts(
    etcd, directory, docker_engine, test_image, exit_image, unique_name, tmp_path
):
    name = unique_name
    register(directory, name, test_image, numInstances=2, env={"MESSAGE": "v1"})
    scheduler = Service("paz-scheduler", etcd, tmp_path, env=scheduler_env(docker_engine)).start()
    try:
        # v1 with two instances: both announced and answering.
        answer = deploy(scheduler, name, test_image)
        assert answer.status_code == 201, answer.text
        assert answer.json()["version"] == 1 and answer.json()["status"] == "running"
        announced = instances(etcd, name)
        assert sorted(announced) == ["1/1", "1/2"]
        assert [page(a) for a in announced.values()] == ["v1", "v1"]

        # v2 while requests keep hitting the announced instances: none fails; only v2 is left.
        directory.request("PATCH", f"/services/{name}/config", json={"env": {"MESSAGE": "v2"}}).raise_for_status()
        with RequestLoop(etcd, name) as loop:
            wait_until(lambda: len(loop.bodies) > 20, 10, what="requests flowing before the deploy")
            answer = deploy(scheduler, name, test_image)
            served = len(loop.bodies)
            wait_until(lambda: len(loop.bodies) > served + 20, 10, what="requests flowing after the deploy")
        assert answer.status_code == 201, answer.text
        assert loop.failures == []
        assert set(loop.bodies) == {"v1", "v2"} and loop.bodies[-1] == "v2"
        assert sorted(instances(etcd, name)) == ["2/1", "2/2"]
        assert sorted(c.name for c in containers(docker_engine, name)) == [f"{name}-2-1", f"{name}-2-2"]

        # v3 exits at once: a clear 422, v2 keeps serving, the journal has the failed deploy.
        answer = deploy(scheduler, name, EXIT_IMAGE)
        assert answer.status_code == 422, answer.text
        message = answer.json()["error"]["message"]
        assert f"{name}-3-1 exited with code 1" in message and "v2 keeps serving" in message
        announced = instances(etcd, name)
        assert sorted(announced) == ["2/1", "2/2"] and {page(a) for a in announced.values()} == {"v2"}
        assert sorted(c.name for c in containers(docker_engine, name)) == [f"{name}-2-1", f"{name}-2-2"]
        entry = scheduler.request("GET", "/journal", params={"service": name, "limit": 1}).json()[0]
        assert (entry["type"], entry["version"]) == ("deploy-failed", 3)
        assert scheduler.request("GET", f"/config/{name}/version/3").json()["status"] == "failed"
        assert scheduler.request("GET", f"/config/{name}/version/2").json()["status"] == "running"

        # Kill a container: its key is gone within 2 s (Docker's die event, not the TTL).
        victim = docker_engine.client().containers.get(f"{name}-2-1")
        started = time.monotonic()
        victim.kill()
        wait_until(lambda: "2/1" not in instances(etcd, name), 2, interval=0.02, what="the killed instance's key to go")
        assert time.monotonic() - started < 2
        assert "2/2" in instances(etcd, name)
        down = scheduler.request("GET", "/journal", params={"service": name, "limit": 1}).json()[0]
        assert down["type"] == "instance-down" and f"{name}-2-1" in down["message"]
        victim.start()  # as an operator would; the scheduler announces it again once it answers
        wait_until(lambda: "2/1" in instances(etcd, name), 10, what="the restarted instance to be announced")

        # Restart the scheduler: keys stay while it is down; the new one rebuilds its state from the
        # labelled containers (even a key lost meanwhile comes back) and still follows Docker events.
        scheduler.stop()
        assert sorted(instances(etcd, name)) == ["2/1", "2/2"]
        etcd.delete(f"/paz/services/{name}/2/2")
        scheduler = Service("paz-scheduler", etcd, tmp_path, env=scheduler_env(docker_engine)).start()
        wait_until(lambda: sorted(instances(etcd, name)) == ["2/1", "2/2"], 10, what="every instance announced again")
        units = scheduler.request("GET", "/units", params={"service": name}).json()
        assert [(u["id"], u["state"], u["announced"], u["healthy"]) for u in units] == [
            (f"{name}-2-1", "running", True, True), (f"{name}-2-2", "running", True, True)
        ]
        docker_engine.client().containers.get(f"{name}-2-2").kill()
        wait_until(lambda: "2/2" not in instances(etcd, name), 2, interval=0.02, what="the new scheduler to follow events")

        # Roll back to v1: a new version with v1's image and config.
        answer = scheduler.request("POST", f"/services/{name}/rollback", json={"version": 1}, timeout=60)
        assert answer.status_code == 201, answer.text
        assert (answer.json()["version"], answer.json()["rollbackOf"], answer.json()["config"]["env"]) == (4, 1, {"MESSAGE": "v1"})
        announced = instances(etcd, name)
        assert sorted(announced) == ["4/1", "4/2"] and {page(a) for a in announced.values()} == {"v1"}
        history = scheduler.request("GET", f"/config/{name}/history").json()
        assert [(v["version"], v["status"]) for v in history] == [(4, "running"), (3, "failed"), (2, "replaced"), (1, "replaced")]
        kinds = [e["type"] for e in scheduler.request("GET", "/journal", params={"service": name}).json()]
        assert kinds == ["rollback", "instance-down", "instance-down", "deploy-failed", "deploy", "deploy"]
    finally:
        scheduler.stop()
