"""The suite on etcd's v3 API, on an etcd started without the v2 API, whatever API the rest of this
test run uses: what a person with plain ``etcdctl`` sees, a lease that outlives its holder by its TTL
only, and ``paz etcd migrate`` for an install moving from v2. The operations themselves are in
``test_etcd_contract``."""

from __future__ import annotations

import base64
import json
import time
from pathlib import Path

import pytest

from paz import keys

from paz_scheduler.store import SchedulerStore
from tests.support import EtcdServer, Service, etcdctl_get, paz_command, wait_until

KEY = "/paz/services/paz-service-directory"

@pytest.fixture
def etcd_v3(tmp_path: Path):
    server = EtcdServer(tmp_path, api="3").start()
    yield server
    server.stop()

def test_plain_etcdctl_shows_the_announced_address_on_an_etcd_without_v2(etcd_v3, tmp_path):
    assert etcd_v3.http.get(f"{etcd_v3.url}/v2/keys/", timeout=2).status_code == 404  # no v2 API here
    service = Service("paz-service-directory", etcd_v3, tmp_path).start()
    try:
        assert etcdctl_get(etcd_v3.url, KEY, api="3") == f"127.0.0.1:{service.port}"
    finally:
        service.stop()
    assert etcdctl_get(etcd_v3.url, KEY, api="3") == ""  # withdrawn on a clean stop

def test_the_announce_key_goes_within_its_lease_ttl_when_the_whole_process_group_is_killed(etcd_v3, tmp_path):
    ttl = 3
    service = Service("paz-service-directory", etcd_v3, tmp_path, env={"PAZ_ANNOUNCE_TTL": str(ttl)},
                      own_group=True).start()
    assert 0 < etcd_v3.get(KEY)["ttl"] <= ttl
    service.process.kill_group()  # main process, workers and withdrawer: nobody is left to withdraw the key
    killed = time.monotonic()
    wait_until(lambda: etcd_v3.get(KEY) is None, ttl + 5, what="the lease to run out")
    assert time.monotonic() - killed <= ttl + 1.5  # etcd checks its leases twice a second

def test_paz_etcd_migrate_copies_services_versions_and_the_journal_once(tmp_path):
    etcd = EtcdServer(tmp_path, api="2").start()  # etcd 3.4 with --enable-v2 serves both key spaces
    try:
        v2, v3 = etcd.store(), etcd.speaking("3").store()
        shop = keys.service_document("shop")
        v2.put(shop, json.dumps({"name": "shop", "description": "a shop", "dockerRepository": "paz/shop", "config": {}}))
        old = SchedulerStore(v2)
        for status in ("done", "running"):
            number = old.next_version("shop")
            old.create_version({"service": "shop", "version": number, "status": status})
            old.journal("deploy", "shop", f"version {number} {status}", number)
        v2.put("/paz/services/shop/2/1", "127.0.0.1:40001", v2.grant(60))
        v2.put("/paz/scheduler/locks/empty-folder/x", "gone")
        v2.delete("/paz/scheduler/locks/empty-folder/x")  # leaves an empty v2 folder behind

        first = paz_command(tmp_path / "state", "etcd", "migrate", "--etcd", etcd.url, env={"PAZ_ETCD_API": "2"}, timeout=60)
        assert first.returncode == 0, first.stderr
        assert "7 keys copied to the v3 API, 0 already there" in first.stdout

        new = SchedulerStore(v3)
        assert v3.value(shop) == v2.value(shop)
        assert new.history("shop") == old.history("shop") and new.latest_number("shop") == 2
        assert new.journal_entries(None, 10, 0) == old.journal_entries(None, 10, 0)
        assert etcdctl_get(etcd.url, "/paz/services/shop/2/1", api="3") == "127.0.0.1:40001"
        assert int(etcd.v3("kv/range", {"key": base64.b64encode(b"/paz/services/shop/2/1").decode()})["kvs"][0]["lease"])

        again = paz_command(tmp_path / "state", "etcd", "migrate", "--etcd", etcd.url, timeout=60)
        assert "0 keys copied to the v3 API, 7 already there" in again.stdout

        entry = new.journal("deploy", "shop", "version 3 on v3", 3)  # in-order keys go on after v2's indexes
        assert new.journal_entries(None, 10, 0)[0] == entry
    finally:
        etcd.stop()
