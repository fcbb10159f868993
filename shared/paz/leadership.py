"""One leader among several replicas of a part, by an etcd key bound to a lease.

The scheduler's deploy controller and haproxy-sync's certificate orders each run in one replica at a
time; the key dies with its holder's lease, so a standby takes over within the TTL.
"""

from __future__ import annotations

import json
import logging
import threading
import uuid

from . import keys
from .etcd import AlreadyExists, CompareFailed, Lease, Store, StoreUnavailable

log = logging.getLogger(__name__)


class Leadership:
    """This process's claim to lead ``part``'s work: ``/paz/leaders/<part>`` = its address, bound to a
    lease it keeps alive every third of the TTL (:meth:`beat`). Whoever holds the key does the work;
    the others try to create it on each beat, so one takes over within the TTL of a leader that died."""

    def __init__(self, etcd: Store, part: str, address: str, ttl: int) -> None:
        self.etcd, self.ttl, self.part = etcd, ttl, part
        self.value = json.dumps({"address": address, "id": uuid.uuid4().hex})
        self.key = keys.leader(part)
        self.lease: Lease | None = None
        self.leading = threading.Event()
        self.gained = threading.Event()
        """Set each time this process becomes the leader (the scheduler's controller then looks at every service)."""

    def beat(self) -> None:
        """Keep the lease alive, and take the lead when nobody holds it."""
        try:
            if self.lease is None or not self.lease.keep_alive():
                self.lease = self.etcd.grant(self.ttl)
            held = self.etcd.value(self.key)
            if held is None:
                self.etcd.create(self.key, self.value, self.lease)
                held = self.value
            self._lead(held == self.value)
        except AlreadyExists:
            self._lead(False)
        except StoreUnavailable as exc:
            log.warning("etcd away: not leading until it answers", extra={"reason": str(exc)})
            self._lead(False)

    def _lead(self, leading: bool) -> None:
        if leading and not self.leading.is_set():
            log.info("leading", extra={"key": self.key})
            self.gained.set()
        elif not leading and self.leading.is_set():
            log.warning("no longer leading", extra={"key": self.key})
        (self.leading.set if leading else self.leading.clear)()

    def resign(self) -> None:
        """Let a standby take over at once (a clean stop)."""
        self.leading.clear()
        try:
            self.etcd.delete(self.key, if_value=self.value)
        except (CompareFailed, StoreUnavailable):
            pass
