"""A service in one process on an event loop: granian's embedded ASGI server (``PAZ_WORKER_CLASS=asgi``).

HTTP is parsed in Rust and every connection is a coroutine, so a service answers what needs no Flask
in the loop and holds long streams without a thread each: the orchestrator's front door (issue 26:
its relayed reads ran at a tenth of the directory's rate under gevent, whose HTTP is parsed in Python).

* A plain read the service's view answers (:mod:`paz.fast`) is answered in the loop.
* Every other request goes to the Flask app, in ``PAZ_THREADS`` threads (a2wsgi), as under any server,
  once its body is read in the loop (a client trickling a body holds no thread).
* A view whose answer is a long stream (the orchestrator's ``/events``, a followed log) checks the
  request in its thread, answers its status and headers, and hands the body over (:func:`hand_over`)
  as an async iterator that the loop sends: thousands of open streams hold coroutines, not threads.
  What such a view must wait for before it answers (an upstream's status) it awaits in the loop too
  (:func:`in_loop`), so the stream's connection belongs to the loop from the start.

The server binds before the service announces itself, as under gevent, and a SIGTERM or SIGINT ends
the streams, gives requests in flight ``GRACE_SECONDS`` and withdraws the key. A client must send its
headers within ``HEADER_SECONDS`` (granian's header timeout), so half-open and slow clients hold
nothing for long (tests/test_hostile.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import uvloop
from a2wsgi import WSGIMiddleware
from flask import Flask, request

from .fast import EXTENSION, FastReads
from .lifecycle import GRACE_SECONDS, HEADER_SECONDS, InProcess
from .logs import configure_logging, logging_config
from .service import Service
from .settings import Settings
from .web import MAX_BODY_BYTES, create_app

log = logging.getLogger("paz.server")

Scope = dict[str, Any]
Send = Callable[[dict[str, Any]], Awaitable[None]]
Receive = Callable[[], Awaitable[dict[str, Any]]]

STREAM = "paz.stream"
"""The ASGI scope's key where a view leaves the body it hands over (:func:`hand_over`)."""
LOOP = "paz.loop"
"""The ASGI scope's key of the event loop the front runs in, for :func:`in_loop`."""

T = TypeVar("T")


def hand_over(chunks: AsyncIterator[bytes]) -> None:
    """Have the front send ``chunks``, in its event loop, as the body of the answer this view returns
    (which must have no body of its own: ``Response(iter(()), ...)``). Only under the front."""
    request.environ["asgi.scope"][STREAM] = chunks


def in_loop(awaitable: Awaitable[T]) -> T:
    """Await ``awaitable`` in the front's event loop from a view's thread, and give its result (or
    raise its exception) there. Only under the front."""
    async def awaited() -> T:
        return await awaitable

    return asyncio.run_coroutine_threadsafe(awaited(), request.environ["asgi.scope"][LOOP]).result()


class Front:
    """The ASGI app: plain reads from the view in the loop, the rest to ``app`` in ``threads`` threads."""

    def __init__(self, app: Flask, threads: int) -> None:
        self.flask = WSGIMiddleware(app, workers=threads)
        self.reads: FastReads | None = app.extensions.get(EXTENSION)
        self.streams: set[asyncio.Task[None]] = set()
        self.requests: set[asyncio.Task[None]] = set()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        if self.reads is not None and await _read(self.reads, scope, send):
            return
        body = await _body(receive)
        if body is None:
            return  # the client left before its body came
        task = asyncio.current_task()
        assert task is not None
        self.requests.add(task)
        scope[LOOP] = asyncio.get_running_loop()
        try:
            await self.flask(scope, _replay(body, receive), _deferring_end(scope, send))
        finally:
            self.requests.discard(task)
        chunks = scope.pop(STREAM, None)
        if chunks is not None:
            self.streams.add(task)
            try:
                await _send_stream(chunks, send, receive)
            finally:
                self.streams.discard(task)

    async def drain(self) -> None:
        """End the open streams, and give the requests in flight ``GRACE_SECONDS`` to finish."""
        for task in self.streams:
            task.cancel()
        if self.requests:
            await asyncio.wait(self.requests, timeout=GRACE_SECONDS)


