"""paz-haproxy-sync across restarts of itself and of etcd, each test with its own etcd and HAProxy."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator

import pytest
from paz_haproxy_sync.haproxy import Haproxy
from paz_haproxy_sync.model import Table
from paz_haproxy_sync.render import render
from paz_haproxy_sync.settings import SyncSettings

from tests.support import EtcdServer, HaproxySync, IdServer, free_port, wait_until


@pytest.fixture
def made() -> Iterator[list[IdServer]]:
    servers: list[IdServer] = []
    yield servers
    for server in servers:
        server.stop()


def instance(made: list[IdServer], ident: str) -> str:
    server = IdServer(ident).start()
    made.append(server)
    return server.address


def answers(sync: HaproxySync, host: str, count: int = 6) -> set[str | int]:
    return {(a.text if a.status_code == 200 else a.status_code) for a in (sync.route(host) for _ in range(count))}


def test_public_facing_services_answer_on_the_domain(own_etcd: EtcdServer, tmp_path, made):
    own_etcd.put("/paz/config/domain", "apps.example.test")
    own_etcd.put("/paz/directory/services/shop", json.dumps({"name": "shop", "config": {"publicFacing": True}}))
    own_etcd.put("/paz/directory/services/ledger", json.dumps({"name": "ledger", "config": {"publicFacing": False}}))
    own_etcd.put("/paz/services/shop/1/1", instance(made, "shop"))
    own_etcd.put("/paz/services/ledger/1/1", instance(made, "ledger"))
    sync = HaproxySync(own_etcd, tmp_path).start()
    try:
        wait_until(lambda: answers(sync, "shop.apps.example.test") == {"shop"}, 10, what="the public service on the domain")
        assert answers(sync, "shop.paz") == {"shop"}
        assert answers(sync, "ledger.paz") == {"ledger"}
        assert answers(sync, "ledger.apps.example.test") == {503}
        own_etcd.put("/paz/config/domain", "evil.test\n    server x 6.6.6.6:1")
        wait_until(lambda: answers(sync, "shop.apps.example.test") == {503}, 10, what="a malformed domain dropped")
        assert "6.6.6.6" not in sync.request("GET", "/config").text
        assert answers(sync, "shop.paz") == {"shop"}
    finally:
        sync.stop()
    assert sync.haproxy_pid() is None, "a clean stop stops HAProxy"


def test_restarted_haproxy_sync_adopts_haproxy_and_picks_up_changes(own_etcd: EtcdServer, tmp_path, made):
    own_etcd.put("/paz/services/shop/1/1", instance(made, "first"))
    sync = HaproxySync(own_etcd, tmp_path, env={"PAZ_HAPROXY_KEEP": "1"}).start()
    try:
        wait_until(lambda: answers(sync, "shop.paz") == {"first"}, 10, what="the first instance routed")
        master = sync.haproxy_pid()
        sync.process.stop()
        assert sync.haproxy_pid() == master and answers(sync, "shop.paz") == {"first"}, "HAProxy keeps serving meanwhile"

        own_etcd.put("/paz/services/shop/2/1", instance(made, "second"))
        own_etcd.delete("/paz/services/shop/1/1")
        own_etcd.put("/paz/services/cart/1/1", instance(made, "cart"))
        sync.start()
        wait_until(lambda: answers(sync, "shop.paz") == {"second"}, 10, what="changes made while it was down applied")
        wait_until(lambda: answers(sync, "cart.paz") == {"cart"}, 10, what="a service added while it was down routed")
        assert sync.haproxy_pid() == master, "the restarted haproxy-sync adopted the running HAProxy"
    finally:
        sync.stop()
    assert sync.haproxy_pid() is None


def test_etcd_down_keeps_the_last_config_serving_and_later_changes_apply(own_etcd: EtcdServer, tmp_path, made):
    own_etcd.put("/paz/services/shop/1/1", instance(made, "one"))
    sync = HaproxySync(own_etcd, tmp_path).start()
    try:
        wait_until(lambda: answers(sync, "shop.paz") == {"one"}, 10, what="the first instance routed")
        own_etcd.stop()
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline:
            assert answers(sync, "shop.paz", 3) == {"one"}
            time.sleep(0.2)
        health = sync.request("GET", "/health")
        assert health.status_code == 503 and health.json()["checks"]["haproxy"]["ok"] is True
        assert health.json()["checks"]["etcd"]["ok"] is False

        own_etcd.start()
        own_etcd.put("/paz/services/shop/1/2", instance(made, "two"))
        wait_until(lambda: answers(sync, "shop.paz") == {"one", "two"}, 15, what="a change after etcd returned")
        own_etcd.delete("/paz/services/shop/1/1")
        wait_until(lambda: answers(sync, "shop.paz") == {"two"}, 10, what="a deletion after etcd returned")
    finally:
        sync.stop()
    assert sync.haproxy_pid() is None


def test_haproxy_looks_running_throughout_its_reloads(tmp_path):
    """Another reader (the engine's next apply, /health, ``paz down``) finds the master at every moment
    of a burst of reloads. When HAProxy wrote its own pid file it removed it for milliseconds at each
    reload; an apply that came then started a second HAProxy on the same port, which kept answering
    part of the requests with the routes of its time."""
    settings = SyncSettings(haproxy_dir=str(tmp_path), http_port=free_port(), stats_port=free_port(), https_port=0)
    haproxy = Haproxy(settings)
    haproxy.install(render(Table(None, {}), settings))
    master, seen, done = haproxy.start(), set(), threading.Event()

    def read_the_pid() -> None:
        reader = Haproxy(settings)
        while not done.is_set():
            seen.add(reader.master_pid())

    reader = threading.Thread(target=read_the_pid)
    reader.start()
    try:
        for _ in range(15):
            haproxy.reload()
    finally:
        done.set()
        reader.join()
        haproxy.stop()
    assert seen == {master}
    assert haproxy.master_pid() is None
