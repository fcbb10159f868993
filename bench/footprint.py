"""Benchmark: the suite as ``paz up`` starts it, its memory per part and its start from cold, beside
references measured in the same run.

- **Start.** ``paz up`` on a fresh state folder (packages installed, nothing running, the Docker
  Engine already up and given by ``DOCKER_HOST``), from the command to its return: every part
  announced and answering, and routed by HAProxy (since 2026-12-06). References, cold in the same run: etcd alone to its ``/health``, and
  one service alone (the directory) to answering and announced.
- **Memory.** Each part's processes (its process tree, and HAProxy with haproxy-sync), some seconds
  after ``paz up`` returned, the Docker Engine aside, counted two ways: proportional set size as the
  kernel counts it (a page mapped by n processes counts 1/n in each, other programs on the machine
  included), and *alone*: the same with only the suite's processes sharing (what it would hold on a
  machine of its own, whatever else runs; needs root to read page frames). References: a bare Python
  interpreter (``python -S``, the floor of any Python process) and etcd, measured alike.

It uses the suite's fixed ports (2379, 9000-9004, 8080, ...) as tests/test_paz_up.py does: run it
where no suite runs, e.g. in a network namespace of its own. Bounded: a few rounds, each up and down.

    .venv/bin/python -m bench.footprint [--rounds 3] [--settle 5]
"""

from __future__ import annotations

import argparse
import array
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import psutil

from tests.support import DockerEngine, EtcdServer, Service, paz_command

MB = 2**20
PAGE = os.sysconf("SC_PAGE_SIZE")
PFN = (1 << 55) - 1
"""The frame number's bits in a pagemap entry."""


def tree(pid: int) -> list[psutil.Process]:
    """``pid``'s process and its descendants (none when it is gone)."""
    try:
        root = psutil.Process(pid)
        return [root, *root.children(recursive=True)]
    except psutil.Error:
        return []


def pss(processes: list[psutil.Process]) -> float:
    """MB of proportional set size of ``processes``, as the kernel counts it."""
    total = 0
    for process in processes:
        try:
            total += process.memory_full_info().pss
        except psutil.Error:
            pass
    return total / MB


