#!/usr/bin/env python3
"""Hook-to-serving time of a 3-instance deploy with the swarm driver, against a plain ``docker service
create`` of the same image, in the same run.

Starts a single-node swarm of its own (a dockerd in a network namespace, as the tests do; needs
root), an etcd, the directory and the scheduler with ``PAZ_DRIVER=swarm``. Each round:

* reference: ``docker service create`` (the same API request, through the docker SDK) of the image
  with 3 replicas and host-mode ephemeral ports, then waiting until each task's published port
  accepts connections (the probe the scheduler uses), then removing the service;
* paz: ``POST /hooks/deploy`` of the next version until its three instances are announced in etcd
  and answer HTTP (serving), and until the hook answers (the old version drained and removed too).

Prints the medians. Bounded: ROUNDS rounds. Run: .venv/bin/python -m bench.swarm_deploy
"""

from __future__ import annotations

import statistics
import time
import uuid

from docker.types import ContainerSpec, EndpointSpec, ServiceMode, TaskTemplate

from bench.deploy_overhead import INSTANCES, ROUNDS, paz_round
from bench import scratch
from tests.support import EtcdServer, Service, build_test_image, running, wait_until
from paz_scheduler.drivers.base import accepts_connections
from tests.support.swarm import SwarmCluster, swarm_scheduler_env

IMAGE = "paz-test/hello:1"

def reference_round(cluster: SwarmCluster) -> float:
    api = cluster.manager.client().api
    name = f"plain-{uuid.uuid4().hex[:6]}"
    started = time.monotonic()
    service_id = api.create_service(
        TaskTemplate(ContainerSpec(IMAGE)), name=name, mode=ServiceMode("replicated", replicas=INSTANCES),
        endpoint_spec=EndpointSpec(ports=[{"Protocol": "tcp", "TargetPort": 8000, "PublishMode": "host"}]))["ID"]

    def all_accept() -> bool:
        tasks = [t for t in api.tasks(filters={"service": name}) if t["DesiredState"] == "running"
                 and t["Status"]["State"] == "running"]
        ports = {p["PublishedPort"] for t in tasks for p in t["Status"].get("PortStatus", {}).get("Ports", [])}
        return len(tasks) == INSTANCES and all(accepts_connections(cluster.manager.address, port) for port in ports)

    wait_until(all_accept, 60, interval=0.01, what="the plain service's tasks")
    elapsed = time.monotonic() - started
    api.remove_service(name)
    wait_until(lambda: not [t for t in api.tasks() if t["ServiceID"] == service_id and t["Status"]["State"] == "running"],
               30, what="the plain service's tasks to stop")
    return elapsed

def main() -> None:
    workdir = scratch("paz-bench-")
    cluster, etcd = SwarmCluster(1, octet=3), EtcdServer(workdir)
    try:
        cluster.start()
        build_test_image(cluster.manager, IMAGE)
        with running(etcd):
            directory = Service("paz-service-directory", etcd, workdir)
            scheduler = Service("paz-scheduler", etcd, workdir, env=swarm_scheduler_env(cluster.manager))
            with running(directory, scheduler):
                name = f"bench-{uuid.uuid4().hex[:6]}"
                directory.request("POST", "/services", json={"name": name, "dockerRepository": IMAGE,
                                                              "numInstances": INSTANCES}).raise_for_status()
                reference, serve, hook = [], [], []
                for version in range(1, ROUNDS + 1):
                    reference.append(reference_round(cluster))
                    serve_time, hook_time = paz_round(etcd, scheduler, name, version)
                    serve.append(serve_time)
                    hook.append(hook_time)
                scheduler.request("POST", f"/services/{name}/stop", timeout=60)
    finally:
        cluster.stop()
    ms = lambda values: f"median {statistics.median(values) * 1000:7.0f} ms  (min {min(values) * 1000:.0f}, max {max(values) * 1000:.0f})"  # noqa: E731
    print(f"swarm (1 node), {INSTANCES} instances, {ROUNDS} rounds, image {IMAGE}")
    print(f"plain docker service create + ports open  {ms(reference)}")
    print(f"paz hook -> serving (announced)           {ms(serve)}")
    print(f"paz hook answered (old version removed)   {ms(hook)}  (PAZ_DRAIN_SECONDS=0.5, stop grace 2 s from round 2)")
    print(f"overhead, hook -> serving vs plain: {(statistics.median(serve) - statistics.median(reference)) * 1000:.0f} ms")

if __name__ == "__main__":
    main()
