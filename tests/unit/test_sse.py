"""The event-stream parser reads a stream as the WHATWG HTML standard's "interpret an event stream" says."""

from __future__ import annotations

import pytest

from paz.sse import Event, EventParser, lines

pytestmark = pytest.mark.unit


def parsed(stream: bytes, cut_every: int = 0) -> list[Event]:
    """The events of ``stream``, arriving whole or in chunks of ``cut_every`` bytes."""
    chunks = [stream[i:i + cut_every] for i in range(0, len(stream), cut_every)] if cut_every else [stream]
    return list(EventParser().events(lines(chunks)))


@pytest.mark.parametrize(("stream", "expected"), [
    (b"data: hello\n\n", [Event("message", "hello")]),
    (b"data: one\ndata: two\ndata:\ndata: three\n\n", [Event("message", "one\ntwo\n\nthree")]),
    (b"event: deploy-step\ndata: {}\n\n", [Event("deploy-step", "{}")]),
    (b"event: a\n\ndata: x\n\n", [Event("message", "x")]),  # a type without data is forgotten at the blank line
    (b"id: 7\ndata: x\n\ndata: y\n\n", [Event("message", "x", "7"), Event("message", "y", "7")]),  # the id carries on
    (b"id: 7\ndata: x\n\nid\ndata: y\n\n", [Event("message", "x", "7"), Event("message", "y", "")]),  # an empty id resets it
    (b"id: 7\ndata: x\n\nid: 8\x00\ndata: y\n\n", [Event("message", "x", "7"), Event("message", "y", "7")]),  # NUL: ignored
    (b"retry: 5000\ndata: x\n\n", [Event("message", "x", "", 5000)]),
    (b"retry: 5s\ndata: x\n\n", [Event("message", "x")]),  # not digits: ignored
    (b"retry: \xd9\xa3\ndata: x\n\n", [Event("message", "x")]),  # not ASCII digits: ignored
    (b"data:no space\n\n", [Event("message", "no space")]),
    (b"data:  two spaces\n\n", [Event("message", " two spaces")]),  # only one space is removed
    (b"data: a: b\n\n", [Event("message", "a: b")]),  # the first colon splits
    (b"data\n\n", [Event("message", "")]),  # a field name alone has an empty value
    (b"data\ndata\n\n", [Event("message", "\n")]),
    (b"Data: x\nDATA: y\nunknown: z\ndata: w\n\n", [Event("message", "w")]),  # names are case-sensitive
    (b": keep-alive\n\n: another\ndata: x\n\n", [Event("message", "x")]),
    (b"data: x\r\n\r\ndata: y\r\rdata: z\n\n", [Event("message", "x"), Event("message", "y"), Event("message", "z")]),
    (b"\xef\xbb\xbfdata: bom\n\n", [Event("message", "bom")]),
    (b"\xef\xbb\xbf\xef\xbb\xbfdata: x\n\n", []),  # only the first BOM is dropped: the line's field is "\ufeffdata"
    (b"data: caf\xc3\xa9 \xff\n\n", [Event("message", "caf\u00e9 \ufffd")]),
    (b"data: x\n\ndata: never finished\n", [Event("message", "x")]),  # an event the stream ends in is dropped
    (b"data: x\n\ndata: no newline", [Event("message", "x")]),
    (b"", []),
    (b"\n\n\n", []),
])
@pytest.mark.parametrize("cut_every", [0, 1])
def test_a_stream_makes_the_events_a_browser_would_dispatch(stream: bytes, expected: list[Event], cut_every: int) -> None:
    assert parsed(stream, cut_every) == expected


@pytest.mark.parametrize(("chunks", "expected"), [
    ([b"a\r", b"\nb\n"], ["a", "b"]),  # CRLF cut in two is one line end
    ([b"a\r", b"\r\n"], ["a", ""]),
    ([b"a\r", b"", b"\n"], ["a"]),
    ([b"caf\xc3", b"\xa9\n"], ["caf\u00e9"]),  # a character cut in two
    ([b"a\nb"], ["a"]),
])
def test_lines_end_at_crlf_lf_or_cr_whatever_the_chunks(chunks: list[bytes], expected: list[str]) -> None:
    assert list(lines(chunks)) == expected


def test_comments_reach_the_callback_and_the_parser_keeps_the_last_id() -> None:
    comments: list[str] = []
    parser = EventParser(on_comment=comments.append)
    found = list(parser.events(lines([b": keep-alive\n:reconnect in 5s\nid: 41\nretry: 100\ndata: {\"id\": 41}\n\n"])))
    assert comments == ["keep-alive", "reconnect in 5s"]
    assert [event.json() for event in found] == [{"id": 41}]
    assert (parser.last_event_id, parser.retry) == ("41", 100)


def test_data_that_is_not_json_says_so() -> None:
    with pytest.raises(ValueError):
        Event("message", "not json").json()
