"""HTTPS at the router with certificates from a real ACME CA: Debian's pebble (tests.support.pebble),
which resolves every name to 127.0.0.1 and validates HTTP-01 against the router's plain HTTP port.

Real etcd, haproxy-sync with its HAProxy, pebble; the apps are IdServers announced in etcd. What is
served is checked as a client sees it: curl with ``--resolve`` and pebble's roots, and Python's ssl
with the name as SNI.
"""

from __future__ import annotations

import http.client
import json
import re
import socket
import ssl
import subprocess
import threading
import time
from pathlib import Path

from tests.support import VENV_BIN, EtcdServer, HaproxySync, Service, free_port, instance, need, secrets_key_of, wait_until
from tests.support.pebble import Pebble

DOMAIN = "example.test"


def router_with_ca(etcd: EtcdServer, folder: Path, validity_seconds: int = 7 * 86400,
                   directory: str | None = None) -> tuple[HaproxySync, Pebble]:
    """A haproxy-sync ordering from a pebble of its own (validating against this router's HTTP port)."""
    (folder / "router").mkdir()
    router = HaproxySync(etcd, folder / "router")
    ca = Pebble(folder / "pebble", router.http_port, validity_seconds)
    router.process.env.update(ca.ordering_env(directory))
    return router, ca


def second_router(etcd: EtcdServer, folder: Path, ca: Pebble) -> HaproxySync:
    folder.mkdir()
    router = HaproxySync(etcd, folder)
    router.process.env.update(ca.ordering_env())
    return router


def publish(etcd: EtcdServer, name: str, address: str, **config) -> None:
    etcd.put(f"/paz/directory/services/{name}", json.dumps({
        "name": name, "description": "", "dockerRepository": "x/y", "config": {"publicFacing": True, **config}}))
    etcd.put(f"/paz/services/{name}/1/1", address)


def handshake(name: str, port: int, roots: Path) -> ssl.SSLSocket:
    context = ssl.create_default_context(cafile=str(roots))
    return context.wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=5), server_hostname=name)


def serial(name: str, port: int, roots: Path) -> int:
    """The serial number of the certificate the router serves for ``name`` (verified against ``roots``)."""
    from cryptography import x509

    with handshake(name, port, roots) as tls:
        return x509.load_der_x509_certificate(tls.getpeercert(binary_form=True)).serial_number


