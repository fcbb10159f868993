"""The unit layer's rule, enforced: a unit test runs pure code in this process and starts nothing.

While a unit test runs, an audit hook refuses to start etcd, HAProxy or a Docker Engine (the spawn
fails, so nothing is left behind) and refuses to bind a socket in the test's thread (no server);
afterwards the test fails if it did either, or if it left any new child process running.
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

COMPONENTS = frozenset({"etcd", "haproxy", "dockerd"})
SPAWNS = frozenset({"subprocess.Popen", "os.posix_spawn", "os.exec", "os.system"})


class Guard:
    """What the running unit test tried that it must not (empty when it behaved)."""

    def __init__(self) -> None:
        self.thread: threading.Thread | None = None
        self.refused: list[str] = []

    def audit(self, event: str, args: tuple) -> None:
        if self.thread is None:
            return
        if event in SPAWNS and _program(event, args) in COMPONENTS:
            self.refuse(f"started {_program(event, args)}: {args[:2]!r}")
        elif event == "socket.bind" and threading.current_thread() is self.thread:
            self.refuse(f"bound a socket to {args[1]!r}")

    def refuse(self, what: str) -> None:
        self.refused.append(what)
        raise PermissionError(f"a unit test {what}; start real components only in end-to-end tests")


def _program(event: str, args: tuple) -> str:
    """The program a spawn audit event starts (``os.system``'s is the first word of its command)."""
    target = args[0].split()[0] if event == "os.system" and args[0].split() else args[0]
    if event == "subprocess.Popen" and target is None:  # Popen without executable=: the program is argv[0]
        argv = args[1]
        target = argv.split()[0] if isinstance(argv, (str, bytes)) else argv[0]
    return os.path.basename(os.fsdecode(target))


def _children() -> set[int]:
    """This process's child pids (Linux lists them per thread; cheaper than walking every process)."""
    return {int(pid) for path in Path("/proc/self/task").glob("*/children") for pid in path.read_text().split()}


GUARD = Guard()
sys.addaudithook(GUARD.audit)


@pytest.fixture(autouse=True)
def starts_nothing() -> Iterator[None]:
    before = _children()
    GUARD.thread, GUARD.refused = threading.current_thread(), []
    try:
        yield
    finally:
        GUARD.thread = None
    problems = GUARD.refused + [f"left child process {pid} running" for pid in sorted(_children() - before)]
    if problems:
        pytest.fail("; ".join(problems))
