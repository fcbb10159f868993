"""Secrets end to end: set through the orchestrator, sealed in etcd, opened into the container's
environment at deploy, and shown nowhere else; brought back by a rollback; re-sealed by
``paz secrets rotate``; a service without its key refuses to start.

Real etcd (this module's own), the real directory, scheduler and orchestrator (gunicorn, tokens
required as paz up runs them) and the tests' Docker Engine.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from cryptography.fernet import Fernet

from paz.secrets import Keyring, new_key, opened, rotate, write_key_file
from tests.support import VENV_BIN, EtcdServer, EventStream, Service, secrets_key_of, wait_until
from tests.test_auth import bearer, paz_token
from tests.test_scheduler import containers, scheduler_env

REQUIRED = {"PAZ_AUTH": "required"}
HOSTILE = "p4ss\nword 'single' \"double\" $(touch /tmp/pwned) `id`; echo hi \\ é"
SECOND = "second-secret-value-8c1f"
OTHER = "other-secret-value-b7e2"


@pytest.fixture(scope="module")
def suite(tmp_path_factory: pytest.TempPathFactory, docker_engine: Any) -> Iterator[dict[str, Any]]:
    folder = tmp_path_factory.mktemp("secrets")
    etcd = EtcdServer(folder).start()
    services: dict[str, Service] = {}
    try:
        made = paz_token(etcd, "create", "--role", "admin", "--name", "secrets test")
        assert made.returncode == 0, made.stderr
        admin = made.stdout.strip()
        services["directory"] = Service("paz-service-directory", etcd, folder, env=REQUIRED).start()
        services["scheduler"] = Service("paz-scheduler", etcd, folder,
                                        env={**scheduler_env(docker_engine), **REQUIRED, "PAZ_TOKEN": admin}).start()
        services["orchestrator"] = Service("paz-orchestrator", etcd, folder, env=REQUIRED).start()
        services["web"] = Service("paz-web", etcd, folder, env={"PAZ_WEB_SECRET_FILE": str(folder / "web-secret"), **REQUIRED}).start()
        yield {"etcd": etcd, "admin": admin, "folder": folder, **services}
    finally:
        for service in reversed(services.values()):
            service.stop()
        etcd.stop()


def call(suite: dict[str, Any], method: str, path: str, **kwargs: Any) -> requests.Response:
    kwargs.setdefault("timeout", 90)
    return suite["orchestrator"].request(method, path, headers=bearer(suite["admin"]), **kwargs)


def container_env(docker_engine: Any, name: str, version: int) -> dict[str, str]:
    """The environment Docker holds for ``name``'s instance of ``version``, as ``docker inspect`` shows it."""
    found = [c for c in containers(docker_engine, name) if c.labels.get("paz.version") == str(version)]
    assert found, f"no container of {name} v{version}"
    return dict(item.split("=", 1) for item in found[0].attrs["Config"]["Env"])


def read_routes(service: Service, name: str, unit: str) -> list[str]:
    """Every documented GET of ``service``, path parameters filled with this test's service, version 1 and unit."""
    document = service.request("GET", "/openapi.json").json()
    values = {"name": name, "number": "1", "version": "1", "unit_id": unit, "id": unit}
    return [re.sub(r"\{(\w+)\}", lambda m: values.get(m.group(1), name), path)
            for path, operations in document["paths"].items() if "get" in operations]


def body_of(url: str, headers: dict[str, str], query: dict[str, str], session: requests.Session | None = None) -> str:
    """What a GET answers, read for at most two seconds (some routes stream; one silent so long is left)."""
    try:
        answer = (session or requests).get(url, headers=headers, params=query, stream=True, timeout=(5, 2))
    except requests.ReadTimeout:
        return ""
    text, deadline = b"", time.monotonic() + 2
    try:
        for chunk in answer.iter_content(8192):
            text += chunk
            if time.monotonic() > deadline or len(text) > 2_000_000:
                break
    except requests.RequestException:
        pass
    finally:
        answer.close()
    return text.decode(errors="replace")


def logged_in(web: Service, token: str) -> requests.Session:
    """A browser's session of the dashboard, logged in with ``token``."""
    session = requests.Session()
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', session.get(f"{web.url}/login", timeout=10).text)[1]
    assert session.post(f"{web.url}/login", data={"csrf_token": csrf, "token": token}, timeout=10).ok
    return session


def shows(text: str, values: tuple[str, ...]) -> list[str]:
    """The values (or a JSON-escaped spelling of them) that ``text`` holds."""
    return [value for value in values if value in text or json.dumps(value)[1:-1] in text or value.split("\n")[0] in text]


