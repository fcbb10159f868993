"""Every operation of :mod:`paz.etcd` against both backends, on one real etcd that serves both APIs
(the session's ``dual_etcd``): what each operation answers,
its conflicts, leases that run out when their holder is killed, watches and compacted history."""

from __future__ import annotations

import json
import signal
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest

from paz.etcd import (
    DELETE,
    EXPIRE,
    PUT,
    AlreadyExists,
    CompareFailed,
    HistoryCompacted,
    KeyNotFound,
    Store,
    StoreUnavailable,
    connect,
)
from tests.support import EtcdServer, Process, wait_until


@pytest.fixture(params=["2", "3"])
def api(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def store(dual_etcd: EtcdServer, api: str) -> Store:
    return dual_etcd.speaking(api).store()


@pytest.fixture
def top() -> str:
    """A folder of this test's own."""
    return f"/paz-contract/{uuid.uuid4().hex[:8]}"


def test_put_get_and_value_answer_the_revision_written(store, top):
    assert store.get(f"{top}/a") is None and store.value(f"{top}/a") is None
    first = store.put(f"{top}/a", "1")
    second = store.put(f"{top}/a", "two words\nand a line")
    assert second.revision > first.revision
    node = store.get(f"{top}/a")
    assert (node.key, node.value, node.revision) == (f"{top}/a", "two words\nand a line", second.revision)


def test_list_prefix_holds_every_key_below_and_the_key_itself_never_a_sibling(store, top):
    for key in (f"{top}/x/b", f"{top}/x/a/deep", f"{top}/x-sibling", f"{top}/xy"):
        store.put(key, key[-1])
    listing = store.list_prefix(f"{top}/x")
    assert [n.key for n in listing.nodes] == [f"{top}/x/a/deep", f"{top}/x/b"]
    assert listing.revision >= max(n.revision for n in listing.nodes)
    assert [n.key for n in store.list_prefix(f"{top}/x-sibling").nodes] == [f"{top}/x-sibling"]
    assert store.list_prefix(f"{top}/missing").nodes == ()


def test_create_writes_once_and_then_refuses(store, top):
    store.create(f"{top}/once", "first")
    with pytest.raises(AlreadyExists):
        store.create(f"{top}/once", "second")
    assert store.value(f"{top}/once") == "first"


def test_swap_writes_only_over_the_revision_it_read(store, top):
    read = store.put(f"{top}/doc", "v1")
    newer = store.swap(f"{top}/doc", "v2", read.revision)
    with pytest.raises(CompareFailed):
        store.swap(f"{top}/doc", "lost update", read.revision)
    assert store.value(f"{top}/doc") == "v2"
    with pytest.raises(CompareFailed):
        store.swap(f"{top}/absent", "x", newer.revision)
    assert store.get(f"{top}/absent") is None


def test_delete_answers_its_revision_or_none_and_keeps_a_key_that_holds_another_value(store, top):
    store.put(f"{top}/k", "mine")
    with pytest.raises(CompareFailed):
        store.delete(f"{top}/k", if_value="someone else's")
    assert store.value(f"{top}/k") == "mine"
    assert store.delete(f"{top}/k", if_value="mine") > 0
    assert store.get(f"{top}/k") is None
    assert store.delete(f"{top}/k") is None
    assert store.delete(f"{top}/k", if_value="mine") is None


def test_delete_prefix_takes_the_folder_and_leaves_its_siblings(store, top):
    for key in (f"{top}/f/1", f"{top}/f/2/3", f"{top}/f-sibling"):
        store.put(key, "x")
    assert store.delete_prefix(f"{top}/f") > 0
    assert store.list_prefix(f"{top}/f").nodes == ()
    assert store.value(f"{top}/f-sibling") == "x"
    assert store.delete_prefix(f"{top}/f") is None


def test_append_names_keys_in_the_order_they_were_written_across_writers(store, top):
    written: list[str] = []
    lock = threading.Lock()

    def writer(name: str) -> None:
        for i in range(10):
            node = store.append(f"{top}/journal", f"{name}-{i}")
            with lock:
                written.append(node.key)

    threads = [threading.Thread(target=writer, args=(name,)) for name in "abc"]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    nodes = store.list_prefix(f"{top}/journal").nodes
    assert len(nodes) == 30 and sorted(written) == [n.key for n in nodes]
    by_writer = {name: [n.value for n in nodes if n.value.startswith(name)] for name in "abc"}
    assert all(values == [f"{name}-{i}" for i in range(10)] for name, values in by_writer.items())


def test_update_json_keeps_every_concurrent_update(store, top):
    key = f"{top}/counter"

    def bump() -> None:
        for _ in range(10):
            store.update_json(key, lambda n: n + 1, create=0)

    threads = [threading.Thread(target=bump) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert json.loads(store.value(key)) == 40
    with pytest.raises(KeyNotFound):
        store.update_json(f"{top}/absent", lambda doc: doc)


def test_a_watch_from_a_revision_replays_changes_in_order_with_what_they_replaced(store, top):
    first = store.put(f"{top}/w/a", "1")
    store.put(f"{top}/w-sibling", "not below the folder")
    store.swap(f"{top}/w/a", "2", first.revision)
    store.delete(f"{top}/w/a")
    store.put(f"{top}/w/b/1", "x")
    with store.watch(f"{top}/w", first.revision) as watch:
        seen = [watch.next(5) for _ in range(4)]
        assert watch.next(0.5) is None  # nothing more: a quiet watch answers None
        later = store.put(f"{top}/w/c", "after a quiet spell")
        change = watch.next(5)
    assert [(c.key, c.kind, c.value, c.previous) for c in seen] == [
        (f"{top}/w/a", PUT, "1", None), (f"{top}/w/a", PUT, "2", "1"),
        (f"{top}/w/a", DELETE, None, "2"), (f"{top}/w/b/1", PUT, "x", None),
    ]
    assert [c.revision for c in seen] == sorted(c.revision for c in seen)
    assert (change.key, change.value, change.revision) == (f"{top}/w/c", "after a quiet spell", later.revision)


def test_a_watch_sees_every_key_of_a_deleted_folder_go(store, api, top):
    store.put(f"{top}/g/1", "x")
    store.put(f"{top}/g/2", "y")
    revision = store.delete_prefix(f"{top}/g")
    with store.watch(f"{top}/g", revision) as watch:
        gone = list(iter(lambda: watch.next(1), None))
    assert all(change.gone and change.revision == revision for change in gone)
    if api == "2":  # v2 tells one change of the whole folder
        assert [(c.key, c.folder) for c in gone] == [(f"{top}/g", True)]
    else:  # v3 one change per key, in the same revision
        assert [(c.key, c.kind, c.previous) for c in gone] == [(f"{top}/g/1", DELETE, "x"), (f"{top}/g/2", DELETE, "y")]


def test_a_watch_from_compacted_history_says_so(store, dual_etcd, api, top):
    start = store.put(f"{top}/old", "1").revision
    dual_etcd.speaking(api).forget_events()
    with pytest.raises(HistoryCompacted):
        with store.watch(f"{top}", start) as watch:
            watch.next(5)


HOLDER = """
import sys, time
from paz.etcd import connect
store = connect([sys.argv[1]], api=sys.argv[2])
lease = store.grant(2)
store.put(sys.argv[3], "held", lease)
print("ready", flush=True)
while True:
    lease.keep_alive()
    time.sleep(0.5)
"""


def test_a_leased_key_lives_while_kept_alive_and_expires_after_its_holder_is_killed(store, dual_etcd, api, top, tmp_path: Path):
    key = f"{top}/leased"
    start = store.put(f"{top}/marker", "x").revision
    holder = Process([sys.executable, "-c", HOLDER, dual_etcd.url, api, key], log_path=tmp_path / "holder.log").start()
    try:
        wait_until(lambda: "ready" in holder.log(), 10, what="the holder to put its key")
        time.sleep(3)  # past the 2 s TTL: alive only because the holder keeps it so
        assert store.value(key) == "held"
        holder.stop(signal.SIGKILL)
        killed = time.monotonic()
        wait_until(lambda: store.get(key) is None, 6, what="the lease to run out")
        assert time.monotonic() - killed <= 2 + 1.5
    finally:
        holder.stop()
    with store.watch(top, start) as watch:
        kinds = {c.kind for c in iter(lambda: watch.next(1), None) if c.key == key}
    assert kinds == {PUT, EXPIRE}


def test_a_lease_that_ran_out_cannot_be_kept_alive(store, top):
    lease = store.grant(1)
    store.put(f"{top}/short", "x", lease)
    assert lease.keep_alive()
    wait_until(lambda: store.get(f"{top}/short") is None, 5, what="the one-second lease to run out")
    assert not lease.keep_alive()


def test_no_endpoint_answering_is_store_unavailable_naming_them(api):
    dead = connect(["http://127.0.0.1:1"], timeout=1, api=api)
    for operation in (lambda: dead.get("/x"), lambda: dead.put("/x", "1"), lambda: dead.list_prefix("/x")):
        with pytest.raises(StoreUnavailable, match="etcd is unreachable at http://127.0.0.1:1"):
            operation()
