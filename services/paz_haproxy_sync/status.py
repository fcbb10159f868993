"""``status.json``: what the engine last did, told to the HTTP workers.

The engine is a background task and the routes may run in other processes (a server with workers), so the
engine writes what it applied (and its last error) to ``status.json`` in ``PAZ_HAPROXY_DIR``, and
``GET /health`` reads it back. Both sides are here.
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from typing import Any

from paz import keys
from paz.etcd import Store

from .haproxy import Haproxy
from .settings import SyncSettings


class StatusFile:
    """``status.json``: updated a few fields at a time by its one writer, read whole by anyone."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fields: dict[str, Any] = {}
        self._lock = threading.Lock()  # the applier and the Marathon reader both write

    def update(self, **fields: Any) -> None:
        """Set ``fields`` (keeping those written before) and replace the file atomically."""
        with self._lock:
            self._fields.update(fields)
            temporary = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
            temporary.write_text(json.dumps(self._fields, sort_keys=True))
            os.replace(temporary, self.path)

    def read(self) -> dict[str, Any]:
        """What the file says, or nothing when it is missing or half-written by hand."""
        try:
            status = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return {}
        return status if isinstance(status, dict) else {}


def haproxy_health(settings: SyncSettings) -> dict[str, Any]:
    """HAProxy's part of /health: raises (so /health answers 503) when HAProxy is not serving."""
    haproxy = Haproxy(settings)
    status = StatusFile(settings.status_path).read()
    pid = haproxy.master_pid()
    if pid is None or not haproxy.answers():
        raise RuntimeError(f"HAProxy is not running (state folder {settings.state_dir}); last error: {status.get('lastError')}")
    return {
        "pid": pid,
        "router": f"{settings.router_bind}:{settings.http_port}",
        "exporter": settings.exporter_address,
        "lastAppliedAt": status.get("lastAppliedAt"),
        "lastApply": status.get("lastApply"),
        "lastError": status.get("lastError"),
        "marathon": status.get("marathon") or {},
    }


def certificates_health(etcd: Store, settings: SyncSettings) -> dict[str, Any]:
    """HTTPS as a person checks it: the port, how many names have a certificate, and why each failed
    order failed. A failed order never makes the router unhealthy: everything else still routes."""
    if not settings.https_port:
        return {"port": None}
    failures = {}
    for node in etcd.list_prefix(keys.ACME_FAILURES).nodes:
        try:
            record = json.loads(node.value)
            failures[record["name"]] = f"{record['reason']} (try {record['attempts']}; next at {record['retryAt']})"
        except (ValueError, KeyError, TypeError):
            continue
    served = len(list(settings.certs_dir.glob("*.pem")))
    return {"port": settings.https_port, "ordering": settings.ordering, "certificates": served, "failedOrders": failures}
