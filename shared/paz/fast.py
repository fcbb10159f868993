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


EXTENSION = "paz.fast_reads"
"""Where :func:`install` leaves the app's :class:`FastReads`: an ASGI front answers them in its event loop (:mod:`paz.front`)."""


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
        answered = self.read(environ.get("REQUEST_METHOD", ""), path, environ.get("QUERY_STRING", ""),
                             "HTTP_X_PAZ_INDEX" in environ)
        if answered is None:
            return self.app(environ, start_response)
        start_response("200 OK", self.served(answered, path, environ.get("HTTP_X_REQUEST_ID", ""), started))
        return [answered[1]]

    def read(self, method: str, path: str, query: str, indexed: bool) -> tuple[str, bytes] | None:
        """The route and body of this request when it is a plain read the view answers, else None."""
        if method != "GET" or not path.startswith(self.prefix) or query or indexed or self._behind():
            return None
        try:
            return self.answer(path)
        except Exception:  # noqa: BLE001 - Flask answers every failure, as documented
            return None

    def served(self, answered: tuple[str, bytes], path: str, given_request_id: str, started: float) -> list[tuple[str, str]]:
        """The headers of an answered read, once it is logged and counted as Flask would."""
        route, body = answered
        request_id = request_id_from(given_request_id)
        log_request("GET", path, 200, started, request_id=request_id)
        if self.paz.metrics:
            metrics.figures().request("GET", route, 200, time.monotonic() - started)
        return [("Content-Type", "application/json"), ("Content-Length", str(len(body))), ("X-Request-Id", request_id)]

    def _behind(self) -> bool:
        """Whether the view is not read yet or has yet to see a write of this server (the Flask app waits
        for it; this never waits, so an event loop may ask)."""
        view = self.paz.view
        try:
            return not view.loaded or view.index < self.paz.written.index
        except Exception:  # noqa: BLE001 - etcd never read: Flask answers it
            return True


def install(app: Flask, paz: Paz, prefix: str, answer: Answer) -> None:
    """Answer ``app``'s plain reads below ``prefix`` that ``answer`` knows before Flask, unless reads need a token."""
    if not reads_need_token(paz.settings):
        app.wsgi_app = app.extensions[EXTENSION] = FastReads(app.wsgi_app, paz, prefix, answer)  # type: ignore[method-assign]
