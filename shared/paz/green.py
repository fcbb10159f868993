"""A service in one process: gevent's WSGI server, the app, the announcer and the background tasks.

Every request, open event stream and slow client is a greenlet, so a second worker process would buy
no concurrency, only memory (about 35 MB each, docs/explanation/benchmarks.md). With nothing forking
here, the announcer and the tasks run beside the app, not in a companion process (:mod:`paz.server`
says why a server with workers needs one). Killed without a clean stop, the process cannot withdraw
its key: the small :mod:`paz.withdrawer` process does.

A client must send its request line and its headers within ``HEADER_SECONDS`` each, or the connection
is closed: 1,000 half-open connections hold nothing for long (tests/test_hostile.py).
"""

from __future__ import annotations

import logging
import signal
import socket
from collections.abc import Iterable, Iterator

from gevent import Timeout, select
from gevent.event import Event
from gevent.pool import Pool
from gevent.pywsgi import WSGIHandler, WSGIServer

from .logs import configure_logging
from .lifecycle import GRACE_SECONDS, HEADER_SECONDS, InProcess
from .service import Service
from .settings import Settings
from .web import CLIENT_GONE, create_app

log = logging.getLogger("paz.server")


class Handler(WSGIHandler):
    """gevent's handler, with four changes:

    * a connection whose request line or headers take over ``HEADER_SECONDS`` is closed;
    * an empty chunk sent before anything else sends the status and headers at once (gevent skips it;
      gunicorn sent them), so a stream that waits for its first line (logs that follow) answers at once;
    * its socket sends at once (``TCP_NODELAY``): gevent writes an answer's headers and its body in two
      sends, and Nagle's algorithm held the body until the client acknowledged the headers, which a
      client delays by up to 40 ms: every request after the first on a kept-alive connection took
      40 ms (the dashboard's pooled client, wrk);
    * the app can ask whether the client has left (``environ[CLIENT_GONE]()``) without writing to it.
    """

    def handle(self) -> None:
        try:
            self.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:  # not TCP
            pass
        super().handle()

    def get_environ(self) -> dict:
        environ = super().get_environ()
        environ[CLIENT_GONE] = self._client_gone
        return environ

    def _client_gone(self) -> bool:
        """Whether the client closed its connection: it is readable with nothing to read (a client that
        sent more, a pipelined request, is still there)."""
        try:
            readable, _, _ = select.select([self.socket], [], [], 0)
            return bool(readable) and self.socket.recv(1, socket.MSG_PEEK) == b""
        except OSError:
            return True

    def process_result(self) -> None:
        self.result = self._headers_at_empty_chunk(self.result)
        super().process_result()

    def _headers_at_empty_chunk(self, chunks: Iterable[bytes]) -> Iterator[bytes]:
        try:
            for chunk in chunks:
                if not chunk and not self.headers_sent:
                    self.write(chunk)
                yield chunk
        finally:  # this generator replaced the app's result, whose close() must still run
            close = getattr(chunks, "close", None)
            if close is not None:
                close()

    def read_requestline(self) -> str:
        with Timeout(HEADER_SECONDS, False):
            return super().read_requestline()
        return ""  # read as a closed connection

    def read_request(self, raw_requestline: str) -> bool:
        with Timeout(HEADER_SECONDS, False):
            return super().read_request(raw_requestline)
        return False  # a 400, then closed


def serve_green(service: Service, settings: Settings) -> None:
    """Run ``service`` in this process until SIGTERM or SIGINT, then withdraw its key.

    The standard library is patched for gevent already: :mod:`paz.launch` does it first thing."""
    configure_logging(settings.service_name, settings.log_level)
    server = WSGIServer((settings.host, settings.port), create_app(service, settings), spawn=Pool(settings.connections),
                        handler_class=Handler, log=None, error_log=log)
    server.start()
    background = InProcess(service, settings)
    background.start()
    stopping = Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stopping.set())
    stopping.wait()
    server.stop(GRACE_SECONDS)
    background.stop()
