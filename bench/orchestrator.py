"""Benchmark: the orchestrator against what it stands in front of, measured in the same run.

1. Relay cost: GET /services/<name> through paz-orchestrator against the same GET on
   paz-service-directory, both under wrk (same duration and connections). The orchestrator adds one
   HTTP hop, so the directory is the bound.
2. Event latency: N Server-Sent Events clients on /events and N raw etcd v2 watchers on the service's
   key follow the same sequence of config PATCHes; for each change, the time from sending the PATCH to
   each client receiving it. The raw etcd watch is the bound.

    .venv/bin/python -m bench.orchestrator [--seconds 10] [--connections 50] [--streams 20] [--changes 100]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import threading
import time
from pathlib import Path

import requests

from bench.directory_get import wrk
from tests.support import EtcdServer, EventStream, Service

NAME = "bench-demo-api"

def sse_follower(url: str, changes: int, arrivals: list[float], ready: threading.Barrier) -> None:
    stream = EventStream(f"{url}/events?service={NAME}", read_timeout=30)
    ready.wait()
    try:
        for _ in range(changes):
            stream.until(lambda e: e["event"] == "config-changed", 1, timeout=60)
            arrivals.append(time.monotonic())
    finally:
        stream.close()

def etcd_follower(etcd_url: str, changes: int, arrivals: list[float], ready: threading.Barrier) -> None:
    key = f"{etcd_url}/v2/keys/paz/directory/services/{NAME}"
    index = int(requests.get(key, timeout=5).headers["X-Etcd-Index"]) + 1
    session = requests.Session()
    ready.wait()
    for _ in range(changes):
        node = session.get(key, params={"wait": "true", "waitIndex": index}, timeout=60).json()["node"]
        arrivals.append(time.monotonic())
        index = node["modifiedIndex"] + 1

def latencies(sent: list[float], followers: list[list[float]]) -> dict[str, float]:
    values = sorted((arrived[i] - sent[i]) * 1000 for arrived in followers for i in range(len(sent)))
    return {
        "p50_ms": round(statistics.median(values), 2),
        "p99_ms": round(values[int(len(values) * 0.99) - 1], 2),
        "max_ms": round(values[-1], 2),
        "deliveries": len(values),
    }

def event_latency(orchestrator: Service, etcd: EtcdServer, directory: Service, streams: int, changes: int) -> tuple[dict, dict]:
    sse: list[list[float]] = [[] for _ in range(streams)]
    raw: list[list[float]] = [[] for _ in range(streams)]
    ready = threading.Barrier(2 * streams + 1, timeout=30)
    threads = [threading.Thread(target=sse_follower, args=(orchestrator.url, changes, a, ready)) for a in sse]
    threads += [threading.Thread(target=etcd_follower, args=(etcd.url, changes, a, ready)) for a in raw]
    for thread in threads:
        thread.start()
    ready.wait()
    time.sleep(0.5)  # every stream is open and waiting
    sent = []
    for i in range(changes):
        sent.append(time.monotonic())
        directory.request("PATCH", f"/services/{NAME}/config", json={"env": {"MESSAGE": str(i)}}).raise_for_status()
        time.sleep(0.02)
    for thread in threads:
        thread.join(60)
    return latencies(sent, sse), latencies(sent, raw)

def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--streams", type=int, default=20)
    parser.add_argument("--changes", type=int, default=100)
    args = parser.parse_args()
    quiet = {"PAZ_LOG_LEVEL": "WARNING"}
    with tempfile.TemporaryDirectory(prefix="paz-bench-") as tmp:
        etcd = EtcdServer(Path(tmp)).start()
        directory = Service("paz-service-directory", etcd, Path(tmp), env=quiet)
        orchestrator = Service("paz-orchestrator", etcd, Path(tmp), env=quiet)
        try:
            directory.start()
            orchestrator.start()
            created = directory.request("POST", "/services", json={"name": NAME, "dockerRepository": "lukebond/demo-api"})
            assert created.status_code == 201, created.text
            direct = wrk(f"{directory.url}/services/{NAME}", args.seconds, args.connections)
            relayed = wrk(f"{orchestrator.url}/services/{NAME}", args.seconds, args.connections)
            sse, raw = event_latency(orchestrator, etcd, directory, args.streams, args.changes)
        finally:
            orchestrator.stop()
            directory.stop()
            etcd.stop()
    print(f"GET /services/{NAME}, {args.connections} connections, {args.seconds} s each (2 workers each)")
    print(f"{'':<28}{'req/s':>10}{'p50 ms':>10}{'p99 ms':>10}{'errors':>8}")
    for label, figures in (("paz-service-directory", direct), ("paz-orchestrator (relayed)", relayed)):
        print(f"{label:<28}{figures['rps']:>10.0f}{figures['p50_ms']:>10.2f}{figures['p99_ms']:>10.2f}{figures['errors']:>8}")
    ratio = relayed["rps"] / direct["rps"]
    print(f"throughput ratio orchestrator/directory: {ratio:.2f} (one more HTTP hop; aim: at least 0.4)")
    print(f"\nevent latency, PATCH sent -> event received, {args.streams} clients each x {args.changes} changes")
    print(f"{'':<28}{'p50 ms':>10}{'p99 ms':>10}{'max ms':>10}{'received':>10}")
    for label, figures in (("raw etcd v2 watch", raw), ("paz-orchestrator /events", sse)):
        print(f"{label:<28}{figures['p50_ms']:>10.2f}{figures['p99_ms']:>10.2f}{figures['max_ms']:>10.2f}{figures['deliveries']:>10}")
    print(json.dumps({"directory": direct, "orchestrator": relayed, "ratio": round(ratio, 3), "events": sse, "raw_watch": raw}))

if __name__ == "__main__":
    main()
