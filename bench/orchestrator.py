"""Benchmark: the orchestrator against what it stands in front of, measured in the same run.

1. Event fan-out: ``--streams`` (2,000) Server-Sent Events clients open ``/events`` on one
   orchestrator at once (127.0.0.1, asyncio sockets in this process), then ``--changes`` (100) config
   changes are written to etcd; for each change, the time from sending the write to each
   client receiving its event (changes ``--interval`` apart), beside one raw etcd watch (etcd's own
   HTTP API, v2 or v3) on the same key. Also: how many clients were refused, how many events were
   missed, how many etcd watches the orchestrator held and the orchestrator's memory (resident, its
   process and its withdrawer). Bounded: every phase has a deadline, the client count is fixed.
2. The front door: GET /services/<name> on paz-orchestrator (answered from its view of etcd)
   against the same GET on paz-service-directory, both under wrk (same duration and connections).

    .venv/bin/python -m bench.orchestrator [--streams 2000] [--changes 100] [--interval 0.25] [--seconds 10] [--connections 50]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import resource
import statistics
import tempfile
import time
from pathlib import Path

import psutil

from bench import wrk_table
from bench.directory_get import wrk
from tests.support import EtcdServer, RawWatch, Service

NAME = "bench-demo-api"
KEY = f"/paz/directory/services/{NAME}"
EVENT_ID = re.compile(rb"^id: (\d+)$", re.M)
OPEN_DEADLINE = 60.0
DELIVERY_DEADLINE = 60.0


def document(message: str) -> str:
    return json.dumps({"name": NAME, "dockerRepository": "lukebond/demo-api", "config": {"env": {"MESSAGE": message}}})


class Clients:
    """``count`` SSE clients on asyncio sockets; ``arrivals[client][event id]`` is when each event came."""

    def __init__(self, port: int, count: int) -> None:
        self.port = port
        self.count = count
        self.arrivals: list[dict[int, float]] = [{} for _ in range(count)]
        self.opened = 0
        self.open_numbers: list[int] = []
        self.refused: list[str] = []
        self.writers: list[asyncio.StreamWriter] = []

    async def open_all(self) -> None:
        gate = asyncio.Semaphore(200)  # connect in waves, as browser tabs would, not 2,000 SYNs at once
        self.tasks = [asyncio.create_task(self._follow(i, gate)) for i in range(self.count)]
        deadline = time.monotonic() + OPEN_DEADLINE
        while self.opened + len(self.refused) < self.count and time.monotonic() < deadline:
            await asyncio.sleep(0.1)

    async def _follow(self, number: int, gate: asyncio.Semaphore) -> None:
        async with gate:
            try:
                reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
                writer.write(f"GET /events?service={NAME} HTTP/1.0\r\nAccept: text/event-stream\r\n\r\n".encode())
                status = await asyncio.wait_for(reader.readline(), 30)
            except (OSError, asyncio.TimeoutError) as exc:
                self.refused.append(repr(exc))
                return
            if b" 200 " not in status:
                self.refused.append(status.decode(errors="replace").strip())
                return
            self.writers.append(writer)
            self.open_numbers.append(number)
            self.opened += 1
        arrivals, pending = self.arrivals[number], b""
        try:
            while data := await reader.read(1 << 16):  # cheaper than a readline per line: the client must not be the bound
                now = time.monotonic()
                complete, _, pending = (pending + data).rpartition(b"\n")
                for found in EVENT_ID.finditer(complete):
                    arrivals[int(found.group(1))] = now
        except OSError:
            return

    def close(self) -> None:
        for writer in self.writers:
            writer.close()
        for task in self.tasks:
            task.cancel()


def figures(sent: dict[int, float], followers: list[dict[int, float]]) -> dict[str, float]:
    values = sorted((arrived[i] - at) * 1000 for arrived in followers for i, at in sent.items() if i in arrived)
    missed = sum(1 for arrived in followers for i in sent if i not in arrived)
    if not values:
        return {"p50_ms": 0, "p99_ms": 0, "max_ms": 0, "deliveries": 0, "missed": missed}
    return {
        "p50_ms": round(statistics.median(values), 2),
        "p99_ms": round(values[max(0, int(len(values) * 0.99) - 1)], 2),
        "max_ms": round(values[-1], 2),
        "deliveries": len(values),
        "missed": missed,
    }


def memory_mb(service: Service) -> dict[str, float]:
    master = psutil.Process(service.process.proc.pid)
    parts = [master, *master.children(recursive=True)]
    return {"total_mb": round(sum(p.memory_info().rss for p in parts) / 2**20, 1), "processes": len(parts)}


async def fan_out(orchestrator: Service, etcd: EtcdServer, streams: int, changes: int, interval: float) -> dict:
    etcd.put(KEY, document("start"))
    before = etcd.watchers()
    clients = Clients(orchestrator.port, streams)
    opened_at = time.monotonic()
    await clients.open_all()
    open_seconds = time.monotonic() - opened_at
    held = etcd.watchers() - before
    reference = RawWatch(etcd, KEY).start()
    await asyncio.sleep(0.5)
    memory = memory_mb(orchestrator)
    sent = {}
    for i in range(changes):
        sending = time.monotonic()
        sent[await asyncio.to_thread(etcd.put, KEY, document(str(i)))] = sending
        await asyncio.sleep(interval)
    deadline = time.monotonic() + DELIVERY_DEADLINE
    while time.monotonic() < deadline and any(len(clients.arrivals[n]) < changes for n in clients.open_numbers):
        await asyncio.sleep(0.2)
    clients.close()
    reference.stop()
    raw = {index: at for index, (_, at) in reference.delivered.items()}
    return {
        "clients": streams, "opened": clients.opened, "refused": len(clients.refused),
        "refusals": sorted(set(clients.refused))[:5], "open_seconds": round(open_seconds, 2),
        "orchestrator_etcd_watches": held, "orchestrator_memory": memory,
        "events": figures(sent, [clients.arrivals[n] for n in clients.open_numbers]),
        "raw_watch": figures(sent, [raw]),
    }


def allow_open_files(count: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < count:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(count, hard), hard))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--streams", type=int, default=2000)
    parser.add_argument("--changes", type=int, default=100)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--interval", type=float, default=0.25, help="seconds between changes")
    args = parser.parse_args()
    allow_open_files(args.streams + 1024)
    quiet = {"PAZ_LOG_LEVEL": "WARNING"}
    with tempfile.TemporaryDirectory(prefix="paz-bench-") as tmp:
        etcd = EtcdServer(Path(tmp)).start()
        orchestrator = Service("paz-orchestrator", etcd, Path(tmp), env=quiet)
        directory = Service("paz-service-directory", etcd, Path(tmp), env=quiet)
        try:
            orchestrator.start()
            events = asyncio.run(fan_out(orchestrator, etcd, args.streams, args.changes, args.interval))
            directory.start()
            direct = wrk(f"{directory.url}/services/{NAME}", args.seconds, args.connections)
            relayed = wrk(f"{orchestrator.url}/services/{NAME}", args.seconds, args.connections)
        finally:
            directory.stop()
            orchestrator.stop()
            etcd.stop()
    print(f"/events: {args.streams} clients on one orchestrator (one process, granian embedded on uvloop), "
          f"{args.changes} changes {args.interval} s apart; the clients are asyncio sockets in this process, on the same 2 cores")
    print(f"opened {events['opened']}, refused {events['refused']} {events['refusals'] or ''} in {events['open_seconds']} s; "
          f"etcd watches held by the orchestrator: {events['orchestrator_etcd_watches']}; "
          f"memory {events['orchestrator_memory']['total_mb']} MB over {events['orchestrator_memory']['processes']} processes")
    print(f"{'delivery, write -> event':<28}{'p50 ms':>10}{'p99 ms':>10}{'max ms':>10}{'received':>10}{'missed':>8}")
    for label, got in (("raw etcd watch (1)", events["raw_watch"]), (f"/events ({events['opened']})", events["events"])):
        print(f"{label:<28}{got['p50_ms']:>10.2f}{got['p99_ms']:>10.2f}{got['max_ms']:>10.2f}{got['deliveries']:>10}{got['missed']:>8}")
    print(f"\nGET /services/{NAME}, {args.connections} connections, {args.seconds} s each")
    wrk_table({"paz-service-directory": direct, "paz-orchestrator": relayed}, "paz-service-directory", "of dir.")
    print(json.dumps({"events": events, "directory": direct, "orchestrator": relayed}))


if __name__ == "__main__":
    main()
