"""``paz etcd migrate``: copy the suite's v2 tree into v3 keys of the same names, for a user moving
from an install on etcd's v2 API to the v3 API.

Idempotent: a key whose v3 value already equals the v2 one is left alone, so running it twice (or
after the suite already wrote some keys on v3) copies only what differs. A key with a TTL keeps the
TTL it has left, as a lease: announcements and deploy locks run out on v3 as they would have on v2.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from . import keys
from .etcd import Store

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Migration:
    copied: int
    unchanged: int


def copy_v2_tree(source: Store, target: Store, top: str = keys.ROOT) -> Migration:
    """Copy every key below ``top`` from ``source`` (a v2 store) to ``target`` (a v3 store); v2's empty
    folders are not keys, so nothing is made of them."""
    copied = unchanged = 0
    for node in source.list_prefix(top).nodes:
        if target.value(node.key) == node.value:
            unchanged += 1
            continue
        target.put(node.key, node.value, target.grant(node.ttl) if node.ttl else None)
        log.info("copied", extra={"key": node.key, "ttl": node.ttl})
        copied += 1
    return Migration(copied, unchanged)
