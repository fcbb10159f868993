#!/usr/bin/env python3
"""Push-to-serving of a small image: ``paz push`` against ``docker build`` + ``docker push`` + ``docker run`` by hand.

Starts its own etcd, directory, scheduler, orchestrator and registry (``paz registry serve``) on
127.0.0.1, with tokens required, and uses a Docker Engine (its own dockerd, or PAZ_TEST_DOCKER_HOST's)
with the tests' busybox image as the base. Each round changes the page the image serves (its
``MESSAGE``), so every build makes a new image, and measures:

* reference: the real ``docker`` command, logged in with a deploy token: ``docker build``, ``docker
  push``, ``docker run -d -p 127.0.0.1::8000``, then until the container answers the new page; then it
  is removed;
* paz: ``paz push <service> <folder>`` until a unit serves the new page (asked every 20 ms while
  it runs), and until it exits (the old version drained, PAZ_DRAIN_SECONDS=0.5, and stopped).

Prints the medians of both and their difference. Bounded: ROUNDS rounds.
Run: .venv/bin/python -m bench.registry_push
"""

from __future__ import annotations

import statistics
import subprocess
import threading
import time
import uuid
from pathlib import Path

import requests

from bench import scratch, spread
from tests.support import DockerEngine, build_test_image, running, wait_until
from tests.support.image_registry import DockerCommand, RegistrySuite

ROUNDS = 3
BASE = "paz-bench/registry-base:1"
LABEL = f"paz.bench={uuid.uuid4().hex[:8]}"


def folder_serving(root: Path, message: str) -> Path:
    folder = root / message
    folder.mkdir()
    (folder / "Dockerfile").write_text(f"FROM {BASE}\nENV MESSAGE={message}\n")
    return folder


def answers(url: str, message: str) -> bool:
    try:
        return requests.get(url, timeout=1).text == message
    except requests.RequestException:
        return False


def reference_round(docker: DockerCommand, suite: RegistrySuite, root: Path, message: str) -> float:
    image = f"{suite.registry.address}/by-hand:{message}"
    started = time.monotonic()
    for argv in (("build", "-q", "-t", image, str(folder_serving(root, message))), ("push", "-q", image),
                 ("run", "-d", "--label", LABEL, "-p", "127.0.0.1::8000", image)):
        done = docker(*argv)
        if done.returncode != 0:
            raise SystemExit(f"docker {argv[0]} failed: {done.stderr}")
    container = done.stdout.strip()
    port = docker("port", container, "8000/tcp").stdout.split(":")[-1].strip()
    wait_until(lambda: answers(f"http://127.0.0.1:{port}/", message), 30, 0.01, what="the container serving")
    elapsed = time.monotonic() - started
    docker("rm", "-f", container)
    return elapsed


def serving_page(suite: RegistrySuite, name: str, message: str) -> bool:
    """Whether a healthy unit of ``name`` serves ``message``."""
    units = suite.orchestrator.request("GET", f"/services/{name}/units").json()
    return any(answers(f"http://{u['host']}:{u['port']}/", message) for u in units if u.get("healthy"))


def paz_round(suite: RegistrySuite, name: str, root: Path, message: str) -> tuple[float, float]:
    """``(until the new page is served, until paz push exits)``: its exit waits for the old version to stop too."""
    started = time.monotonic()
    done: list[subprocess.CompletedProcess[str]] = []
    command = threading.Thread(target=lambda: done.append(suite.paz("push", name, str(folder_serving(root, message)))))
    command.start()
    wait_until(lambda: serving_page(suite, name, message) or bool(done), 120, 0.02, what="the new version serving")
    serving = time.monotonic() - started
    command.join(240)
    if not done or done[0].returncode != 0:
        raise SystemExit(f"paz push failed: {done[0].stderr if done else 'it did not end'}")
    return serving, time.monotonic() - started


def main() -> None:
    workdir = scratch("paz-bench-registry-")
    engine = DockerEngine()
    with running(engine):
        build_test_image(engine, BASE)
        suite = RegistrySuite(engine, workdir, PAZ_INSTANCE_LABELS=LABEL, PAZ_DRAIN_SECONDS="0.5",
                              PAZ_STOP_TIMEOUT="2")
        with running(suite):
            docker = DockerCommand(engine.host, workdir / "docker-config")
            if docker.login(suite.registry.address, suite.tokens["deploy"]).returncode != 0:
                raise SystemExit("docker login failed")
            name = f"bench-{uuid.uuid4().hex[:6]}"
            suite.register(name)
            reference, pushed, served = [], [], []
            try:
                for number in range(1, ROUNDS + 1):
                    reference.append(reference_round(docker, suite, workdir, f"by-hand-{number}"))
                    serving, exited = paz_round(suite, name, workdir, f"paz-push-{number}")
                    served.append(serving)
                    pushed.append(exited)
            finally:
                suite.scheduler.request("POST", f"/services/{name}/stop", timeout=60)
                for container in engine.client().containers.list(all=True, filters={"label": LABEL}):
                    container.remove(force=True)
    print(f"{ROUNDS} rounds, a busybox image of {BASE} with one ENV changed per round, registry {suite.registry.address}")
    print(f"by hand: docker build + push + run, until it serves  {spread(reference)}")
    print(f"paz push: build + push + deploy, until it serves     {spread(served)}")
    print(f"paz push, until it exits (the old version stopped)   {spread(pushed)}")
    print(f"overhead, paz push -> serving vs by hand: {(statistics.median(served) - statistics.median(reference)) * 1000:.0f} ms")


if __name__ == "__main__":
    main()
