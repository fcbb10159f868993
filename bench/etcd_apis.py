#!/usr/bin/env python3
"""The suite on etcd's v2 and v3 APIs side by side, in one run: haproxy-sync's propagation and a
deploy's hook-to-serving, each API measured against the other.

Each API gets its own etcd (v2: ``--enable-v2`` and ``PAZ_ETCD_API=2``; v3: no v2 API and
``PAZ_ETCD_API=3``), its own paz-haproxy-sync, directory and scheduler; both schedulers share one
Docker Engine. Rounds alternate between the APIs, so whatever else the machine does weighs on both.

(a) propagation: an instance key written -> the first 200 from that instance through HAProxy
    (:func:`bench.haproxy_sync.measure_propagation`), PROPAGATION_CHANGES per API in batches of BATCH;
(b) deploy: ``POST /hooks/deploy`` -> its INSTANCES instances announced and serving
    (:func:`bench.deploy_overhead.paz_round`), DEPLOY_ROUNDS per API.

Prints median and p99 of each, and v3 as a share of v2. Run: .venv/bin/python -m bench.etcd_apis
"""

from __future__ import annotations

import statistics
import uuid
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

from bench import scratch
from bench.deploy_overhead import INSTANCES, LABEL, paz_round
from bench.haproxy_sync import measure_propagation, percentile
from tests.support import DockerEngine, EtcdServer, HaproxySync, IdServer, Service, build_test_image, running, wait_until

APIS = ("2", "3")
PROPAGATION_CHANGES, BATCH = 120, 10
DEPLOY_ROUNDS = 6


@dataclass
class Suite:
    """One API's etcd and services, and what was measured on it."""

    api: str
    etcd: EtcdServer
    sync: HaproxySync
    scheduler: Service
    service: str
    propagation: list[float] = field(default_factory=list)
    deploys: list[float] = field(default_factory=list)


def start_suite(api: str, work: Path, engine: DockerEngine, image: str, stack: ExitStack) -> Suite:
    folder = work / f"v{api}"
    folder.mkdir()
    etcd = EtcdServer(folder, api=api)
    sync = HaproxySync(etcd, folder)  # the suite's processes speak their etcd's API
    directory = Service("paz-service-directory", etcd, folder)
    scheduler = Service("paz-scheduler", etcd, folder, env={
        "DOCKER_HOST": engine.host, "PAZ_INSTANCE_LABELS": LABEL, "PAZ_DRAIN_SECONDS": "0.5", "PAZ_STOP_TIMEOUT": "2"})
    stack.enter_context(running(etcd, sync, directory, scheduler))
    service = f"bench-{uuid.uuid4().hex[:6]}"
    directory.request("POST", "/services", json={"name": service, "dockerRepository": image,
                                                 "numInstances": INSTANCES}).raise_for_status()
    etcd.put("/paz/directory/services/prop", '{"name": "prop", "config": {}}')
    wait_until(lambda: "no live instance" in sync.route("prop.paz").text, 10, what=f"the empty backend on v{api}")
    stack.callback(lambda: scheduler.request("POST", f"/services/{service}/stop", timeout=60))
    return Suite(api, etcd, sync, scheduler, service)


def summary(values: list[float]) -> str:
    return f"median {statistics.median(values) * 1000:7.1f} ms, p99 {percentile(values, 0.99) * 1000:7.1f} ms ({len(values)})"


def report(what: str, suites: list[Suite], pick) -> None:
    print(what)
    for suite in suites:
        print(f"    v{suite.api}: {summary(pick(suite))}")
    v2, v3 = (pick(suite) for suite in suites)
    print(f"    v3 / v2: median {statistics.median(v3) / statistics.median(v2):.2f}, "
          f"p99 {percentile(v3, 0.99) / percentile(v2, 0.99):.2f}")


def main() -> None:
    work = scratch("paz-apis-")
    with ExitStack() as stack:
        engine = DockerEngine()
        stack.enter_context(running(engine))
        stack.callback(lambda: [c.remove(force=True) for c in engine.client().containers.list(
            all=True, filters={"label": LABEL})])
        image = build_test_image(engine)
        pool = [IdServer(f"p{n}").start() for n in range(8)]
        stack.callback(lambda: [server.stop() for server in pool])
        suites = [start_suite(api, work, engine, image, stack) for api in APIS]
        for _ in range(PROPAGATION_CHANGES // BATCH):
            for suite in suites:
                suite.propagation += measure_propagation(suite.etcd, suite.sync.http_port, "prop", pool, BATCH)
        for version in range(1, DEPLOY_ROUNDS + 1):
            for suite in suites:
                suite.deploys.append(paz_round(suite.etcd, suite.scheduler, suite.service, version)[0])
        report("(a) haproxy-sync: instance key written -> first 200 from it through HAProxy", suites, lambda s: s.propagation)
        report(f"(b) deploy: hook -> {INSTANCES} instances announced and serving", suites, lambda s: s.deploys)


if __name__ == "__main__":
    main()