def test_a_secret_reaches_the_container_and_nowhere_else(suite: dict[str, Any], docker_engine: Any, test_image: str,
                                                         unique_name: str) -> None:
    name, etcd = unique_name, suite["etcd"]
    assert call(suite, "POST", "/services", json={"name": name, "dockerRepository": test_image,
                                                  "config": {"ports": [{"container": 8000}], "env": {"PLAIN": "1"}}}).status_code == 201
    since = etcd.index()
    patch = {"secrets": {"DB_PASSWORD": HOSTILE, "API_KEY": SECOND}}
    anonymous = suite["orchestrator"].request("PATCH", f"/services/{name}/config/next", json=patch)
    assert anonymous.status_code == 401
    answer = call(suite, "PATCH", f"/services/{name}/config/next", json=patch)
    assert answer.status_code == 200, answer.text
    assert sorted(answer.json()["secrets"]) == ["API_KEY", "DB_PASSWORD"]
    assert set(answer.json()["secrets"]["DB_PASSWORD"]) == {"setAt"}
    assert not shows(answer.text, (HOSTILE, SECOND))

    deployed = call(suite, "POST", f"/services/{name}/deploy", json={})
    assert deployed.status_code == 201, deployed.text
    assert not shows(deployed.text, (HOSTILE, SECOND))
    env = container_env(docker_engine, name, 1)
    assert env["DB_PASSWORD"] == HOSTILE and env["API_KEY"] == SECOND and env["PLAIN"] == "1"
    assert not Path("/tmp/pwned").exists()

    unit, read = f"{name}-1-1", []
    for part in ("directory", "scheduler", "orchestrator"):
        service = suite[part]
        for path in read_routes(service, name, unit):
            for headers in ({}, bearer(suite["admin"])):
                text = body_of(service.url + path, headers, {"lastEventId": str(since)} if path == "/events" else {})
                assert not shows(text, (HOSTILE, SECOND)), (part, path, headers)
                read.append((part, path, "DB_PASSWORD" in text))
    web = suite["web"]
    pages = [*read_routes(web, name, unit), "/", "/services", f"/services/{name}", f"/services/{name}/stats",
             f"/services/{name}/delete", "/events", "/events/stream"]
    for session in (requests.Session(), logged_in(web, suite["admin"])):
        for path in pages:
            text = body_of(web.url + path, {}, {}, session)
            assert not shows(text, (HOSTILE, SECOND)), ("web", path)
            read.append(("web", path, "DB_PASSWORD" in text))
    assert len(read) > 40 and {(part, path) for part, path, named in read if named} >= {
        ("directory", f"/services/{name}"), ("orchestrator", f"/services/{name}/config/last"), ("scheduler", f"/config/{name}/history"),
        ("web", f"/services/{name}")}

    events = EventStream(f"{suite['orchestrator'].url}/events?service={name}", last_event_id=since)
    try:
        seen = events.until(lambda event: event["event"] in ("config-changed", "deploy-finished"), 2)
    finally:
        events.close()
    assert [event["event"] for event in seen] == ["config-changed", "deploy-finished"]
    assert seen[0]["data"]["changed"] == ["secrets"]
    assert not shows(json.dumps(seen), (HOSTILE, SECOND))

    raw = etcd.values_below("/paz")
    assert any("DB_PASSWORD" in value for value in raw.values())
    assert not [key for key, value in raw.items() if shows(value, (HOSTILE, SECOND))]
    for part in ("directory", "scheduler", "orchestrator", "web"):
        assert not shows(suite[part].process.log(), (HOSTILE, SECOND)), part
    key = secrets_key_of(etcd).read_text().strip()
    assert not [path for path, value in raw.items() if key in value]


def test_a_rollback_brings_back_that_versions_secrets(suite: dict[str, Any], docker_engine: Any, test_image: str,
                                                      unique_name: str) -> None:
    name = unique_name
    assert call(suite, "POST", "/services", json={"name": name, "dockerRepository": test_image,
                                                  "config": {"secrets": {"TOKEN": SECOND}}}).status_code == 201
    assert call(suite, "POST", f"/services/{name}/deploy", json={}).status_code == 201
    assert call(suite, "PATCH", f"/services/{name}/config/next", json={"secrets": {"TOKEN": OTHER, "NEW": "x"}}).status_code == 200
    assert call(suite, "POST", f"/services/{name}/deploy", json={}).status_code == 201
    assert container_env(docker_engine, name, 2)["TOKEN"] == OTHER
    rolled = call(suite, "POST", f"/services/{name}/rollback", json={"version": 1})
    assert rolled.status_code == 201, rolled.text
    env = container_env(docker_engine, name, 3)
    assert env["TOKEN"] == SECOND and "NEW" not in env
    history = call(suite, "GET", f"/services/{name}/config/history")
    assert [sorted(v["config"]["secrets"]) for v in history.json()] == [["TOKEN"], ["NEW", "TOKEN"], ["TOKEN"]]
    assert not shows(history.text, (SECOND, OTHER))
    gone = call(suite, "PATCH", f"/services/{name}/config/next", json={"secrets": {"TOKEN": None}})
    assert gone.json()["secrets"] == {"NEW": gone.json()["secrets"]["NEW"]}


