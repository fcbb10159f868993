"""Benchmark: the suite as ``paz up`` starts it, its memory per part and its start from cold, beside
references measured in the same run.

- **Start.** ``paz up`` on a fresh state folder (packages installed, nothing running, the Docker
  Engine already up and given by ``DOCKER_HOST``), from the command to its return: every part
  announced and answering. References, cold in the same run: etcd alone to its ``/health``, and
  one service alone (the directory) to answering and announced.
- **Memory.** Each part's processes (its process tree, and HAProxy with haproxy-sync) summed as
  proportional set size (a page shared by n processes counts 1/n in each: the sum is what the
  suite holds), some seconds after ``paz up`` returned; the Docker Engine aside. References: a bare
  Python interpreter (``python -S``, the floor of any Python process) and etcd, measured alike.

It uses the suite's fixed ports (2379, 9000-9004, 8080, ...) as tests/test_paz_up.py does: run it
where no suite runs, e.g. in a network namespace of its own. Bounded: a few rounds, each up and down.

    .venv/bin/python -m bench.footprint [--rounds 3] [--settle 5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

from tests.support import DockerEngine, EtcdServer, Service, paz_command

MB = 2**20


def pss(pid: int) -> float:
    """MB of proportional set size of ``pid`` and its descendants (0 when it is gone)."""
    try:
        root = psutil.Process(pid)
        total = 0
        for process in [root, *root.children(recursive=True)]:
            try:
                total += process.memory_full_info().pss
            except psutil.Error:
                pass
        return total / MB
    except psutil.Error:
        return 0.0


def parts_memory(state: Path) -> dict[str, float]:
    """MB per part that ``paz up`` recorded a pid for (and HAProxy, which haproxy-sync leaves running)."""
    pid_files = {path.stem: path for path in (state / "run").glob("*.pid") if path.stem not in ("dockerd.self", "docker")}
    pid_files["haproxy"] = state / "haproxy" / "haproxy.pid"
    return {name: pss(int(path.read_text().split()[0])) for name, path in sorted(pid_files.items()) if path.exists()}


def timed_up(state: Path, env: dict[str, str]) -> float:
    started = time.monotonic()
    result = paz_command(state, "up", env=env)
    took = time.monotonic() - started
    if result.returncode != 0:
        raise SystemExit(f"paz up failed:\n{result.stdout}{result.stderr}")
    return took


def references(tmp: Path) -> dict[str, float]:
    """Cold start of etcd alone and of the directory alone (s), and the memory of a bare interpreter and of etcd (MB)."""
    (tmp / "reference").mkdir()
    started = time.monotonic()
    etcd = EtcdServer(tmp / "reference").start()
    etcd_start = time.monotonic() - started
    try:
        started = time.monotonic()
        directory = Service("paz-service-directory", etcd, tmp / "reference", env={"PAZ_WORKERS": "1"}).start()
        directory_start = time.monotonic() - started
        directory.stop()
        bare = subprocess.Popen([sys.executable, "-S", "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE)
        time.sleep(0.5)
        bare_mb = pss(bare.pid)
        bare.communicate(b"")
        return {"etcd_start": etcd_start, "directory_start": directory_start, "python_mb": bare_mb,
                "etcd_mb": pss(etcd.process.proc.pid)}
    finally:
        etcd.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--settle", type=float, default=5.0, help="seconds between paz up's return and the memory reading")
    args = parser.parse_args()
    load_before = os.getloadavg()[0]
    engine = DockerEngine().start()
    env = {"DOCKER_HOST": engine.host}
    starts: list[float] = []
    memory: list[dict[str, float]] = []
    try:
        with tempfile.TemporaryDirectory(prefix="paz-bench-") as tmp:
            reference = references(Path(tmp))
            for round_ in range(args.rounds):
                state = Path(tmp) / f"state-{round_}"
                try:
                    starts.append(timed_up(state, env))
                    time.sleep(args.settle)
                    memory.append(parts_memory(state))
                finally:
                    paz_command(state, "down", env=env)
    finally:
        if engine.process:
            engine.process.stop()
    report(starts, memory, reference)
    print(f"load average (1 min) of this machine: {load_before:.1f} before the run, {os.getloadavg()[0]:.1f} after "
          f"({os.cpu_count()} cores; other work on them slows every figure, references included)")


def report(starts: list[float], memory: list[dict[str, float]], reference: dict[str, float]) -> None:
    print(f"start from cold, {len(starts)} rounds: paz up {statistics.median(starts):.2f} s median "
          f"({min(starts):.2f} to {max(starts):.2f}; aim 4 s); references in the same run: "
          f"etcd alone {reference['etcd_start']:.2f} s, the directory alone {reference['directory_start']:.2f} s")
    print(f"\nmemory (proportional set size, MB, median of {len(memory)} rounds), the Docker Engine aside:")
    names = sorted({name for reading in memory for name in reading})
    for name in names:
        values = [reading.get(name, 0.0) for reading in memory]
        print(f"  {name:<20}{statistics.median(values):>8.1f}")
    totals = [sum(reading.values()) for reading in memory]
    print(f"  {'total':<20}{statistics.median(totals):>8.1f}   (aim 300; {min(totals):.1f} to {max(totals):.1f})")
    print(f"references in the same run: a bare Python interpreter (python -S) {reference['python_mb']:.1f} MB, "
          f"etcd alone {reference['etcd_mb']:.1f} MB")


if __name__ == "__main__":
    main()
