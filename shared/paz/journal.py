"""The journal: what the suite did by itself, one entry per event, in etcd under ``/paz/scheduler/journal``.

The scheduler writes deploys, rollbacks, stops and instances that went down; haproxy-sync writes the
certificates it ordered and the orders that failed. etcd's in-order keys keep the entries in order
across processes and restarts; ``GET /journal`` (the scheduler's, relayed by the orchestrator) reads them.
"""

from __future__ import annotations

import json
from typing import Any

from . import keys
from .contracts.times import iso_now
from .etcd import Store


def write(etcd: Store, kind: str, service: str, message: str, version: int | None = None,
          image: str | None = None) -> dict[str, Any]:
    """Append an entry (``kind`` one of :data:`paz.contracts.deploys.JOURNAL_TYPES`); the entry with its id."""
    entry: dict[str, Any] = {"at": iso_now(), "type": kind, "service": service}
    if version is not None:
        entry["version"] = version
    if image is not None:
        entry["image"] = image
    entry["message"] = message
    node = etcd.append(keys.JOURNAL, json.dumps(entry))
    return {"id": node.key.rsplit("/", 1)[-1], **entry}
