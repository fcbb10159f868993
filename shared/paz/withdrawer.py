"""The small process that withdraws a service's announce key when the service dies without doing it.

A service withdraws its own key on a clean stop. Killed (SIGKILL, the OOM killer), it cannot, and
callers would be sent to a dead address for up to the key's TTL. So a service whose announcer runs
in its main process (:class:`paz.lifecycle.InProcess`) starts this one beside it (:func:`argv`): a
shell that blocks reading a pipe from the service (about 1 MB, where even ``python -S`` holds 4), and
runs this module only once that read ends without a line. :data:`CLEAN` and a newline mean the
service stopped cleanly; end of file means it died, and this module, in a fresh interpreter without
site-packages, deletes the key if it still holds the service's address (a successor may own it
already), and removes the folder of its workers' figures (:func:`paz.metrics.share`), which the
service removes itself at a clean exit.

Both ignore SIGINT and SIGTERM (a Ctrl-C reaches the whole process group): it ends with its service.
Run by itself, :func:`main` reads the pipe the same way, importing only ``os``, ``signal`` and ``sys``
before that read.
"""

import os
import shutil
import signal
import sys

CLEAN = b"."
COMMAND = "from paz.withdrawer import main; main()"
"""What ``python -S -c`` runs, with the key and its value as arguments."""
WAIT = 'trap "" INT TERM; read -r _ || exec "$@"'
"""The shell's part: a line read (the clean stop) ends it; end of file runs the interpreter given as its
arguments (the key and value among them, which the shell passes on and never parses), whose own read
then ends at once."""


def argv(key: str, value: str) -> list[str]:
    """The withdrawer of ``key`` while it holds ``value``, as a command line."""
    return ["/bin/sh", "-c", WAIT, "paz-withdrawer", sys.executable, "-S", "-c", COMMAND, key, value]


def main() -> None:
    key, value = sys.argv[1], sys.argv[2]
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, signal.SIG_IGN)
    if os.read(0, 1) == CLEAN:
        return
    from . import etcd
    from .announce import withdraw
    from .logs import configure_logging
    from .metrics import FOLDER_ENV
    from .settings import Settings

    shutil.rmtree(os.environ.get(FOLDER_ENV) or os.devnull, ignore_errors=True)
    settings = Settings.from_env()
    configure_logging(key.rsplit("/", 1)[-1], settings.log_level)
    withdraw(etcd.from_settings(settings), key, value)
