"""The etcd v3 API behind :class:`paz.etcd_client.Etcd`'s surface, through etcd3gw (``PAZ_ETCD_API=3``).

Why etcd3gw: it speaks v3 through etcd's own JSON gateway over ``requests`` (no gRPC, no protobuf,
three small dependencies), is released by OpenStack to this day, and covers what the suite uses:
leases, transactions, watches from a revision, TLS with client certificates. python-etcd3 was last
released in 2020, aetcd is asyncio-only, etcd-sdk-python is a young gRPC fork of python-etcd3.

The keys are the same strings as on v2, so ``etcdctl get /paz/services/paz-scheduler`` answers as
the seed's ``etcdctl`` line did. How v2's notions map onto v3:

* a TTL is a lease granted for that key alone; :meth:`EtcdV3.refresh` keeps it alive;
* ``prevExist``/``prevIndex``/``prevValue`` are a transaction comparing the key's create revision,
  mod revision or value; an index (``modifiedIndex``, ``etcd_index``, a wait index) is a revision;
* a directory is a key prefix (``<key>/``): reads build v2's tree of nodes from the keys below it,
  and there are no empty folders to remove;
* a watch resumes from a revision; one that etcd has compacted raises ``IndexCleared``;
* results are python-etcd's own ``EtcdResult``, with v2's action names, so callers cannot tell.
"""

from __future__ import annotations

import base64
import json
import threading
import time
from typing import Any
from urllib.parse import urlsplit

import etcd
import etcd3gw
import requests
from etcd3gw import exceptions as gw_errors

from .etcd_client import (
    AlreadyExists,
    CompareFailed,
    Etcd,
    IndexCleared,
    KeyNotFound,
    Result,
    StoreUnavailable,
    WatchTimedOut,
)

APPEND_ATTEMPTS = 50


