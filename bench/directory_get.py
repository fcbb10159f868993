"""Benchmark: GET /services/<name> on paz-service-directory under 50 concurrent clients, through
gunicorn, against a raw etcd v2 GET of the same key measured in the same run.

Every directory read is an etcd read plus HTTP, JSON and Flask on top, so raw etcd is the physical
bound; the ratio says how much of it the directory keeps. Both are loaded by wrk (a C load
generator, so the client is not the bottleneck) for the same duration and connection count.

    .venv/bin/python -m bench.directory_get [--seconds 10] [--connections 50] [--workers N]
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

from tests.support import EtcdServer, Service

NAME = "bench-demo-api"

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

def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=8)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="paz-bench-") as tmp:
        etcd = EtcdServer(Path(tmp)).start()
        directory = Service("paz-service-directory", etcd, Path(tmp),
                            env={"PAZ_WORKERS": str(args.workers), "PAZ_THREADS": str(args.threads), "PAZ_LOG_LEVEL": "WARNING"})
        try:
            directory.start()
            created = directory.request("POST", "/services", json={"name": NAME, "dockerRepository": "lukebond/demo-api"})
            assert created.status_code == 201, created.text
            raw = wrk(f"{etcd.url}/v2/keys/paz/directory/services/{NAME}", args.seconds, args.connections)
            paz = wrk(f"{directory.url}/services/{NAME}", args.seconds, args.connections)
        finally:
            directory.stop()
            etcd.stop()
    print(f"GET /services/{NAME}, {args.connections} connections, {args.seconds} s each, "
          f"gunicorn {args.workers} workers x {args.threads} threads")
    print(f"{'':<22}{'req/s':>10}{'p50 ms':>10}{'p99 ms':>10}{'errors':>8}")
    for label, figures in (("raw etcd v2 GET", raw), ("paz-service-directory", paz)):
        print(f"{label:<22}{figures['rps']:>10.0f}{figures['p50_ms']:>10.2f}{figures['p99_ms']:>10.2f}{figures['errors']:>8}")
    ratio = paz["rps"] / raw["rps"]
    print(f"throughput ratio directory/etcd: {ratio:.2f} (aim: at least 0.5)")
    print(json.dumps({"raw_etcd": raw, "directory": paz, "ratio": round(ratio, 3)}))

if __name__ == "__main__":
    main()
