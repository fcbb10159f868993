"""Following a part of etcd's key space without missing a change.

:class:`Watcher` reads the whole tree once (``on_reset``), then waits on etcd with ``waitIndex``
from the index after the read, moving past each event it delivers (``on_change``). If etcd has
cleared that index from its history, or was unreachable, it reads the whole tree again, so the
consumer's view is always rebuilt from a consistent snapshot.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from .etcd_client import Etcd, IndexCleared, KeyNotFound, Result, StoreUnavailable, WatchTimedOut

log = logging.getLogger(__name__)


class Watcher:
    """Calls ``on_reset(tree_or_None)`` and then ``on_change(event)`` for every change below ``prefix``."""

    POLL_SECONDS = 25.0
    RETRY_SECONDS = 0.5

    def __init__(
        self,
        etcd: Etcd,
        prefix: str,
        on_change: Callable[[Result], None],
        on_reset: Callable[[Result | None], None],
    ) -> None:
        self.etcd = etcd
        self.prefix = prefix
        self.on_change = on_change
        self.on_reset = on_reset
        self.next_index: int | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> "Watcher":
        self._thread = threading.Thread(target=self._run, name=f"paz-watch{self.prefix}", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()

    @property
    def running(self) -> bool:
        return bool(self._thread and self._thread.is_alive()) and not self._stop.is_set()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                if self.next_index is None:
                    self._reset()
                self._follow_once()
            except IndexCleared:
                log.info("watch index cleared, reading the tree again", extra={"prefix": self.prefix})
                self.next_index = None
            except WatchTimedOut:
                continue
            except StoreUnavailable as exc:
                log.warning("watch interrupted", extra={"prefix": self.prefix, "reason": str(exc)})
                self.next_index = None
                self._stop.wait(self.RETRY_SECONDS)
            except Exception:
                log.exception("watch consumer failed; reading the tree again", extra={"prefix": self.prefix})
                self.next_index = None
                self._stop.wait(self.RETRY_SECONDS)

    def _reset(self) -> None:
        try:
            tree = self.etcd.read(self.prefix, recursive=True)
            index = tree.etcd_index
        except KeyNotFound as missing:
            tree, index = None, int(missing.payload.get("index", 0)) if missing.payload else 0
        self.on_reset(tree)
        self.next_index = index + 1

    def _follow_once(self) -> None:
        event = self.etcd.wait(self.prefix, self.next_index, timeout=self.POLL_SECONDS)
        self.next_index = event.modifiedIndex + 1
        if not self._stop.is_set():
            self.on_change(event)
