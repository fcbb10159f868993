"""Who may change what: the suite with tokens required (PAZ_AUTH=required, as paz up runs it).

Real services (gunicorn) on an etcd of this module's own; tokens are made the ways a person makes
them: `paz token create` (straight in etcd) and the orchestrator's POST /tokens.
"""

from __future__ import annotations

import re
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from paz.auth import MUTATING
from tests.support import VENV_BIN, EtcdServer, Service
from tests.test_scheduler import scheduler_env

REQUIRED = {"PAZ_AUTH": "required"}


def paz_token(etcd: EtcdServer, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(VENV_BIN / "paz"), "token", *args, "--etcd", etcd.url], capture_output=True, text=True, timeout=30)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture(scope="module")
def suite(tmp_path_factory: pytest.TempPathFactory, docker_engine: Any) -> Iterator[dict[str, Any]]:
    folder = tmp_path_factory.mktemp("auth")
    etcd = EtcdServer(folder).start()
    services: dict[str, Service] = {}
    try:
        services["directory"] = Service("paz-service-directory", etcd, folder, env=REQUIRED).start()
        services["scheduler"] = Service("paz-scheduler", etcd, folder, env={**scheduler_env(docker_engine), **REQUIRED}).start()
        services["orchestrator"] = Service("paz-orchestrator", etcd, folder, env=REQUIRED).start()
        tokens = {}
        for role in ("read", "deploy", "admin"):
            made = paz_token(etcd, "create", "--role", role, "--name", f"test {role}")
            assert made.returncode == 0, made.stderr
            tokens[role] = made.stdout.strip()
        yield {"etcd": etcd, "tokens": tokens, **services}
    finally:
        for service in reversed(services.values()):
            service.stop()
        etcd.stop()


def mutating_operations(service: Service) -> list[tuple[str, str]]:
    """``(METHOD, path)`` of every documented operation that changes something, path parameters filled in."""
    document = service.request("GET", "/openapi.json").json()
    return [
        (method.upper(), re.sub(r"\{(\w+)\}", lambda m: "1" if m.group(1) == "number" else "t-auth-nothing", path))
        for path, operations in document["paths"].items()
        for method in operations
        if method.upper() in MUTATING
    ]


@pytest.mark.parametrize("name", ["directory", "scheduler", "orchestrator"])
def test_every_mutating_route_refuses_no_token_and_a_read_token(suite: dict[str, Any], name: str) -> None:
    service = suite[name]
    operations = mutating_operations(service)
    assert operations, f"{name} documents no route that changes something"
    for method, path in operations:
        anonymous = service.request(method, path, json={})
        assert anonymous.status_code == 401, (method, path, anonymous.text)
        assert "Authorization: Bearer" in anonymous.json()["error"]["message"]
        reader = service.request(method, path, json={}, headers=bearer(suite["tokens"]["read"]))
        assert reader.status_code == 403, (method, path, reader.text)
        assert "role" in reader.json()["error"]["message"]
    assert service.request("GET", "/openapi.json").status_code == 200, "reads stay open"


def test_a_deploy_token_deploys_and_rolls_back_but_cannot_delete(suite: dict[str, Any], test_image: str, unique_name: str) -> None:
    orchestrator, scheduler, tokens = suite["orchestrator"], suite["scheduler"], suite["tokens"]
    document = {"name": unique_name, "dockerRepository": test_image}
    assert orchestrator.request("POST", "/services", json=document, headers=bearer(tokens["deploy"])).status_code == 403
    assert orchestrator.request("POST", "/services", json=document, headers=bearer(tokens["admin"])).status_code == 201
    hook = {"serviceName": unique_name, "pushedAt": int(time.time())}
    deployed = scheduler.request("POST", "/hooks/deploy", json=hook, headers=bearer(tokens["deploy"]), timeout=60)
    assert deployed.status_code == 201, deployed.text
    rolled = scheduler.request("POST", f"/services/{unique_name}/rollback", json={"version": 1},
                               headers=bearer(tokens["deploy"]), timeout=60)
    assert rolled.status_code == 201, rolled.text
    refused = orchestrator.request("DELETE", f"/services/{unique_name}", headers=bearer(tokens["deploy"]))
    assert refused.status_code == 403 and "admin" in refused.json()["error"]["message"]
    assert orchestrator.request("GET", f"/services/{unique_name}").status_code == 200, "nothing was deleted"
    deleted = orchestrator.request("DELETE", f"/services/{unique_name}", headers=bearer(tokens["admin"]), timeout=120)
    assert deleted.status_code == 200, deleted.text


def test_only_the_hooks_take_a_token_in_the_url(suite: dict[str, Any]) -> None:
    scheduler, directory, tokens = suite["scheduler"], suite["directory"], suite["tokens"]
    hook = scheduler.request("POST", "/hooks/deploy", params={"token": tokens["deploy"]}, json={"serviceName": "t-auth-nobody"})
    assert hook.status_code == 404, hook.text  # past the token check: the service is unknown
    other = directory.request("POST", "/services", params={"token": tokens["admin"]}, json={})
    assert other.status_code == 401


def test_a_revoked_token_stops_working_at_once(suite: dict[str, Any]) -> None:
    orchestrator, admin = suite["orchestrator"], bearer(suite["tokens"]["admin"])
    made = orchestrator.request("POST", "/tokens", json={"role": "admin", "name": "short-lived"}, headers=admin)
    assert made.status_code == 201, made.text
    new = made.json()
    listed = orchestrator.request("GET", "/tokens", headers=bearer(new["token"]))
    assert listed.status_code == 200
    assert new["id"] in [t["id"] for t in listed.json()] and new["token"] not in listed.text, "listed without secrets"
    assert orchestrator.request("DELETE", f"/tokens/{new['id']}", headers=admin).status_code == 200
    after = orchestrator.request("GET", "/tokens", headers=bearer(new["token"]))
    assert after.status_code == 401 and "not valid" in after.json()["error"]["message"]


def test_refusals_are_logged_with_the_request_id_and_never_the_token(suite: dict[str, Any]) -> None:
    directory = suite["directory"]
    secret = "paz_not-a-token-of-ours-" + "x" * 20
    answer = directory.request("DELETE", "/services/t-auth-nothing", headers={**bearer(secret), "X-Request-Id": "auth-log-check"})
    assert answer.status_code == 401 and answer.json()["error"]["requestId"] == "auth-log-check"
    log = directory.process.log()
    assert any("auth-log-check" in line and "refused" in line for line in log.splitlines())
    assert secret not in log and suite["tokens"]["admin"] not in log


def test_paz_token_lists_without_secrets_and_revokes(suite: dict[str, Any], tmp_path: Path) -> None:
    etcd = suite["etcd"]
    made = paz_token(etcd, "create", "--role", "read", "--name", "cli")
    secret = made.stdout.strip()
    assert made.returncode == 0 and secret.startswith("paz_")
    listed = paz_token(etcd, "list")
    assert listed.returncode == 0 and "cli" in listed.stdout and secret not in listed.stdout
    assert paz_token(etcd, "revoke", secret).returncode == 0
    assert "cli" not in paz_token(etcd, "list").stdout
    gone = paz_token(etcd, "revoke", secret)
    assert gone.returncode == 1 and "No token" in gone.stderr
