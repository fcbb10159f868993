"""A process-local view of etcd: one watch per process, and reads that never wait on etcd.

A service declares the subtrees it reads (:attr:`paz.service.Service.watches`); the process keeps
them in memory, read once and then followed by one recursive etcd watch on their common folder,
resuming from the index it reached after every change, so nothing is missed:

* etcd away (connection refused, timeouts): the view keeps answering what it holds and retries;
  when etcd answers again it checks etcd's index: an etcd that went back (a new, wiped member)
  is read again, otherwise the watch goes on from where it was and etcd replays what came meanwhile;
* etcd's history no longer holding the next index (more than 1000 changes elsewhere): the subtrees
  are read again and compared with what the view held, so a listener learns whether anything it
  follows changed unseen (``lost``) or only the index moved on.

:attr:`EtcdView.index` is the etcd index the view has reached: every change up to it below the
watched subtrees is applied. :meth:`EtcdView.wait_for` lets a read wait for a client's own write.
It is the suite's one way of following etcd: services read through it, the orchestrator's event
hub, haproxy-sync's engine and the scheduler's announcer listen to it.
"""

from __future__ import annotations

import logging
import posixpath
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from . import metrics
from .etcd import Change, HistoryCompacted, Listing, Node, Store, StoreUnavailable, Watch

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Listener:
    """Told, on the view's watch thread, of every change and of every time the view was read anew.

    ``reloaded(lost, index)``: the view now holds etcd's state at ``index``; ``lost`` is true when
    something below the watched subtrees changed without the view seeing each change.
    """

    changed: Callable[[Change], None]
    reloaded: Callable[[bool, int], None]


def _covering(prefixes: tuple[str, ...]) -> tuple[str, ...]:
    """``prefixes`` without those below another one."""
    return tuple(sorted(p for p in set(prefixes) if not any(p != q and p.startswith(q + "/") for q in prefixes)))


def below(key: str, prefix: str) -> bool:
    return key == prefix or key.startswith(prefix + "/")


