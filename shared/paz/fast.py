"""Hot reads answered from the process's view of etcd, before Flask.

A service's plain reads (``GET`` of a path, no query string) whose answer is already rendered from
what its view holds (the directory's ``GET /services/<name>``, the orchestrator's ``/services``
reads) cost a dictionary look-up and a write; Flask, flask-smorest and their request context cost
about ten times that (see docs/explanation/benchmarks.md), so such a read skips them. Anything else,
including a read with a query string or an ``X-Paz-Index`` header, a read while the view is behind a
write of this server (:mod:`paz.written`), a path the service's answer function does not know (it
returns None) and every failure (no such service, a bad name, etcd never read), goes to the Flask
app, which answers it as the OpenAPI document says. It answers before the token check, so a service
installs it only when reads need no token (:func:`install`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any

from flask import Flask

from . import metrics
from .auth import reads_need_token
from .context import Paz
from .web import log_request, request_id_from

WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]
Answer = Callable[[str], "tuple[str, bytes] | None"]
"""The route template (as the Flask app counts it in its metrics) and JSON body of a plain ``GET path``
from the view, or None when the Flask app should answer it."""


class FastReads:
    """WSGI middleware: plain reads below ``prefix`` that ``answer`` knows from the view, the rest to ``app``.

    Other paths (``/health``, ``/openapi.json``) never touch the view, so they do not wait for its
    first read of etcd."""

    def __init__(self, app: WsgiApp, paz: Paz, prefix: str, answer: Answer) -> None:
        self.app = app
        self.paz = paz
        self.prefix = prefix
        self.answer = answer

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        started = time.monotonic()
        path = environ.get("PATH_INFO", "")
        if (environ.get("REQUEST_METHOD") != "GET" or not path.startswith(self.prefix) or environ.get("QUERY_STRING")
                or "HTTP_X_PAZ_INDEX" in environ or self._behind()):
            return self.app(environ, start_response)
        try:
            answered = self.answer(path)
        except Exception:  # noqa: BLE001 - Flask answers every failure, as documented
            answered = None
        if answered is None:
            return self.app(environ, start_response)
        route, body = answered
        request_id = request_id_from(environ.get("HTTP_X_REQUEST_ID", ""))
        start_response("200 OK", [
            ("Content-Type", "application/json"), ("Content-Length", str(len(body))), ("X-Request-Id", request_id),
        ])
        log_request("GET", path, 200, started, request_id=request_id)
        if self.paz.metrics:
            metrics.figures().request("GET", route, 200, time.monotonic() - started)
        return [body]

    def _behind(self) -> bool:
        """Whether the view has yet to see a write of this server (the Flask app waits for it)."""
        try:
            return self.paz.view.index < self.paz.written.index
        except Exception:  # noqa: BLE001 - etcd never read: Flask answers it
            return True


def install(app: Flask, paz: Paz, prefix: str, answer: Answer) -> None:
    """Answer ``app``'s plain reads below ``prefix`` that ``answer`` knows before Flask, unless reads need a token."""
    if not reads_need_token(paz.settings):
        app.wsgi_app = FastReads(app.wsgi_app, paz, prefix, answer)  # type: ignore[method-assign]
