"""The suite's image registry, as a person uses it: Debian's docker-registry started by ``paz registry
serve`` on a free loopback port, the real ``docker`` command logging in with paz tokens and pushing,
the scheduler (docker driver, tokens required) deploying what is pushed, and ``paz push`` building a
folder's Dockerfile and deploying it. Everything runs for real on 127.0.0.1."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.support import DockerEngine, build_test_image, wait_until
from tests.support.image_registry import DockerCommand, RegistrySuite, bearer

BASE = "paz-test/registry-base:1"
KEEP = 2


@pytest.fixture(scope="module")
def suite(docker_engine: DockerEngine, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RegistrySuite]:
    build_test_image(docker_engine, BASE)
    running = RegistrySuite(docker_engine, tmp_path_factory.mktemp("registry"), PAZ_KEEP_VERSIONS=str(KEEP))
    try:
        yield running.start()
    finally:
        running.stop()


@pytest.fixture
def docker(suite: RegistrySuite, tmp_path: Path) -> DockerCommand:
    return DockerCommand(suite.engine.host, tmp_path / "docker-config")


def folder_with(tmp_path: Path, dockerfile: str) -> Path:
    (tmp_path / "Dockerfile").write_text(dockerfile)
    return tmp_path


def test_anonymous_push_is_refused_and_a_read_token_pulls_only(suite, docker, unique_name):
    image = f"{suite.registry.address}/{unique_name}:1"
    assert docker("tag", BASE, image).returncode == 0
    anonymous = docker("push", image)
    assert anonymous.returncode != 0 and "unauthorized: authentication required" in anonymous.stderr, anonymous
    refused = docker.login(suite.registry.address, "paz_not-a-token")
    assert refused.returncode != 0 and "unauthorized" in refused.stderr.lower(), refused
    assert docker.login(suite.registry.address, suite.tokens["read"]).returncode == 0
    denied = docker("push", image)
    assert denied.returncode != 0 and "denied" in denied.stderr + denied.stdout, denied
    assert docker.login(suite.registry.address, suite.tokens["deploy"]).returncode == 0
    assert docker("push", image).returncode == 0
    assert docker.login(suite.registry.address, suite.tokens["read"]).returncode == 0
    assert docker("rmi", image).returncode == 0
    pulled = docker("pull", image)
    assert pulled.returncode == 0, pulled


def test_a_push_deploys_followers_with_auto_deploy_always_only(suite, docker, unique_name):
    follower, bystander = unique_name, f"{unique_name}-never"
    suite.register(follower, autoDeploy="always", env={"MESSAGE": "followed"})
    repository = f"{suite.registry.address}/{follower}"
    answer = suite.orchestrator.request("POST", "/services", headers=bearer(suite.tokens["admin"]), json={
        "name": bystander, "dockerRepository": repository, "config": {"autoDeploy": "never"}})
    assert answer.status_code == 201, answer.text
    assert docker.login(suite.registry.address, suite.tokens["deploy"]).returncode == 0
    assert docker("tag", BASE, f"{repository}:7").returncode == 0
    assert docker("push", f"{repository}:7").returncode == 0

    def running() -> dict[str, Any] | None:
        return next((v for v in suite.history(follower) if v["status"] == "running"), None)

    version = wait_until(running, 30, 0.2, what=f"{follower} running the pushed image")
    assert version["dockerRepository"] == f"{repository}:7"
    assert suite.served(follower) == "followed"
    assert suite.history(bystander) == []
    assert len(suite.history(follower)) == 1


def test_a_push_nobody_follows_is_journaled_and_runs_nothing(suite, docker, unique_name):
    image = f"{suite.registry.address}/{unique_name}:1"
    assert docker.login(suite.registry.address, suite.tokens["deploy"]).returncode == 0
    assert docker("tag", BASE, image).returncode == 0
    assert docker("push", image).returncode == 0

    def journaled() -> dict[str, Any] | None:
        entries = suite.orchestrator.request("GET", "/journal", params={"service": unique_name}).json()
        return next((e for e in entries if e["type"] == "push-ignored"), None)

    entry = wait_until(journaled, 15, 0.2, what="the ignored push in the journal")
    assert entry["image"] == image and "no service" in entry["message"]
    units = suite.scheduler.request("GET", "/units").json()
    assert not [u for u in units if u["image"] == image]


def test_the_registry_hook_needs_a_deploy_token(suite):
    body = {"events": [{"action": "push", "target": {"repository": "anything", "tag": "1"}}]}
    assert suite.scheduler.request("POST", "/hooks/registry", json=body).status_code == 401
    assert suite.scheduler.request("POST", "/hooks/registry", json=body, headers=bearer(suite.tokens["read"])).status_code == 403
    for body in ({"events": "no"}, {"events": [{"action": "push", "target": {"repository": "web\n; $(id)", "tag": "1"}}]}):
        bad = suite.scheduler.request("POST", "/hooks/registry", json=body, headers=bearer(suite.tokens["deploy"]))
        assert bad.status_code == 400 and "events" in bad.text, bad.text


def test_paz_push_builds_pushes_deploys_and_shows_progress(suite, unique_name, tmp_path):
    suite.register(unique_name)
    folder = folder_with(tmp_path, f"FROM {BASE}\nENV MESSAGE=built-by-paz-push\n")
    done = suite.paz("push", unique_name, str(folder))
    assert done.returncode == 0, done.stderr + done.stdout
    image = f"{suite.registry.address}/{unique_name}:1"
    for shown in ("Step 1/2 : FROM", f"pushing {image}", "digest: sha256:", "serving: v1 runs", f"pushed and deployed {unique_name} v1"):
        assert shown in done.stdout, done.stdout
    assert suite.served(unique_name) == "built-by-paz-push"


def test_a_service_registered_without_an_image_gets_its_first_one_from_paz_push(suite, unique_name, tmp_path):
    answer = suite.orchestrator.request("POST", "/services", json={"name": unique_name}, headers=bearer(suite.tokens["admin"]))
    assert answer.status_code == 201 and answer.json()["dockerRepository"] == f"{suite.registry.address}/{unique_name}", answer.text
    nothing = suite.orchestrator.request("POST", f"/services/{unique_name}/deploy", json={}, headers=bearer(suite.tokens["deploy"]),
                                         timeout=90)
    assert nothing.status_code == 422 and "does not exist" in nothing.json()["error"]["message"], nothing.text
    done = suite.paz("push", unique_name, str(folder_with(tmp_path, f"FROM {BASE}\nENV MESSAGE=first-image\n")))
    assert done.returncode == 0, done.stderr + done.stdout
    assert suite.served(unique_name) == "first-image"


def test_paz_push_to_a_service_that_deploys_on_pushes_deploys_once(suite, unique_name, tmp_path):
    suite.register(unique_name, autoDeploy="always")
    done = suite.paz("push", unique_name, str(folder_with(tmp_path, f"FROM {BASE}\nENV MESSAGE=once\n")))
    assert done.returncode == 0, done.stderr + done.stdout
    assert suite.served(unique_name) == "once"
    assert [v["version"] for v in suite.history(unique_name)] == [1]


def test_a_dockerfile_that_fails_to_build_deploys_nothing(suite, unique_name, tmp_path):
    suite.register(unique_name)
    failed = suite.paz("push", unique_name, str(folder_with(tmp_path, f"FROM {BASE}\nRUN exit 3\n")))
    assert failed.returncode == 1, failed
    assert "The build failed" in failed.stderr and "returned a non-zero code: 3" in failed.stderr, failed.stderr
    assert suite.history(unique_name) == []


def test_paz_push_of_an_unknown_service_or_a_folder_without_dockerfile_is_a_usage_error(suite, unique_name, tmp_path):
    unknown = suite.paz("push", unique_name, str(folder_with(tmp_path, f"FROM {BASE}\n")))
    assert unknown.returncode == 2 and unique_name in unknown.stderr, unknown
    suite.register(unique_name)
    empty = tmp_path / "empty"
    empty.mkdir()
    missing = suite.paz("push", unique_name, str(empty))
    assert missing.returncode == 2 and "has no Dockerfile" in missing.stderr, missing


def test_rollback_after_every_local_copy_is_removed_pulls_from_the_registry(suite, docker, unique_name, tmp_path):
    suite.register(unique_name)
    for message in ("first", "second"):
        folder = tmp_path / message
        folder.mkdir()
        done = suite.paz("push", unique_name, str(folder_with(folder, f"FROM {BASE}\nENV MESSAGE={message}\n")))
        assert done.returncode == 0, done.stderr + done.stdout
    first = f"{suite.registry.address}/{unique_name}:1"
    assert docker("rmi", first).returncode == 0
    assert docker("image", "inspect", first).returncode != 0
    rolled = suite.paz("rollback", unique_name, "1")
    assert rolled.returncode == 0, rolled.stderr + rolled.stdout
    assert suite.served(unique_name) == "first"


def registry_token(suite: RegistrySuite, repository: str) -> str:
    """A registry token to read ``repository``, bought as docker login does (basic auth, a paz token as password)."""
    answer = suite.scheduler.request("GET", "/registry/token", auth=("paz", suite.tokens["read"]),
                                     params={"service": "paz-registry", "scope": f"repository:{repository}:pull"})
    assert answer.status_code == 200, answer.text
    return answer.json()["token"]


def test_images_beyond_keep_versions_are_deleted_from_the_registry(suite, unique_name, tmp_path):
    suite.register(unique_name)
    for number in range(1, KEEP + 2):
        folder = tmp_path / str(number)
        folder.mkdir()
        done = suite.paz("push", unique_name, str(folder_with(folder, f"FROM {BASE}\nENV MESSAGE=v{number}\n")))
        assert done.returncode == 0, done.stderr + done.stdout
    token = registry_token(suite, unique_name)

    def manifest(tag: int) -> int:
        return requests.head(f"http://{suite.registry.address}/v2/{unique_name}/manifests/{tag}", timeout=5, headers={
            **bearer(token), "Accept": "application/vnd.docker.distribution.manifest.v2+json"}).status_code

    wait_until(lambda: manifest(1) == 404, 15, 0.2, what="v1's image deleted from the registry")
    assert [manifest(tag) for tag in range(2, KEEP + 2)] == [200] * KEEP
    entries = suite.orchestrator.request("GET", "/journal", params={"service": unique_name}).json()
    assert [e["version"] for e in entries if e["type"] == "image-deleted"] == [1]
    suite.engine.client().images.remove(f"{suite.registry.address}/{unique_name}:1", force=True)
    gone = suite.orchestrator.request("POST", f"/services/{unique_name}/rollback", json={"version": 1},
                                      headers=bearer(suite.tokens["deploy"]), timeout=90)
    assert gone.status_code == 422 and "does not exist" in gone.json()["error"]["message"], gone.text


def test_a_registry_token_grants_only_what_the_role_allows(suite):
    def actions(token: str, scope: str) -> list[Any]:
        answer = suite.scheduler.request("GET", "/registry/token", auth=("paz", token), params={"scope": scope})
        assert answer.status_code == 200, answer.text
        claims = answer.json()["token"].split(".")[1]
        return json.loads(base64.urlsafe_b64decode(claims + "=" * (-len(claims) % 4)))["access"]

    assert actions(suite.tokens["read"], "repository:app:pull,push") == [{"type": "repository", "name": "app", "actions": ["pull"]}]
    assert actions(suite.tokens["deploy"], "repository:app:pull,push,delete")[0]["actions"] == ["pull", "push"]
    assert suite.scheduler.request("GET", "/registry/token").status_code == 401
    assert suite.scheduler.request("GET", "/registry/token", auth=("someone", suite.tokens["admin"])).status_code == 401


def test_the_registry_down_is_a_503_naming_it(suite, docker, unique_name, tmp_path):
    suite.register(unique_name)
    done = suite.paz("push", unique_name, str(folder_with(tmp_path, f"FROM {BASE}\nENV MESSAGE=kept\n")))
    assert done.returncode == 0, done.stderr + done.stdout
    image = f"{suite.registry.address}/{unique_name}:1"
    suite.registry.stop()
    try:
        again = suite.paz("push", unique_name, str(tmp_path))
        assert again.returncode == 3 and f"paz-registry at {suite.registry.address} does not answer" in again.stderr, again
        assert docker("rmi", "-f", image).returncode == 0
        answer = suite.orchestrator.request("POST", f"/services/{unique_name}/rollback", json={"version": 1},
                                            headers=bearer(suite.tokens["deploy"]), timeout=90)
        assert answer.status_code == 503 and "paz-registry" in answer.json()["error"]["message"], answer.text
    finally:
        suite.registry.start()