def _encode(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def _decode(raw: str | None) -> str:
    return base64.b64decode(raw or "").decode()


def _prefix_end(prefix: str) -> str:
    """The first key after every key starting with ``prefix`` (v3's range end for a prefix)."""
    raw = prefix.encode()
    return base64.b64encode(raw[:-1] + bytes([raw[-1] + 1])).decode()


def _within(key: str, folder: str) -> bool:
    return key == folder or key.startswith(folder.rstrip("/") + "/")


def _node(kv: dict[str, Any]) -> dict[str, Any]:
    """A v3 key-value as a v2 node."""
    return {
        "key": _decode(kv["key"]),
        "value": _decode(kv.get("value")),
        "modifiedIndex": int(kv.get("mod_revision", 0)),
        "createdIndex": int(kv.get("create_revision", 0)),
    }


def _result(action: str, node: dict[str, Any], revision: int, prev: dict[str, Any] | None = None) -> Result:
    result = etcd.EtcdResult(action, node, prev)
    result.etcd_index = result.raft_index = revision
    return result


def _tree(key: str, kvs: list[dict[str, Any]], recursive: bool) -> dict[str, Any]:
    """v2's directory node at ``key`` built from the keys below it (their folders made up from paths)."""
    top: dict[str, Any] = {"key": key, "dir": True, "nodes": []}
    folders = {key: top}
    base = key.rstrip("/")
    for node in sorted((_node(kv) for kv in kvs), key=lambda n: n["key"]):
        parts = node["key"][len(base) + 1:].split("/")
        if not recursive and len(parts) > 1:
            node = {"key": f"{base}/{parts[0]}", "dir": True, "modifiedIndex": node["modifiedIndex"]}
            parts = parts[:1]
        parent = top
        for depth in range(1, len(parts)):
            folder = f"{base}/{'/'.join(parts[:depth])}"
            if folder not in folders:
                folders[folder] = {"key": folder, "dir": True, "nodes": []}
                parent["nodes"].append(folders[folder])
            parent = folders[folder]
        if node.get("dir") and node["key"] in folders:
            continue
        if node.get("dir"):
            folders[node["key"]] = node
        parent["nodes"].append(node)
    return top


class EtcdV3(Etcd):
    """:class:`Etcd` on the v3 API; made by ``Etcd(...)`` when ``PAZ_ETCD_API=3``."""

    def __init__(self, endpoints: tuple[str, ...] | list[str], timeout: float = 2.0, tls: Any = None,
                 api: str | None = None) -> None:
        super().__init__(endpoints, timeout, tls, api)
        self._clients: dict[str, etcd3gw.Etcd3Client] = {}
        self._preferred = 0
        self._streams = threading.local()
        """Per thread (each watch loop is one): the :class:`WatchStream` it reads on."""

    # transport ---------------------------------------------------------------------------------

    def _client_for(self, endpoint: str) -> etcd3gw.Etcd3Client:
        with self._lock:
            if endpoint not in self._clients:
                url = urlsplit(endpoint)
                self._clients[endpoint] = etcd3gw.Etcd3Client(
                    host=url.hostname or "127.0.0.1", port=url.port or 2379, protocol=url.scheme,
                    ca_cert=self.tls.ca or None, cert_cert=self.tls.cert or None, cert_key=self.tls.key or None,
                    timeout=self.timeout, api_path="/v3/",
                )
                self._clients[endpoint].session.trust_env = False
            return self._clients[endpoint]

    def _endpoints_in_order(self) -> list[str]:
        first = self._preferred % len(self.endpoints)
        return list(self.endpoints[first:] + self.endpoints[:first])

    def _post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        """POST to the first endpoint that answers, remembering it; StoreUnavailable when none does."""
        cause: BaseException | None = None
        for endpoint in self._endpoints_in_order():
            client = self._client_for(endpoint)
            try:
                answer = client.post(client.get_url(path), json=body)
                self._preferred = self.endpoints.index(endpoint)
                return answer
            except (gw_errors.ConnectionFailedError, gw_errors.ConnectionTimeoutError, gw_errors.InternalServerError) as exc:
                cause = exc
        raise StoreUnavailable(self.endpoints, cause)

    def _txn(self, compare: list[dict[str, Any]], success: list[dict[str, Any]], failure: list[dict[str, Any]]) -> dict[str, Any]:
        return self._post("/kv/txn", {"compare": compare, "success": success, "failure": failure})

    def _range(self, key: str, prefix: bool = False) -> dict[str, Any]:
        body: dict[str, Any] = {"key": _encode(key)}
        if prefix:
            body["range_end"] = _prefix_end(key)
        return self._post("/kv/range", body)

    # reads -------------------------------------------------------------------------------------

    def read(self, key: str, **kwargs: Any) -> Result:
        """The key, or the folder its prefix ``key/`` makes (its children; all below with ``recursive``)."""
        if kwargs.get("wait"):
            return self.wait(key, kwargs.get("waitIndex"), kwargs.get("timeout", self.timeout), kwargs.get("recursive", False))
        own = self._range(key)
        revision = int(own["header"]["revision"])
        if own.get("kvs"):
            return _result("get", _node(own["kvs"][0]), revision)
        folder = key.rstrip("/") + "/"
        below = self._range(folder, prefix=True)
        if not below.get("kvs") and folder != "/":  # v2's root folder exists even when etcd is empty
            raise KeyNotFound(f"Key not found : {key}", {"index": revision})
        return _result("get", _tree(key, below.get("kvs") or [], bool(kwargs.get("recursive"))), int(below["header"]["revision"]))

    def wait(self, key: str, index: int | None, timeout: float, recursive: bool = True) -> Result:
        """The first change at or below ``key`` from revision ``index`` (from now when None).

        A thread that waits again from the revision after the change it was handed reads on from the
        same watch stream (etcd's watches are made to stay open), so following a prefix costs one
        stream, not one per change.
        """
        stream: WatchStream | None = getattr(self._streams, "stream", None)
        if stream is None or not stream.follows(key, recursive, index, timeout):
            self.end_waits()
            stream = self._streams.stream = self._open_watch(key, recursive, index, timeout)
        try:
            event, revision = stream.next_event()
        except (IndexCleared, WatchTimedOut, StoreUnavailable):
            self.end_waits()
            raise
        return self._event(event, revision)

    def end_waits(self) -> None:
        stream = getattr(self._streams, "stream", None)
        if stream is not None:
            stream.close()
            self._streams.stream = None

    def _open_watch(self, key: str, recursive: bool, index: int | None, timeout: float) -> WatchStream:
        request: dict[str, Any] = {"key": _encode(key), "prev_kv": True}
        if recursive:
            request["range_end"] = _prefix_end(key)
        if index is not None:
            request["start_revision"] = index
        client = self._client_for(self._endpoints_in_order()[0])
        try:
            answer = client.session.post(client.get_url("/watch"), json={"create_request": request}, stream=True,
                                         timeout=(self.timeout, timeout))
        except requests.exceptions.RequestException as exc:
            raise StoreUnavailable(self.endpoints, exc) from None
        return WatchStream(answer, key, recursive, index, timeout, self.endpoints)

    def _event(self, event: dict[str, Any], revision: int) -> Result:
        node = _node(event["kv"])
        prev = _node(event["prev_kv"]) if event.get("prev_kv") else None
        if event.get("type") == "DELETE":
            action = "expire" if prev and self._lease_gone(event["prev_kv"]) else "delete"
            node["value"] = None
            node["modifiedIndex"] = int(event["kv"].get("mod_revision", 0))
            node["createdIndex"] = prev["createdIndex"] if prev else 0
        else:
            action = "create" if node["createdIndex"] == node["modifiedIndex"] else "set"
        return _result(action, node, revision, prev)

    def _lease_gone(self, prev_kv: dict[str, Any]) -> bool:
        """Whether a deleted key's lease has run out: etcd deleted it (v2's ``expire``), nobody else."""
        lease = int(prev_kv.get("lease", 0) or 0)
        if not lease:
            return False
        return int(self._post("/kv/lease/timetolive", {"ID": lease}).get("TTL", -1)) < 0

    # writes ------------------------------------------------------------------------------------

    def _lease(self, ttl: int) -> int:
        return int(self._post("/lease/grant", {"TTL": int(ttl)})["ID"])

    def write(self, key: str, value: str | None, **kwargs: Any) -> Result:
        """Set ``key``; ``ttl`` grants a lease, ``prevExist``/``prevIndex``/``prevValue`` make a transaction."""
        if kwargs.pop("append", False):
            return self._append(key, value or "", kwargs.get("ttl"))
        compare, action = self._conditions(key, kwargs)
        put: dict[str, Any] = {"key": _encode(key), "value": _encode(value or ""), "prev_kv": True}
        if kwargs.get("ttl"):
            put["lease"] = self._lease(kwargs["ttl"])
        answer = self._txn(compare, [{"request_put": put}], [{"request_range": {"key": _encode(key)}}])
        if not answer.get("succeeded"):
            self._raise_failed(key, answer, kwargs)
        revision = int(answer["header"]["revision"])
        previous = answer["responses"][0]["response_put"].get("prev_kv")
        created = int(previous["create_revision"]) if previous else revision
        node = {"key": key, "value": value, "modifiedIndex": revision, "createdIndex": created, "ttl": kwargs.get("ttl")}
        return _result(action, node, revision, _node(previous) if previous else None)

    @staticmethod
    def _conditions(key: str, kwargs: dict[str, Any]) -> tuple[list[dict[str, Any]], str]:
        compare: list[dict[str, Any]] = []
        action = "set"
        encoded = _encode(key)
        if kwargs.get("prevExist") is False:
            compare.append({"key": encoded, "target": "CREATE", "result": "EQUAL", "create_revision": 0})
            action = "create"
        elif kwargs.get("prevExist") is True:
            compare.append({"key": encoded, "target": "CREATE", "result": "GREATER", "create_revision": 0})
            action = "update"
        if kwargs.get("prevIndex") is not None:
            compare.append({"key": encoded, "target": "MOD", "result": "EQUAL", "mod_revision": int(kwargs["prevIndex"])})
            action = "compareAndSwap"
        if kwargs.get("prevValue") is not None:
            compare.append({"key": encoded, "target": "VALUE", "result": "EQUAL", "value": _encode(kwargs["prevValue"])})
            action = "compareAndSwap"
        return compare, action

    @staticmethod
    def _raise_failed(key: str, answer: dict[str, Any], kwargs: dict[str, Any]) -> None:
        """The v2 error a failed transaction means, from the key as the failure branch read it."""
        revision = int(answer["header"]["revision"])
        found = bool(answer["responses"][0]["response_range"].get("kvs"))
        if kwargs.get("prevExist") is False:
            raise AlreadyExists(f"Key already exists : {key}", {"index": revision})
        if not found:
            raise KeyNotFound(f"Key not found : {key}", {"index": revision})
        raise CompareFailed(f"Compare failed : {key}", {"index": revision})

    def _append(self, folder: str, value: str, ttl: int | None) -> Result:
        """v2's in-order key: ``<folder>/<revision, 20 digits>``, created only if no one took the name."""
        for _ in range(APPEND_ATTEMPTS):
            try:
                return self.write(f"{folder}/{self._next_in_order(folder):020d}", value, prevExist=False, ttl=ttl)
            except AlreadyExists:
                continue
        raise StoreUnavailable(self.endpoints, RuntimeError(f"no free in-order key under {folder}"))

    def _next_in_order(self, folder: str) -> int:
        """The next revision, or one past the last in-order key when that is higher (keys copied from a
        v2 tree carry v2's indexes, which a young v3 store's revisions have not reached)."""
        body = {**{"key": _encode(folder + "/"), "range_end": _prefix_end(folder + "/")},
                "limit": 1, "sort_order": "DESCEND", "sort_target": "KEY", "keys_only": True}
        answer = self._post("/kv/range", body)
        last = _decode(answer["kvs"][0]["key"]).rsplit("/", 1)[-1] if answer.get("kvs") else ""
        return max(int(answer["header"]["revision"]), int(last) if last.isdigit() else 0) + 1

    def refresh(self, key: str, ttl: int) -> Result:
        """Keep ``key``'s lease alive; a key without a live lease is written again with one."""
        own = self._range(key)
        if not own.get("kvs"):
            raise KeyNotFound(f"Key not found : {key}", {"index": int(own["header"]["revision"])})
        kv = own["kvs"][0]
        lease = int(kv.get("lease", 0) or 0)
        alive = lease and int(self._post("/lease/keepalive", {"ID": lease}).get("result", {}).get("TTL", -1) or -1) > 0
        if not alive:
            return self.write(key, _decode(kv.get("value")), ttl=ttl, prevIndex=int(kv["mod_revision"]))
        node = {**_node(kv), "ttl": ttl}
        return _result("update", node, int(own["header"]["revision"]), _node(kv))

    def delete(self, key: str, **kwargs: Any) -> Result:
        """Delete ``key`` (with ``recursive``, everything below it too); ``dir`` alone deletes nothing:
        v3 has no folders, so an "empty folder" is already gone."""
        if kwargs.get("dir") and not kwargs.get("recursive"):
            raise KeyNotFound(f"no folders on etcd v3 : {key}", {})
        compare, _ = self._conditions(key, kwargs)
        deletes = [{"request_delete_range": {"key": _encode(key), "prev_kv": True}}]
        if kwargs.get("recursive"):
            folder = key.rstrip("/") + "/"
            deletes.append({"request_delete_range": {"key": _encode(folder), "range_end": _prefix_end(folder)}})
        answer = self._txn(compare, deletes, [{"request_range": {"key": _encode(key)}}])
        if not answer.get("succeeded"):
            self._raise_failed(key, answer, kwargs)
        revision = int(answer["header"]["revision"])
        removed = sum(int(r["response_delete_range"].get("deleted", 0) or 0) for r in answer["responses"])
        if not removed:
            raise KeyNotFound(f"Key not found : {key}", {"index": revision})
        previous = answer["responses"][0]["response_delete_range"].get("prev_kvs") or []
        node = {"key": key, "value": None, "modifiedIndex": revision, "dir": bool(kwargs.get("recursive")) and not previous}
        return _result("compareAndDelete" if compare else "delete", node, revision, _node(previous[0]) if previous else None)

    def remove_empty_parents(self, key: str, top: str) -> None:
        """Nothing to do: v3 has no folders to leave behind."""

    def remove_empty_folders(self, top: str) -> None:
        """Nothing to do: v3 has no folders to leave behind."""


class WatchStream:
    """One open watch on etcd's gateway, read on by consecutive waits of one thread.

    It hands out one event at a time, in revision order (a revision that changed several keys, a
    prefix deleted at once, gives several). A prefix also matches siblings (``/paz/services-old``
    for ``/paz/services``): with ``recursive``, only the key itself and the keys below ``key/`` count.
    """

    def __init__(self, answer: requests.Response, key: str, recursive: bool, index: int | None, timeout: float,
                 endpoints: tuple[str, ...]) -> None:
        self.answer, self.lines = answer, answer.iter_lines()
        self.key, self.recursive, self.timeout, self.endpoints = key, recursive, timeout, endpoints
        self.start = index
        self.position = index
        """The revision the next wait asks for when it reads on from here (None: only a new stream)."""
        self.pending: list[tuple[dict[str, Any], int]] = []

    def follows(self, key: str, recursive: bool, index: int | None, timeout: float) -> bool:
        return index is not None and (key, recursive, index, timeout) == (self.key, self.recursive, self.position, self.timeout)

    def close(self) -> None:
        self.answer.close()

    def next_event(self) -> tuple[dict[str, Any], int]:
        """The next event and the revision etcd was at when it sent it."""
        if not self.pending:
            self.pending = self._read_events()
        event, revision = self.pending.pop(0)
        self.position = int(event["kv"].get("mod_revision", 0)) + 1
        return event, revision

    def _read_events(self) -> list[tuple[dict[str, Any], int]]:
        deadline = time.monotonic() + self.timeout
        try:
            for line in self.lines:
                result = json.loads(line).get("result", {}) if line.strip() else {}
                if int(result.get("compact_revision", 0) or 0) > 0:
                    raise IndexCleared(f"revision {self.start} was compacted", {"index": int(result["compact_revision"])})
                events = [e for e in result.get("events") or [] if not self.recursive or _within(_decode(e["kv"]["key"]), self.key)]
                if events:
                    return [(event, int(result["header"]["revision"])) for event in events]
                if time.monotonic() >= deadline:
                    break
        except requests.exceptions.ConnectionError as exc:
            if time.monotonic() < deadline - 0.05 and "timed out" not in str(exc).lower():
                raise StoreUnavailable(self.endpoints, exc) from None
        except requests.exceptions.Timeout:
            pass
        raise WatchTimedOut("nothing changed", {})