class EtcdView:
    """The keys below ``prefixes``, kept current by one watch (started on first use)."""

    POLL_SECONDS = 25.0
    RETRY_SECONDS = 0.5

    def __init__(self, etcd: Store, prefixes: tuple[str, ...], load_timeout: float | None = None) -> None:
        self.etcd = etcd
        self.prefixes = _covering(prefixes)
        self.root = posixpath.commonpath(self.prefixes) if len(self.prefixes) > 1 else self.prefixes[0]
        self.load_timeout = load_timeout if load_timeout is not None else etcd.timeout * 2
        self._nodes: dict[str, Node] = {}
        self._index = 0
        self._skip_until: dict[str, int] = {}
        self._loaded = False
        self.away: str | None = None
        """Why etcd does not answer the watch, while it does not (the view keeps what it holds)."""
        self._listeners: list[Listener] = []
        self._changed = threading.Condition()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()

    # -- reading ------------------------------------------------------------------------------

    @property
    def index(self) -> int:
        """The etcd index up to which every change below the watched subtrees is applied."""
        self._ensure_loaded()
        return self._index

    def get(self, key: str) -> str | None:
        """The value at ``key``, or None."""
        self._ensure_loaded()
        node = self._nodes.get(key)
        return node.value if node else None

    def nodes(self, prefix: str) -> list[Node]:
        """Every key at or below ``prefix``, in key order."""
        self._ensure_loaded()
        with self._changed:
            return sorted((n for k, n in self._nodes.items() if below(k, prefix)), key=lambda n: n.key)

    def children(self, prefix: str) -> list[Node]:
        """The keys directly inside folder ``prefix``, in key order."""
        return [n for n in self.nodes(prefix) if "/" not in n.key[len(prefix) + 1:] and n.key != prefix]

    def wait_for(self, index: int, timeout: float) -> bool:
        """Wait until the view has reached etcd ``index``; False when it did not within ``timeout``."""
        self._ensure_loaded()
        if self._index >= index:
            return True
        with self._changed:
            return self._changed.wait_for(lambda: self._index >= index, timeout)

    def wait_past(self, index: int, timeout: float) -> int:
        """Wait until the view moves past ``index`` (or ``timeout``); answers the index it has reached."""
        with self._changed:
            self._changed.wait_for(lambda: self._index > index or self._stop.is_set(), timeout)
            return self._index

    def listen(self, listener: Listener) -> None:
        """Tell ``listener`` of the view as it is (at once when already read) and of every change after."""
        with self._changed:
            self._listeners.append(listener)
            if self._loaded:
                listener.reloaded(False, self._index)
        self.start()

    # -- lifecycle ----------------------------------------------------------------------------

    def start(self) -> "EtcdView":
        with self._start_lock:
            if self._thread is None or not self._thread.is_alive():
                self._stop.clear()
                self._thread = threading.Thread(target=self._run, name=f"paz-view{self.root}", daemon=True)
                self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        with self._changed:
            self._changed.notify_all()

    @property
    def loaded(self) -> bool:
        return self._loaded

    def _ensure_loaded(self) -> None:
        if self._loaded:
            return
        self.start()
        with self._changed:
            if not self._changed.wait_for(lambda: self._loaded, self.load_timeout):
                raise StoreUnavailable(self.etcd.endpoints, RuntimeError(f"{self.root} could not be read yet"))

    # -- following etcd -----------------------------------------------------------------------

    def _run(self) -> None:
        away = compacted = False
        away_since = 0.0
        watch: Watch | None = None
        figures = metrics.figures()
        while not self._stop.is_set():
            try:
                if not self._loaded or compacted:
                    self._install(self._read(), lost=None if compacted else False)
                elif away:
                    self._resume()
                if away:
                    figures.watch_reconnects.inc()
                    figures.watch_lag.set(0)
                away = compacted = False
                self.away = None
                watch = watch or self.etcd.watch(self.root, self._index + 1)
                change = watch.next(self.POLL_SECONDS)
                if change is not None:
                    self._apply(change)
            except HistoryCompacted:
                log.info("etcd no longer holds the view's next index; reading again", extra={"index": self._index})
                compacted, watch = True, _closed(watch)
            except StoreUnavailable as exc:
                if not away:
                    log.warning("etcd away; the view keeps what it holds", extra={"root": self.root, "reason": str(exc)})
                    away_since = time.monotonic()
                figures.watch_lag.set(time.monotonic() - away_since)
                away, self.away, watch = True, str(exc), _closed(watch)
                self._stop.wait(self.RETRY_SECONDS)
            except Exception:
                log.exception("the view failed to follow etcd; reading again", extra={"root": self.root})
                away, watch = True, _closed(watch)
                self._stop.wait(self.RETRY_SECONDS)
        _closed(watch)

    def _read(self) -> dict[str, Listing]:
        return {prefix: self.etcd.list_prefix(prefix) for prefix in self.prefixes}

    def _resume(self) -> None:
        """After an outage: go on from the reached index, unless etcd went back (a new member)."""
        trees = self._read()
        if min(tree.revision for tree in trees.values()) < self._index:
            log.warning("etcd's index went back (a new member?); reading again", extra={"index": self._index})
            self._install(trees, lost=None)
        else:
            log.info("etcd is back; the view goes on from its index", extra={"index": self._index})

    def _install(self, trees: dict[str, Listing], lost: bool | None) -> None:
        """Hold ``trees`` from now on; ``lost=None`` compares them with what was held to find out."""
        nodes = {node.key: node for tree in trees.values() for node in tree.nodes}
        index = min(tree.revision for tree in trees.values())
        with self._changed:
            if lost is None:
                lost = nodes != self._nodes
            self._nodes, self._index, self._loaded = nodes, index, True
            self._skip_until = {prefix: tree.revision for prefix, tree in trees.items()}
            listeners = list(self._listeners)
            self._changed.notify_all()
        log.info("read from etcd", extra={"root": self.root, "keys": len(nodes), "index": index, "lost": lost})
        for listener in listeners:
            listener.reloaded(lost, index)

    def _apply(self, change: Change) -> None:
        prefix = next((p for p in self.prefixes if below(change.key, p) or below(p, change.key)), None)
        relevant = prefix is not None and change.revision > self._skip_until.get(prefix, 0)
        with self._changed:
            if relevant:
                self._store(change)
            self._index = max(self._index, change.revision)
            listeners = list(self._listeners) if relevant else []
            self._changed.notify_all()
        for listener in listeners:
            listener.changed(change)

    def _store(self, change: Change) -> None:
        if change.folder:
            for key in [k for k in self._nodes if below(k, change.key)]:
                del self._nodes[key]
        elif change.gone:
            self._nodes.pop(change.key, None)
        elif change.value is not None:
            if any(below(change.key, p) for p in self.prefixes):
                self._nodes[change.key] = Node(change.key, change.value, change.revision)


def _closed(watch: Watch | None) -> None:
    """Close ``watch`` (when there is one); None, for the caller to hold instead."""
    if watch is not None:
        watch.close()
