#!/usr/bin/env python3
"""paz-haproxy-sync: propagation, loss during changes, and scale, each against a reference in the same run.

Starts its own etcd, paz-haproxy-sync (and so HAProxy) on free 127.0.0.1 ports, and real HTTP servers
(:class:`helpers.IdServer`) as instances.

(a) propagation: write an instance key, time until the first 200 through HAProxy *from that
    instance*; PROPAGATION_CHANGES times. References: a raw etcd watch (etcd's own HTTP API) on the
    same keys, timed from the same writes to its delivery of them, the floor any watcher starts
    from; and the same measurement against a second HAProxy driven the way paz's confd did it: read
    etcd every 5 seconds, render, check, reload. Because each confd sample costs ~2.5 s, it takes
    REFERENCE_CHANGES samples (fewer than 100).
(b) loss: LOAD_THREADS clients (keep-alive sessions) send requests to one service while 100 instance
    changes (adds and removals of that service's servers) and 10 new services (reloads) are applied;
    counts failed requests. Reference: the same load with no change applied.
(d) TLS: new HTTPS connections a second (a full handshake each) against new plain HTTP connections
    through the same HAProxy; and a service made public to its first HTTPS answer (an ACME order from
    Debian's pebble) against its first plain HTTP answer.
(c) scale: 1,000 services of 5 instances: render, `haproxy -c`, install and seamless reload of a
    running HAProxy, against one server added through the Runtime API at that scale; and haproxy-sync
    started on an etcd holding them until every service is routed.

Run: .venv/bin/python -m bench.haproxy_sync
"""

from __future__ import annotations

import json
import random
import re
import socket
import ssl
import statistics
import tempfile
import threading
import time
from pathlib import Path

import requests

from tests.support import EtcdServer, HaproxySync, IdServer, RawWatch, free_port, wait_until
from tests.support.pebble import Pebble
from paz_haproxy_sync.haproxy import Haproxy
from paz_haproxy_sync.model import Instance, Malformed, Table, parse_instance
from paz_haproxy_sync.render import render
from paz_haproxy_sync.settings import SyncSettings

PROPAGATION_CHANGES = 120
REFERENCE_CHANGES = 20
POLL_SECONDS = 5.0
LOAD_THREADS = 4
SCALE_SERVICES, SCALE_INSTANCES = 1000, 5
TLS_CLIENTS, TLS_SECONDS, TLS_CONNECTIONS = 2, 5.0, 20000
FIRST_ANSWERS = 5
OK = re.compile(rb"HTTP/1\.[01] 200 ")

def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(fraction * (len(ordered) - 1))))]

def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"

def first_answer_from(port: int, host: str, ident: str, timeout: float = 20.0) -> float:
    """Poll HAProxy until ``ident`` answers; return when it did."""
    deadline = time.monotonic() + timeout
    with requests.Session() as session:
        while time.monotonic() < deadline:
            try:
                answer = session.get(f"http://127.0.0.1:{port}/", headers={"Host": host}, timeout=2)
                if answer.status_code == 200 and answer.text == ident:
                    return time.monotonic()
            except requests.RequestException:
                pass
    raise AssertionError(f"{ident} never answered through HAProxy on {port}")

def measure_propagation(etcd: EtcdServer, port: int, service: str, pool: list[IdServer], count: int, phase: float = 0.0,
                        watch: RawWatch | None = None) -> tuple[list[float], list[float]]:
    """Add an instance key, time its first answer, delete the key; ``phase`` spreads changes over a poll period.
    Also the times ``watch`` took to deliver the same writes."""
    samples, delivered = [], []
    for number in range(1, count + 1):
        time.sleep(random.uniform(0, phase))
        server = pool[number % len(pool)]
        key = f"/paz/services/{service}/1/{number}"
        started = time.monotonic()
        etcd.put(key, server.address)
        samples.append(first_answer_from(port, f"{service}.paz", server.ident) - started)
        etcd.delete(key)
        if watch is not None:
            delivered_at = wait_until(lambda: watch.put_at(key), 5, interval=0.01, what=f"the raw watch delivering {key}")
            delivered.append(delivered_at - started)
    return samples, delivered

