"""Chaos, bounded and on loopback: `paz up --etcd-members 3` under a steady load loses an etcd member
and then each of its services in turn.

The load (reads and writes through the orchestrator's API, requests through HAProxy to a deployed
service) runs the whole time. While one etcd member is down no API call may fail; when a service
is killed with SIGKILL, `paz up`'s supervisor starts it again, and the API may fail meanwhile, but
routing to the running instances never stops; at the end every write the API acknowledged is there.
Uses the suite's fixed ports (2379..., 9000-9003, 8080), as `paz up` does.
"""

from __future__ import annotations

import itertools
import os
import signal
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.support import need, paz_command as paz, suite_pids as pids, wait_until

ORCHESTRATOR = "http://127.0.0.1:9000"
SCHEDULER = "http://127.0.0.1:9002"
ROUTER = "http://127.0.0.1:8080"
LOAD_SECONDS_MAX = 240
SERVICES = ("service-directory", "scheduler", "haproxy-sync", "orchestrator", "web")


@pytest.fixture(scope="module")
def cluster_up(tmp_path_factory: pytest.TempPathFactory, docker_engine: Any) -> Iterator[tuple[Path, dict[str, str]]]:
    for binary in ("etcd", "haproxy"):
        need(binary)
    state = tmp_path_factory.mktemp("paz-chaos")
    env = {"DOCKER_HOST": docker_engine.host}
    started = paz(state, "up", "--etcd-members", "3", env=env)
    try:
        assert started.returncode == 0, started.stdout + started.stderr
        yield state, env
    finally:
        paz(state, "down", env=env)


class Load:
    """Three loops (API writes, API reads, requests through HAProxy), each call counted under the
    phase it happened in. Bounded: they stop when told, or after LOAD_SECONDS_MAX."""

    def __init__(self, service: str, token: str) -> None:
        self.service, self.auth = service, {"Authorization": f"Bearer {token}"}
        self.phase = "steady"
        self.counts: Counter[tuple[str, str, bool]] = Counter()
        self.acknowledged: dict[str, str] = {}
        self.failures: list[str] = []
        self.stopping = threading.Event()
        self.threads = [threading.Thread(target=self._loop, args=(call,), daemon=True)
                        for call in (self._write, self._read, self._route)]

    def __enter__(self) -> "Load":
        self.deadline = time.monotonic() + LOAD_SECONDS_MAX
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *_: Any) -> None:
        self.stopping.set()
        for thread in self.threads:
            thread.join(30)

    def _loop(self, call: Any) -> None:
        for number in itertools.count():
            if self.stopping.is_set() or time.monotonic() > self.deadline:
                return
            phase = self.phase
            try:
                ok = call(number)
            except requests.RequestException as exc:
                ok, self.failures = False, [*self.failures[-20:], f"{phase} {call.__name__}: {exc!r}"]
            self.counts[(phase, call.__name__.strip("_"), ok)] += 1
            time.sleep(0.02)

    def _write(self, number: int) -> bool:
        key, value = f"W{number}", str(number)
        answer = requests.patch(f"{ORCHESTRATOR}/services/{self.service}/config/next", json={"env": {key: value}},
                                headers=self.auth, timeout=10)
        if answer.ok:
            self.acknowledged[key] = value
        return answer.ok

    def _read(self, _: int) -> bool:
        return requests.get(f"{ORCHESTRATOR}/services/{self.service}", timeout=10).ok

    def _route(self, _: int) -> bool:
        answer = requests.get(f"{ROUTER}/cgi-bin/index", headers={"Host": f"{self.service}.paz"}, timeout=10)
        return answer.status_code == 200 and answer.text == "chaos"

    def failed(self, phase: str, kind: str) -> int:
        return self.counts[(phase, kind, False)]

    def report(self) -> str:
        phases = sorted({phase for phase, _, _ in self.counts})
        return "\n".join(
            f"{phase:<26}" + "  ".join(f"{kind}: {self.counts[(phase, kind, True)]} ok, {self.failed(phase, kind)} failed"
                                       for kind in ("write", "read", "route"))
            for phase in phases
        )


def healthy(state: Path, env: dict[str, str], part: str) -> bool:
    status = paz(state, "status", env=env).stdout.splitlines()
    return any(line.startswith(part + " ") and " healthy " in line for line in status)


def test_the_suite_rides_out_an_etcd_member_and_each_service_dying(cluster_up, docker_engine, test_image, unique_name):
    state, env = cluster_up
    token = (state / "admin.token").read_text().strip()
    auth = {"Authorization": f"Bearer {token}"}
    document = {"name": unique_name, "dockerRepository": test_image, "numInstances": 2, "env": {"MESSAGE": "chaos"}}
    assert requests.post(f"{ORCHESTRATOR}/services", json=document, headers=auth, timeout=10).status_code == 201
    deployed = requests.post(f"{SCHEDULER}/hooks/deploy", json={"serviceName": unique_name}, headers=auth, timeout=120)
    assert deployed.status_code == 201, deployed.text
    wait_until(lambda: requests.get(f"{ROUTER}/cgi-bin/index", headers={"Host": f"{unique_name}.paz"}, timeout=2).text == "chaos",
               30, what="the service routed through HAProxy")

    with Load(unique_name, token) as load:
        time.sleep(2)
        load.phase = "etcd member down"
        member = state / "run" / "etcd-1.pid"
        pid = int(member.read_text())
        member.unlink()  # as paz down does: the supervisor leaves it down
        os.kill(pid, signal.SIGKILL)
        time.sleep(6)
        load.phase = "etcd member back"
        assert paz(state, "up", "--etcd-members", "3", env=env).returncode == 0  # starts what is missing
        wait_until(lambda: healthy(state, env, "etcd-1"), 30, what="etcd-1 back")
        time.sleep(2)
        for name in SERVICES:
            load.phase = f"{name} killed"
            os.kill(pids(state)[name], signal.SIGKILL)
            wait_until(lambda: healthy(state, env, name), 60, interval=0.5, what=f"{name} restarted by the supervisor")
        load.phase = "all back"
        time.sleep(2)

    print(f"\nchaos figures:\n{load.report()}")
    assert sum(load.counts.values()) > 100, load.report()
    assert load.failed("etcd member down", "write") == 0 and load.failed("etcd member down", "read") == 0, \
        load.report() + "\n" + "\n".join(load.failures)
    assert sum(load.failed(phase, "route") for phase, _, _ in load.counts) == 0, load.report() + "\n" + "\n".join(load.failures)
    restarts = paz(state, "status", env=env).stdout
    assert all(f"{name} " in restarts for name in SERVICES) and "restarted 1x" in restarts
    final = requests.get(f"{ORCHESTRATOR}/services/{unique_name}/config/next", timeout=10).json()["env"]
    lost = {key: value for key, value in load.acknowledged.items() if final.get(key) != value}
    assert lost == {}, f"{len(lost)} acknowledged writes lost"