def frames(pid: int) -> set[int]:
    """The physical pages ``pid`` has in memory, by frame number (``/proc/<pid>/pagemap``; needs root,
    else every frame reads 0); empty when it is gone."""
    found: set[int] = set()
    start = end = 0
    try:
        with open(f"/proc/{pid}/smaps") as smaps, open(f"/proc/{pid}/pagemap", "rb") as pagemap:
            for line in smaps:
                first = line.split(None, 1)[0]
                if "-" in first:
                    start, end = (int(address, 16) for address in first.split("-"))
                elif first == "Rss:" and line.split()[1] != "0":
                    pagemap.seek(start // PAGE * 8)
                    entries = array.array("Q", pagemap.read((end - start) // PAGE * 8))
                    found.update(entry & PFN for entry in entries if entry >> 63)
    except OSError:
        pass
    return found


def alone(parts: dict[str, list[psutil.Process]]) -> dict[str, float]:
    """MB per part of its pages shared out among the suite's own processes only: a page n of them map
    counts 1/n in each, a page shared with anything else on the machine counts in full. The kernel's
    proportional set size also divides a page with other programs mapping it (other Pythons, other
    etcds), so it shrinks while others run; this is what the suite would hold on a machine of its own."""
    pages = {name: [frames(process.pid) for process in processes] for name, processes in parts.items()}
    mapped = Counter(frame for held in pages.values() for one in held for frame in one)
    return {name: sum(1 / mapped[frame] for one in held for frame in one) * PAGE / MB for name, held in pages.items()}


def parts_processes(state: Path) -> dict[str, list[psutil.Process]]:
    """The processes of each part that ``paz up`` recorded a pid for, and HAProxy: a part of its own,
    though its master is haproxy-sync's child (so it is taken out of haproxy-sync's tree)."""
    pid_files = {path.stem: path for path in (state / "run").glob("*.pid") if path.stem not in ("dockerd.self", "docker")}
    pid_files["haproxy"] = state / "haproxy" / "haproxy.pid"
    parts = {name: tree(int(path.read_text().split()[0])) for name, path in sorted(pid_files.items()) if path.exists()}
    haproxy = {process.pid for process in parts.get("haproxy", [])}
    return {name: [p for p in processes if name == "haproxy" or p.pid not in haproxy] for name, processes in parts.items()}


def parts_memory(state: Path) -> dict[str, dict[str, float]]:
    """MB per part: ``pss`` as the kernel counts it, and ``alone`` (see :func:`alone`)."""
    parts = parts_processes(state)
    return {"pss": {name: pss(processes) for name, processes in parts.items()}, "alone": alone(parts)}


def timed_up(state: Path, env: dict[str, str]) -> float:
    started = time.monotonic()
    result = paz_command(state, "up", env=env)
    took = time.monotonic() - started
    if result.returncode != 0:
        raise SystemExit(f"paz up failed:\n{result.stdout}{result.stderr}")
    return took


def references(tmp: Path) -> dict[str, Any]:
    """Cold start of etcd alone and of the directory alone (s), and the memory of a bare interpreter and of etcd
    (MB, ``pss`` and ``alone``, which for one process is all it has in memory)."""
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
        bare_mb = {"pss": pss(tree(bare.pid)), "alone": len(frames(bare.pid)) * PAGE / MB}
        bare.communicate(b"")
        return {"etcd_start": etcd_start, "directory_start": directory_start, "python_mb": bare_mb,
                "etcd_mb": {"pss": pss(tree(etcd.process.proc.pid)), "alone": len(frames(etcd.process.proc.pid)) * PAGE / MB}}
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
    memory: list[dict[str, dict[str, float]]] = []
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
        engine.stop()  # its folder too (data root, sockets, log)
    report(starts, memory, reference)
    print(f"load average (1 min) of this machine: {load_before:.1f} before the run, {os.getloadavg()[0]:.1f} after "
          f"({os.cpu_count()} cores; other work on them slows every figure, references included)")


def report(starts: list[float], memory: list[dict[str, dict[str, float]]], reference: dict[str, Any]) -> None:
    print(f"start from cold, {len(starts)} rounds: paz up {statistics.median(starts):.2f} s median "
          f"({min(starts):.2f} to {max(starts):.2f}; aim 4 s); references in the same run: "
          f"etcd alone {reference['etcd_start']:.2f} s, the directory alone {reference['directory_start']:.2f} s")
    print(f"\nmemory (MB, median of {len(memory)} rounds), the Docker Engine aside: proportional set size as the kernel "
          "counts it, and alone (pages shared only among the suite's processes; see alone())")
    names = sorted({name for reading in memory for name in reading["pss"]})
    for name in names:
        print(f"  {name:<20}" + "".join(f"{statistics.median(reading[kind].get(name, 0.0) for reading in memory):>8.1f}"
                                        for kind in ("pss", "alone")))
    totals = {kind: [sum(reading[kind].values()) for reading in memory] for kind in ("pss", "alone")}
    print(f"  {'total':<20}" + "".join(f"{statistics.median(totals[kind]):>8.1f}" for kind in totals)
          + "   (aim 300; " + ", ".join(f"{kind} {min(totals[kind]):.1f} to {max(totals[kind]):.1f}" for kind in totals) + ")")
    python, etcd = reference["python_mb"], reference["etcd_mb"]
    print(f"references in the same run: a bare Python interpreter (python -S) {python['pss']:.1f} MB, alone {python['alone']:.1f}; "
          f"etcd alone {etcd['pss']:.1f} MB, alone {etcd['alone']:.1f}")


if __name__ == "__main__":
    main()
