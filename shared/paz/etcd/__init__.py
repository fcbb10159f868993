"""The suite's own surface over etcd: its types, its operations, and one function that picks a backend.

Every caller speaks this module's :class:`Node`, :class:`Change`, :class:`Lease` and :class:`Watch`
and the operations of :class:`Store`; which API answers them is chosen once, by :func:`connect`,
from the settings (``PAZ_ETCD_API``: ``3``, the default, through etcd3gw in :mod:`paz.etcd.v3`;
``2`` through python-etcd in :mod:`paz.etcd.v2`, the one module that imports it). As requests keeps
urllib3 out of sight, no caller sees a client library's types or passes its keyword arguments.

Keys are the same strings on both APIs (``/paz/services/paz-scheduler``); a folder is a key prefix.
A revision is v3's revision or v2's index: every write answers one, and a watch resumes from one.
"""

from __future__ import annotations

from typing import Any

from .base import (
    DELETE,
    EXPIRE,
    PUT,
    AlreadyExists,
    Change,
    CompareFailed,
    HistoryCompacted,
    KeyNotFound,
    Lease,
    Listing,
    Node,
    Store,
    StoreUnavailable,
    Tls,
    Watch,
)

__all__ = [
    "DELETE", "EXPIRE", "PUT", "AlreadyExists", "Change", "CompareFailed", "HistoryCompacted", "KeyNotFound",
    "Lease", "Listing", "Node", "Store", "StoreUnavailable", "Tls", "Watch", "API_VERSIONS", "DEFAULT_API",
    "connect", "from_settings", "parse_api",
]

API_VERSIONS = ("2", "3")
DEFAULT_API = "3"


def parse_api(raw: str) -> str:
    """``PAZ_ETCD_API``'s value: ``2`` or ``3``."""
    if raw not in API_VERSIONS:
        raise ValueError(f"expected one of {', '.join(API_VERSIONS)}")
    return raw


def connect(endpoints: tuple[str, ...] | list[str], timeout: float = 2.0, tls: Tls | None = None,
            api: str = DEFAULT_API) -> Store:
    """A :class:`Store` speaking etcd's API ``api`` to ``endpoints``."""
    if parse_api(api) == "2":
        from .v2 import V2Store

        return V2Store(endpoints, timeout, tls)
    from .v3 import V3Store

    return V3Store(endpoints, timeout, tls)


def from_settings(settings: Any) -> Store:
    """The store a service's settings describe (``PAZ_ETCD_*``)."""
    tls = Tls(settings.etcd_ca, settings.etcd_cert, settings.etcd_key)
    return connect(settings.etcd_endpoints, settings.etcd_timeout, tls, settings.etcd_api)
