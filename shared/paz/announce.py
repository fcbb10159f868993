"""Keeping keys alive in etcd: a service's own ``/paz/services/paz-<name>`` and, in the scheduler,
its instances' keys.

A key is put with a lease of its own, kept alive every third of its TTL; keeping a lease alive does
not wake watchers, so haproxy-sync sees a change only when an address really changes. When etcd is
unreachable, the announcer retries every second and puts the key again (on a new lease) once etcd
is back, even if etcd lost it.
"""

from __future__ import annotations

import logging
import threading

from . import keys
from .etcd import CompareFailed, Lease, Store, StoreUnavailable

log = logging.getLogger(__name__)


def withdraw(etcd: Store, key: str, value: str) -> None:
    """Delete ``key`` if it still holds ``value`` (else someone else owns it now), and its emptied folders."""
    try:
        etcd.delete(key, if_value=value)
        etcd.remove_empty_parents(key, keys.SERVICES)
    except StoreUnavailable as exc:
        log.info("withdraw left nothing to delete", extra={"key": key, "reason": str(exc)})
    except CompareFailed as exc:
        log.info("withdraw skipped", extra={"key": key, "reason": str(exc)})


class Announcer:
    """Announces a set of ``key -> value`` pairs with a TTL until they are withdrawn."""

    RETRY_SECONDS = 1.0

    def __init__(self, etcd: Store, ttl: int) -> None:
        self.etcd = etcd
        self.ttl = ttl
        self._wanted: dict[str, str] = {}
        self._leases: dict[str, Lease] = {}
        """The lease each key was put with, while it is believed to be in etcd."""
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None

    def announce(self, key: str, value: str) -> None:
        """Keep ``key`` = ``value`` in etcd from now on (written at once when etcd answers)."""
        with self._lock:
            self._wanted[key] = value
            self._leases.pop(key, None)
        self._beat_key(key, value)

    def withdraw(self, key: str) -> None:
        """Stop announcing ``key`` and delete it, if it still holds what this announcer wrote."""
        with self._lock:
            value = self._wanted.pop(key, None)
            self._leases.pop(key, None)
        if value is not None:
            withdraw(self.etcd, key, value)

    def forget(self) -> None:
        """Stop keeping every key alive, without deleting any: another process keeps them from now on
        (the scheduler that leads now announces the instances)."""
        with self._lock:
            self._wanted.clear()
            self._leases.clear()

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
        """Keep ``key``'s lease alive, putting the key again on a new one when etcd lost it; False when
        etcd is unreachable."""
        try:
            with self._lock:
                if key not in self._wanted:
                    return True
                lease = self._leases.get(key)
            if lease is not None and lease.keep_alive():
                return True
            again = lease is not None
            lease = self.etcd.grant(self.ttl)
            self.etcd.put(key, value, lease)
            with self._lock:
                if key in self._wanted:
                    self._leases[key] = lease
            log.info("announced", extra={"key": key, "value": value, "ttl": self.ttl, "again": again})
            return True
        except StoreUnavailable as exc:
            with self._lock:
                self._leases.pop(key, None)
            log.warning("announce failed, retrying", extra={"key": key, "reason": str(exc)})
            return False
