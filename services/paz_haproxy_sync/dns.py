"""The suite's name server: ``<service>.paz`` is the router's address; every other name is forwarded.

paz ran dnsmasq beside each host's HAProxy. Here the name server runs in haproxy-sync's own process
(beside its engine) and answers from the very routing table HAProxy is configured from, so a name resolves
exactly while the router has a backend for it: a new service resolves at once, and a name that is
no service gets NXDOMAIN at once, without a hosts file to render or a second process to signal and
supervise (what keeping dnsmasq in step with etcd would take; its ``address=/paz/`` answers every
name, services or not). Names outside ``.paz`` are forwarded to the host's resolvers (those of
``/etc/resolv.conf``, or ``PAZ_DNS_UPSTREAM``), which containers cannot reach themselves when they
listen on the host's loopback (systemd-resolved's 127.0.0.53).

Only UDP is served: answers for ``.paz`` are one record and always fit; a forwarded answer that
does not fit comes back truncated, as the upstream sent it.
"""

from __future__ import annotations

import ipaddress
import logging
import socket
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from dnslib import QTYPE, RCODE, RR, A, DNSRecord, DNSError

from paz.names import is_service_name

log = logging.getLogger(__name__)

ZONE = "paz"
TTL = 5
"""Seconds a resolver may keep an answer: short, since the set of services changes with deploys."""
UPSTREAM_TIMEOUT = 3.0
RESOLV_CONF = Path("/etc/resolv.conf")


def service_of(qname: str) -> str | None:
    """The service a query name asks for (``api.paz.`` → ``api``), or None for a name outside ``.paz``.

    A name inside ``.paz`` that is no valid service name (``a.b.paz``, ``x;y.paz``) is the empty string.
    """
    labels = qname.rstrip(".").lower().split(".")
    if labels[-1] != ZONE:
        return None
    name = ".".join(labels[:-1])
    return name if is_service_name(name) else ""


def answer(query: DNSRecord, services: Iterable[str], router: str) -> DNSRecord | None:
    """The reply to ``query`` when it asks for a name in ``.paz``; None when it should be forwarded.

    A service's name has one A record, the router's address (no AAAA: the reply is empty, NOERROR);
    any other name in ``.paz`` is NXDOMAIN.
    """
    question = query.q
    service = service_of(str(question.qname))
    if service is None:
        return None
    reply = query.reply(ra=1, aa=1)
    if service not in services:
        reply.header.rcode = RCODE.NXDOMAIN
    elif question.qtype in (QTYPE.A, QTYPE.ANY):
        reply.add_answer(RR(question.qname, QTYPE.A, ttl=TTL, rdata=A(router)))
    return reply


def parse_nameservers(text: str) -> tuple[str, ...]:
    """The ``nameserver`` addresses of a resolv.conf, in order (anything not an IP address is skipped)."""
    found = []
    for line in text.splitlines():
        words = line.split()
        if len(words) >= 2 and words[0] == "nameserver":
            try:
                found.append(str(ipaddress.ip_address(words[1])))
            except ValueError:
                continue
    return tuple(found)


def host_nameservers() -> tuple[str, ...]:
    try:
        return parse_nameservers(RESOLV_CONF.read_text())
    except OSError:
        return ()


class NameServer:
    """A UDP name server on ``bind:port`` answering ``.paz`` from ``services()`` and forwarding the rest."""

    def __init__(self, bind: str, port: int, router: str, services: Callable[[], Iterable[str]],
                 upstream: tuple[tuple[str, int], ...]) -> None:
        self.router = router
        self.services = services
        self.upstream = upstream or tuple((server, 53) for server in host_nameservers())
        self._socket = socket.socket(socket.AF_INET6 if ":" in bind else socket.AF_INET, socket.SOCK_DGRAM)
        self._socket.bind((bind, port))
        self._socket.settimeout(0.5)
        self._forwarders = ThreadPoolExecutor(max_workers=8, thread_name_prefix="paz-dns-forward")
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="paz-dns", daemon=True)

    def start(self) -> "NameServer":
        self._thread.start()
        log.info("name server listening", extra={"address": self._socket.getsockname()[0], "port": self._socket.getsockname()[1],
                                                 "router": self.router, "upstream": [f"{h}:{p}" for h, p in self.upstream]})
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self._forwarders.shutdown(wait=False, cancel_futures=True)
        self._socket.close()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                packet, client = self._socket.recvfrom(4096)
            except (socket.timeout, OSError):
                continue
            try:
                query = DNSRecord.parse(packet)
            except (DNSError, ValueError, IndexError):
                continue  # not DNS: no answer, as a name server does
            reply = answer(query, frozenset(self.services()), self.router)
            if reply is None:
                self._forwarders.submit(self._forward, query, client)
            else:
                self._socket.sendto(reply.pack(), client)

    def _forward(self, query: DNSRecord, client: tuple[str, int]) -> None:
        """Ask each upstream in turn; SERVFAIL when none answers."""
        for server, port in self.upstream:
            try:
                self._socket.sendto(query.send(server, port, timeout=UPSTREAM_TIMEOUT), client)
                return
            except OSError as exc:
                log.warning("upstream name server did not answer", extra={"upstream": f"{server}:{port}", "reason": str(exc)})
        failed = query.reply()
        failed.header.rcode = RCODE.SERVFAIL
        self._socket.sendto(failed.pack(), client)
