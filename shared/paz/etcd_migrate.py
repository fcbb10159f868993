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
from .etcd_client import Etcd

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Migration:
    copied: int
    unchanged: int


def copy_v2_tree(source: Etcd, target: Etcd, top: str = keys.ROOT) -> Migration:
    """Copy every key below ``top`` from ``source`` (a v2 handle) to ``target`` (a v3 handle)."""
    copied = unchanged = 0
    for node in source.children(top, recursive=True):
        if node.dir:
            continue  # an empty v2 folder: v3 has no folders
        if target.get(node.key) == node.value:
            unchanged += 1
            continue
        target.write(node.key, node.value, **({"ttl": node.ttl} if node.ttl else {}))
        log.info("copied", extra={"key": node.key, "ttl": node.ttl})
        copied += 1
    return Migration(copied, unchanged)
