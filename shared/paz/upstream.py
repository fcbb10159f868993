"""Calling another suite service over HTTP, found through :mod:`paz.discovery`.

One small client for every service-to-service call: it forwards the caller's ``X-Request-Id`` (so
one id follows a request through the suite's logs), bounds every call with a timeout, and turns a
service that cannot be reached into an error that names it and its address:

* not announced in etcd → 503 (:class:`~paz.discovery.ServiceNotAnnounced`);
* connection refused or reset → 503 ``paz-scheduler is unreachable at 127.0.0.1:9002: ...``;
* no answer within the timeout, or an answer that is not HTTP → 502.

An answer the service did give, whatever its status, is returned untouched: :meth:`Upstream.call`
gives the :class:`requests.Response` (for relaying it as it is), :meth:`Upstream.json` gives the
body of a 2xx answer and raises :class:`UpstreamError` carrying the upstream's own status, message
and details otherwise. :meth:`Upstream.opening` makes the same call from an event loop (httpx), for a
body relayed as it comes without a thread waiting on it.
"""

from __future__ import annotations

import contextlib
import logging
import queue
from collections.abc import Coroutine, Iterator
from typing import TYPE_CHECKING, Any

import requests
from flask import g, has_request_context, request

from .auth import caller_authorization
from .discovery import Discovery
from .errors import ApiError, BadGateway, Unavailable

if TYPE_CHECKING:
    import httpx

log = logging.getLogger(__name__)


class UpstreamError(ApiError):
    """A suite service answered with an error; carries its status, message and details as they were."""

    def __init__(self, service: str, response: requests.Response) -> None:
        error = _error_of(response)
        message = error.get("message") or f"{service} answered {response.status_code} {response.reason}"
        super().__init__(str(message), error.get("details"), status=response.status_code)
        self.service = service
        self.response = response


def _error_of(response: requests.Response) -> dict[str, Any]:
    """The ``error`` object of a paz error body, or an empty dict for any other body."""
    try:
        error = response.json().get("error")
    except (ValueError, AttributeError):
        return {}
    return error if isinstance(error, dict) else {}


REQUESTS_FAILURES = (requests.Timeout, requests.ConnectionError, requests.RequestException)
"""requests' exceptions for: no answer in time, no connection, any other failure."""


@contextlib.contextmanager
def _reaching(service: str, address: str, method: str, path: str, seconds: float,
              failures: tuple[type[Exception], type[Exception], type[Exception]]) -> Iterator[None]:
    """A call's failures (the client library's, by ``failures``) as the errors that name the service."""
    timed_out, unreachable, unusable = failures
    details = {"service": service, "address": address}
    try:
        yield
    except timed_out as exc:
        raise BadGateway(f"{service} at {address} did not answer {method} {path} within {seconds:g}s", details) from exc
    except unreachable as exc:
        log.warning("upstream unreachable", extra={**details, "reason": str(exc)})
        raise Unavailable(f"{service} is unreachable at {address}: check that it is running (paz status)", details) from exc
    except unusable as exc:
        raise BadGateway(f"{service} at {address} gave no usable answer to {method} {path}: {exc}", details) from exc


class Upstream:
    """Calls suite services by name (``paz-scheduler``, ``paz-service-directory``, ...)."""

    def __init__(self, discovery: Discovery, timeout: float = 10.0, token: str = "") -> None:
        self.discovery = discovery
        self.timeout = timeout
        self.token = token
        self._idle: queue.LifoQueue[requests.Session] = queue.LifoQueue()
        self._in_loop: httpx.AsyncClient | None = None

    @contextlib.contextmanager
    def _session(self) -> Iterator[requests.Session]:
        """A session no one else uses meanwhile, taken from the idle ones (its connections are reused).

        A pool rather than one per thread: under gevent every request is its own greenlet, and a
        greenlet-local session would open a new connection for every request.
        """
        try:
            session = self._idle.get_nowait()
        except queue.Empty:
            session = requests.Session()
        try:
            yield session
        finally:
            self._idle.put(session)

    def call(self, service: str, method: str, path: str, timeout: float | None = None, **kwargs: Any) -> requests.Response:
        """``method path`` on ``service``; any answer it gives is returned, whatever its status."""
        address = self.discovery.address(service)
        headers = {**self._own_headers(), **(kwargs.pop("headers", None) or {})}
        with _reaching(service, address, method, path, timeout or self.timeout, REQUESTS_FAILURES), self._session() as session:
            return session.request(
                method, f"http://{address}{path}", headers=headers, timeout=timeout or self.timeout,
                allow_redirects=False, **kwargs,
            )

    def opening(self, service: str, method: str, path: str, params: list[tuple[str, str]],
                read_timeout: float | None = None) -> Coroutine[Any, Any, httpx.Response]:
        """``method path`` on ``service`` as a coroutine for an event loop (:func:`paz.front.in_loop`):
        the answer once its status and headers are in, its body left to read as it comes
        (``aiter_bytes``, then ``aclose``). Read here, in the request's thread: the address and the
        headers (its id, the caller's token); errors as :meth:`call`'s.

        httpx is imported at the first call: 4.5 MB that a suite which never streams does not hold."""
        import httpx

        address, headers = self.discovery.address(service), self._own_headers()
        timeout = httpx.Timeout(self.timeout, read=read_timeout or self.timeout)

        async def opened() -> httpx.Response:
            if self._in_loop is None:  # made in the loop that uses it; no pool limit: each stream holds one connection
                self._in_loop = httpx.AsyncClient(limits=httpx.Limits(max_connections=None, max_keepalive_connections=20))
            request = self._in_loop.build_request(method, f"http://{address}{path}", headers=headers, params=params,
                                                  timeout=timeout)
            failures = (httpx.TimeoutException, httpx.NetworkError, httpx.HTTPError)
            with _reaching(service, address, method, path, read_timeout or self.timeout, failures):
                return await self._in_loop.send(request, stream=True)

        return opened()

    def _own_headers(self) -> dict[str, str]:
        """Within a request: its id, the caller's token (so each service checks the person's role) and
        the index the caller read its own write at (so it does through this hop too); this service's
        own token otherwise."""
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        if has_request_context():
            headers.update(caller_authorization())
            if g.get("request_id"):
                headers["X-Request-Id"] = g.request_id
            if "X-Paz-Index" in request.headers:
                headers["X-Paz-Index"] = request.headers["X-Paz-Index"]
        return headers

    def json(self, service: str, method: str, path: str, **kwargs: Any) -> Any:
        """The JSON body of a 2xx answer; :class:`UpstreamError` (the upstream's status) otherwise."""
        response = self.call(service, method, path, **kwargs)
        if not response.ok:
            raise UpstreamError(service, response)
        try:
            return response.json()
        except ValueError as exc:
            raise BadGateway(
                f"{service} answered {method} {path} with a body that is not JSON",
                {"service": service, "status": response.status_code},
            ) from exc
