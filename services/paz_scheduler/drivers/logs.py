"""Instances' output as the runtime keeps it: lines with their unit, stream (stdout or stderr) and time.

The docker and swarm drivers read the Docker Engine's log endpoints (``/containers/<id>/logs``,
``/tasks/<id>/logs``) with ``timestamps`` on. Their answer is Docker's multiplexed stream: frames of an
8-byte header (stream 1 = stdout, 2 = stderr; payload size) and a payload, one log message each; the
engine splits a line longer than 16 KiB into several messages, only the last ending in a newline.
:class:`DockerLogReader` joins those parts again (up to :data:`MAX_LINE_BYTES`, beyond which a line is
cut and marked ``truncated``) and decodes bytes that are not UTF-8 as U+FFFD, so binary output never
breaks a stream. :func:`merged` interleaves several units' lines in time order.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import queue
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass
from typing import Any, Protocol

import requests

MAX_LINE_BYTES = 64 * 1024
STREAMS = {1: "stdout", 2: "stderr"}
HEADER = struct.Struct(">BxxxL")


@dataclass(frozen=True)
class LogQuery:
    """Which lines: of ``streams``, the last ``tail`` (all when None), those after ``since`` (seconds
    since the epoch), then, with ``follow``, new ones as they are written."""

    tail: int | None = None
    since: float | None = None
    follow: bool = False
    streams: tuple[str, ...] = ("stdout", "stderr")

    def docker_params(self) -> dict[str, Any]:
        params: dict[str, Any] = {"stdout": int("stdout" in self.streams), "stderr": int("stderr" in self.streams),
                                  "timestamps": 1, "follow": int(self.follow),
                                  "tail": "all" if self.tail is None else self.tail}
        if self.since is not None:
            params["since"] = f"{self.since:.9f}"
        return params


@dataclass(frozen=True)
class LogLine:
    unit: str
    stream: str
    time: str
    text: str
    truncated: bool = False

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


class LogStream(Protocol):
    """One unit's lines; ``close`` (from another thread) ends the iteration."""

    def __iter__(self) -> Iterator[LogLine]: ...
    def close(self) -> None: ...


class DockerLogReader:
    """The lines of one Docker log answer (``response``, opened with ``stream=True``) of unit ``unit``."""

    def __init__(self, unit: str, response: requests.Response) -> None:
        self.unit = unit
        self.response = response

    def __iter__(self) -> Iterator[LogLine]:
        pending: dict[int, tuple[str, bytearray, bool]] = {}
        try:
            for stream, payload in self._frames():
                stamp, _, text = payload.partition(b" ")
                when, parts, cut = pending.pop(stream, (stamp.decode("ascii", "replace"), bytearray(), False))
                complete = text.endswith(b"\n")
                room = MAX_LINE_BYTES - len(parts)
                parts += text.rstrip(b"\n")[:max(room, 0)]
                cut = cut or len(text.rstrip(b"\n")) > room
                if complete:
                    yield self._line(stream, when, parts, cut)
                else:
                    pending[stream] = (when, parts, cut)
            for stream, (when, parts, cut) in pending.items():
                yield self._line(stream, when, parts, cut)
        except (requests.RequestException, OSError, AttributeError, ValueError):
            return  # closed under us (the client left) or the engine went away: the stream ends

    def _line(self, stream: int, when: str, parts: bytearray, cut: bool) -> LogLine:
        return LogLine(self.unit, STREAMS.get(stream, "stdout"), when, bytes(parts).decode("utf-8", "replace"), cut)

    def _frames(self) -> Iterator[tuple[int, bytes]]:
        raw = self.response.raw
        while True:
            header = _read_exactly(raw, HEADER.size)
            if header is None:
                return
            stream, size = HEADER.unpack(header)
            payload = _read_exactly(raw, size) if size else b""
            if payload is None:
                return
            yield stream, payload

    def close(self) -> None:
        """End the answer, even while a follower reads it: its connection is shut down, so the read
        ends (closing the file it reads from instead raised "reentrant call" and left the engine's
        connection, and the follower's place, held until the container stopped); the follower closes
        it again once out of the read."""
        connection = _connection_of(self.response)
        if connection is not None:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)
        with contextlib.suppress(RuntimeError):  # a follower is still inside the read: it closes it
            self.response.close()


