"""The highest etcd index the workers of one server have written, shared between them.

A person who deletes a service with curl and reads it at once must not get it back. Each worker reads
from its own view of etcd, and the worker that answers the read may not have seen the write another
worker made a moment before (seen in CI under load: ``DELETE`` 204, then ``GET`` 200). So every write
records its index here, and a read that names no index of its own waits for its view to reach the
recorded one (:func:`paz.web.read_from_etcd`).

The mark is eight bytes of shared memory (``memfd_create``) that the server's main process makes
before it forks its workers, so reading it costs a memory load and nothing is left on disk when the
server dies. A process with no such memory (an app made in a test) keeps a mark of its own.
"""

from __future__ import annotations

import fcntl
import mmap
import os
import struct
import threading

ENV = "PAZ_WRITTEN_FD"
_FORMAT = struct.Struct("<Q")


def share() -> None:
    """Make the shared mark for the workers this process will start (called once, in the server's main process)."""
    fd = os.memfd_create("paz-written", 0)
    os.ftruncate(fd, _FORMAT.size)
    os.set_inheritable(fd, True)
    os.environ[ENV] = str(fd)


def _is_mark(fd: int) -> bool:
    """Whether ``fd`` is the mark (a process that did not inherit it may hold another file at that number)."""
    try:
        return os.readlink(f"/proc/self/fd/{fd}").startswith("/memfd:paz-written")
    except OSError:
        return False


class WriteMark:
    """The highest index recorded by any worker of this server (or by this process alone)."""

    def __init__(self, fd: int | None = None) -> None:
        self._fd = fd
        self._memory = mmap.mmap(-1 if fd is None else fd, _FORMAT.size)
        self._lock = threading.Lock()

    @classmethod
    def from_env(cls) -> "WriteMark":
        """The server's shared mark, when this process was started by one that made it."""
        raw = os.environ.get(ENV, "")
        if raw.isdigit() and _is_mark(int(raw)):
            return cls(int(raw))
        return cls()  # not inherited (a process the server did not fork): a mark of its own

    @property
    def index(self) -> int:
        return _FORMAT.unpack_from(self._memory)[0]

    def record(self, index: int) -> None:
        """Raise the mark to ``index`` (a lower index leaves it as it is)."""
        with self._lock:
            if self._fd is not None:
                fcntl.lockf(self._fd, fcntl.LOCK_EX)  # a record lock: per process, so it excludes the other workers
            try:
                if index > self.index:
                    _FORMAT.pack_into(self._memory, 0, index)
            finally:
                if self._fd is not None:
                    fcntl.lockf(self._fd, fcntl.LOCK_UN)
