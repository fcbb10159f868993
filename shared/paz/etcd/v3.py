"""etcd's v3 API through etcd3gw (the default, ``PAZ_ETCD_API=3``).

Why etcd3gw: it speaks v3 through etcd's own JSON gateway over ``requests`` (no gRPC, no protobuf,
three small dependencies), is released by OpenStack to this day, and covers what the suite uses:
leases, transactions, watches from a revision, TLS with client certificates. python-etcd3 was last
released in 2020, aetcd is asyncio-only, etcd-sdk-python is a young gRPC fork of python-etcd3.

The keys are the same strings as on v2, so ``etcdctl get /paz/services/paz-scheduler`` answers as
the seed's ``etcdctl`` line did. A folder is a key prefix (``<key>/``): there are no empty folders.
Conditional writes are transactions on a key's create revision, mod revision or value; a watch is
one gateway stream, read on change after change; a deleted key whose lease has run out is an
:data:`~paz.etcd.EXPIRE`, as v2 told it.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import etcd3gw
import requests
from etcd3gw import exceptions as gw_errors

from . import (
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

APPEND_ATTEMPTS = 50


def _encode(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def _decode(raw: str | None) -> str:
    return base64.b64decode(raw or "").decode()


def _prefix_end(prefix: str) -> str:
    """The first key after every key starting with ``prefix`` (v3's range end for a prefix)."""
    raw = prefix.encode()
    return base64.b64encode(raw[:-1] + bytes([raw[-1] + 1])).decode()


def _prefix_range(prefix: str) -> dict[str, str]:
    return {"key": _encode(prefix), "range_end": _prefix_end(prefix)}


def _within(key: str, prefix: str) -> bool:
    return key == prefix or key.startswith(prefix.rstrip("/") + "/")


def _node(kv: dict[str, Any]) -> Node:
    return Node(_decode(kv["key"]), _decode(kv.get("value")), int(kv.get("mod_revision", 0)))


def _lease_id(kv: dict[str, Any] | None) -> int:
    return int((kv or {}).get("lease", 0) or 0)


class V3Lease(Lease):
    def __init__(self, store: "V3Store", ttl: int, lease_id: int) -> None:
        self.store, self.ttl, self.id = store, ttl, lease_id

    def keep_alive(self) -> bool:
        answer = self.store._post("/lease/keepalive", {"ID": self.id})
        return int(answer.get("result", {}).get("TTL", -1) or -1) > 0


class V3Store(Store):
    """:class:`~paz.etcd.Store` on etcd's v3 JSON gateway, failing over to the next endpoint. Reads are
    linearizable (v3's default), so ``consistent`` asks for nothing more."""

    api = "3"

    def __init__(self, endpoints: tuple[str, ...] | list[str], timeout: float = 2.0, tls: Tls | None = None) -> None:
        super().__init__(endpoints, timeout, tls)
        self._clients = {endpoint: self._client(endpoint) for endpoint in self.endpoints}
        self._preferred = 0

    def _client(self, endpoint: str) -> etcd3gw.Etcd3Client:
        url = urlsplit(endpoint)
        client = etcd3gw.Etcd3Client(
            host=url.hostname or "127.0.0.1", port=url.port or 2379, protocol=url.scheme,
            ca_cert=self.tls.ca or None, cert_cert=self.tls.cert or None, cert_key=self.tls.key or None,
            timeout=self.timeout, api_path="/v3/",
        )
        client.session.trust_env = False
        return client

    def _endpoints_in_order(self) -> list[str]:
        first = self._preferred % len(self.endpoints)
        return list(self.endpoints[first:] + self.endpoints[:first])

    def _post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        """POST to the first endpoint that answers, remembering it; StoreUnavailable when none does."""
        cause: BaseException | None = None
        for endpoint in self._endpoints_in_order():
            client = self._clients[endpoint]
            try:
                answer = client.post(client.get_url(path), json=body)
                self._preferred = self.endpoints.index(endpoint)
                return answer
            except (gw_errors.ConnectionFailedError, gw_errors.ConnectionTimeoutError, gw_errors.InternalServerError) as exc:
                cause = exc
        raise StoreUnavailable(self.endpoints, cause)

    def _txn(self, compare: list[dict[str, Any]], success: list[dict[str, Any]]) -> dict[str, Any]:
        return self._post("/kv/txn", {"compare": compare, "success": success, "failure": []})

    @staticmethod
    def _revision(answer: dict[str, Any]) -> int:
        return int(answer["header"]["revision"])

    # reads -------------------------------------------------------------------------------------

    def get(self, key: str, consistent: bool = False) -> Node | None:
        answer = self._post("/kv/range", {"key": _encode(key)})
        return _node(answer["kvs"][0]) if answer.get("kvs") else None

    def list_prefix(self, prefix: str, consistent: bool = False) -> Listing:
        answer = self._post("/kv/range", _prefix_range(prefix))
        nodes = (_node(kv) for kv in answer.get("kvs") or [])
        return Listing(tuple(node for node in nodes if _within(node.key, prefix)), self._revision(answer))

    # writes ------------------------------------------------------------------------------------

    def _put(self, key: str, value: str, lease: Lease | None, compare: list[dict[str, Any]]) -> Node | None:
        """The key as written, or None when ``compare`` did not hold."""
        put: dict[str, Any] = {"key": _encode(key), "value": _encode(value)}
        if isinstance(lease, V3Lease):
            put["lease"] = lease.id
        answer = self._txn(compare, [{"request_put": put}])
        return Node(key, value, self._revision(answer)) if answer.get("succeeded") else None

    def put(self, key: str, value: str, lease: Lease | None = None) -> Node:
        written = self._put(key, value, lease, [])
        assert written is not None  # no condition to fail
        return written

    def create(self, key: str, value: str, lease: Lease | None = None) -> Node:
        absent = {"key": _encode(key), "target": "CREATE", "result": "EQUAL", "create_revision": 0}
        written = self._put(key, value, lease, [absent])
        if written is None:
            raise AlreadyExists(key)
        return written

    def swap(self, key: str, value: str, revision: int) -> Node:
        unchanged = {"key": _encode(key), "target": "MOD", "result": "EQUAL", "mod_revision": int(revision)}
        written = self._put(key, value, None, [unchanged])
        if written is None:
            raise CompareFailed(key)
        return written

    def delete(self, key: str, if_value: str | None = None) -> int | None:
        compare = [] if if_value is None else [{"key": _encode(key), "target": "VALUE", "result": "EQUAL", "value": _encode(if_value)}]
        answer = self._txn(compare, [{"request_delete_range": {"key": _encode(key)}}])
        if not answer.get("succeeded"):
            if self.get(key) is None:
                return None
            raise CompareFailed(key)
        deleted = int(answer["responses"][0]["response_delete_range"].get("deleted", 0) or 0)
        return self._revision(answer) if deleted else None

    def delete_prefix(self, prefix: str) -> int | None:
        answer = self._txn([], [{"request_delete_range": {"key": _encode(prefix)}},
                                {"request_delete_range": _prefix_range(prefix.rstrip("/") + "/")}])
        deleted = sum(int(r["response_delete_range"].get("deleted", 0) or 0) for r in answer["responses"])
        return self._revision(answer) if deleted else None

    def append(self, folder: str, value: str, lease: Lease | None = None) -> Node:
        """v2's in-order key: ``<folder>/<revision, 20 digits>``, created only if no one took the name."""
        for _ in range(APPEND_ATTEMPTS):
            try:
                return self.create(f"{folder}/{self._next_in_order(folder):020d}", value, lease)
            except AlreadyExists:
                continue
        raise StoreUnavailable(self.endpoints, RuntimeError(f"no free in-order key under {folder}"))

    def _next_in_order(self, folder: str) -> int:
        """The next revision, or one past the last in-order key when that is higher (keys copied from a
        v2 tree carry v2's indexes, which a young v3 store's revisions have not reached)."""
        body = {**_prefix_range(folder + "/"), "limit": 1, "sort_order": "DESCEND", "sort_target": "KEY", "keys_only": True}
        answer = self._post("/kv/range", body)
        last = _decode(answer["kvs"][0]["key"]).rsplit("/", 1)[-1] if answer.get("kvs") else ""
        return max(self._revision(answer), int(last) if last.isdigit() else 0) + 1

    def grant(self, ttl: int) -> Lease:
        return V3Lease(self, int(ttl), int(self._post("/lease/grant", {"TTL": int(ttl)})["ID"]))

    def lease_expired(self, lease_id: int) -> bool:
        """Whether lease ``lease_id`` has run out (etcd deleted its keys), as opposed to a key deleted by someone."""
        return bool(lease_id) and int(self._post("/kv/lease/timetolive", {"ID": lease_id}).get("TTL", -1)) < 0

    # watching ----------------------------------------------------------------------------------

    def watch(self, prefix: str, start: int | None) -> Watch:
        return V3Watch(self, prefix, start)

    def open_stream(self, prefix: str, start: int | None, timeout: float) -> requests.Response:
        """A gateway watch stream on ``prefix`` from revision ``start``, whose reads time out after ``timeout``."""
        request: dict[str, Any] = {**_prefix_range(prefix), "prev_kv": True}
        if start is not None:
            request["start_revision"] = start
        client = self._clients[self._endpoints_in_order()[0]]
        try:
            return client.session.post(client.get_url("/watch"), json={"create_request": request}, stream=True,
                                       timeout=(self.timeout, timeout))
        except requests.exceptions.RequestException as exc:
            raise StoreUnavailable(self.endpoints, exc) from None


class V3Watch(Watch):
    """A gateway watch stream, read on change after change (etcd's watches are made to stay open).

    A revision that changed several keys (a prefix deleted at once) gives several changes, handed out
    one at a time. A read that times out ends the stream's reader, so the next one opens the stream
    again from the revision after the last change handed out. The gateway's prefix also matches
    siblings (``/paz/services-old`` for ``/paz/services``): only the prefix and keys below
    ``prefix/`` count.
    """

    def __init__(self, store: V3Store, prefix: str, start: int | None) -> None:
        self.store, self.prefix, self.start = store, prefix, start
        self.position = start
        """The revision the stream goes on from when it is opened again (None: from now)."""
        self.answer: requests.Response | None = None
        self.lines: Iterator[bytes] | None = None
        self.timeout = 0.0
        self.pending: list[Change] = []

    def next(self, timeout: float) -> Change | None:
        if not self.pending:
            self.pending = self._read(timeout)
        return self.pending.pop(0) if self.pending else None

    def close(self) -> None:
        if self.answer is not None:
            self.answer.close()
        self.answer = self.lines = None

    def _open(self, timeout: float) -> Iterator[bytes]:
        if self.lines is None or timeout != self.timeout:
            self.close()
            self.answer = self.store.open_stream(self.prefix, self.position, timeout)
            self.lines, self.timeout = self.answer.iter_lines(), timeout
        return self.lines

    def _read(self, timeout: float) -> list[Change]:
        """The changes of the next response that has any below the prefix; none after ``timeout``."""
        deadline = time.monotonic() + timeout
        try:
            for line in self._open(timeout):
                result = json.loads(line).get("result", {}) if line.strip() else {}
                if int(result.get("compact_revision", 0) or 0) > 0:
                    self.close()
                    raise HistoryCompacted(self.start or 0)
                if self.position is None and "header" in result:  # opened from now: go on from here
                    self.position = int(result["header"]["revision"]) + 1
                changes = [self._change(e) for e in result.get("events") or [] if _within(_decode(e["kv"]["key"]), self.prefix)]
                if changes:
                    self.position = changes[-1].revision + 1
                    return changes
                if time.monotonic() >= deadline:
                    return []
        except requests.exceptions.Timeout:
            self.close()
            return []
        except requests.exceptions.RequestException as exc:  # refused, reset, or cut off mid-stream
            self.close()
            if "timed out" not in str(exc).lower():  # a read timeout mid-stream comes as a ConnectionError
                raise StoreUnavailable(self.store.endpoints, exc) from None
            return []
        self.close()
        raise StoreUnavailable(self.store.endpoints, RuntimeError("etcd ended the watch stream"))

    def _change(self, event: dict[str, Any]) -> Change:
        kv, prev = event["kv"], event.get("prev_kv")
        previous = _decode(prev.get("value")) if prev else None
        revision = int(kv.get("mod_revision", 0))
        if event.get("type") == "DELETE":
            kind = EXPIRE if self.store.lease_expired(_lease_id(prev)) else DELETE
            return Change(_decode(kv["key"]), kind, None, revision, previous)
        return Change(_decode(kv["key"]), PUT, _decode(kv.get("value")), revision, previous)
