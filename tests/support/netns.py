"""Each pytest-xdist worker in a network namespace of its own.

The suite's parts listen on fixed loopback ports (``paz up``: 2379, 9000-9004, 8080, ...), and each
Docker Engine hands out the same ports and bridge. Tests run side by side only if each worker has a
loopback of its own: a new network namespace, entered by the worker's main thread before any test
starts anything (processes, sockets and threads made afterwards are all in it). Needs root, as the
suite's Docker Engine does; ``bin/test`` runs workers only then. What needs the machine's network (a
package index, a Debian mirror) runs in the namespace the worker left: :func:`from_outside`.
"""

from __future__ import annotations

import ctypes
import os
import subprocess

CLONE_NEWNET = 0x40000000
_left: int | None = None
"""A descriptor of the namespace this worker left, once it has."""


def enter_own() -> None:
    """Move this process's main thread into a new network namespace with its loopback up."""
    global _left
    _left = os.open("/proc/self/ns/net", os.O_RDONLY)
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.unshare(CLONE_NEWNET) != 0:
        errno = ctypes.get_errno()
        raise RuntimeError(f"a test worker needs a network namespace of its own: unshare failed: {os.strerror(errno)} "
                           "(run as root, or run the tests in one process: bin/test -n 0)")
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True, timeout=10)


def from_outside(argv: list[str]) -> list[str]:
    """``argv`` made to run in the namespace this worker left, where the machine's network is."""
    if _left is None:
        return argv
    return ["nsenter", f"--net=/proc/{os.getpid()}/fd/{_left}", *argv]