async def _read(reads: FastReads, scope: Scope, send: Send) -> bool:
    """Answer a plain read from the view; False when Flask should answer the request."""
    started = time.monotonic()
    headers = dict(scope["headers"])
    path = scope["path"]
    answered = reads.read(scope["method"], path, scope["query_string"].decode("latin-1"), b"x-paz-index" in headers)
    if answered is None:
        return False
    served = reads.served(answered, path, headers.get(b"x-request-id", b"").decode("latin-1"), started)
    await send({"type": "http.response.start", "status": 200,
                "headers": [(name.lower().encode(), value.encode()) for name, value in served]})
    await send({"type": "http.response.body", "body": answered[1]})
    return True


async def _body(receive: Receive) -> bytes | None:
    """The request's whole body (up to one byte past ``MAX_BODY_BYTES``: Flask answers 413), read in
    the loop, so a client trickling its body holds a coroutine, not one of the Flask app's threads;
    None when the client leaves first."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        chunks.append(message.get("body", b""))
        size += len(chunks[-1])
        if not message.get("more_body") or size > MAX_BODY_BYTES:
            return b"".join(chunks)


def _replay(body: bytes, receive: Receive) -> Receive:
    """``receive`` for the Flask app: the body read already, then the client's own (its leaving).

    A coroutine function: granian's ``receive`` answers a future, which a2wsgi cannot hand across
    threads (``run_coroutine_threadsafe`` takes a coroutine only)."""
    pending = [{"type": "http.request", "body": body, "more_body": False}]

    async def replaying() -> dict[str, Any]:
        return pending.pop() if pending else await receive()

    return replaying


def _deferring_end(scope: Scope, send: Send) -> Send:
    """``send``, but the end of a body is held back when the view handed its body over."""

    async def deferring(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.body" and not message.get("more_body") and STREAM in scope:
            return
        await send(message)

    return deferring


async def _send_stream(chunks: AsyncIterator[bytes], send: Send, receive: Receive) -> None:
    """Send each chunk as it comes, until the iterator ends, the client leaves (noticed at once, not
    at the next write) or the server stops."""
    sending = asyncio.ensure_future(_send_all(chunks, send))
    leaving = asyncio.ensure_future(_left(receive))
    try:
        await asyncio.wait((sending, leaving), return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (sending, leaving):
            task.cancel()
        for outcome in await asyncio.gather(sending, leaving, return_exceptions=True):
            if isinstance(outcome, Exception) and not isinstance(outcome, OSError):  # OSError: the client left
                log.error("a stream failed", exc_info=outcome)


async def _send_all(chunks: AsyncIterator[bytes], send: Send) -> None:
    """Send the status and headers at once (granian holds them until a body part comes; a followed log may
    have no line for long), then each chunk as it comes."""
    await send({"type": "http.response.body", "body": b"", "more_body": True})
    async with contextlib.aclosing(chunks):  # type: ignore[type-var]
        async for chunk in chunks:
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
    await send({"type": "http.response.body", "body": b""})


async def _left(receive: Receive) -> None:
    """Until the client has gone (granian sends no error to a write after that: this is how it is known)."""
    while (await receive())["type"] != "http.disconnect":
        pass


def serve_front(service: Service, settings: Settings) -> None:
    """Run ``service`` in this process until SIGTERM or SIGINT, then withdraw its key (on uvloop:
the orchestrator's reads ran at 27,000 a second on it, 21,000 on asyncio's own loop)."""
    configure_logging(settings.service_name, settings.log_level)
    uvloop.run(_serve(service, settings))


async def _serve(service: Service, settings: Settings) -> None:
    from granian.constants import Interfaces
    from granian.http import HTTP1Settings
    from granian.log import LogLevels
    from granian.server.embed import Server

    front = Front(create_app(service, settings), settings.threads)
    server = Server(
        front, interface=Interfaces.ASGINL, address=settings.host, port=settings.port,
        http1_settings=HTTP1Settings(header_read_timeout=HEADER_SECONDS * 1000),
        backlog=2048, backpressure=settings.connections, log_level=LogLevels(settings.log_level.lower()),
        log_dictconfig=logging_config(settings.service_name, settings.log_level),
    )
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, server.stop)
    serving = asyncio.create_task(server.serve())
    await asyncio.sleep(0)  # the server binds its socket before its first wait
    background = InProcess(service, settings)
    await asyncio.to_thread(background.start)
    await serving
    await front.drain()
    await asyncio.to_thread(background.stop)
