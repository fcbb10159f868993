"""The suite as a user's daily workflow needs it, on free loopback ports around a Docker Engine: an etcd
of its own, the directory, the scheduler (docker driver) and the orchestrator (no router: nothing here
goes through HAProxy). Also the test image that writes known lines, and a way to make a running
instance print another one."""

from __future__ import annotations

import contextlib
import time
from pathlib import Path
from typing import Any

import requests

from tests.support import DockerEngine, EtcdServer, Service, build_test_image, suite_scheduler

KNOWN_STDOUT = "paz-log-test: hello on stdout"
KNOWN_STDERR = "paz-log-test: hello on stderr"


def build_talking_image(engine: Any, tag: str) -> str:
    """The test image, but it first prints :data:`KNOWN_STDOUT` on stdout and :data:`KNOWN_STDERR` on stderr."""
    command = f'echo "{KNOWN_STDOUT}"; echo "{KNOWN_STDERR}" >&2; exec /serve'
    return build_test_image(engine, tag, extra_changes=[f'CMD ["/bin/sh", "-c", "{command.replace(chr(34), chr(92) + chr(34))}"]'])


def say(container: Any, text: str, stream: int = 1) -> float:
    """Make the instance in ``container`` print ``text`` (a printf format: ``\\NNN`` escapes work) on its
    stdout (1) or stderr (2), as its own output: written to its first process's file. When it was printed."""
    result = container.exec_run(["/bin/sh", "-c", f'printf "$0\\n" > /proc/1/fd/{stream}', text])
    assert result.exit_code == 0, result.output
    return time.time()


class DockerSuite:
    def __init__(self, engine: DockerEngine, workdir: Path, **scheduler_env: str) -> None:
        self.engine = engine
        self.etcd = EtcdServer(workdir)
        self.directory = Service("paz-service-directory", self.etcd, workdir)
        self.scheduler = suite_scheduler(self.etcd, engine, workdir, **scheduler_env)
        # few threads, as on a small machine: a followed log that held one would show (tests/test_logs.py)
        self.orchestrator = Service("paz-orchestrator", self.etcd, workdir, env={"PAZ_EVENTS_KEEPALIVE": "1", "PAZ_THREADS": "4"})
        self.parts = [self.etcd, self.directory, self.scheduler, self.orchestrator]
        self._started: list[Any] = []

    def start(self) -> "DockerSuite":
        for part in self.parts:
            part.start()
            self._started.append(part)
        return self

    def stop(self) -> None:
        for part in reversed(self._started):
            with contextlib.suppress(Exception):
                part.stop()

    def register(self, name: str, image: str, **config: Any) -> None:
        answer = self.orchestrator.request("POST", "/services", json={"name": name, "dockerRepository": image, "config": config})
        assert answer.status_code == 201, answer.text

    def deploy(self, name: str, image: str | None = None) -> dict[str, Any]:
        answer = self.orchestrator.request("POST", f"/services/{name}/deploy", timeout=90,
                                           json={"dockerRepository": image} if image else {})
        assert answer.status_code == 201, answer.text
        return answer.json()

    def container(self, unit_id: str) -> Any:
        return self.engine.client().containers.get(unit_id)

    def logs(self, path: str, **params: Any) -> requests.Response:
        return self.orchestrator.request("GET", path, params=params)