def _connection_of(response: requests.Response) -> socket.socket | None:
    """The socket under a streamed answer, reached as docker's own client reaches it (urllib3's
    response, http.client's, its socket file)."""
    try:
        raw = response.raw._fp.fp.raw
    except AttributeError:
        return None
    return getattr(raw, "_sock", None)


def _read_exactly(raw: Any, size: int) -> bytes | None:
    """``size`` bytes from ``raw``, or None at the end of the stream."""
    chunks = bytearray()
    while len(chunks) < size:
        chunk = raw.read(size - len(chunks))
        if not chunk:
            return None
        chunks += chunk
    return bytes(chunks)


def docker_logs(api: Any, path: str, unit: str, query: LogQuery) -> DockerLogReader:
    """Open Docker's ``path`` log endpoint (``/containers/<id>/logs``, ``/tasks/<id>/logs``) for ``unit``.

    ``api`` is a docker ``APIClient``, itself a requests session bound to the engine, so this is a plain
    GET of the Engine API; its errors are docker's (``docker.errors.APIError``).
    """
    import docker

    response = api.get(f"{api.base_url}/v{api.api_version}{path}", params=query.docker_params(), stream=True,
                       timeout=(10, None if query.follow else 60))
    if response.status_code >= 400:
        try:
            response.raise_for_status()
        except requests.HTTPError as exc:
            raise docker.errors.create_api_error_from_http_exception(exc) from None
    return DockerLogReader(unit, response)


def merged(streams: list[LogStream], query: LogQuery, max_seconds: float,
           gone: Callable[[], bool] = lambda: False) -> Iterator[LogLine]:
    """Every stream's lines, oldest first: the lines there are now in time order (the last ``tail`` of
    them all), then, with ``follow``, each new line as it comes, for at most ``max_seconds`` or until
    ``gone()`` says the client left (asked at each second without a line)."""
    if not query.follow:
        try:
            lines = sorted((line for stream in streams for line in stream), key=_moment)
        finally:
            _close(streams)
        yield from lines[-query.tail:] if query.tail is not None else lines
        return
    yield from _followed(streams, max_seconds, gone)


def _followed(streams: list[LogStream], max_seconds: float, gone: Callable[[], bool]) -> Iterator[LogLine]:
    arrived: queue.Queue[LogLine | None] = queue.Queue(maxsize=10_000)

    def pump(stream: LogStream) -> None:
        try:
            for line in stream:
                arrived.put(line)
        finally:
            stream.close()
            arrived.put(None)

    for stream in streams:
        threading.Thread(target=pump, args=(stream,), daemon=True, name="logs-follow").start()
    deadline, open_streams = time.monotonic() + max_seconds, len(streams)
    try:
        while open_streams and (remaining := deadline - time.monotonic()) > 0:
            try:
                line = arrived.get(timeout=min(remaining, 1.0))
            except queue.Empty:
                if gone():
                    return
                continue
            if line is None:
                open_streams -= 1
            else:
                yield line
    finally:
        _close(streams)


def _close(streams: Iterable[LogStream]) -> None:
    for stream in streams:
        stream.close()


def _moment(line: LogLine) -> dt.datetime:
    """The line's time (Docker writes RFC 3339 with nanoseconds; microseconds are enough to order)."""
    stamp = line.time.rstrip("Z")
    whole, _, fraction = stamp.partition(".")
    try:
        return dt.datetime.fromisoformat(f"{whole}.{(fraction + '000000')[:6]}")
    except ValueError:
        return dt.datetime.min
