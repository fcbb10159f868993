"""``paz up`` / ``paz status`` / ``paz down``: the README's start command, on the suite's own ports.

These tests use the fixed ports of DESIGN.md (2379, 9000-9003, 8080, 1936), as a user would, with
the state in a temporary folder and the tests' own Docker Engine (DOCKER_HOST).
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from paz.processes import command

from tests.support import build_test_image, etcdctl_get, need, paz_command as paz, suite_pids as pids, wait_until

SERVICES = ("paz-service-directory", "paz-scheduler", "paz-haproxy-sync", "paz-orchestrator")


@pytest.fixture(scope="module")
def suite_up(tmp_path_factory: pytest.TempPathFactory, docker_engine) -> Iterator[tuple[Path, dict[str, str], str]]:
    for binary in ("etcd", "haproxy", "etcdctl"):
        need(binary)
    state = tmp_path_factory.mktemp("paz-up")
    env = {"DOCKER_HOST": docker_engine.host}
    started = paz(state, "up", env=env)
    try:
        assert started.returncode == 0, started.stdout + started.stderr
        yield state, env, started.stdout
    finally:
        paz(state, "down", env=env)


def test_up_announces_every_service_and_routes_through_haproxy(suite_up):
    state, _, output = suite_up
    if "PAZ_ETCD_API" not in os.environ:  # a fresh machine: the v3 API, which plain etcdctl speaks
        assert "etcd API           v3: the default" in output, output
        assert etcdctl_get("http://127.0.0.1:2379", "/paz/services/paz-scheduler", api="3") == "127.0.0.1:9002"
    for name in SERVICES:
        address = etcdctl_get("http://127.0.0.1:2379", f"/paz/services/{name}")
        assert address.startswith("127.0.0.1:"), (name, address)
        assert requests.get(f"http://{address}/health", timeout=5).status_code == 200
    through = requests.get("http://127.0.0.1:8080/health", headers={"Host": "paz-orchestrator.paz"}, timeout=5)
    assert through.status_code == 200 and through.json()["service"] == "paz-orchestrator"
    key = state / "secrets.key"
    assert f"secrets key        in {key} (made now" in output, output
    assert key.stat().st_mode & 0o777 == 0o600
    check = etcdctl_get("http://127.0.0.1:2379", "/paz/secrets/keycheck")  # sealed with the key, not the key
    assert check.startswith("gAAAAA") and key.read_text().strip() not in check


def test_status_and_a_second_up_start_nothing_twice(suite_up):
    state, env, _ = suite_up
    before = pids(state)
    status = paz(state, "status", env=env)
    assert status.returncode == 0, status.stdout
    for part in ("etcd", "service-directory", "scheduler", "haproxy-sync", "orchestrator"):
        assert any(line.startswith(part) and "healthy" in line for line in status.stdout.splitlines()), status.stdout
    again = paz(state, "up", env=env)
    assert again.returncode == 0 and "already running" in again.stdout
    assert pids(state) == before


def test_etcd_compacts_its_v3_history_after_an_hour(suite_up):
    """etcd keeps every v3 revision until told otherwise, until its space quota is full and it refuses
    every write; the etcd paz up starts compacts what is older than an hour."""
    state, _, _ = suite_up
    argv = command(pids(state)["etcd"])
    assert argv[argv.index("--auto-compaction-mode") + 1] == "periodic"
    assert argv[argv.index("--auto-compaction-retention") + 1] == "1h"


def test_up_with_a_domain_writes_it_for_the_router(suite_up):
    state, env, _ = suite_up
    refused = paz(state, "up", "--domain", "not a domain;", env=env)
    assert refused.returncode == 2 and "--domain" in refused.stderr
    assert etcdctl_get("http://127.0.0.1:2379", "/paz/config/domain") == ""
    assert paz(state, "up", "--domain", "example.com", env=env).returncode == 0
    assert etcdctl_get("http://127.0.0.1:2379", "/paz/config/domain") == "example.com"
    assert paz(state, "up", "--domain", "", env=env).returncode == 0
    assert etcdctl_get("http://127.0.0.1:2379", "/paz/config/domain") == ""


def test_logs_show_each_part(suite_up):
    state, env, _ = suite_up
    logs = paz(state, "logs", "service-directory", "-n", "5", env=env)
    assert logs.returncode == 0 and logs.stdout.startswith("service-directory: ")
    unknown = paz(state, "logs", "nonsense", env=env)
    assert unknown.returncode == 2 and "no part named 'nonsense'" in unknown.stderr


def test_the_seed_walkthrough_runs_as_written(suite_up, docker_engine, test_image):
    """The curl walkthrough of the paz Orchestrator README (seeds/000_...txt), against ``paz up``."""
    state, _, _ = suite_up
    orchestrator, scheduler = "http://127.0.0.1:9000", "http://127.0.0.1:9002"
    admin = {"Authorization": f"Bearer {(state / 'admin.token').read_text().strip()}"}  # made by paz up
    client = docker_engine.client()
    client.images.get(test_image).tag("lukebond/demo-api", "latest")
    build_test_image(docker_engine, "lukebond/contrived-service-1:0.0.1",
                     extra_changes=["ENV PORT=9000", "ENV MESSAGE=\"Hello World 1\"", "EXPOSE 9000"])
    assert requests.post(f"{orchestrator}/services", json={}, timeout=10).status_code == 401  # no token, no change
    svcdoc = {"name": "demo-api", "description": "Very simple HTTP Hello World server",
              "dockerRepository": "lukebond/demo-api", "loadBalanced": False, "publicFacing": False}
    assert requests.post(f"{orchestrator}/services", headers=admin, json=svcdoc, timeout=10).status_code == 201
    assert "demo-api" in [s["name"] for s in requests.get(f"{orchestrator}/services", timeout=10).json()]
    patched = requests.patch(f"{orchestrator}/services/demo-api/config/next", headers=admin, timeout=10,
                             json={"env": {"MESSAGE": "so platform; many service; wow"}})
    assert patched.status_code == 200, patched.text
    deploy_doc = {"serviceName": "demo-api", "dockerRepository": "lukebond/demo-api", "pushedAt": int(time.time())}
    deployed = requests.post(f"{scheduler}/hooks/deploy", headers=admin, json=deploy_doc, timeout=120)
    assert deployed.status_code in (200, 201), deployed.text
    demo = wait_until(lambda: _through_haproxy("demo-api"), 20, what="demo-api through HAProxy")
    assert demo == "so platform; many service; wow"

    directory_address = etcdctl_get("http://127.0.0.1:2379", "/paz/services/paz-service-directory")
    contrived = {"name": "contrived-service-1", "description": "Test service", "dockerImage": "lukebond/contrived-service-1",
                 "ports": [{"container": 9000, "host": 80}], "autoDeploy": "always", "numInstances": 1,
                 "conflictsWith": "contrived-service-*"}
    created = requests.post(f"http://{directory_address}/services", headers=admin, json=contrived, timeout=10)
    assert created.status_code == 201, created.text
    scheduler_address = etcdctl_get("http://127.0.0.1:2379", "/paz/services/paz-scheduler")
    deployed = requests.post(f"http://{scheduler_address}/hooks/deploy", headers=admin, timeout=120, json={
        "serviceName": "contrived-service-1", "dockerRepository": "lukebond/contrived-service-1:0.0.1", "pushedAt": 0})
    assert deployed.status_code in (200, 201), deployed.text
    assert wait_until(lambda: _through_haproxy("contrived-service-1"), 20, what="contrived-service-1") == "Hello World 1"
    assert requests.get("http://127.0.0.1:80/cgi-bin/index", timeout=5).text == "Hello World 1"  # "hit up port 80"

    for name in ("demo-api", "contrived-service-1"):
        assert requests.delete(f"{orchestrator}/services/{name}", headers=admin, timeout=60).status_code in (200, 204)
        assert client.containers.list(all=True, filters={"label": f"paz.service={name}"}) == []
        assert etcdctl_get("http://127.0.0.1:2379", f"/paz/services/{name}") == ""
        assert requests.get(f"{orchestrator}/services/{name}", timeout=10).status_code == 404


def _through_haproxy(name: str) -> str | None:
    answer = requests.get("http://127.0.0.1:8080/cgi-bin/index", headers={"Host": f"{name}.paz"}, timeout=5)
    return answer.text if answer.status_code == 200 else None


def test_up_serves_paz_names_on_the_docker_bridge(suite_up, docker_engine):
    from dnslib import DNSRecord

    from paz.suite import bridge_gateway

    _, _, output = suite_up
    gateway = bridge_gateway(docker_engine.host)
    assert f"name server {gateway}:53" in output and "resolvectl domain docker0 '~paz'" in output, output
    found = DNSRecord.parse(DNSRecord.question("paz-orchestrator.paz").send(gateway, 53, timeout=3))
    assert [str(rr.rdata) for rr in found.rr] == [gateway]
    through = requests.get(f"http://{gateway}/health", headers={"Host": "paz-orchestrator.paz"}, timeout=5)
    assert through.status_code == 200 and through.json()["service"] == "paz-orchestrator"
