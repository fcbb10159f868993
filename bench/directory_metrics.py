"""Benchmark: what counting requests costs the directory's hot read, ``GET /services/<name>``.

The same directory (its default server and workers) is started with ``PAZ_METRICS=false`` (the
reference) and ``PAZ_METRICS=true`` in the same run, each loaded by wrk for the same time and
connections, in turns (off, on, off, on, ...) so a drift of the machine falls on both alike; each
figure is the median of its turns. With metrics on, every read adds a counter and a histogram
observation in prometheus-client's multiprocess files.

    .venv/bin/python -m bench.directory_metrics [--seconds 10] [--connections 50] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
from pathlib import Path

from bench import wrk_table
from bench.directory_get import NAME, wrk
from tests.support import EtcdServer, Service


def measure(etcd: EtcdServer, folder: Path, metrics: bool, seconds: int, connections: int) -> dict[str, float]:
    directory = Service("paz-service-directory", etcd, folder, env={"PAZ_METRICS": str(metrics).lower(), "PAZ_LOG_LEVEL": "WARNING"}).start()
    try:
        return wrk(f"{directory.url}/services/{NAME}", seconds, connections)
    finally:
        directory.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    runs: dict[str, list[dict[str, float]]] = {"metrics off": [], "metrics on": []}
    with tempfile.TemporaryDirectory(prefix="paz-bench-") as tmp:
        etcd = EtcdServer(Path(tmp)).start()
        try:
            etcd.put(f"/paz/directory/services/{NAME}", json.dumps({"name": NAME, "dockerRepository": "lukebond/demo-api", "config": {}}))
            for _ in range(args.rounds):
                for label, metrics in (("metrics off", False), ("metrics on", True)):
                    runs[label].append(measure(etcd, Path(tmp), metrics, args.seconds, args.connections))
        finally:
            etcd.stop()
    median = {label: {key: statistics.median(run[key] for run in got) for key in got[0]} for label, got in runs.items()}
    print(f"GET /services/{NAME}, {args.connections} connections, {args.seconds} s x {args.rounds} turns each (median); "
          "2 cores shared by wrk, etcd and the directory")
    wrk_table(median, "metrics off", "of off")
    print(json.dumps(runs))


if __name__ == "__main__":
    main()
