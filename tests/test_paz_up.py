"""``paz up`` / ``paz status`` / ``paz down``: the README's start command, on the suite's own ports, and the
site's tutorial (docs/tutorial.md) run as written against it.

These tests use the suite's fixed ports (2379, 9000-9004, 8080, 1936), as a user would, with
the state in a temporary folder and the tests' own Docker Engine (DOCKER_HOST).
"""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import requests

from paz.processes import command

from tests.support import (
    ETCD_API, ROOT, VENV_BIN, build_test_image, etcdctl_get, need, paz_command as paz, suite_pids as pids,
)
from tests.support.image_registry import DockerCommand
from tests.support.prometheus import Prometheus

SERVICES = ("paz-service-directory", "paz-scheduler", "paz-haproxy-sync", "paz-orchestrator")


@pytest.fixture(scope="module")
def suite_up(tmp_path_factory: pytest.TempPathFactory, docker_engine) -> Iterator[tuple[Path, dict[str, str], str]]:
    for binary in ("etcd", "haproxy", "etcdctl"):
        need(binary)
    state = tmp_path_factory.mktemp("paz-up")
    env = {"DOCKER_HOST": docker_engine.host}
    started = paz(state, "up", "--registry", env=env)
    try:
        assert started.returncode == 0, started.stdout + started.stderr
        assert "does not route" not in started.stderr  # paz up returned once HAProxy routes every part
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


def test_up_with_registry_runs_it_remembers_it_and_gc_keeps_it_serving(suite_up, docker_engine, test_image, tmp_path):
    state, env, output = suite_up
    need("docker-registry")
    assert "registry           127.0.0.1:5000: docker login 127.0.0.1:5000 -u paz" in output, output
    assert etcdctl_get("http://127.0.0.1:2379", "/paz/services/paz-registry") == "127.0.0.1:5000"
    status = paz(state, "status", env=env)
    assert any(line.startswith("registry") and "healthy" in line for line in status.stdout.splitlines()), status.stdout
    docker = DockerCommand(docker_engine.host, tmp_path / "docker-config")
    assert docker.login("127.0.0.1:5000", (state / "admin.token").read_text().strip()).returncode == 0
    assert docker("tag", test_image, "127.0.0.1:5000/paz-up-check:1").returncode == 0
    pushed = docker("push", "127.0.0.1:5000/paz-up-check:1")
    assert pushed.returncode == 0, pushed.stderr
    collected = paz(state, "registry", "gc", env=env)
    assert collected.returncode == 0 and "blobs marked" in collected.stdout, collected.stdout + collected.stderr
    assert docker("pull", "127.0.0.1:5000/paz-up-check:1").returncode == 0  # served again, the tagged image kept
    again = paz(state, "up", env=env)  # remembered: no --registry needed
    assert again.returncode == 0 and "registry           already running" in again.stdout, again.stdout


def sh_blocks(page: Path, section: str = "") -> list[str]:
    """The ``sh`` blocks of a Markdown page (of its ``## <section>...`` only, when given), in order."""
    text = page.read_text()
    if section:
        text = next(part for part in text.split("\n## ") if part.startswith(section))
    return re.findall(r"^```sh\n(.*?)^```$", text, flags=re.MULTILINE | re.DOTALL)


@pytest.fixture(scope="module")
def as_a_user(suite_up, docker_engine, test_image, tmp_path_factory) -> Callable[[str], str]:
    """Runs a bash script (``set -euo pipefail``) as a user would in a checkout, against ``paz up``: in a folder
    whose ``.paz`` is the suite's state and whose ``./bin/paz`` is this checkout's paz, with paz's demo images in
    the engine (no registry is reachable here, so they are the tests' image, tagged). Answers its output."""
    state, env, _ = suite_up
    docker_engine.client().images.get(test_image).tag("lukebond/demo-api", "latest")
    build_test_image(docker_engine, "lukebond/contrived-service-1:0.0.1",
                     extra_changes=["ENV PORT=9000", "ENV MESSAGE=\"Hello World 1\"", "EXPOSE 9000"])
    folder = tmp_path_factory.mktemp("checkout")
    (folder / ".paz").symlink_to(state)
    (folder / "bin").mkdir()
    (folder / "bin" / "paz").write_text(f'#!/bin/sh\nexec "{VENV_BIN / "paz"}" "$@"\n')
    (folder / "bin" / "paz").chmod(0o755)

    def run(script: str) -> str:
        done = subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=folder, capture_output=True, text=True,
                              timeout=600, env={**os.environ, **env, "ETCDCTL_ENDPOINTS": "http://127.0.0.1:2379"})
        assert done.returncode == 0, done.stdout + done.stderr
        statuses = re.findall(r"^HTTP/1\.1 (\d{3})", done.stdout, flags=re.MULTILINE)
        assert all(int(status) < 400 for status in statuses), statuses
        return done.stdout

    return run


def assert_gone(docker_engine, *names: str) -> None:
    for name in names:
        assert docker_engine.client().containers.list(all=True, filters={"label": f"paz.service={name}"}) == []
        assert etcdctl_get("http://127.0.0.1:2379", f"/paz/services/{name}") == ""
        assert requests.get(f"http://127.0.0.1:9000/services/{name}", timeout=10).status_code == 404


@pytest.mark.skipif(ETCD_API == "2", reason="the tutorial's etcdctl lines speak etcd's v3 API")
def test_the_tutorial_runs_as_written(as_a_user, docker_engine):
    """docs/tutorial.md (paz's walkthrough with curl, then with paz): every sh block, in order, as written."""
    assert requests.post("http://127.0.0.1:9000/services", json={}, timeout=10).status_code == 401  # no token, no change
    out = as_a_user("\n".join(sh_blocks(ROOT / "docs" / "tutorial.md")))
    assert "already running" in out  # ./bin/paz up found the suite
    assert "HTTP/1.1 201" in out and "so platform; many service; wow" in out and out.count("Hello World 1") >= 2, out
    assert "127.0.0.1:9001" in out and "127.0.0.1:9002" in out and "/paz/services/demo-api/1/1" in out
    assert "deployed contrived-service-1 v1" in out
    assert_gone(docker_engine, "demo-api", "contrived-service-1")  # its clean-up step


def test_the_readme_walkthrough_runs_as_written(as_a_user, docker_engine):
    out = as_a_user("\n".join(sh_blocks(ROOT / "README.md", section="The walkthrough")))
    assert re.search(r"deployed demo-api v\d+", out), out
    assert_gone(docker_engine, "demo-api")


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


def test_up_with_prometheus_scrapes_every_part_it_finds_through_the_orchestrator(suite_up):
    """Last in this module: from here on the suite's saved choices include Prometheus."""
    need("prometheus")
    state, env, _ = suite_up
    started = paz(state, "up", "--prometheus", env=env)
    assert started.returncode == 0, started.stdout + started.stderr
    assert "Prometheus         http://127.0.0.1:9090/" in started.stdout, started.stdout
    parts = {"paz-service-directory", "paz-scheduler", "paz-haproxy-sync", "paz-orchestrator", "paz-web", "haproxy"}
    assert Prometheus.at(9090).wait_until_up(parts) == parts
    argv = " ".join(command(pids(state)["prometheus"]) or [])
    assert "--storage.tsdb.retention.time=" in argv and "--web.listen-address=127.0.0.1:9090" in argv
    status = paz(state, "status", env=env)
    assert any(line.startswith("prometheus") and "healthy" in line for line in status.stdout.splitlines()), status.stdout
