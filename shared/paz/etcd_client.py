"""etcd access with fail-over, timeouts and one error for "etcd is down": the v2 API through
python-etcd, or the v3 API (``PAZ_ETCD_API=3``, :mod:`paz.etcd_v3`) behind the very same surface.

Every caller sees the same small surface: :meth:`Etcd.get`, :meth:`Etcd.write`, :meth:`Etcd.delete`,
:meth:`Etcd.update_json` (compare-and-swap) and :meth:`Etcd.wait`; a process-local view
(:mod:`paz.view`) needs only :meth:`Etcd.read_tree`, :meth:`Etcd.next_change` and :data:`IndexCleared`,
which speak this module's own :class:`Node` and :class:`Change`, never python-etcd's types. When no endpoint answers, the
call raises :class:`StoreUnavailable`, which the web layer turns into a 503; python-etcd's own
conditions (``EtcdKeyNotFound``, ``EtcdAlreadyExist``, ``EtcdCompareFailed``) pass through.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import etcd

from .settings import etcd_api_from_environment

log = logging.getLogger(__name__)

KeyNotFound = etcd.EtcdKeyNotFound
AlreadyExists = etcd.EtcdAlreadyExist
CompareFailed = etcd.EtcdCompareFailed
IndexCleared = etcd.EtcdEventIndexCleared
WatchTimedOut = etcd.EtcdWatchTimedOut
Result = etcd.EtcdResult


@dataclass(frozen=True)
class Tls:
    """Files for https:// endpoints: the CA that signed etcd's certificate, and this client's own
    certificate and key when etcd asks for one (``--client-cert-auth``)."""

    ca: str = ""
    cert: str = ""
    key: str = ""


@dataclass(frozen=True)
class Node:
    """A key holding a value, as a view keeps it."""

    key: str
    value: str
    modified_index: int


@dataclass(frozen=True)
class Change:
    """One change etcd made at or below a watched prefix.

    ``previous`` is the value the key held before (None when it held none); ``dir`` is true when a
    whole folder was written or removed (every key below it goes with a removal).
    """

    key: str
    action: str
    value: str | None
    modifiedIndex: int
    previous: str | None = None
    dir: bool = False


@dataclass(frozen=True)
class Tree:
    """The keys below a prefix and etcd's index when they were read (nothing missed up to it)."""

    nodes: tuple[Node, ...]
    index: int


class StoreUnavailable(Exception):
    """No etcd endpoint answered."""

    def __init__(self, endpoints: tuple[str, ...], cause: BaseException | None = None) -> None:
        self.endpoints = endpoints
        self.cause = cause
        """What the client said (for the logs: a person is told what to do instead)."""
        super().__init__(
            f"etcd is unreachable at {', '.join(endpoints)}: start it (paz up starts one) "
            "or point PAZ_ETCD_ENDPOINTS at a member that runs"
        )


