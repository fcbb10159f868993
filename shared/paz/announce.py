"""Keeping keys alive in etcd: a service's own ``/paz/services/paz-<name>`` and, in the scheduler,
its instances' keys.

A key is written with a TTL and refreshed every third of it; etcd's ``refresh`` extends the TTL
without waking watchers, so haproxy-sync sees a change only when an address really changes. When
etcd is unreachable, the announcer retries every second and writes the key again once etcd is back,
even if etcd lost it.
"""

from __future__ import annotations

import logging
import threading

from . import keys
from .etcd_client import CompareFailed, Etcd, KeyNotFound, StoreUnavailable

log = logging.getLogger(__name__)

class Announcer:
    """Announces a set of ``key -> value`` pairs with a TTL until they are withdrawn."""

    RETRY_SECONDS = 1.0

    def __init__(self, etcd: Etcd, ttl: int) -> None:
        self.etcd = etcd
        self.ttl = ttl
        self._wanted: dict[str, str] = {}
        self._written: set[str] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None

    def announce(self, key: str, value: str) -> None:
        """Keep ``key`` = ``value`` in etcd from now on (written at once when etcd answers)."""
        with self._lock:
            self._wanted[key] = value
            self._written.discard(key)
        self._beat_key(key, value)

    def withdraw(self, key: str) -> None:
        """Stop announcing ``key`` and delete it, if it still holds what this announcer wrote."""
        with self._lock:
            value = self._wanted.pop(key, None)
            self._written.discard(key)
        if value is None:
            return
        try:
            self.etcd.delete(key, prevValue=value)
            self.etcd.remove_empty_parents(key, keys.SERVICES)
        except (KeyNotFound, StoreUnavailable) as exc:
            log.info("withdraw left nothing to delete", extra={"key": key, "reason": str(exc)})
        except CompareFailed as exc:  # someone else owns the key now
            log.info("withdraw skipped", extra={"key": key, "reason": str(exc)})

    @property
    def keys(self) -> dict[str, str]:
        with self._lock:
            return dict(self._wanted)

    def start(self) -> "Announcer":
        self._thread = threading.Thread(target=self._run, name="paz-announcer", daemon=True)
        self._thread.start()
        return self

    def stop(self, withdraw: bool = True) -> None:
        """Stop the refresh thread and, on a clean stop, withdraw every key.

        ``withdraw=False`` leaves the keys to live out their TTL, for keys that stay true after this
        process ends (the scheduler's instance keys: the instances keep serving while it restarts).
        """
        self._stop.set()
        self._wake.set()
        if self._thread:
            self._thread.join(timeout=5)
        if withdraw:
            for key in list(self.keys):
                self.withdraw(key)

    def _run(self) -> None:
        while not self._stop.is_set():
            healthy = all(self._beat_key(key, value) for key, value in self.keys.items())
            self._wake.wait(max(self.ttl / 3, 0.2) if healthy else self.RETRY_SECONDS)
            self._wake.clear()

    def _beat_key(self, key: str, value: str) -> bool:
        """Refresh ``key``, writing it again when etcd lost it; False when etcd is unreachable."""
        try:
            with self._lock:
                if key not in self._wanted:
                    return True
                written = key in self._written
            if written:
                try:
                    node = self.etcd.refresh(key, self.ttl)
                    if node.value == value:
                        return True
                except KeyNotFound:
                    pass
            self.etcd.write(key, value, ttl=self.ttl)
            with self._lock:
                if key in self._wanted:
                    self._written.add(key)
            if not written:
                log.info("announced", extra={"key": key, "value": value, "ttl": self.ttl})
            return True
        except StoreUnavailable as exc:
            with self._lock:
                self._written.discard(key)
            log.warning("announce failed, retrying", extra={"key": key, "reason": str(exc)})
            return False