def curl(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([need("curl"), "-sS", "--max-time", "5", *args], capture_output=True, text=True, timeout=15)


def served(router: HaproxySync, name: str, roots: Path) -> str:
    """The body curl gets from ``https://name/`` through the router, verified against ``roots``."""
    answer = curl("--cacert", str(roots), "--resolve", f"{name}:{router.https_port}:127.0.0.1",
                  f"https://{name}:{router.https_port}/")
    assert answer.returncode == 0, answer.stderr
    return answer.stdout


def orders(*routers: HaproxySync) -> int:
    return sum(router.process.log().count('"certificate ordered"') for router in routers)


def test_a_public_service_and_a_custom_domain_are_served_over_https(own_etcd, tmp_path, servers):
    router, ca = router_with_ca(own_etcd, tmp_path)
    ca.start()
    try:
        router.start()
        own_etcd.put("/paz/config/domain", DOMAIN)
        publish(own_etcd, "shop", instance(servers, 'shop-1').address, domains=["www.shop.test"])
        roots = ca.issuing_roots()
        for name in ("shop.example.test", "www.shop.test"):
            wait_until(lambda: curl("--cacert", str(roots), "--resolve", f"{name}:{router.https_port}:127.0.0.1",
                                    f"https://{name}:{router.https_port}/").returncode == 0, 30, what=f"HTTPS on {name}")
            assert served(router, name, roots) == "shop-1"

        moved = wait_until(lambda: (answer := curl("-i", "--resolve", f"www.shop.test:{router.http_port}:127.0.0.1",
                                                   f"http://www.shop.test:{router.http_port}/a/b?c=d&e=f")
                                    ).stdout.startswith("HTTP/1.1 308") and answer, 5, what="plain HTTP redirected")
        assert f"location: https://www.shop.test:{router.https_port}/a/b?c=d&e=f" in moved.stdout.lower()
        challenge = router.route("www.shop.test", "/.well-known/acme-challenge/unknown-token")
        assert challenge.status_code == 404  # an ACME request is answered, never redirected
        assert router.route("shop.paz").text == "shop-1"  # the name inside the platform stays plain HTTP

        unknown = curl("--cacert", str(roots), "--resolve", f"nobody.example.test:{router.https_port}:127.0.0.1",
                       f"https://nobody.example.test:{router.https_port}/")
        assert unknown.returncode != 0 and "unrecognized name" in unknown.stderr, unknown.stderr  # never another site's

        raw = "\n".join(own_etcd.values_below("/paz").values())
        assert "PRIVATE KEY" not in raw and "BEGIN CERTIFICATE" in raw
        listed = router.request("GET", "/certs").json()
        assert sorted(c["name"] for c in listed["certificates"]) == ["shop.example.test", "www.shop.test"]
        assert all(c["source"] == "acme" and c["issuer"].startswith("Pebble") for c in listed["certificates"])
        assert "PRIVATE KEY" not in json.dumps(listed) and "sealed" not in json.dumps(listed)
        journal = sorted(e["message"] for e in map(json.loads, own_etcd.values_below("/paz/scheduler/journal").values()))
        assert [m.split(" issued by ")[0] for m in journal] == ["certificate for shop.example.test", "certificate for www.shop.test"], journal
    finally:
        router.stop()
        ca.stop()


class KeepAliveLoad:
    """HTTPS requests on keep-alive connections (a new one every 20 requests), bounded in count and time."""

    def __init__(self, name: str, port: int, roots: Path, limit: int = 3000, seconds: float = 60.0) -> None:
        self.name, self.port, self.roots, self.limit, self.seconds = name, port, roots, limit, seconds
        self.ok, self.failed = 0, []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        deadline = time.monotonic() + self.seconds
        while not self.stop.is_set() and self.ok + len(self.failed) < self.limit and time.monotonic() < deadline:
            connection = http.client.HTTPConnection(self.name, self.port, timeout=5)
            connection.sock = handshake(self.name, self.port, self.roots)
            for _ in range(20):
                try:
                    connection.request("GET", "/", headers={"Host": self.name})
                    answer = connection.getresponse()
                    body = answer.read()
                    if answer.status == 200 and body:
                        self.ok += 1
                    else:
                        self.failed.append(answer.status)
                except (OSError, http.client.HTTPException) as exc:
                    self.failed.append(repr(exc))
                    break
            connection.close()


def test_a_renewed_certificate_is_served_without_a_reload_and_without_a_failed_request(own_etcd, tmp_path, servers):
    router, ca = router_with_ca(own_etcd, tmp_path, validity_seconds=24)  # renewed 16 s after it was issued
    ca.start()
    try:
        router.start()
        own_etcd.put("/paz/config/domain", DOMAIN)
        publish(own_etcd, "api", instance(servers, 'api-1').address)
        roots, name = ca.issuing_roots(), "api.example.test"
        first = wait_until(lambda: serial(name, router.https_port, roots), 30, what="the first certificate")
        # the name's first certificate adds its redirect to the config (a reload); the renewal must not
        wait_until(lambda: router.route(name, allow_redirects=False).status_code == 308, 10, what="the redirect in force")
        worker = router.worker_pid()
        load = KeepAliveLoad(name, router.https_port, roots)
        load.thread.start()
        renewed = wait_until(lambda: serial(name, router.https_port, roots) != first, 45, interval=0.5, what="a renewal")
        time.sleep(1)
        load.stop.set()
        load.thread.join(10)
        assert renewed and router.worker_pid() == worker  # served by the same HAProxy worker: no reload
        assert load.ok > 50 and load.failed == [], (load.ok, load.failed[:5])
    finally:
        router.stop()
        ca.stop()


def test_two_routers_serve_one_certificate_ordered_once_and_a_restart_orders_nothing_even_after_a_key_rotation(own_etcd, tmp_path, servers):
    first, ca = router_with_ca(own_etcd, tmp_path)
    second = second_router(own_etcd, tmp_path / "second", ca)  # the CA reaches only the first: it answers for both
    ca.start()
    try:
        second.start()
        wait_until(lambda: own_etcd.get("/paz/leaders/paz-haproxy-sync"), 10, what="the second router leading")
        first.start()
        own_etcd.put("/paz/config/domain", DOMAIN)
        publish(own_etcd, "two", instance(servers, 'two-1').address)
        roots, name = ca.issuing_roots(), "two.example.test"
        number = wait_until(lambda: serial(name, second.https_port, roots), 30, what="HTTPS on the router that ordered")
        assert wait_until(lambda: serial(name, first.https_port, roots), 10, what="HTTPS on the other router") == number
        assert orders(first, second) == 1

        second.stop()  # the leader goes: the other takes over and finds nothing to order
        wait_until(lambda: '"leading"' in first.process.log(), 20, what="the first router leading")
        first.stop()
        record = own_etcd.get(f"/paz/certs/{name}")["value"]
        rotated = subprocess.run([str(VENV_BIN / "paz"), "secrets", "rotate", "--key-file", str(secrets_key_of(own_etcd)),
                                  "--etcd", own_etcd.url], capture_output=True, text=True, timeout=60)
        assert rotated.returncode == 0, rotated.stderr
        assert own_etcd.get(f"/paz/certs/{name}")["value"] != record  # its key sealed again, under the new key
        first.start()
        assert wait_until(lambda: serial(name, first.https_port, roots), 10, what="HTTPS after the restart") == number
        wait_until(lambda: '"leading"' in first.process.log(), 20, what="the restarted router leading")
        time.sleep(1)
        assert orders(first) == 0 and served(first, name, roots) == "two-1"
    finally:
        first.stop()
        second.stop()
        ca.stop()


def test_an_unreachable_ca_leaves_everything_else_routing_and_says_why(own_etcd, tmp_path, servers):
    router, ca = router_with_ca(own_etcd, tmp_path, directory=f"https://127.0.0.1:{free_port()}/dir")
    ca.start()  # only for its CA file: the directory named is a port nobody listens on
    router.start()
    try:
        own_etcd.put("/paz/config/domain", DOMAIN)
        publish(own_etcd, "lonely", instance(servers, 'lonely-1').address)
        failing = wait_until(lambda: router.request("GET", "/health").json()["checks"]["https"]["failedOrders"], 20,
                             what="the failed order in /health")
        assert "lonely.example.test" in failing and "cannot be reached" in failing["lonely.example.test"]
        failures = router.request("GET", "/certs").json()["failures"]
        assert [f["name"] for f in failures] == ["lonely.example.test"] and failures[0]["retryAt"]
        journal = [json.loads(v) for v in own_etcd.values_below("/paz/scheduler/journal").values()]
        assert journal and {(e["type"], e["service"]) for e in journal} == {("certificate-failed", "lonely")}, journal
        assert "lonely.example.test" in journal[0]["message"] and "cannot be reached" in journal[0]["message"]
        wait_until(lambda: router.route("lonely.example.test", allow_redirects=False).text == "lonely-1", 10,
                   what="plain HTTP routed, not redirected")
        assert router.route("lonely.paz").text == "lonely-1"
    finally:
        router.stop()
        ca.stop()


def self_signed(folder: Path, name: str, days: int = 30) -> tuple[Path, Path]:
    """A certificate for ``name`` and its key, made with openssl as a person would."""
    folder.mkdir(parents=True, exist_ok=True)
    subprocess.run([need("openssl"), "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                    "-keyout", str(folder / f"{name}.key"), "-out", str(folder / f"{name}.crt"), "-days", str(days),
                    "-subj", f"/CN={name}", "-addext", f"subjectAltName=DNS:{name}"], check=True, capture_output=True, timeout=30)
    return folder / f"{name}.crt", folder / f"{name}.key"


def test_a_certificate_a_user_brings_is_served_listed_and_removed_with_paz_certs(own_etcd, tmp_path, servers):
    (tmp_path / "router").mkdir()
    router = HaproxySync(own_etcd, tmp_path / "router").start()  # ordering off: only what is brought
    orchestrator = Service("paz-orchestrator", own_etcd, tmp_path).start()
    web = Service("paz-web", own_etcd, tmp_path, env={"PAZ_WEB_SECRET_FILE": str(tmp_path / "web-secret")}).start()
    try:
        publish(own_etcd, "blog", instance(servers, "blog-1").address, domains=["blog.mine.test"])
        cert, key = self_signed(tmp_path / "pem", "blog.mine.test", days=10)
        paz = [str(VENV_BIN / "paz"), "--url", orchestrator.url, "certs"]
        added = subprocess.run([*paz, "add", "blog.mine.test", str(cert), str(key)], capture_output=True, text=True, timeout=30)
        assert added.returncode == 0 and "serving blog.mine.test" in added.stdout, added.stderr
        wait_until(lambda: served(router, "blog.mine.test", cert) == "blog-1", 10, what="the brought certificate served")
        listed = subprocess.run(paz, capture_output=True, text=True, timeout=30).stdout.splitlines()
        assert listed[0].split() == ["NAME", "SOURCE", "ISSUER", "EXPIRES", "RENEWS"]
        assert listed[1].split()[:3] == ["blog.mine.test", "brought", "blog.mine.test"]
        cluster = web.request("GET", "/").text  # the dashboard lists it, and warns: nothing renews it
        assert "<td>blog.mine.test</td><td>brought</td>" in cluster
        assert re.search(r"certificate blog\.mine\.test expires in (9|10) day\(s\), at [^;]+; it was brought, so nothing renews it", cluster), cluster

        other_cert, other_key = self_signed(tmp_path / "pem", "else.mine.test")
        wrong = subprocess.run([*paz, "add", "blog.mine.test", str(other_cert), str(key)], capture_output=True, text=True, timeout=30)
        assert wrong.returncode == 2 and "not the key of the certificate" in wrong.stderr, wrong.stderr
        wrong = subprocess.run([*paz, "add", "blog.mine.test", str(other_cert), str(other_key)], capture_output=True, text=True, timeout=30)
        assert wrong.returncode == 2 and "is for else.mine.test, not blog.mine.test" in wrong.stderr, wrong.stderr
        assert "PRIVATE KEY" not in "\n".join(own_etcd.values_below("/paz").values())

        assert subprocess.run([*paz, "rm", "blog.mine.test"], capture_output=True, timeout=30).returncode == 0
        wait_until(lambda: "unrecognized name" in curl("--cacert", str(cert), "--resolve", f"blog.mine.test:{router.https_port}:127.0.0.1",
                                                        f"https://blog.mine.test:{router.https_port}/").stderr, 10,
                   what="the certificate withdrawn")
        wait_until(lambda: router.route("blog.mine.test", allow_redirects=False).text == "blog-1", 5,
                   what="plain HTTP again, not redirected")
    finally:
        web.stop()
        orchestrator.stop()
        router.stop()
