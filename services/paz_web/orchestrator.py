"""What paz-web asks the orchestrator, its only source: one method per question a page asks.

Every call goes through :class:`paz.upstream.Upstream` (found through etcd at
``/paz/services/paz-orchestrator``, the request id travels along), so an orchestrator that is not
announced or not answering is an :class:`~paz.errors.ApiError` whose message names it, and an error
the orchestrator answers keeps its own status, message and details (:class:`~paz.upstream.UpstreamError`).
"""

from __future__ import annotations

import contextvars
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import quote

import requests

from paz.errors import ApiError
from paz.upstream import Upstream

from .cache import EventCache

ORCHESTRATOR = "paz-orchestrator"
LONG_CALL_SECONDS = 300.0
"""Deletes answer once the instances are stopped."""
RESPOND_ASYNC = {"Prefer": "respond-async"}
"""Deploys and rollbacks answer at once (202); their progress comes through the event stream."""


def path_of(name: str, rest: str = "") -> str:
    return f"/services/{quote(name, safe='')}{rest}"


CACHED = ("/cluster/units", "/cluster/hosts")
"""Lists the scheduler makes by asking Docker (about 100 ms with 150 units here), kept until the next event."""


class Orchestrator:
    def __init__(self, upstream: Upstream, cache: EventCache) -> None:
        self.upstream = upstream
        self.cache = cache
        self._pool = ThreadPoolExecutor(max_workers=16, thread_name_prefix="paz-web-ask")

    def get(self, path: str, **params: Any) -> Any:
        def ask() -> Any:
            return self.upstream.json(ORCHESTRATOR, "GET", path, params=params or None)

        return self.cache.get(path, ask) if path in CACHED and not params else ask()

    def send(self, method: str, path: str, body: dict[str, Any] | None = None, timeout: float | None = None,
             headers: dict[str, str] | None = None) -> Any:
        try:
            return self.upstream.json(ORCHESTRATOR, method, path, json=body, timeout=timeout, headers=headers)
        finally:
            self.cache.forget()  # this worker's next page shows the change even before its event arrives

    def stream(self, path: str, params: dict[str, Any], headers: dict[str, str], read_timeout: float) -> requests.Response:
        """The orchestrator's answer to ``GET path`` as a stream (its status is the caller's to read)."""
        return self.upstream.call(ORCHESTRATOR, "GET", path, params=params, headers=headers, stream=True,
                                  timeout=(5.0, read_timeout))

    def gather(self, **questions: Callable[[], Any]) -> dict[str, Any]:
        """Each question's answer, asked at once; a question that failed answers its :class:`ApiError`."""

        def asked(question: Callable[[], Any]) -> Any:
            try:
                return question()
            except ApiError as exc:
                return exc

        # each in a copy of this context, so the request's id (flask.g) goes along with the calls
        futures = {name: self._pool.submit(contextvars.copy_context().run, asked, question) for name, question in questions.items()}
        return {name: future.result() for name, future in futures.items()}