class PollingReference:
    """paz's confd loop: every 5 s read /paz/services, render, and if it changed check and reload."""

    def __init__(self, etcd: EtcdServer, folder: Path) -> None:
        self.etcd = etcd
        self.settings = SyncSettings(name="bench", haproxy_dir=str(folder), http_port=free_port(), stats_port=free_port(), https_port=0)
        self.haproxy = Haproxy(self.settings)
        self.stop_event = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def table(self) -> Table:
        services: dict[str, list[Instance]] = {"poll": []}
        for path, value in self.etcd.values_below("/paz/services").items():
            try:
                found = parse_instance(f"/paz/services/{path}", value)
                services.setdefault(found.service, []).append(found)
            except Malformed:
                pass
        return Table(None, {name: tuple(sorted(items, key=lambda i: i.name)) for name, items in services.items()})

    def poll(self) -> None:
        text = render(self.table(), self.settings)
        if text != self.haproxy.installed():
            self.haproxy.install(text)
            self.haproxy.reload() if self.haproxy.master_pid() else self.haproxy.start()

    def run(self) -> None:
        while not self.stop_event.wait(POLL_SECONDS):
            self.poll()

    def start(self) -> "PollingReference":
        self.settings.state_dir.mkdir(parents=True, exist_ok=True)
        self.poll()
        self.thread.start()
        return self

    def stop(self) -> None:
        self.stop_event.set()
        self.thread.join(10)
        self.haproxy.stop()

def bench_propagation(etcd: EtcdServer, sync: HaproxySync, work: Path) -> None:
    pool = [IdServer(f"p{n}").start() for n in range(8)]
    etcd.put("/paz/directory/services/prop", '{"name": "prop", "config": {}}')
    etcd.put("/paz/directory/services/poll", '{"name": "poll", "config": {}}')
    wait_until(lambda: sync.route("prop.paz").status_code == 503 and "no live instance" in sync.route("prop.paz").text, 10,
               what="the empty backend")
    watch = RawWatch(etcd, "/paz/services/prop").start()
    try:
        ours, delivered = measure_propagation(etcd, sync.http_port, "prop", pool, PROPAGATION_CHANGES, watch=watch)
    finally:
        watch.stop()
    reference = PollingReference(etcd, work / "poll").start()
    try:
        polled, _ = measure_propagation(etcd, reference.settings.http_port, "poll", pool, REFERENCE_CHANGES, POLL_SECONDS)
    finally:
        reference.stop()
        for server in pool:
            server.stop()
    print("(a) propagation, key written -> first 200 from that instance through HAProxy")
    print(f"    haproxy-sync (watch + Runtime API), {len(ours)} changes: median {ms(statistics.median(ours))}, "
          f"p99 {ms(percentile(ours, 0.99))}, max {ms(max(ours))}")
    print(f"    reference (a raw etcd watch's delivery of the same writes): median {ms(statistics.median(delivered))}, "
          f"p99 {ms(percentile(delivered, 0.99))}, max {ms(max(delivered))}")
    print(f"    reference (5 s polling + reload, as paz's confd), {len(polled)} changes: median "
          f"{ms(statistics.median(polled))}, p99 {ms(percentile(polled, 0.99))}")

