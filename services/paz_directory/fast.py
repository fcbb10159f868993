"""The directory's hot read, ``GET /services/<name>``, answered before Flask.

The document comes from the worker's view of etcd, already rendered (:meth:`DirectoryStore.get_json`),
so the answer is a dictionary look-up and a write. Flask, flask-smorest and their request context
cost about ten times that (see docs/explanation/benchmarks.md), so a plain read skips them.
Anything else, including a read with a query string or an ``X-Paz-Index`` header, a read while the
view is behind a write of this server (:mod:`paz.written`) and every failure (no such service, a bad
name, etcd never read), goes to the Flask app, which answers it as the
OpenAPI document says. It answers before the token check, so it is not installed when reads need a
token (``PAZ_AUTH_READS=token``).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any

from paz.metrics import figures
from paz.names import is_service_name
from paz.web import log_request, request_id_from
from paz.written import WriteMark

from .store import DirectoryStore

PREFIX = "/services/"
ROUTE = "/services/<name>"
"""The route template the Flask app counts these reads under too."""
WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


class FastReads:
    """WSGI middleware: plain ``GET /services/<name>`` from the view, the rest to ``app``."""

    def __init__(self, app: WsgiApp, store: DirectoryStore, written: WriteMark, measured: bool) -> None:
        self.app = app
        self.store = store
        self.written = written
        self.measured = measured

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        started = time.monotonic()
        path = environ.get("PATH_INFO", "")
        name = path[len(PREFIX):] if path.startswith(PREFIX) else ""
        if (environ.get("REQUEST_METHOD") != "GET" or not is_service_name(name)
                or environ.get("QUERY_STRING") or "HTTP_X_PAZ_INDEX" in environ or self._behind()):
            return self.app(environ, start_response)
        try:
            body = self.store.get_json(name)
        except Exception:  # noqa: BLE001 - Flask answers every failure, as documented
            return self.app(environ, start_response)
        request_id = request_id_from(environ.get("HTTP_X_REQUEST_ID", ""))
        start_response("200 OK", [
            ("Content-Type", "application/json"), ("Content-Length", str(len(body))), ("X-Request-Id", request_id),
        ])
        log_request("GET", path, 200, started, request_id=request_id)
        if self.measured:
            figures().request("GET", ROUTE, 200, time.monotonic() - started)
        return [body]

    def _behind(self) -> bool:
        """Whether the view has yet to see a write of this server (the Flask app waits for it)."""
        try:
            return self.store.view.index < self.written.index
        except Exception:  # noqa: BLE001 - etcd never read: Flask answers it
            return True
