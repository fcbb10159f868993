"""Server-Sent Events (``text/event-stream``) read as the WHATWG HTML standard says a browser reads them.

The one parser of the suite's event streams: the ``paz`` command, the dashboard and the tests read
the orchestrator's ``/events`` through it, and haproxy-sync reads Marathon's. :func:`lines` splits
bytes at CRLF, LF or CR (also when a CRLF is cut between two chunks) and drops a leading BOM;
:class:`EventParser` turns lines into :class:`Event`\\s; :func:`events` does both over a streamed
``requests`` answer.
"""

from __future__ import annotations

import codecs
import json
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import requests

_LINE_END = re.compile(r"\r\n|\r|\n")
BOM = "\ufeff"


@dataclass(frozen=True)
class Event:
    """A dispatched event: its type (``message`` unless named), its data (lines joined by ``\\n``),
    the last event id the stream set (``""`` when none) and the reconnection time it asked for."""

    type: str
    data: str
    id: str = ""
    retry: int | None = None

    def json(self) -> Any:
        """The data parsed as JSON; ValueError when it is not JSON."""
        return json.loads(self.data)


class EventParser:
    """One stream's parsing state; feed it lines, one at a time or through :meth:`events`.

    ``on_comment`` receives each comment line's text (after the ``:``), e.g. a keep-alive.
    """

    def __init__(self, on_comment: Callable[[str], None] | None = None) -> None:
        self.on_comment = on_comment
        self.last_event_id = ""
        self.retry: int | None = None
        self._type = ""
        self._data: list[str] = []

    def feed(self, line: str) -> Event | None:
        """The event ``line`` completes (a blank line after data), else None."""
        if line == "":
            return self._dispatch()
        if line.startswith(":"):
            if self.on_comment is not None:
                self.on_comment(line[1:].removeprefix(" "))
            return None
        name, _, value = line.partition(":")
        self._field(name, value.removeprefix(" "))
        return None

    def events(self, lines: Iterable[str]) -> Iterator[Event]:
        """The events of ``lines``; an event the lines end in the middle of is not dispatched."""
        for line in lines:
            event = self.feed(line)
            if event is not None:
                yield event

    def _field(self, name: str, value: str) -> None:
        if name == "event":
            self._type = value
        elif name == "data":
            self._data.append(value)
        elif name == "id" and "\0" not in value:
            self.last_event_id = value
        elif name == "retry" and value.isascii() and value.isdigit():
            self.retry = int(value)

    def _dispatch(self) -> Event | None:
        data, kind = self._data, self._type or "message"
        self._data, self._type = [], ""
        if not data:
            return None
        return Event(kind, "\n".join(data), self.last_event_id, self.retry)


def lines(chunks: Iterable[bytes]) -> Iterator[str]:
    """The lines of a stream arriving in ``chunks`` of UTF-8 (bad bytes replaced), without their endings;
    a last line that no line ending closes is not a line."""
    decoder = codecs.getincrementaldecoder("utf-8")("replace")
    pending, started, after_cr = "", False, False
    for chunk in chunks:
        text = decoder.decode(chunk)
        if not text:
            continue
        if not started:
            text, started = text.removeprefix(BOM), True
        if after_cr and text.startswith("\n"):  # the LF of a CRLF cut between two chunks
            text = text[1:]
        after_cr = text.endswith("\r")
        *complete, pending = _LINE_END.split(pending + text)
        yield from complete


def response_lines(response: requests.Response) -> Iterator[str]:
    """The lines of a streamed answer as they arrive."""
    size = None if getattr(response.raw, "chunked", True) else 1  # read(None) would wait for the end
    return lines(response.iter_content(chunk_size=size))


def events(response: requests.Response) -> Iterator[Event]:
    """The events of a streamed answer as they arrive."""
    return EventParser().events(response_lines(response))
