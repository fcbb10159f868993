"""The types and the abstract operations of :mod:`paz.etcd`; the backends implement them."""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Tls:
    """Files for https:// endpoints: the CA that signed etcd's certificate, and this client's own
    certificate and key when etcd asks for one (``--client-cert-auth``)."""

    ca: str = ""
    cert: str = ""
    key: str = ""


@dataclass(frozen=True)
class Node:
    """A key holding a value, and the revision that wrote it.

    ``ttl`` is the time the key has left where the backend tells it with the value (v2); on v3 a
    key's lease is not looked up on every read, so it is None there.
    """

    key: str
    value: str
    revision: int
    ttl: int | None = None


@dataclass(frozen=True)
class Listing:
    """The keys below a prefix, and the revision they were read at (nothing missed up to it)."""

    nodes: tuple[Node, ...]
    revision: int


PUT, DELETE, EXPIRE = "put", "delete", "expire"


@dataclass(frozen=True)
class Change:
    """One change etcd made at or below a watched prefix.

    ``kind`` is :data:`PUT`, :data:`DELETE` or :data:`EXPIRE` (a TTL or lease ran out); ``value``
    is None when the key is gone, ``previous`` the value it held before (None when it held none).
    ``folder`` is true when a whole folder went at once (v2's recursive delete): every key below
    ``key`` went with it.
    """

    key: str
    kind: str
    value: str | None
    revision: int
    previous: str | None = None
    folder: bool = False

    @property
    def gone(self) -> bool:
        """Whether the key (or the folder) no longer exists after this change."""
        return self.kind != PUT or self.folder


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


class KeyNotFound(Exception):
    """The key is not there."""


class AlreadyExists(Exception):
    """:meth:`Store.create` found the key there already."""


class CompareFailed(Exception):
    """A compare-and-swap or a conditional delete found the key changed (or gone) meanwhile."""


class HistoryCompacted(Exception):
    """A watch asked for a revision etcd no longer holds in its history: read everything again."""

    def __init__(self, revision: int) -> None:
        self.revision = revision
        super().__init__(f"etcd no longer holds revision {revision} in its history")


class Lease(ABC):
    """Keys put with a lease go when it runs out, unless it is kept alive within ``ttl`` seconds."""

    ttl: int

    @abstractmethod
    def keep_alive(self) -> bool:
        """Extend the lease; False when it has run out already (its keys are gone: put them again)."""


class Watch(ABC):
    """The changes at or below a prefix, in revision order, from the revision it was opened at."""

    @abstractmethod
    def next(self, timeout: float) -> Change | None:
        """The next change, or None when nothing changed in ``timeout`` seconds.

        Raises :class:`HistoryCompacted` when the start revision is older than etcd's history, and
        :class:`StoreUnavailable` when etcd stopped answering (the watch is then over).
        """

    @abstractmethod
    def close(self) -> None:
        """Let go of what the watch holds open on etcd."""

    def __enter__(self) -> "Watch":
        return self

    def __exit__(self, *_: Any) -> None:
        self.close()


class Store(ABC):
    """A thread-safe handle on an etcd cluster given as endpoint URLs; it fails over between them and
    raises :class:`StoreUnavailable` when none answers."""

    CAS_ATTEMPTS = 50

    def __init__(self, endpoints: tuple[str, ...] | list[str], timeout: float = 2.0, tls: Tls | None = None) -> None:
        self.endpoints = tuple(endpoints)
        self.timeout = timeout
        self.tls = tls or Tls()

    api: str
    """``"2"`` or ``"3"``: which of etcd's APIs this store speaks."""

    @abstractmethod
    def get(self, key: str, consistent: bool = False) -> Node | None:
        """The key, or None; ``consistent`` asks the leader (a quorum read) instead of the member answering."""

    def value(self, key: str, consistent: bool = False) -> str | None:
        """The value at ``key``, or None."""
        node = self.get(key, consistent)
        return node.value if node else None

    @abstractmethod
    def list_prefix(self, prefix: str, consistent: bool = False) -> Listing:
        """The key ``prefix`` itself when it holds a value, and every key below ``prefix/`` at every
        depth, in key order: what a watch of ``prefix`` follows."""

    @abstractmethod
    def put(self, key: str, value: str, lease: Lease | None = None) -> Node:
        """Set ``key``, bound to ``lease`` when one is given."""

    @abstractmethod
    def create(self, key: str, value: str, lease: Lease | None = None) -> Node:
        """Set ``key`` only when it is absent; :class:`AlreadyExists` otherwise."""

    @abstractmethod
    def swap(self, key: str, value: str, revision: int) -> Node:
        """Set ``key`` only while it still holds what ``revision`` wrote; :class:`CompareFailed` otherwise."""

    @abstractmethod
    def delete(self, key: str, if_value: str | None = None) -> int | None:
        """Delete ``key`` (only while it holds ``if_value``, when given: :class:`CompareFailed` otherwise);
        the revision of the delete, or None when there was no such key."""

    @abstractmethod
    def delete_prefix(self, prefix: str) -> int | None:
        """Delete folder ``prefix`` and every key below it; the revision, or None when there was none."""

    @abstractmethod
    def append(self, folder: str, value: str, lease: Lease | None = None) -> Node:
        """A new key below ``folder`` whose name sorts after every earlier one (the journal's order)."""

    @abstractmethod
    def grant(self, ttl: int) -> Lease:
        """A new lease of ``ttl`` seconds."""

    @abstractmethod
    def watch(self, prefix: str, start: int | None) -> Watch:
        """The changes at or below ``prefix`` from revision ``start`` on (from now when None)."""

    def remove_empty_parents(self, key: str, top: str) -> None:
        """Delete the folders above ``key`` that are empty, up to (not including) ``top``: v2 keeps a
        key's folders after the key is gone; v3 has none."""

    def remove_empty_folders(self, top: str) -> None:
        """Delete every empty folder below ``top`` (what expired keys leave on v2; nothing on v3)."""

    def update_json(self, key: str, change: Callable[[Any], Any], create: Any = None) -> tuple[Any, int]:
        """Read-modify-write the JSON document at ``key`` with compare-and-swap.

        ``change`` gets the current document (``create`` when the key is absent, or
        :class:`KeyNotFound` is raised when ``create`` is None) and returns the new one; it is called
        again if another writer got in between, so concurrent updates of different parts all survive.
        Answers the new document and the revision of the write.
        """
        for _ in range(self.CAS_ATTEMPTS):
            node = self.get(key)
            if node is None and create is None:
                raise KeyNotFound(key)
            updated = change(json.loads(node.value) if node else create)
            text = json.dumps(updated, sort_keys=True)
            try:
                written = self.swap(key, text, node.revision) if node else self.create(key, text)
                return updated, written.revision
            except (CompareFailed, AlreadyExists):
                continue
        raise StoreUnavailable(self.endpoints, RuntimeError(f"{key} kept changing under {self.CAS_ATTEMPTS} attempts"))
