"""The ASGI front's pure parts: a body read whole in the loop, a handed-over body's end held back, and
the bell that wakes event streams from the watch thread."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import pytest

from paz.front import STREAM, _body, _deferring_end, _replay
from paz.web import MAX_BODY_BYTES
from paz_orchestrator.events import Bell

pytestmark = pytest.mark.unit


def scripted(*messages: dict[str, Any]):
    """An ASGI ``receive`` answering ``messages`` in order (a client as the server tells of it)."""
    pending = list(messages)

    async def receive() -> dict[str, Any]:
        await asyncio.sleep(0)
        return pending.pop(0)

    return receive


def part(body: bytes, more: bool = True) -> dict[str, Any]:
    return {"type": "http.request", "body": body, "more_body": more}


def test_a_trickled_body_reaches_the_app_whole_in_one_message() -> None:
    async def scenario() -> list[dict[str, Any]]:
        receive = scripted(part(b"{"), part(b'"a"'), part(b": 1}", more=False), {"type": "http.disconnect"})
        body = await _body(receive)
        assert body == b'{"a": 1}'
        replay = _replay(body, receive)
        return [await replay(), await replay()]

    first, then = asyncio.run(scenario())
    assert first == part(b'{"a": 1}', more=False)
    assert then == {"type": "http.disconnect"}  # after the body, the client's own news


def test_reading_stops_one_chunk_past_the_limit_so_flask_answers_413() -> None:
    chunk = b"x" * (MAX_BODY_BYTES // 2 + 1)
    never = part(b"never read")
    body = asyncio.run(_body(scripted(part(chunk), part(chunk), never, part(b"", more=False))))
    assert len(body or b"") == 2 * len(chunk) > MAX_BODY_BYTES


def test_a_client_gone_before_its_body_came_is_not_served() -> None:
    assert asyncio.run(_body(scripted(part(b"{"), {"type": "http.disconnect"}))) is None


@pytest.mark.parametrize("handed_over", [False, True])
def test_the_end_of_a_body_is_held_back_only_when_the_view_handed_its_body_over(handed_over: bool) -> None:
    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope: dict[str, Any] = {STREAM: object()} if handed_over else {}
    start = {"type": "http.response.start", "status": 200, "headers": []}
    chunk = {"type": "http.response.body", "body": b"a", "more_body": True}
    end = {"type": "http.response.body", "body": b""}

    async def scenario() -> None:
        deferring = _deferring_end(scope, send)
        for message in (start, chunk, end):
            await deferring(message)

    asyncio.run(scenario())
    assert sent == ([start, chunk] if handed_over else [start, chunk, end])


def test_a_ring_from_another_thread_wakes_every_waiter_at_once() -> None:
    async def scenario() -> tuple[list[float], float]:
        bell = Bell(asyncio.get_running_loop())
        started = time.monotonic()
        waiters = [asyncio.create_task(bell.wait(10)) for _ in range(50)]
        await asyncio.sleep(0.01)
        threading.Thread(target=bell.ring).start()
        done = []
        for waiter in asyncio.as_completed(waiters):
            await waiter
            done.append(time.monotonic() - started)
        return done, time.monotonic() - started

    done, took = asyncio.run(scenario())
    assert len(done) == 50 and took < 5  # woken by the ring, not by their 10 s timeout


def test_a_wait_with_no_ring_ends_at_its_timeout_and_a_later_ring_wakes_the_next() -> None:
    async def scenario() -> tuple[float, float]:
        bell = Bell(asyncio.get_running_loop())
        started = time.monotonic()
        await bell.wait(0.05)
        quiet = time.monotonic() - started
        asyncio.get_running_loop().call_later(0.01, bell.ring)
        started = time.monotonic()
        await bell.wait(10)
        return quiet, time.monotonic() - started

    quiet, rung = asyncio.run(scenario())
    assert 0.04 <= quiet < 5 and rung < 5
