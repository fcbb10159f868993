"""Benchmark: GET /services/<name> on paz-service-directory under 50 concurrent clients, against a
raw etcd v2 GET of the same key measured in the same run, for each WSGI server candidate.

A directory read is served from the worker's view of etcd (no etcd round trip), so what is left is
HTTP, Flask, flask-smorest and JSON on top; raw etcd (Go, one process) is the reference. Both are
loaded by wrk (a C load generator, so the client is not the bottleneck) for the same duration and
connection count. Candidates, each as ``paz.server`` runs it (``PAZ_WORKER_CLASS``): gunicorn's gthread and
sync workers, gevent's server in one process, and granian's WSGI interface (the directory's own).

    .venv/bin/python -m bench.directory_get [--seconds 10] [--connections 50] [--workers 2] [--servers gthread,gevent]
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import tempfile
from pathlib import Path


from bench import wrk_table
from tests.support import EtcdServer, Service

NAME = "bench-demo-api"
GUNICORN_WORKERS = ("gthread", "gevent", "sync")

def wrk(url: str, seconds: int, connections: int) -> dict[str, float]:
    """Requests per second and p50/p99 latency (ms) of ``url`` under wrk."""
    binary = shutil.which("wrk")
    if not binary:
        raise SystemExit("wrk is not installed: run bin/setup (as root) or apt-get install wrk")
    out = subprocess.run(
        [binary, "-t2", f"-c{connections}", f"-d{seconds}s", "--latency", url],
        capture_output=True, text=True, timeout=seconds + 30, check=True,
    ).stdout
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    percentiles = dict(re.findall(r"^\s+(50|99)%\s+([\d.]+\w+)", out, re.M))
    return {"rps": rate, "p50_ms": _ms(percentiles["50"]), "p99_ms": _ms(percentiles["99"]),
            "errors": int(errors.group(1)) if errors else 0}

def _ms(text: str) -> float:
    value, unit = re.match(r"([\d.]+)(\w+)", text).groups()
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]

def directory(etcd: EtcdServer, tmp: Path, server: str, workers: int, threads: int) -> Service:
    """The directory as ``paz.server`` runs it under ``server`` (``PAZ_WORKER_CLASS``)."""
    env = {"PAZ_WORKERS": str(workers), "PAZ_THREADS": str(threads), "PAZ_WORKER_CLASS": server, "PAZ_LOG_LEVEL": "WARNING"}
    return Service("paz-service-directory", etcd, tmp, env=env).start()

def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--servers", default="gthread,gevent,sync,granian")
    args = parser.parse_args()
    servers = args.servers.split(",")
    results: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory(prefix="paz-bench-") as tmp:
        etcd = EtcdServer(Path(tmp), api="2").start()  # the reference is a v2 GET: etcd serves it only with --enable-v2
        try:
            etcd.put(f"/paz/directory/services/{NAME}", json.dumps({"name": NAME, "dockerRepository": "lukebond/demo-api", "config": {}}))
            results["raw etcd v2 GET"] = wrk(f"{etcd.url}/v2/keys/paz/directory/services/{NAME}", args.seconds, args.connections)
            for server in servers:
                running = directory(etcd, Path(tmp), server, args.workers, args.threads)
                try:
                    results[server] = wrk(f"http://127.0.0.1:{running.port}/services/{NAME}", args.seconds, args.connections)
                finally:
                    running.stop()
        finally:
            etcd.stop()
    print(f"GET /services/{NAME}, {args.connections} connections, {args.seconds} s each, {args.workers} workers "
          f"({args.threads} threads where the server has threads); 2 cores shared by wrk, etcd and the server")
    wrk_table(results, "raw etcd v2 GET", "of etcd")
    print(json.dumps(results))

if __name__ == "__main__":
    main()
