"""A command run in a pseudo-terminal, as a person runs it: it sees a terminal (so it may colour its
output), and the test reads what the screen would show."""

from __future__ import annotations

import os
import pty
import re
import select
import signal
import subprocess
import time

from tests.support import VENV_BIN

ANSI = re.compile(r"\x1b\[[0-9;]*m")


class Terminal:
    def __init__(self, *args: str, env: dict[str, str] | None = None) -> None:
        self.master, slave = pty.openpty()
        self.proc = subprocess.Popen([str(VENV_BIN / "paz"), *args], stdin=slave, stdout=slave, stderr=slave,
                                     env={**os.environ, "TERM": "xterm", **(env or {})}, close_fds=True)
        os.close(slave)
        self.raw = ""

    @property
    def screen(self) -> str:
        """What was printed, without colours, with the terminal's CRLF as newlines."""
        return ANSI.sub("", self.raw).replace("\r\n", "\n")

    def _read(self, timeout: float) -> bool:
        ready, _, _ = select.select([self.master], [], [], timeout)
        if not ready:
            return True
        try:
            chunk = os.read(self.master, 65536)
        except OSError:  # the command exited and the terminal closed
            return False
        self.raw += chunk.decode("utf-8", "replace")
        return bool(chunk)

    def expect(self, text: str, timeout: float = 30.0) -> float:
        """Wait until ``text`` is on the screen; when it came (time.time())."""
        deadline = time.monotonic() + timeout
        while text not in self.screen:
            if time.monotonic() > deadline or not self._read(min(0.2, max(0.0, deadline - time.monotonic()))):
                if text in self.screen:
                    break
                raise AssertionError(f"{text!r} not shown within {timeout}s; the screen:\n{self.screen[-3000:]}")
        return time.time()

    def finish(self, timeout: float = 120.0) -> int:
        """Read until the command exits; its exit code."""
        deadline = time.monotonic() + timeout
        while self.proc.poll() is None or self._read(0.05):
            if time.monotonic() > deadline:
                self.proc.kill()
                raise AssertionError(f"still running after {timeout}s; the screen:\n{self.screen[-3000:]}")
            self._read(0.2)
        os.close(self.master)
        return self.proc.returncode

    def interrupt(self) -> int:
        """Ctrl-C: SIGINT to the command; its exit code."""
        self.proc.send_signal(signal.SIGINT)
        return self.finish(20)


def run(*args: str, env: dict[str, str] | None = None) -> tuple[int, str]:
    """Run a command in a terminal to its end: its exit code and the screen."""
    terminal = Terminal(*args, env=env)
    code = terminal.finish()
    return code, terminal.screen
