"""``<service>.paz`` from inside containers paz deploys, and from the host: the suite's name server
(in haproxy-sync) and its router on port 80 of the Docker bridge's host address.

Real etcd, directory, scheduler (docker driver), haproxy-sync with its HAProxy, and the tests' own
Docker Engine. Names outside ``.paz`` are forwarded to ``PAZ_DNS_UPSTREAM``: here a name server of the
test's own on loopback, standing in for the host's resolver (the tests send no traffic elsewhere).
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from dnslib import QTYPE, RCODE, RR, A, DNSRecord

from paz.suite import bridge_gateway
from tests.support import HaproxySync, Service, free_port, wait_until
from tests.test_scheduler import containers, deploy, register, scheduler_env

OUTSIDE = ("outside.test", "192.0.2.7")
FETCH = ("timeout", "10", "wget", "-qO-")
"""An HTTP GET from inside a container, bounded by busybox's ``timeout`` (its ``wget -T`` segfaults here)."""


class Upstream:
    """A name server on 127.0.0.1 that knows one name outside .paz: the host's resolver, for the test."""

    def __init__(self) -> None:
        self.port = free_port()
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", self.port))
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                packet, client = self.sock.recvfrom(4096)
            except OSError:
                return
            query = DNSRecord.parse(packet)
            reply = query.reply()
            if str(query.q.qname).rstrip(".") == OUTSIDE[0]:
                reply.add_answer(RR(query.q.qname, QTYPE.A, rdata=A(OUTSIDE[1])))
            else:
                reply.header.rcode = RCODE.NXDOMAIN
            self.sock.sendto(reply.pack(), client)


@pytest.fixture(scope="module")
def suite(etcd, directory, docker_engine, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    gateway = wait_until(lambda: bridge_gateway(docker_engine.host), 20, what="the Docker Engine's default bridge")
    folder = tmp_path_factory.mktemp("dns")
    upstream = Upstream()
    sync = HaproxySync(etcd, folder, env={"PAZ_ROUTER_ADDRESS": gateway, "PAZ_DNS_UPSTREAM": f"127.0.0.1:{upstream.port}"}).start()
    scheduler = Service("paz-scheduler", etcd, folder, env=scheduler_env(docker_engine, PAZ_INSTANCE_DNS=gateway)).start()
    try:
        yield {"gateway": gateway, "sync": sync, "scheduler": scheduler}
    finally:
        scheduler.stop()
        sync.stop()
        upstream.sock.close()


def ask(server: str, name: str) -> DNSRecord:
    return DNSRecord.parse(DNSRecord.question(name).send(server, 53, timeout=3))


def run_in(container: Any, *argv: str) -> tuple[int, str]:
    code, output = container.exec_run(list(argv))
    return code, output.decode(errors="replace")


def fetch_by_paz_name(container: Any, server: str, message: str, missing: str) -> None:
    """From inside ``container`` (an app paz deployed), as the app itself would: ``http://<server>.paz/``
    answers ``message`` (the other service's page, through the router), and ``http://<missing>.paz/``,
    a name that is no service, fails at once."""
    code, page = run_in(container, *FETCH, f"http://{server}.paz/cgi-bin/index")
    assert (code, page) == (0, message), (code, page)
    started = time.monotonic()
    code, said = run_in(container, *FETCH, f"http://{missing}.paz/cgi-bin/index")
    assert code != 0 and "bad address" in said, (code, said)
    assert time.monotonic() - started < 2, "a name that is no service fails at once"


def test_a_deployed_container_reaches_another_service_by_its_paz_name(suite, directory, docker_engine, test_image, unique_name) -> None:
    gateway, server, client = suite["gateway"], f"{unique_name}-b", f"{unique_name}-a"
    register(directory, server, test_image, env={"MESSAGE": "hello from b"})
    register(directory, client, test_image)
    for name in (server, client):
        answer = deploy(suite["scheduler"], name, test_image)
        assert answer.status_code == 201, answer.text
    inside = containers(docker_engine, client)[0]
    assert inside.attrs["HostConfig"]["Dns"] == [gateway]
    wait_until(lambda: suite["sync"].route(f"{server}.paz", "/cgi-bin/index").text == "hello from b", 10,
               what=f"{server}.paz routed")
    wait_until(lambda: ask(gateway, f"{server}.paz").rr, 10, what=f"{server}.paz in the suite's DNS")

    fetch_by_paz_name(inside, server, "hello from b", f"{unique_name}-nothing")
    code, outside = run_in(inside, "nslookup", OUTSIDE[0])
    assert code == 0 and OUTSIDE[1] in outside, outside


def test_the_host_asks_the_suite_dns(suite, directory, unique_name) -> None:
    gateway = suite["gateway"]
    register(directory, unique_name, "paz-test/hello:1")
    found = wait_until(lambda: ask(gateway, f"{unique_name}.paz").rr, 10, what=f"{unique_name}.paz in the suite's DNS")
    assert [str(rr.rdata) for rr in found] == [gateway]
    started = time.monotonic()
    missing = ask(gateway, f"{unique_name}-not-registered.paz")
    assert missing.header.rcode == RCODE.NXDOMAIN and time.monotonic() - started < 1
    assert directory.request("DELETE", f"/services/{unique_name}").status_code in (200, 204)
    wait_until(lambda: ask(gateway, f"{unique_name}.paz").header.rcode == RCODE.NXDOMAIN, 10, what="NXDOMAIN once deleted")
