"""Answers of the orchestrator that are costly to make and change only with an event: the lists of
every unit and every host (the scheduler asks Docker for them). Kept per worker for at most
``PAZ_WEB_CACHE_SECONDS``, and forgotten at once on every event of the orchestrator's stream, which
one thread per worker follows. While that thread is not connected nothing is kept, so an answer is
never older than its last event plus the stream's delivery time."""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from typing import Any

from paz import sse
from paz.upstream import Upstream

log = logging.getLogger(__name__)

RECONNECT_SECONDS = 1.0


class EventCache:
    def __init__(self, upstream: Upstream, service: str, seconds: float, read_timeout: float) -> None:
        self.upstream = upstream
        self.service = service
        self.seconds = seconds
        self.read_timeout = read_timeout
        self._answers: dict[str, tuple[float, Any]] = {}
        self._generation = 0
        self._following = False
        self._lock = threading.Lock()
        self._follower_pid = 0

    def get(self, key: str, ask: Callable[[], Any]) -> Any:
        """``key``'s kept answer while it is fresh, else ``ask()``'s (kept unless an event came meanwhile)."""
        self._ensure_following()
        now = time.monotonic()
        with self._lock:
            kept = self._answers.get(key) if self._following else None
            generation = self._generation
        if kept and now - kept[0] < self.seconds:
            return kept[1]
        answer = ask()
        with self._lock:
            if self._following and generation == self._generation:
                self._answers[key] = (now, answer)
        return answer

    def forget(self) -> None:
        with self._lock:
            self._answers.clear()
            self._generation += 1

    def _ensure_following(self) -> None:
        """One follower per process (a forked gunicorn worker starts its own)."""
        with self._lock:
            if self._follower_pid == os.getpid():
                return
            self._follower_pid = os.getpid()
        threading.Thread(target=self._follow, name="paz-web-cache-events", daemon=True).start()

    def _follow(self) -> None:
        while True:
            try:
                self._read_stream()
            except Exception as exc:  # the orchestrator away, a broken stream, requests' errors: reconnect
                log.info("cache follower reconnecting", extra={"reason": str(exc) or repr(exc)})
            self._set_following(False)
            time.sleep(RECONNECT_SECONDS)

    def _read_stream(self) -> None:
        response = self.upstream.call(self.service, "GET", "/events", headers={"Accept": "text/event-stream"},
                                      stream=True, timeout=(5.0, self.read_timeout))
        with response:
            if response.status_code != 200:
                return
            self._set_following(True)
            for _ in sse.events(response):
                self.forget()

    def _set_following(self, following: bool) -> None:
        with self._lock:
            self._following = following
            self._answers.clear()
            self._generation += 1
