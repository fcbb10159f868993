"""etcd's v2 API through python-etcd (``PAZ_ETCD_API=2``, for installs that have not moved to v3).

The only module that imports python-etcd: its results, its conditions (``prevExist``, ``prevIndex``,
``prevValue``) and its errors stop here. How the suite's operations map onto v2:

* a lease is the TTL of the keys put with it; keeping it alive refreshes each of them (``refresh``
  does not wake watchers), and fails once one is gone or holds another value;
* :meth:`V2Store.append` is v2's in-order key (``POST``), :meth:`V2Store.watch` a ``waitIndex`` loop;
* a recursive delete is one change of a whole folder (``Change.folder``).
"""

from __future__ import annotations

import threading
from typing import Any
from urllib.parse import urlsplit

import etcd

from .base import (
    DELETE,
    EXPIRE,
    PUT,
    AlreadyExists,
    Change,
    CompareFailed,
    HistoryCompacted,
    Lease,
    Listing,
    Node,
    Store,
    StoreUnavailable,
    Tls,
    Watch,
)

GONE_ACTIONS = {"delete": DELETE, "compareAndDelete": DELETE, "expire": EXPIRE}


class V2Lease(Lease):
    """The keys written with this TTL, and the values they were given."""

    def __init__(self, store: "V2Store", ttl: int) -> None:
        self.store, self.ttl = store, ttl
        self.keys: dict[str, str] = {}
        self._lock = threading.Lock()

    def bind(self, key: str, value: str) -> dict[str, Any]:
        with self._lock:
            self.keys[key] = value
        return {"ttl": self.ttl}

    def keep_alive(self) -> bool:
        with self._lock:
            held = dict(self.keys)
        try:
            for key, value in held.items():
                self.store._call("write", key, None, ttl=self.ttl, refresh=True, prevExist=True, prevValue=value)
        except (etcd.EtcdKeyNotFound, etcd.EtcdCompareFailed):
            return False
        return True


