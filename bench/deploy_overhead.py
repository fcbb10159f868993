#!/usr/bin/env python3
"""Hook-to-serving time of a 3-instance deploy through paz-scheduler, against plain ``docker run``.

Starts its own etcd, directory and scheduler on 127.0.0.1 and uses a Docker Engine (its own
dockerd, or PAZ_TEST_DOCKER_HOST's), with the tests' busybox image. Each round:

* reference: three ``docker run`` (docker SDK) of the image with an ephemeral port, then waiting
  until each accepts connections (the same probe the scheduler uses), then removing them;
* paz: ``POST /hooks/deploy`` of the next version until its three instances are announced in etcd
  and answer HTTP (serving), and until the hook answers (the old version drained and stopped too).

Prints the medians and the overhead (paz serving minus reference). Bounded: ROUNDS rounds.
Run: .venv/bin/python -m bench.deploy_overhead
"""

from __future__ import annotations

import statistics
import threading
import time
import uuid

import requests

from bench import scratch, spread
from tests.support import DockerEngine, EtcdServer, Service, build_test_image, running, wait_until
from paz_scheduler.drivers.base import accepts_connections

ROUNDS = 5
INSTANCES = 3
LABEL = f"paz.bench={uuid.uuid4().hex[:8]}"

def reference_round(engine: DockerEngine, image: str) -> float:
    client = engine.client()
    key, value = LABEL.split("=")
    started = time.monotonic()
    made = [client.containers.run(image, detach=True, labels={key: value}, ports={"8000/tcp": ("127.0.0.1", None)})
            for _ in range(INSTANCES)]
    for container in made:
        container.reload()
        port = int(container.ports["8000/tcp"][0]["HostPort"])
        wait_until(lambda: accepts_connections("127.0.0.1", port), 20, interval=0.01, what="a plain container")
    elapsed = time.monotonic() - started
    for container in made:
        container.remove(force=True)
    return elapsed

def serving(etcd: EtcdServer, name: str, version: int) -> bool:
    addresses = etcd.values_below(f"/paz/services/{name}/{version}").values()
    return len(addresses) == INSTANCES and all(
        requests.get(f"http://{address}/cgi-bin/index", timeout=1).ok for address in addresses
    )

def paz_round(etcd: EtcdServer, scheduler: Service, name: str, version: int) -> tuple[float, float]:
    result: dict[str, requests.Response] = {}
    started = time.monotonic()
    hook = threading.Thread(target=lambda: result.setdefault("answer", scheduler.request(
        "POST", "/hooks/deploy", json={"serviceName": name, "pushedAt": int(time.time())}, timeout=120)))
    hook.start()
    wait_until(lambda: serving(etcd, name, version), 60, interval=0.01, what=f"v{version} serving")
    serve_time = time.monotonic() - started
    hook.join(120)
    hook_time = time.monotonic() - started
    if result["answer"].status_code != 201:
        raise SystemExit(f"deploy failed: {result['answer'].text}")
    return serve_time, hook_time

def main() -> None:
    workdir = scratch("paz-bench-")
    engine, etcd = DockerEngine(), EtcdServer(workdir)
    with running(engine, etcd):
        image = build_test_image(engine)
        directory = Service("paz-service-directory", etcd, workdir)
        scheduler = Service("paz-scheduler", etcd, workdir, env={
            "DOCKER_HOST": engine.host, "PAZ_INSTANCE_LABELS": LABEL, "PAZ_DRAIN_SECONDS": "0.5", "PAZ_STOP_TIMEOUT": "2"})
        with running(directory, scheduler):
            name = f"bench-{uuid.uuid4().hex[:6]}"
            directory.request("POST", "/services", json={"name": name, "dockerRepository": image,
                                                          "numInstances": INSTANCES}).raise_for_status()
            reference, serve, hook = [], [], []
            try:
                for version in range(1, ROUNDS + 1):
                    reference.append(reference_round(engine, image))
                    serve_time, hook_time = paz_round(etcd, scheduler, name, version)
                    serve.append(serve_time)
                    hook.append(hook_time)
            finally:
                scheduler.request("POST", f"/services/{name}/stop", timeout=60)
                key, value = LABEL.split("=")
                for container in engine.client().containers.list(all=True, filters={"label": f"{key}={value}"}):
                    container.remove(force=True)
    print(f"{INSTANCES} instances, {ROUNDS} rounds, image {image}")
    print(f"plain docker run + port open      {spread(reference)}")
    print(f"paz hook -> serving (announced)   {spread(serve)}")
    print(f"paz hook answered (old v stopped) {spread(hook)}  (includes PAZ_DRAIN_SECONDS=0.5 from round 2)")
    print(f"overhead, hook -> serving vs plain: {(statistics.median(serve) - statistics.median(reference)) * 1000:.0f} ms")

if __name__ == "__main__":
    main()
