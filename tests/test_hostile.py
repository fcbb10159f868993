"""Hostile input: bodies no parser should choke on get a 4xx that says why, and nothing changes."""

from __future__ import annotations

import pytest

from tests.support import Service

DEEP = "[" * 100_000 + "]" * 100_000


@pytest.fixture(scope="module")
def orchestrator(etcd, directory, workdir):
    service = Service("paz-orchestrator", etcd, workdir).start()
    yield service
    service.stop()


@pytest.fixture(scope="module")
def scheduler(etcd, directory, workdir):
    """A scheduler whose Docker Engine is nowhere: a bad body is refused before any engine is asked."""
    service = Service("paz-scheduler", etcd, workdir, env={"DOCKER_HOST": f"unix://{workdir}/no-docker.sock"}).start()
    yield service
    service.stop()


def routes(directory: Service, scheduler: Service, orchestrator: Service) -> list[tuple[Service, str]]:
    return [(directory, "/services"), (orchestrator, "/services"), (scheduler, "/hooks/deploy")]


def test_deeply_nested_json_is_a_400_everywhere(directory, scheduler, orchestrator) -> None:
    for service, path in routes(directory, scheduler, orchestrator):
        answer = service.request("POST", path, data=DEEP, headers={"Content-Type": "application/json"})
        assert answer.status_code == 400, (service.script, path, answer.text)
        assert "nested too deeply" in answer.json()["error"]["message"]


def test_a_body_over_a_mebibyte_is_a_413_and_nothing_is_stored(directory, scheduler, orchestrator, unique_name) -> None:
    big = '{"name": "%s", "dockerRepository": "a/b", "description": "%s"}' % (unique_name, "x" * (1024 * 1024 + 1))
    for service, path in routes(directory, scheduler, orchestrator):
        answer = service.request("POST", path, data=big, headers={"Content-Type": "application/json"})
        assert answer.status_code == 413, (service.script, path, answer.status_code)
        assert "larger than 1024 KiB" in answer.json()["error"]["message"]
    assert directory.request("GET", f"/services/{unique_name}").status_code == 404
