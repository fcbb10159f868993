"""The small process that withdraws a service's announce key when the service dies without doing it.

A service withdraws its own key on a clean stop. Killed (SIGKILL, the OOM killer), it cannot, and
callers would be sent to a dead address for up to the key's TTL. So a service whose announcer runs
in its main process (:class:`paz.server.InProcess`) starts this one beside it: a fresh interpreter
without site-packages (``python -S``, about 3.5 MB), which blocks reading a pipe from the service
and imports nothing more until that read returns. :data:`CLEAN` means the service stopped cleanly;
end of file means it died, and the key is deleted if it still holds the service's address (a
successor may own it already).

It ignores SIGINT and SIGTERM (a Ctrl-C reaches the whole process group): it ends with its service.
Only ``os``, ``signal`` and ``sys`` are imported before that read, to keep it small.
"""

import os
import signal
import sys

CLEAN = b"."
COMMAND = "from paz.withdrawer import main; main()"
"""What ``python -S -c`` runs, with the key and its value as arguments."""


def main() -> None:
    key, value = sys.argv[1], sys.argv[2]
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, signal.SIG_IGN)
    if os.read(0, 1) == CLEAN:
        return
    from . import etcd
    from .announce import withdraw
    from .logs import configure_logging
    from .settings import Settings

    settings = Settings.from_env()
    configure_logging(key.rsplit("/", 1)[-1], settings.log_level)
    withdraw(etcd.from_settings(settings), key, value)