@pytest.mark.parametrize("secret_name", ["1ABC", "A-B", "A B", "A\nB", "$(id)", "A;B", "A=B", "A'B", ""])
def test_a_name_that_is_no_environment_variable_is_refused_and_nothing_changes(suite: dict[str, Any], test_image: str,
                                                                              unique_name: str, secret_name: str) -> None:
    name = unique_name
    assert call(suite, "POST", "/services", json={"name": name, "dockerRepository": test_image}).status_code == 201
    for path in (f"/services/{name}/config/next",):
        answer = call(suite, "PATCH", path, json={"secrets": {secret_name: "v", "GOOD": "v"}})
        assert answer.status_code == 400, answer.text
        assert "environment variable name" in answer.text
    assert suite["directory"].request("PATCH", f"/services/{name}/config", headers=bearer(suite["admin"]),
                                      json={"secrets": {secret_name: "v"}}).status_code == 400
    assert call(suite, "GET", f"/services/{name}/config/next").json()["secrets"] == {}


def test_rotate_reseals_everything_and_running_services_keep_deploying(suite: dict[str, Any], docker_engine: Any,
                                                                       test_image: str, unique_name: str) -> None:
    name, etcd = unique_name, suite["etcd"]
    assert call(suite, "POST", "/services", json={"name": name, "dockerRepository": test_image,
                                                  "config": {"secrets": {"TOKEN": SECOND}}}).status_code == 201
    assert call(suite, "POST", f"/services/{name}/deploy", json={}).status_code == 201
    path = secrets_key_of(etcd)
    old_key, before = path.read_text().strip(), etcd.values_below("/paz")
    rotated = subprocess.run([str(VENV_BIN / "paz"), "secrets", "rotate", "--key-file", str(path), "--etcd", etcd.url],
                             capture_output=True, text=True, timeout=60)
    assert rotated.returncode == 0, rotated.stderr
    assert path.read_text().strip() != old_key and len(path.read_text().split()) == 1
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    after = etcd.values_below("/paz")
    sealed = [key for key, value in before.items() if '"sealed"' in value]
    assert sealed and all(after[key] != before[key] for key in sealed)
    rolled = call(suite, "POST", f"/services/{name}/rollback", json={"version": 1})
    assert rolled.status_code == 201, rolled.text
    assert container_env(docker_engine, name, 2)["TOKEN"] == SECOND


def test_a_value_sealed_under_the_old_key_while_a_rotation_runs_still_opens_after_it(etcd: EtcdServer, tmp_path: Path,
                                                                                      unique_name: str) -> None:
    """A service that took its keys just before ``paz secrets rotate`` wrote the new one seals a PATCH under
    the old key after the rotation's first pass went by: the value still opens once the old key is gone."""
    path = tmp_path / "secrets.key"
    write_key_file(path, [new_key()])
    stale = Fernet(path.read_text().strip())  # the keys a request took before the rotation began, in its hands still
    target, fillers = f"/paz/directory/services/{unique_name}", [f"/paz/directory/services/{unique_name}-{n:02}" for n in range(30)]
    for key in (target, *fillers):
        etcd.put(key, json.dumps({"config": {"secrets": {"TOKEN": {"sealed": stale.encrypt(SECOND.encode()).decode(), "setAt": "t"}}}}))
    first = etcd.get(target)["value"]

    def seal_late() -> None:
        wait_until(lambda: etcd.get(target)["value"] != first, 30, interval=0.002, what="the first pass to re-seal the value")
        etcd.put(target, json.dumps({"config": {"secrets": {"TOKEN": {"sealed": stale.encrypt(OTHER.encode()).decode(), "setAt": "u"}}}}))

    late = threading.Thread(target=seal_late)
    late.start()
    count = rotate(etcd.store(), path)
    late.join(30)
    fresh = Keyring(path)
    assert len(path.read_text().split()) == 1
    assert opened(json.loads(etcd.get(target)["value"])["config"]["secrets"], fresh) == {"TOKEN": OTHER}
    assert all(opened(json.loads(etcd.get(key)["value"])["config"]["secrets"], fresh) == {"TOKEN": SECOND} for key in fillers)
    assert count >= len(fillers) + 1


def start(script: str, suite: dict[str, Any], key_file: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PAZ_ETCD_ENDPOINTS": suite["etcd"].url, "PAZ_ETCD_API": suite["etcd"].api,
           "PAZ_PORT": "1", "PAZ_SECRETS_KEY_FILE": str(key_file)}
    return subprocess.run([str(VENV_BIN / script)], env=env, capture_output=True, text=True, timeout=30)


@pytest.mark.parametrize("script", ["paz-service-directory", "paz-scheduler"])
@pytest.mark.parametrize(("content", "sentence"), [
    (None, "does not exist"),
    ("not-a-key", "does not hold a secrets key"),
    ("another", "does not hold the key this suite's secrets are sealed with"),
])
def test_a_missing_or_wrong_key_file_stops_the_service_at_start_naming_it(suite: dict[str, Any], tmp_path: Path, script: str,
                                                                         content: str | None, sentence: str) -> None:
    key_file = tmp_path / "secrets.key"
    if content == "another":
        write_key_file(key_file, [new_key()])
    elif content is not None:
        key_file.write_text(content)
    started = start(script, suite, key_file)
    assert started.returncode == 2, started.stderr
    assert str(key_file) in started.stderr and sentence in started.stderr
    assert "Traceback" not in started.stderr
