"""Hostile clients: bodies no parser should choke on get a 4xx that says why and change nothing, and
clients that open connections and never finish their request cannot starve a service."""

from __future__ import annotations

import contextlib
import socket
import threading
import time

import pytest

from paz.server import HEADER_SECONDS
from tests.support import HaproxySync, Service

DEEP = "[" * 100_000 + "]" * 100_000


@pytest.fixture(scope="module")
def orchestrator(etcd, directory, workdir):
    service = Service("paz-orchestrator", etcd, workdir).start()
    yield service
    service.stop()


@pytest.fixture(scope="module")
def web(etcd, orchestrator, workdir):
    service = Service("paz-web", etcd, workdir, env={"PAZ_WEB_SECRET_FILE": str(workdir / "web-secret-hostile")}).start()
    yield service
    service.stop()


@pytest.fixture(scope="module")
def haproxy_sync(etcd, tmp_path_factory):
    service = HaproxySync(etcd, tmp_path_factory.mktemp("hostile-haproxy")).start()
    yield service
    service.stop()


@pytest.fixture(scope="module")
def scheduler(etcd, directory, workdir):
    """A scheduler whose Docker Engine is nowhere: a bad body is refused before any engine is asked."""
    service = Service("paz-scheduler", etcd, workdir, env={"DOCKER_HOST": f"unix://{workdir}/no-docker.sock"}).start()
    yield service
    service.stop()


def routes(directory: Service, scheduler: Service, orchestrator: Service) -> list[tuple[Service, str]]:
    return [(directory, "/services"), (orchestrator, "/services"), (scheduler, "/hooks/deploy")]


def test_deeply_nested_json_is_a_400_everywhere(directory, scheduler, orchestrator) -> None:
    for service, path in routes(directory, scheduler, orchestrator):
        answer = service.request("POST", path, data=DEEP, headers={"Content-Type": "application/json"})
        assert answer.status_code == 400, (service.script, path, answer.text)
        assert "nested too deeply" in answer.json()["error"]["message"]


def test_a_body_over_a_mebibyte_is_a_413_and_nothing_is_stored(directory, scheduler, orchestrator, unique_name) -> None:
    big = '{"name": "%s", "dockerRepository": "a/b", "description": "%s"}' % (unique_name, "x" * (1024 * 1024 + 1))
    for service, path in routes(directory, scheduler, orchestrator):
        answer = service.request("POST", path, data=big, headers={"Content-Type": "application/json"})
        assert answer.status_code == 413, (service.script, path, answer.status_code)
        assert "larger than 1024 KiB" in answer.json()["error"]["message"]
    assert directory.request("GET", f"/services/{unique_name}").status_code == 404


HALF_OPEN = 1000
SLOW_BODIES = 100


class Attack:
    """``HALF_OPEN`` connections that send half a request header and wait, and ``SLOW_BODIES`` that
    send a whole header announcing a body and then trickle it a byte at a time; bounded in count and
    time, on 127.0.0.1 only, closed on exit."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.sockets: list[socket.socket] = []
        self.stopping = threading.Event()

    def __enter__(self) -> "Attack":
        for _ in range(HALF_OPEN):
            self.sockets.append(self._connect(b"GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: "))
        for _ in range(SLOW_BODIES):
            self.sockets.append(self._connect(
                b"POST /services HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n{"))
        self.trickler = threading.Thread(target=self._trickle, daemon=True)
        self.trickler.start()
        return self

    def _connect(self, start: bytes) -> socket.socket:
        sock = socket.create_connection(("127.0.0.1", self.port), timeout=5)
        sock.sendall(start)
        return sock

    def _trickle(self) -> None:
        deadline = time.monotonic() + 60
        while not self.stopping.wait(0.5) and time.monotonic() < deadline:
            for sock in self.sockets[HALF_OPEN:]:
                with contextlib.suppress(OSError):
                    sock.send(b" ")

    def __exit__(self, *_: object) -> None:
        self.stopping.set()
        for sock in self.sockets:
            sock.close()


@pytest.mark.parametrize("name", ["directory", "scheduler", "orchestrator", "haproxy-sync", "web"])
def test_slow_and_half_open_clients_do_not_starve_a_service(name, directory, scheduler, orchestrator, haproxy_sync, web) -> None:
    service = {"directory": directory, "scheduler": scheduler, "orchestrator": orchestrator, "haproxy-sync": haproxy_sync, "web": web}[name]
    with Attack(service.port):
        took = []
        for _ in range(20):
            started = time.monotonic()
            answer = service.request("GET", "/openapi.json", timeout=5)
            took.append(time.monotonic() - started)
            assert answer.status_code == 200
        assert max(took) < 1.0, f"slowest answer {max(took):.2f}s under {HALF_OPEN} half-open and {SLOW_BODIES} slow clients"


@pytest.mark.parametrize("name", ["directory", "scheduler", "orchestrator", "haproxy-sync", "web"])
def test_a_request_whose_headers_never_end_is_closed(name, directory, scheduler, orchestrator, haproxy_sync, web) -> None:
    service = {"directory": directory, "scheduler": scheduler, "orchestrator": orchestrator, "haproxy-sync": haproxy_sync, "web": web}[name]
    # Held open, the read would end at the socket's timeout (30 s) and fail. The slack over HEADER_SECONDS is
    # for a loaded machine: CI once saw the close 3.7 s late while nothing blocked the service's loop (a full
    # run under gevent's monitor, GEVENT_MAX_BLOCKING_TIME=0.5, reported nothing): the process was not run.
    with socket.create_connection(("127.0.0.1", service.port), timeout=30) as sock:
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n")
        started = time.monotonic()
        with contextlib.suppress(ConnectionResetError):
            while sock.recv(4096):  # an error answer (408), then the close
                pass
        assert HEADER_SECONDS - 1 < time.monotonic() - started < HEADER_SECONDS + 10
