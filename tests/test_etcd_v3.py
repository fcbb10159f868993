"""The suite on etcd's v3 API (``PAZ_ETCD_API=3``), on an etcd started without the v2 API, whatever API
the rest of this test run uses: what a person with plain ``etcdctl`` sees, leases, and watches that
resume from a revision."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from paz.etcd_client import Etcd, IndexCleared
from tests.support import EtcdServer, Service, etcdctl_get, wait_until

KEY = "/paz/services/paz-service-directory"


@pytest.fixture
def etcd_v3(tmp_path: Path):
    server = EtcdServer(tmp_path, api="3").start()
    yield server
    server.stop()


def test_plain_etcdctl_shows_the_announced_address_on_an_etcd_without_v2(etcd_v3, tmp_path):
    assert etcd_v3.http.get(f"{etcd_v3.url}/v2/keys/", timeout=2).status_code == 404  # no v2 API here
    service = Service("paz-service-directory", etcd_v3, tmp_path, env={"PAZ_ETCD_API": "3"}).start()
    try:
        assert etcdctl_get(etcd_v3.url, KEY, api="3") == f"127.0.0.1:{service.port}"
    finally:
        service.stop()
    assert etcdctl_get(etcd_v3.url, KEY, api="3") == ""  # withdrawn on a clean stop


def test_the_announce_key_goes_within_its_lease_ttl_when_the_whole_process_group_is_killed(etcd_v3, tmp_path):
    ttl = 3
    service = Service("paz-service-directory", etcd_v3, tmp_path, env={"PAZ_ETCD_API": "3", "PAZ_ANNOUNCE_TTL": str(ttl)},
                      own_group=True).start()
    assert 0 < etcd_v3.get(KEY)["ttl"] <= ttl
    service.process.kill_group()  # master, workers and companion: nobody is left to withdraw the key
    killed = time.monotonic()
    wait_until(lambda: etcd_v3.get(KEY) is None, ttl + 5, what="the lease to run out")
    assert time.monotonic() - killed <= ttl + 1.5  # etcd checks its leases twice a second


def test_a_watch_resumes_from_a_revision_and_a_compacted_one_is_index_cleared(etcd_v3):
    store = Etcd([etcd_v3.url], api="3")
    first = store.write("/paz/test/watched/a", "1")
    store.write("/paz/test/watched-sibling", "not below the folder")
    store.write("/paz/test/watched/a", "2", prevIndex=first.modifiedIndex)
    store.delete("/paz/test/watched/a")

    seen = []
    index = first.modifiedIndex
    for _ in range(3):
        event = store.wait("/paz/test/watched", index, timeout=5)
        seen.append((event.action, event.value, event._prev_node.value if getattr(event, "_prev_node", None) else None))
        index = event.modifiedIndex + 1
    assert seen == [("create", "1", None), ("set", "2", "1"), ("delete", None, "2")]

    etcd_v3.v3("kv/compaction", {"revision": etcd_v3.index(), "physical": True})
    with pytest.raises(IndexCleared):
        store.wait("/paz/test/watched", first.modifiedIndex, timeout=5)
