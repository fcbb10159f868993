#!/usr/bin/env python3
"""Marathon routing: how fast a task change is routed, and what a load sees meanwhile, each against a
reference measured in the same run.

Starts its own etcd, paz-haproxy-sync (and so HAProxy) on free 127.0.0.1 ports, the Marathon stand-in
of the tests (Marathon itself cannot run here) and real HTTP servers as tasks.

(a) propagation: CHANGES times, a new task replaces the app's task (its ``status_update_event``s
    sent on the SSE stream), timed until the new task answers through HAProxy on all three routes:
    the app's name (``<app>.paz``), its ``HAPROXY_0_VHOST`` and its service port. Reference: the same
    change made through etcd (an instance key replaced), haproxy-sync's own path.
(b) loss: LOAD_THREADS keep-alive clients send requests to the app while CHANGES task changes are
    applied; counts failed requests. Reference: the same load with no change.

Run: .venv/bin/python -m bench.marathon_routing
"""

from __future__ import annotations

import statistics
import time

import requests

from bench import scratch
from tests.support import EtcdServer, HaproxySync, IdServer, KeepAliveLoad, free_port, wait_until
from tests.support.marathon_standin import MarathonStandIn

CHANGES = 50
LOAD_THREADS = 4
LOAD_SECONDS = 10.0
APP_ID = "/bench/web"


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(fraction * (len(ordered) - 1))))]


def summary(samples: list[float]) -> str:
    return f"{len(samples)} changes: median {statistics.median(samples) * 1000:.1f} ms, p99 {percentile(samples, 0.99) * 1000:.1f} ms"


def answers(url: str, host: str, ident: str) -> bool:
    try:
        return requests.get(url, headers={"Host": host}, timeout=2).text == ident
    except requests.RequestException:
        return False


def until_routed(routes: list[tuple[str, str]], ident: str, timeout: float = 10.0) -> float:
    """When ``ident`` has answered on every route (polled in turn, so later routes add the polling's own time)."""
    deadline, waiting = time.monotonic() + timeout, list(routes)
    while waiting and time.monotonic() < deadline:
        waiting = [(url, host) for url, host in waiting if not answers(url, host, ident)]
    if waiting:
        raise AssertionError(f"{ident} never answered on {waiting}")
    return time.monotonic()


def port_of(server: IdServer) -> int:
    return int(server.address.rsplit(":", 1)[1])


def marathon_changes(marathon: MarathonStandIn, routes: list[tuple[str, str]], made: list[IdServer]) -> list[float]:
    """A new task replaces the last one for each server of ``made``; the last is killed at the end.

    The servers keep running (the caller stops them at the end), so a killed task's in-flight requests finish.
    """
    samples = []
    for number, server in enumerate(made):
        started = time.monotonic()
        marathon.set_task(APP_ID, server.ident, "127.0.0.1", [port_of(server)])
        if number:
            marathon.set_task(APP_ID, made[number - 1].ident, "127.0.0.1", [port_of(made[number - 1])], state="TASK_KILLED")
        samples.append(until_routed(routes, server.ident) - started)
    marathon.set_task(APP_ID, made[-1].ident, "127.0.0.1", [port_of(made[-1])], state="TASK_KILLED")
    return samples


def servers(prefix: str, count: int) -> list[IdServer]:
    return [IdServer(f"{prefix}{number}").start() for number in range(count)]


def etcd_changes(etcd: EtcdServer, route: tuple[str, str], count: int) -> list[float]:
    samples, made = [], servers("e", count)
    try:
        for number, server in enumerate(made):
            started = time.monotonic()
            etcd.put(f"/paz/services/bench-etcd/1/{number}", server.address)
            if number:
                requests.delete(f"{etcd.url}/v2/keys/paz/services/bench-etcd/1/{number - 1}", timeout=2)
            samples.append(until_routed([route], server.ident) - started)
    finally:
        for server in made:
            server.stop()
    return samples


def main() -> None:
    folder = scratch("paz-bench-marathon-")
    etcd = EtcdServer(folder).start()
    marathon = MarathonStandIn().start()
    sync = HaproxySync(etcd, folder).start()
    tasks: list[IdServer] = []
    try:
        etcd.put("/paz/config/marathon", marathon.url)
        service_port = free_port()
        marathon.put_app(APP_ID, labels={"HAPROXY_0_VHOST": "web.example.com"}, portDefinitions=[{"port": service_port}])
        router = f"http://127.0.0.1:{sync.http_port}/"
        routes = [(router, "web-bench.paz"), (router, "web.example.com"), (f"http://127.0.0.1:{service_port}/", "x")]
        wait_until(lambda: "no live instance" in requests.get(routes[2][0], timeout=2).text, 20, what="the app's backend and port ready")
        tasks = servers("m", CHANGES)
        print("(a) task change -> first answer from the new task on name, vhost and service port")
        print(f"    Marathon SSE event, all three: {summary(marathon_changes(marathon, routes, tasks))}")
        by_name = servers("n", CHANGES)
        tasks += by_name
        print(f"    Marathon SSE event, name only: {summary(marathon_changes(marathon, routes[:1], by_name))}")
        print(f"    reference, etcd instance key:  {summary(etcd_changes(etcd, (router, 'bench-etcd.paz'), CHANGES))}")

        steady = IdServer("steady").start()
        tasks.append(steady)
        marathon.set_task(APP_ID, "steady", "127.0.0.1", [port_of(steady)])
        wait_until(lambda: answers(router, "web-bench.paz", "steady"), 5, what="the steady task routed")
        changing = servers("l", CHANGES)
        tasks += changing
        with KeepAliveLoad(router, "web-bench.paz", clients=LOAD_THREADS) as changed:
            marathon_changes(marathon, routes[:1], changing)
        with KeepAliveLoad(router, "web-bench.paz", clients=LOAD_THREADS) as reference:
            time.sleep(LOAD_SECONDS)
        print(f"(b) failed requests, {LOAD_THREADS} keep-alive clients")
        print(f"    during {CHANGES} task changes: {len(changed.failures)} of {changed.sent}")
        print(f"    reference, no change:     {len(reference.failures)} of {reference.sent}")
    finally:
        for server in tasks:
            server.stop()
        sync.stop()
        marathon.stop()
        etcd.stop()


if __name__ == "__main__":
    main()