class V2Store(Store):
    """:class:`~paz.etcd.Store` on etcd's v2 API. The python-etcd client is made on first use and
    again after a failure, so a service started before etcd, or one whose etcd was replaced, recovers."""

    api = "2"

    def __init__(self, endpoints: tuple[str, ...] | list[str], timeout: float = 2.0, tls: Tls | None = None) -> None:
        super().__init__(endpoints, timeout, tls)
        self._client: etcd.Client | None = None
        self._lock = threading.Lock()

    def _make_client(self) -> etcd.Client:
        hosts = tuple((urlsplit(e).hostname, urlsplit(e).port) for e in self.endpoints)
        return etcd.Client(
            host=hosts if len(hosts) > 1 else hosts[0][0],
            port=hosts[0][1],
            protocol=urlsplit(self.endpoints[0]).scheme,
            read_timeout=self.timeout,
            allow_reconnect=len(hosts) > 1,
            cert=(self.tls.cert, self.tls.key) if self.tls.cert else None,
            ca_cert=self.tls.ca or None,
        )

    def _call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        """python-etcd's ``method``; an outage becomes :class:`StoreUnavailable`, a key's condition passes."""
        for attempt in (1, 2):
            with self._lock:
                if self._client is None:
                    self._client = self._make_client()
                client = self._client
            try:
                return getattr(client, method)(*args, **kwargs)
            except etcd.EtcdWatchTimedOut:
                raise
            except etcd.EtcdClusterIdChanged:
                self._forget(client)  # etcd was replaced under us: the next attempt talks to the new one
                if attempt == 2:
                    raise StoreUnavailable(self.endpoints) from None
            except (etcd.EtcdConnectionFailed, etcd.EtcdException) as exc:
                if type(exc) not in (etcd.EtcdConnectionFailed, etcd.EtcdException):
                    raise  # a condition of the key (not found, compare failed, ...), not an outage
                self._forget(client)
                raise StoreUnavailable(self.endpoints, exc) from None
        raise AssertionError("unreachable")

    def _forget(self, client: etcd.Client | None) -> None:
        with self._lock:
            if self._client is client:
                self._client = None

    # reads -------------------------------------------------------------------------------------

    def get(self, key: str, consistent: bool = False) -> Node | None:
        try:
            result = self._call("read", key, quorum=consistent)
        except etcd.EtcdKeyNotFound:
            return None
        return None if result.dir else _node(result)

    def list_prefix(self, prefix: str, consistent: bool = False) -> Listing:
        try:
            tree = self._call("read", prefix, recursive=True, quorum=consistent)
        except etcd.EtcdKeyNotFound as missing:
            return Listing((), int((missing.payload or {}).get("index", 0)))
        nodes = tuple(_node(n) for n in tree.leaves if not n.dir)
        return Listing(tuple(sorted(nodes, key=lambda n: n.key)), tree.etcd_index)

    # writes ------------------------------------------------------------------------------------

    def _write(self, key: str, value: str, lease: Lease | None, **conditions: Any) -> Node:
        extra = lease.bind(key, value) if isinstance(lease, V2Lease) else {}
        return _node(self._call("write", key, value, **extra, **conditions))

    def put(self, key: str, value: str, lease: Lease | None = None) -> Node:
        return self._write(key, value, lease)

    def create(self, key: str, value: str, lease: Lease | None = None) -> Node:
        try:
            return self._write(key, value, lease, prevExist=False)
        except etcd.EtcdAlreadyExist:
            raise AlreadyExists(key) from None

    def swap(self, key: str, value: str, revision: int) -> Node:
        try:
            return self._write(key, value, None, prevIndex=revision)
        except (etcd.EtcdCompareFailed, etcd.EtcdKeyNotFound):
            raise CompareFailed(key) from None

    def delete(self, key: str, if_value: str | None = None) -> int | None:
        condition = {} if if_value is None else {"prevValue": if_value}
        try:
            return int(self._call("delete", key, **condition).modifiedIndex)
        except etcd.EtcdKeyNotFound:
            return None
        except etcd.EtcdCompareFailed:
            raise CompareFailed(key) from None

    def delete_prefix(self, prefix: str) -> int | None:
        try:
            return int(self._call("delete", prefix, recursive=True).modifiedIndex)
        except etcd.EtcdKeyNotFound:
            return None

    def append(self, folder: str, value: str, lease: Lease | None = None) -> Node:
        extra = {"ttl": lease.ttl} if isinstance(lease, V2Lease) else {}
        return _node(self._call("write", folder, value, append=True, **extra))

    def grant(self, ttl: int) -> Lease:
        return V2Lease(self, ttl)

    def remove_empty_parents(self, key: str, top: str) -> None:
        """A folder is deleted only while it is empty (``dir=true`` without ``recursive``), so a key
        written meanwhile is never lost."""
        folder = key.rsplit("/", 1)[0]
        while folder.startswith(top + "/"):
            try:
                self._call("delete", folder, dir=True)
            except (etcd.EtcdDirNotEmpty, etcd.EtcdKeyNotFound, etcd.EtcdNotDir):
                return
            folder = folder.rsplit("/", 1)[0]

    def remove_empty_folders(self, top: str) -> None:
        try:
            tree = self._call("read", top, recursive=True)
        except etcd.EtcdKeyNotFound:
            return
        for node in tree.get_subtree():
            if node.dir and node.key != tree.key and [leaf.key for leaf in node.leaves] == [node.key]:
                self.remove_empty_parents(node.key + "/-", top)

    # watching ----------------------------------------------------------------------------------

    def watch(self, prefix: str, start: int | None) -> Watch:
        return V2Watch(self, prefix, start)


class V2Watch(Watch):
    """A ``waitIndex`` loop: v2 answers one change per request, and replays from its 1000-event history."""

    def __init__(self, store: V2Store, prefix: str, start: int | None) -> None:
        self.store, self.prefix, self.position = store, prefix, start

    def next(self, timeout: float) -> Change | None:
        kwargs: dict[str, Any] = {"wait": True, "recursive": True, "timeout": timeout}
        if self.position is not None:
            kwargs["waitIndex"] = self.position
        try:
            result = self.store._call("read", self.prefix, **kwargs)
        except etcd.EtcdWatchTimedOut:
            return None
        except etcd.EtcdEventIndexCleared:
            raise HistoryCompacted(self.position or 0) from None
        self.position = result.modifiedIndex + 1
        previous = getattr(result, "_prev_node", None)
        return Change(
            key=result.key, kind=GONE_ACTIONS.get(result.action, PUT), value=None if result.action in GONE_ACTIONS else result.value,
            revision=result.modifiedIndex, previous=previous.value if previous is not None else None, folder=bool(result.dir),
        )

    def close(self) -> None:
        """Nothing stays open between v2's waits."""


def _node(result: Any) -> Node:
    return Node(result.key, result.value, int(result.modifiedIndex), result.ttl)