class Etcd:
    """A thread-safe handle on an etcd cluster given as a list of endpoint URLs.

    The python-etcd client is made on first use and made again after a failure, so a service
    started before etcd, or one whose etcd was restarted with a new cluster id, recovers by itself.
    """

    CAS_ATTEMPTS = 50

    def __new__(cls, *args: Any, api: str | None = None, **kwargs: Any) -> "Etcd":
        """An ``Etcd`` speaks the API ``api`` names (default: ``PAZ_ETCD_API``); callers never choose."""
        if cls is Etcd and (api or etcd_api_from_environment()) == "3":
            from .etcd_v3 import EtcdV3

            return super().__new__(EtcdV3)
        return super().__new__(cls)

    def __init__(self, endpoints: tuple[str, ...] | list[str], timeout: float = 2.0, tls: "Tls | None" = None,
                 api: str | None = None) -> None:
        self.endpoints = tuple(endpoints)
        self.timeout = timeout
        self.tls = tls or Tls()
        self._client: etcd.Client | None = None
        self._lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings: Any) -> "Etcd":
        tls = Tls(settings.etcd_ca, settings.etcd_cert, settings.etcd_key)
        return cls(settings.etcd_endpoints, settings.etcd_timeout, tls, api=settings.etcd_api)

    def _make_client(self) -> etcd.Client:
        hosts = tuple((urlsplit(e).hostname, urlsplit(e).port) for e in self.endpoints)
        protocol = urlsplit(self.endpoints[0]).scheme
        return etcd.Client(
            host=hosts if len(hosts) > 1 else hosts[0][0],
            port=hosts[0][1],
            protocol=protocol,
            read_timeout=self.timeout,
            allow_reconnect=len(hosts) > 1,
            cert=(self.tls.cert, self.tls.key) if self.tls.cert else None,
            ca_cert=self.tls.ca or None,
        )

    def _call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        for attempt in (1, 2):
            try:
                with self._lock:
                    if self._client is None:
                        self._client = self._make_client()
                    client = self._client
                return getattr(client, method)(*args, **kwargs)
            except etcd.EtcdWatchTimedOut:
                raise
            except etcd.EtcdClusterIdChanged:
                # etcd was replaced under us (new cluster id): the next attempt talks to the new one.
                self._forget(client)
                if attempt == 2:
                    raise StoreUnavailable(self.endpoints) from None
            except (etcd.EtcdConnectionFailed, etcd.EtcdException) as exc:
                if type(exc) not in (etcd.EtcdConnectionFailed, etcd.EtcdException):
                    raise  # a condition of the key (not found, compare failed, ...), not an outage
                self._forget(self._client)
                raise StoreUnavailable(self.endpoints, exc) from None
        raise AssertionError("unreachable")

    def _forget(self, client: etcd.Client | None) -> None:
        with self._lock:
            if self._client is client:
                self._client = None

    def read(self, key: str, **kwargs: Any) -> Result:
        """The node at ``key`` (python-etcd's result); raises :data:`KeyNotFound`."""
        return self._call("read", key, **kwargs)

    def get(self, key: str, consistent: bool = False) -> str | None:
        """The value at ``key``, or None when there is none; ``consistent`` asks the leader (quorum read)."""
        try:
            return self.read(key, quorum=consistent).value
        except KeyNotFound:
            return None

    def children(self, key: str, recursive: bool = False, consistent: bool = False) -> list[Result]:
        """The leaf nodes below directory ``key`` (empty when it does not exist)."""
        try:
            node = self.read(key, recursive=recursive, quorum=consistent)
        except KeyNotFound:
            return []
        return [child for child in node.leaves if child.key != node.key]

    def write(self, key: str, value: str | None, **kwargs: Any) -> Result:
        """Set ``key``; ``ttl``, ``prevExist``, ``prevIndex``, ``prevValue`` are etcd's conditions."""
        return self._call("write", key, value, **kwargs)

    def refresh(self, key: str, ttl: int) -> Result:
        """Extend ``key``'s TTL without notifying watchers; raises :data:`KeyNotFound`."""
        return self._call("write", key, None, ttl=ttl, refresh=True, prevExist=True)

    def delete(self, key: str, **kwargs: Any) -> Result:
        return self._call("delete", key, **kwargs)

    def remove_empty_parents(self, key: str, top: str) -> None:
        """Delete the folders above ``key`` that are empty, up to (not including) ``top``.

        etcd v2 keeps a key's folders after the key is gone; a folder is deleted only while it is
        empty (``dir=true`` without ``recursive``), so a key written meanwhile is never lost.
        """
        folder = key.rsplit("/", 1)[0]
        while folder.startswith(top + "/"):
            try:
                self.delete(folder, dir=True)
            except (etcd.EtcdDirNotEmpty, KeyNotFound, etcd.EtcdNotDir):
                return
            folder = folder.rsplit("/", 1)[0]

    def remove_empty_folders(self, top: str) -> None:
        """Delete every empty folder below ``top`` (what expired keys leave behind)."""
        try:
            tree = self.read(top, recursive=True)
        except KeyNotFound:
            return
        for node in tree.get_subtree():
            if node.dir and node.key != tree.key and [leaf.key for leaf in node.leaves] == [node.key]:
                self.remove_empty_parents(node.key + "/-", top)

    def wait(self, key: str, index: int | None, timeout: float, recursive: bool = True) -> Result:
        """Block until the next change at or below ``key`` from ``index``.

        Raises :data:`WatchTimedOut` when nothing changed in ``timeout`` seconds and
        :data:`IndexCleared` when ``index`` is older than etcd's event history.
        """
        kwargs: dict[str, Any] = {"wait": True, "recursive": recursive, "timeout": timeout}
        if index is not None:
            kwargs["waitIndex"] = index
        return self._call("read", key, **kwargs)

    def end_waits(self) -> None:
        """Let go of what this thread's waits hold open between calls (v3 keeps a watch stream; v2 nothing)."""

    def read_tree(self, prefix: str, consistent: bool = False) -> Tree:
        """Every key below ``prefix`` with its value, and etcd's index at the read.

        ``consistent`` asks the cluster's leader (a quorum read) instead of the member answering.
        """
        try:
            tree = self.read(prefix, recursive=True, quorum=consistent)
        except KeyNotFound as missing:
            return Tree((), int((missing.payload or {}).get("index", 0)))
        nodes = tuple(Node(n.key, n.value, n.modifiedIndex) for n in tree.leaves if not n.dir)
        return Tree(nodes, tree.etcd_index)

    def next_change(self, prefix: str, index: int, timeout: float) -> Change:
        """The first change at or below ``prefix`` whose index is ``index`` or later.

        Raises :data:`WatchTimedOut` when none came in ``timeout`` seconds, :data:`IndexCleared`
        when etcd no longer holds ``index`` in its history.
        """
        result = self.wait(prefix, index, timeout)
        previous = getattr(result, "_prev_node", None)
        return Change(
            key=result.key, action=result.action, value=result.value, modifiedIndex=result.modifiedIndex,
            previous=previous.value if previous is not None else None, dir=bool(result.dir),
        )

    def update_json(self, key: str, change: Callable[[Any], Any], create: Any = None) -> tuple[Any, int]:
        """Read-modify-write the JSON document at ``key`` with compare-and-swap.

        ``change`` gets the current document (``create`` when the key is absent, or KeyNotFound
        is raised when ``create`` is None) and returns the new one; it is called again if another
        writer got in between, so concurrent updates of different parts all survive. Answers the
        new document and the etcd index of the write.
        """
        for _ in range(self.CAS_ATTEMPTS):
            try:
                node = self.read(key)
                current, condition = json.loads(node.value), {"prevIndex": node.modifiedIndex}
            except KeyNotFound:
                if create is None:
                    raise
                current, condition = create, {"prevExist": False}
            updated = change(current)
            try:
                written = self.write(key, json.dumps(updated, sort_keys=True), **condition)
                return updated, written.modifiedIndex
            except (CompareFailed, AlreadyExists, KeyNotFound):
                continue
        raise StoreUnavailable(self.endpoints, RuntimeError(f"{key} kept changing under {self.CAS_ATTEMPTS} attempts"))
