"""The ``paz`` command as a person uses it every day, run through its real entry point in a
pseudo-terminal against the suite started for real on free ports (etcd, directory, scheduler with the
docker driver on a real Docker Engine, orchestrator), found through ``PAZ_URL``: create a service
from the seed's JSON, deploy with progress, change config, roll back, scale, follow logs, fail a deploy.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import VENV_BIN, DockerEngine, build_test_image
from tests.support.docker_suite import KNOWN_STDOUT, DockerSuite, build_talking_image, say
from tests.support.swarm import started
from tests.support.terminal import Terminal, run

IMAGE = "paz-test/talking:1"
EXIT_IMAGE = "paz-test/talking:exit"
SEED_SERVICE = {  # contrived-service-1.json, exactly as the seed's walkthrough writes it
    "name": "contrived-service-1", "description": "Test service", "dockerImage": "lukebond/contrived-service-1",
    "ports": [{"container": 9000, "host": 80}], "autoDeploy": "always", "numInstances": 1,
    "conflictsWith": "contrived-service-*",
}


@pytest.fixture(scope="module")
def suite(docker_engine: DockerEngine, tmp_path_factory: pytest.TempPathFactory) -> Iterator[DockerSuite]:
    build_talking_image(docker_engine, IMAGE)
    build_test_image(docker_engine, EXIT_IMAGE, extra_changes=['CMD ["/bin/sh", "-c", "echo broken; exit 1"]'])
    with started(DockerSuite(docker_engine, tmp_path_factory.mktemp("cli"))) as running:
        yield running


@pytest.fixture(scope="module")
def env(suite: DockerSuite) -> dict[str, str]:
    return {"PAZ_URL": suite.orchestrator.url}


def piped(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """The command with its output going to a script, not a terminal."""
    return subprocess.run([str(VENV_BIN / "paz"), *args], capture_output=True, text=True, timeout=120, env={**os.environ, **env})


def write_json(folder: Path, name: str, document: dict) -> str:
    path = folder / name
    path.write_text(json.dumps(document, indent=2))
    return str(path)


def test_create_deploy_config_rollback_scale_as_a_person(suite, env, tmp_path):
    code, screen = run("create", write_json(tmp_path, "contrived-service-1.json", SEED_SERVICE), env=env)
    assert code == 0 and "created contrived-service-1 (lukebond/contrived-service-1)" in screen, screen
    code, screen = run("create", write_json(tmp_path, "talk.json", {"name": "talk", "dockerImage": IMAGE}), env=env)
    assert code == 0, screen

    deploying = Terminal("deploy", "talk", env=env)
    for shown in ("v1 taken: deploying paz-test/talking:1", "image pulled: paz-test/talking:1",
                  "instances started 1/1 (talk-1-1)", "serving: v1 runs", "old version stopped (none was running)"):
        deploying.expect(shown)
    assert deploying.finish() == 0
    assert deploying.screen.rstrip().endswith("deployed talk v1 (paz-test/talking:1)")
    assert "\x1b[" in deploying.raw  # colour, on a terminal

    code, screen = run("config", "talk", "MESSAGE=second one", env=env)
    assert code == 0 and "env MESSAGE" in screen and "second one" in screen, screen
    code, screen = run("deploy", "talk", env=env)
    assert code == 0 and "old version stopped (talk-1-1)" in screen and screen.rstrip().endswith("deployed talk v2 (paz-test/talking:1)")

    code, screen = run("rollback", "talk", "1", env=env)
    assert code == 0 and "old version stopped (talk-2-1)" in screen, screen
    assert screen.rstrip().endswith("rolled back talk to v1 as v3 (paz-test/talking:1)")

    scaling = Terminal("scale", "talk", "2", env=env)
    scaling.expect("instances started 1/2")
    scaling.expect("instances started 2/2")
    assert scaling.finish() == 0 and scaling.screen.rstrip().endswith("scaled talk to 2 instance(s) as v4")

    history = piped("history", "talk", "--json", env=env)
    assert history.returncode == 0 and "\x1b[" not in history.stdout  # no colour for a script
    assert [(v["version"], v["status"], v.get("rollbackOf")) for v in json.loads(history.stdout)] == [
        (4, "running", None), (3, "replaced", 1), (2, "replaced", None), (1, "replaced", None)]
    units = json.loads(piped("service", "talk", "--json", env=env).stdout)["units"]
    assert sorted((u["id"], u["state"]) for u in units) == [("talk-4-1", "running"), ("talk-4-2", "running")]
    code, screen = run("services", env=env)
    assert code == 0 and screen.splitlines()[0].split() == ["NAME", "IMAGE", "INSTANCES", "DESCRIPTION"]
    assert any(line.split()[:3] == ["talk", IMAGE, "2"] for line in screen.splitlines()), screen


def test_config_sets_and_removes_a_secret_and_shows_only_its_name(suite, env, tmp_path):
    code, screen = run("create", write_json(tmp_path, "keeper.json", {"name": "keeper", "dockerImage": IMAGE}), env=env)
    assert code == 0, screen
    code, screen = run("config", "keeper", "--secret", "DB_PASSWORD=s3cret; $(id)", "MODE=x", env=env)
    assert code == 0 and "secret DB_PASSWORD" in screen and "set 20" in screen and "env MODE" in screen, screen
    assert "s3cret" not in screen and "changed DB_PASSWORD, MODE" in screen
    code, screen = run("config", "keeper", "--secret", "1BAD=v", env=env)
    assert code != 0 and "environment variable name" in screen, screen
    code, screen = run("config", "keeper", "--secret", "no-equals-sign", env=env)
    assert code == 2 and "no-equals-sign" not in screen, screen
    code, screen = run("config", "keeper", "--unset-secret", "DB_PASSWORD", env=env)
    assert code == 0 and "secret DB_PASSWORD" not in screen, screen


def test_logs_follow_sees_a_new_line(suite, env, tmp_path):
    code, screen = run("create", write_json(tmp_path, "follow-me.json", {"name": "follow-me", "dockerImage": IMAGE}), env=env)
    assert code == 0, screen
    watching = Terminal("events", "--service", "follow-me", env=env)
    watching.expect("following the events of follow-me (Ctrl-C stops)")
    assert run("deploy", "follow-me", env=env)[0] == 0
    watching.expect('deploy-finished follow-me {"deployedAt"')
    watching.expect("instance-up follow-me")
    assert watching.interrupt() == 0 and "service-created" not in watching.screen  # only what came after it started
    following = Terminal("logs", "follow-me", "-f", env=env)
    following.expect(f"follow-me-1-1 | {KNOWN_STDOUT}")
    printed = say(suite.container("follow-me-1-1"), "a new line while following")
    shown = following.expect("follow-me-1-1 | a new line while following", timeout=5)
    assert shown - printed < 2.0
    assert following.interrupt() == 0

    code, screen = run("logs", "follow-me", "--unit", "follow-me-1-1", "--tail", "1", env=env)
    assert code == 0 and screen.strip() == "a new line while following", screen
    lines = piped("logs", "follow-me", "--json", env=env).stdout.splitlines()
    assert {"unit": "follow-me-1-1", "stream": "stdout", "text": KNOWN_STDOUT} in [
        {k: json.loads(line)[k] for k in ("unit", "stream", "text")} for line in lines]


def test_a_failed_deploy_shows_its_reason_and_exits_non_zero(suite, env, tmp_path):
    assert run("create", write_json(tmp_path, "breaks.json", {"name": "breaks", "dockerImage": IMAGE}), env=env)[0] == 0
    assert run("deploy", "breaks", env=env)[0] == 0
    failing = Terminal("deploy", "breaks", EXIT_IMAGE, env=env)
    failing.expect("v2 taken: deploying paz-test/talking:exit")
    failing.expect("failed: v2 of breaks was not deployed: breaks-2-1 exited with code 1")
    assert failing.finish() == 1
    assert "paz deploy: v2 of breaks was not deployed: breaks-2-1 exited with code 1" in failing.screen
    assert "v1 keeps serving" in failing.screen and "Traceback" not in failing.screen


def test_mistakes_are_one_sentence_and_their_exit_code_says_which(suite, env, tmp_path):
    code, screen = run("logs", "no-such-service", env=env)
    assert code == 2 and "no part named 'no-such-service'" in screen and len(screen.strip().splitlines()) == 1, screen
    code, screen = run("rollback", "talk-never", "3", env=env)
    assert code == 2 and screen.startswith("paz rollback: "), screen
    (tmp_path / "broken.json").write_text("{not json")
    code, screen = run("create", str(tmp_path / "broken.json"), env=env)
    assert code == 2 and screen.startswith("paz create: ") and "is not JSON" in screen, screen
    code, screen = run("services", env={"PAZ_URL": "http://127.0.0.1:9"})
    assert code == 3 and "does not answer" in screen, screen