def bench_loss(etcd: EtcdServer, sync: HaproxySync) -> None:
    steady = [IdServer(f"s{n}").start() for n in range(3)]
    extra = [IdServer(f"e{n}").start() for n in range(10)]
    for number, server in enumerate(steady, start=1):
        etcd.put(f"/paz/services/loss/1/{number}", server.address)
    wait_until(lambda: len({sync.route("loss.paz").text for _ in range(6)}) == 3, 10, what="the loss service")

    def run_load(changes) -> tuple[int, int, list[str]]:
        done, counts, failures = threading.Event(), [0] * LOAD_THREADS, []

        def client(slot: int) -> None:
            with requests.Session() as session:
                while not done.is_set() and counts[slot] < 20000:
                    try:
                        answer = session.get(f"http://127.0.0.1:{sync.http_port}/", headers={"Host": "loss.paz"}, timeout=5)
                        if answer.status_code != 200:
                            failures.append(f"{answer.status_code}")
                    except requests.RequestException as exc:
                        failures.append(repr(exc)[:120])
                    counts[slot] += 1

        threads = [threading.Thread(target=client, args=(slot,)) for slot in range(LOAD_THREADS)]
        for thread in threads:
            thread.start()
        started = time.monotonic()
        try:
            changes()
        finally:
            time.sleep(1.0)
            done.set()
            for thread in threads:
                thread.join(30)
        return sum(counts), int((time.monotonic() - started) * 1000), failures

    def churn() -> None:
        for number in range(100):  # 100 instance changes: add a server, later remove it
            key = f"/paz/services/loss/2/{number // 2}"
            if number % 2 == 0:
                etcd.put(key, extra[(number // 2) % len(extra)].address)
            else:
                etcd.delete(key)
            time.sleep(0.02)
        for number in range(10):  # 10 new services: each a reload
            etcd.put(f"/paz/services/new{number}/1/1", extra[number].address)
            time.sleep(0.1)
        wait_until(lambda: sync.route("new9.paz").status_code == 200, 10, what="the last new service")

    quiet = run_load(lambda: time.sleep(4))
    busy = run_load(churn)
    for server in steady + extra:
        server.stop()
    print("(b) loss, requests through HAProxy from 4 keep-alive clients")
    print(f"    during 100 instance changes + 10 new services: {busy[2].__len__()} failed of {busy[0]} in {busy[1]} ms"
          + (f" (first: {busy[2][:3]})" if busy[2] else ""))
    print(f"    reference, no changes: {len(quiet[2])} failed of {quiet[0]} in {quiet[1]} ms")

def bench_scale(work: Path) -> None:
    settings = SyncSettings(name="bench", haproxy_dir=str(work / "scale"), http_port=free_port(), stats_port=free_port(), https_port=0)
    settings.state_dir.mkdir(parents=True)
    haproxy = Haproxy(settings)
    services = {
        f"svc{s:04d}": tuple(Instance(f"svc{s:04d}", f"svc{s:04d}-1-{i}", f"127.0.0.1:{20000 + i}") for i in range(1, SCALE_INSTANCES + 1))
        for s in range(SCALE_SERVICES)
    }
    table = Table(None, services)
    haproxy.install(render(Table(None, {}), settings))
    haproxy.start()
    try:
        started = time.monotonic()
        text = render(table, settings)
        rendered = time.monotonic()
        candidate = haproxy.check(text)
        checked = time.monotonic()
        candidate.replace(haproxy.config_path)
        haproxy.reload()
        applied = time.monotonic()
        wait_until(lambda: haproxy.command("show servers state svc0999").count("svc0999-1-") == SCALE_INSTANCES, 10)
        runtime_started = time.monotonic()
        assert "New server registered" in haproxy.command("add server svc0500/extra 127.0.0.1:29999")
        haproxy.command("enable server svc0500/extra")
        runtime = time.monotonic() - runtime_started
    finally:
        haproxy.stop()
    print(f"(c) scale, {SCALE_SERVICES} services x {SCALE_INSTANCES} instances ({len(text) // 1024} KiB config)")
    print(f"    render {ms(rendered - started)}, haproxy -c {ms(checked - rendered)}, install + seamless reload "
          f"{ms(applied - checked)}: total {ms(applied - started)}")
    print(f"    reference at that scale, one server added through the Runtime API (no reload): {ms(runtime)}")

def bench_scale_end_to_end(work: Path) -> None:
    (work / "etcd-scale").mkdir()
    etcd = EtcdServer(work / "etcd-scale").start()
    try:
        for s in range(SCALE_SERVICES):
            for i in range(1, SCALE_INSTANCES + 1):
                etcd.put(f"/paz/services/svc{s:04d}/1/{i}", f"127.0.0.1:{20000 + i}")
        folder = work / "sync-scale"
        folder.mkdir()
        sync = HaproxySync(etcd, folder)
        started = time.monotonic()
        sync.start()
        try:
            status = folder / "haproxy" / "status.json"
            wait_until(lambda: json.loads(status.read_text()).get("services", 0) >= SCALE_SERVICES, 120, interval=0.05,
                       what="1,000 services applied")
            elapsed = time.monotonic() - started
        finally:
            sync.stop()
    finally:
        etcd.stop()
    print(f"    haproxy-sync started on an etcd holding them, until all are in the config HAProxy runs: {ms(elapsed)} "
          "(includes the process's start and reading 5,000 keys)")

def connections_per_second(port: int, host: str, context: ssl.SSLContext | None) -> tuple[float, int]:
    """New connections a second, each one request (``Connection: close``), from TLS_CLIENTS threads;
    with ``context``, each a full TLS handshake (no session is resumed). Bounded in count and time."""
    request = f"GET / HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode()
    counts, deadline = [0] * TLS_CLIENTS, time.monotonic() + TLS_SECONDS

    def client(slot: int) -> None:
        while time.monotonic() < deadline and counts[slot] < TLS_CONNECTIONS:
            with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
                sock = context.wrap_socket(raw, server_hostname=host) if context else raw
                sock.sendall(request)
                answer = b"".join(iter(lambda: sock.recv(65536), b""))
                assert OK.match(answer), answer[:80]
            counts[slot] += 1

    started = time.monotonic()
    threads = [threading.Thread(target=client, args=(slot,)) for slot in range(TLS_CLIENTS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(TLS_SECONDS + 30)
    return sum(counts) / (time.monotonic() - started), sum(counts)


def first_answers(router: HaproxySync, name: str, roots: Path, started: float) -> tuple[float, float]:
    """Seconds from ``started`` to the first 200 over plain HTTP, and over verified HTTPS, for ``name``."""
    context = ssl.create_default_context(cafile=str(roots))
    plain = first_answer_from(router.http_port, name, name.split(".")[0]) - started
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", router.https_port), timeout=2) as raw, \
                    context.wrap_socket(raw, server_hostname=name) as tls:
                tls.sendall(f"GET / HTTP/1.1\r\nHost: {name}\r\nConnection: close\r\n\r\n".encode())
                answer = b"".join(iter(lambda: tls.recv(65536), b""))
            if OK.match(answer):
                return plain, time.monotonic() - started
        except (OSError, ssl.SSLError):
            time.sleep(0.02)
    raise AssertionError(f"{name} never answered over HTTPS: {router.request('GET', '/health').text}")


def bench_tls(work: Path) -> None:
    """(d) TLS: handshakes a second against plain connections, and a new public service's first HTTPS
    answer (an ACME order from a real CA, Debian's pebble) against its first plain HTTP answer."""
    (work / "etcd-tls").mkdir()
    etcd = EtcdServer(work / "etcd-tls").start()
    (work / "router-tls").mkdir()
    router = HaproxySync(etcd, work / "router-tls")
    ca = Pebble(work / "pebble", router.http_port)
    servers = [IdServer(f"tls{n}").start() for n in range(FIRST_ANSWERS + 1)]
    try:
        router.process.env.update(ca.start().ordering_env())
        router.start()
        etcd.put("/paz/config/domain", "example.test")
        roots, timings = ca.issuing_roots(), []
        for server in servers:
            name = server.ident
            started = time.monotonic()
            etcd.put(f"/paz/directory/services/{name}", json.dumps({"name": name, "config": {"publicFacing": True}}))
            etcd.put(f"/paz/services/{name}/1/1", server.address)
            timings.append(first_answers(router, f"{name}.example.test", roots, started))
        context = ssl.create_default_context(cafile=str(roots))
        tls_rate, tls_count = connections_per_second(router.https_port, "tls0.example.test", context)
        plain_rate, plain_count = connections_per_second(router.http_port, "tls0.paz", None)
    finally:
        router.stop()
        ca.stop()
        etcd.stop()
        for server in servers:
            server.stop()
    print(f"(d) TLS at the router, {TLS_CLIENTS} client threads, a new connection per request")
    print(f"    HTTPS, a full handshake each (ECDSA P-256 from pebble): {tls_rate:.0f} connections/s ({tls_count} in all)")
    print(f"    reference, plain HTTP through the same HAProxy: {plain_rate:.0f} connections/s ({plain_count} in all)")
    print(f"    a service made public -> first answer, median of {len(timings)}: over HTTPS (ACME order from pebble included) "
          f"{ms(statistics.median(t[1] for t in timings))}; reference, over plain HTTP {ms(statistics.median(t[0] for t in timings))}")


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="hsb-", dir="/tmp") as folder:
        work = Path(folder)
        etcd = EtcdServer(work).start()
        (work / "sync").mkdir()
        sync = HaproxySync(etcd, work / "sync").start()
        try:
            bench_propagation(etcd, sync, work)
            bench_loss(etcd, sync)
        finally:
            sync.stop()
            etcd.stop()
        bench_scale(work)
        bench_scale_end_to_end(work)
        bench_tls(work)

if __name__ == "__main__":
    main()
