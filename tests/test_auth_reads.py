"""``PAZ_AUTH_READS=token ./bin/paz up``: the whole suite starts, and every read route of every service
refuses a request without a token (the directory's fast path included) and serves a ``read`` token.

``/health`` stays open for probes and load balancers, with only the service and its status; its
details need a token. Fixed ports as paz up uses them; the tests' own Docker Engine.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from tests.support import paz_command as paz

PORTS = {"paz-service-directory": 9001, "paz-scheduler": 9002, "paz-haproxy-sync": 9003, "paz-orchestrator": 9000}
ADMIN_READS = {"/tokens"}
"""Reads that need more than ``read``: the list of tokens is the admin's."""
REGISTRY_TOKEN = "/registry/token"
"""Asked by a Docker Engine with basic auth, a paz token as the password (``docker login -u paz``)."""


@pytest.fixture(scope="module")
def suite_up(tmp_path_factory: pytest.TempPathFactory, docker_engine) -> Iterator[dict[str, Any]]:
    state = tmp_path_factory.mktemp("paz-up-reads")
    env = {"DOCKER_HOST": docker_engine.host, "PAZ_AUTH_READS": "token"}
    started = paz(state, "up", env=env)
    try:
        assert started.returncode == 0, started.stdout + started.stderr
        made = paz(state, "token", "create", "--role", "read", "--name", "reader", env=env)
        assert made.returncode == 0, made.stderr
        admin = (state / "admin.token").read_text().strip()
        yield {"read": made.stdout.strip(), "admin": admin, "state": state}
    finally:
        paz(state, "down", env=env)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def get(url: str, headers: dict[str, str] | None = None, auth: tuple[str, str] | None = None) -> requests.Response:
    """The status of a GET, closed at once (some routes answer a stream)."""
    answer = requests.get(url, headers=headers or {}, auth=auth, timeout=10, stream=True)
    answer.close()
    return answer


def read_routes(port: int, token: str) -> list[str]:
    """Every documented GET of the service on ``port``, path parameters filled with a name."""
    document = requests.get(f"http://127.0.0.1:{port}/openapi.json", headers=bearer(token), timeout=10).json()
    return [re.sub(r"\{(\w+)\}", lambda m: "1" if m.group(1) in ("number", "version") else "t-reads-none", path)
            for path, operations in document["paths"].items() if "get" in operations]


@pytest.mark.parametrize("service", sorted(PORTS))
def test_every_read_route_needs_a_token_and_a_read_token_reads(suite_up: dict[str, Any], service: str) -> None:
    port = PORTS[service]
    routes = read_routes(port, suite_up["read"])
    assert "/openapi.json" in routes and "/health" in routes
    for path in routes:
        url = f"http://127.0.0.1:{port}{path}"
        if path == "/health":
            continue
        if path.startswith("/.well-known/acme-challenge/"):  # open: an ACME CA asks without a token
            assert get(url).status_code == 404, (service, path)
            continue
        assert get(url).status_code == 401, (service, path)
        if path == REGISTRY_TOKEN:  # no registry runs here: a 503 that says so, past the token check
            assert get(url, auth=("paz", suite_up["read"])).status_code == 503, (service, path)
            continue
        answer = get(url, bearer(suite_up["read"]))
        if path in ADMIN_READS:
            assert answer.status_code == 403 and get(url, bearer(suite_up["admin"])).status_code == 200
            continue
        assert answer.status_code not in (401, 403), (service, path, answer.status_code)
        if "{" not in path and "t-reads-none" not in path:
            assert answer.status_code == 200, (service, path, answer.status_code)


def test_health_is_liveness_without_a_token_and_details_with_one(suite_up: dict[str, Any]) -> None:
    for service, port in PORTS.items():
        anonymous = requests.get(f"http://127.0.0.1:{port}/health", timeout=5)
        assert anonymous.status_code == 200 and anonymous.json() == {"service": service, "status": "ok"}
        detailed = requests.get(f"http://127.0.0.1:{port}/health", headers=bearer(suite_up["read"]), timeout=5).json()
        assert detailed["checks"]["etcd"]["ok"] and detailed["address"] == f"127.0.0.1:{port}"


def test_the_directory_fast_path_answers_no_document_without_a_token(suite_up: dict[str, Any]) -> None:
    document = {"name": "t-reads-secret", "dockerRepository": "paz-test/hello:1", "config": {"env": {"DB_PASSWORD": "hunter2"}}}
    made = requests.post("http://127.0.0.1:9001/services", json=document, headers=bearer(suite_up["admin"]), timeout=10)
    assert made.status_code == 201, made.text
    for url in ("http://127.0.0.1:9001/services/t-reads-secret", "http://127.0.0.1:9000/services/t-reads-secret"):
        anonymous = requests.get(url, timeout=5)
        assert anonymous.status_code == 401 and "hunter2" not in anonymous.text
        assert requests.get(url, headers=bearer(suite_up["read"]), timeout=5).status_code == 200


def test_the_dashboard_shows_its_login_form_until_a_person_logs_in(suite_up: dict[str, Any]) -> None:
    person = requests.Session()
    page = person.get("http://127.0.0.1:9004/services", timeout=10)
    assert page.status_code == 401 and 'name="token"' in page.text
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', person.get("http://127.0.0.1:9004/login", timeout=10).text)
    assert csrf, "the login form carries its csrf token"
    logged_in = person.post("http://127.0.0.1:9004/login", data={"token": suite_up["read"], "csrf_token": csrf.group(1)}, timeout=10)
    assert logged_in.status_code == 200, logged_in.status_code
    assert person.get("http://127.0.0.1:9004/services", timeout=10).status_code == 200


def test_the_dashboards_metrics_need_a_token_too(suite_up: dict[str, Any]) -> None:
    """paz-web passes a person's token on for its pages, but answers /metrics itself: it checks the token there."""
    assert get("http://127.0.0.1:9004/metrics").status_code == 401
    assert get("http://127.0.0.1:9004/metrics", bearer(suite_up["read"])).status_code == 200
