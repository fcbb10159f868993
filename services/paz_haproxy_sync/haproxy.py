"""The HAProxy that haproxy-sync owns: start or adopt, check, install, seamless reload, Runtime API.

HAProxy runs in master-worker mode in a session of its own (so restarting haproxy-sync leaves it
serving), with its master CLI on ``master.sock`` and an admin stats socket that hands its listening
sockets to the next worker (``expose-fd listeners``), so a reload drops no connection.

haproxy-sync writes the master's pid file itself, once, when it starts HAProxy. HAProxy's own pid
file is removed for a few milliseconds on every reload; a reader that found none then took HAProxy
for stopped and started a second master on the same port, which kept answering with stale routes.

Exit statuses of child processes are not relied on: in a process that also reaps children itself
(gunicorn's master does, with ``waitpid(-1)``), Python may see a failed ``haproxy -c`` as status 0.
A config is valid only when HAProxy says so in its output, and HAProxy is up only when its sockets
answer.
"""

from __future__ import annotations

import csv
import io
import logging
import os
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import NamedTuple

from paz.waiting import poll

from .settings import SyncSettings

log = logging.getLogger(__name__)

VALID = "Configuration file is valid"


class HaproxyError(Exception):
    """HAProxy refused a config or a command, or is not running."""


class Reloads(NamedTuple):
    """The master's count of reloads, and of those it could not complete."""

    reloads: int
    failed: int


def _running(pid: int) -> str | None:
    """The name ``pid`` runs under, if it runs (a zombie does not: an exited master may wait here to be reaped)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    name, _, rest = stat.partition(" (")[2].rpartition(")")
    return name if rest.split()[:1] != ["Z"] else None


class Haproxy:
    START_SECONDS = 10.0
    RELOAD_SECONDS = 10.0

    def __init__(self, settings: SyncSettings) -> None:
        self.binary = settings.haproxy_bin
        self.config_path = settings.config_path
        self.stats_socket = settings.stats_socket
        self.master_socket = settings.master_socket
        self.pid_file = settings.pid_file

    # -- the process -------------------------------------------------------------------------

    def master_pid(self) -> int | None:
        """The master's pid, if the pid file names a live HAProxy master using our socket.

        While the master re-executes itself at a reload its command line reads empty; its name does not change.
        """
        try:
            pid = int(self.pid_file.read_text().split()[0])
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
        except (OSError, ValueError, IndexError):
            return None
        if _running(pid) != Path(self.binary).name[:15]:  # the kernel keeps 15 characters of a name
            return None
        return pid if not cmdline or str(self.master_socket) in cmdline else None

    def start(self) -> int:
        """Start HAProxy on the installed config, record its master's pid, and wait until its worker answers."""
        log_path = self.config_path.with_name("haproxy-start.log")
        with open(log_path, "ab") as out:
            master = subprocess.Popen(
                [self.binary, "-W", "-q", "-S", f"{self.master_socket},mode,600", "-f", str(self.config_path)],
                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
            )
        written = self.pid_file.with_name(f".{self.pid_file.name}.tmp")
        written.write_text(f"{master.pid}\n")
        written.replace(self.pid_file)
        deadline = time.monotonic() + self.START_SECONDS
        while time.monotonic() < deadline and master.poll() is None:
            if self.worker_pid():
                log.info("haproxy started", extra={"pid": master.pid, "config": str(self.config_path)})
                return master.pid
            time.sleep(0.05)
        if master.poll() is None:
            master.kill()
        tail = log_path.read_text(errors="replace")[-2000:] if log_path.exists() else ""
        raise HaproxyError(f"HAProxy did not start within {self.START_SECONDS:.0f}s: {tail}")

    def stop(self, soft_seconds: float = 1.0) -> None:
        """Soft-stop HAProxy (in-flight requests finish), then terminate, then kill it if it lingers."""
        pid = self.master_pid()
        if pid is None:
            return
        for sig, seconds in ((signal.SIGUSR1, soft_seconds), (signal.SIGTERM, 3.0), (signal.SIGKILL, 1.0)):
            os.kill(pid, sig)
            deadline = time.monotonic() + seconds
            while _running(pid) and time.monotonic() < deadline:
                time.sleep(0.02)
            if not _running(pid):
                break
        log.info("haproxy stopped", extra={"pid": pid, "signal": sig.name})

    def answers(self) -> bool:
        return self.worker_pid() is not None

    def worker_pid(self) -> int | None:
        """The pid of the worker answering the stats socket: the one started by the latest (re)load."""
        try:
            info = self.command("show info", timeout=1.0)
        except HaproxyError:
            return None
        pids = [line.split(":", 1)[1].strip() for line in info.splitlines() if line.startswith("Pid:")]
        return int(pids[0]) if pids and pids[0].isdigit() else None

    # -- the config --------------------------------------------------------------------------

    def check(self, text: str) -> Path:
        """Write ``text`` to a temporary file beside the config and have HAProxy check it.

        HAProxy's answer goes to a file, not a pipe: if this runs in a process that forks (gunicorn's
        master forks workers), a child forked during the check would hold a pipe open until it exits.
        """
        candidate = self.config_path.with_name(f".{self.config_path.name}.{os.getpid()}.tmp")
        candidate.write_text(text)
        with tempfile.TemporaryFile(dir=self.config_path.parent) as answer:
            subprocess.run([self.binary, "-c", "-f", str(candidate)], stdout=answer, stderr=subprocess.STDOUT, timeout=120)
            answer.seek(0)
            output = answer.read().decode(errors="replace")
        if VALID not in output:
            candidate.replace(self.config_path.with_name(self.config_path.name + ".rejected"))
            raise HaproxyError(f"haproxy -c refused the new config (kept the last good one): {output[-2000:]}")
        return candidate

    def install(self, text: str) -> None:
        """Check ``text`` and move it into place atomically; the file in place is always a checked one."""
        os.replace(self.check(text), self.config_path)

    def installed(self) -> str | None:
        try:
            return self.config_path.read_text()
        except OSError:
            return None

    def reload(self) -> None:
        """Seamless reload through the master CLI; returns once the master counted it and the new worker answers.

        For some 50 ms after a reload the master re-executes itself (after its new worker already
        answers) and refuses or resets its CLI's connections; a reload sent then is lost. So the reload
        goes once the master answers, again if its connection was not closed cleanly, and counts only
        when the master's own count of reloads moves.
        """
        deadline = time.monotonic() + self.RELOAD_SECONDS
        before, worker = self._answering_master(deadline), self.worker_pid()
        while not self._received("reload"):
            if time.monotonic() >= deadline:
                raise HaproxyError(f"HAProxy's master refused the reload for {self.RELOAD_SECONDS:.0f}s")
            self._answering_master(deadline)
        after = poll(lambda: (counts := self.reloads()) not in (None, before) and counts, max(0.0, deadline - time.monotonic()), 0.01)
        if not after:
            raise HaproxyError(f"HAProxy's master did not reload within {self.RELOAD_SECONDS:.0f}s")
        if after.failed > before.failed:
            raise HaproxyError("HAProxy's master could not load the new config; the old worker keeps serving")
        if not poll(lambda: self.worker_pid() not in (None, worker), max(0.0, deadline - time.monotonic()), 0.01):
            raise HaproxyError(f"no new HAProxy worker within {self.RELOAD_SECONDS:.0f}s of a reload")

    def _received(self, line: str) -> bool:
        """Whether the master CLI read ``line``: it closes the connection cleanly; one it never read is refused or reset."""
        try:
            self.command(line, self.master_socket, timeout=1.0)
        except HaproxyError:
            return False
        return True

    def _answering_master(self, deadline: float) -> Reloads:
        """The master's counts once its CLI answers; HaproxyError at ``deadline``."""
        counts = poll(self.reloads, max(0.0, deadline - time.monotonic()), 0.01)
        if counts is None:
            raise HaproxyError(f"HAProxy's master CLI {self.master_socket} did not answer within {self.RELOAD_SECONDS:.0f}s")
        return counts

    def reloads(self) -> Reloads | None:
        """How many reloads the master made and how many of them failed (``show proc``), if its CLI answers."""
        try:
            text = self.command("show proc", self.master_socket, timeout=0.5)
        except HaproxyError:
            return None
        for row in (line.split() for line in text.splitlines()):
            if row[1:2] == ["master"] and "[failed:" in row:
                return Reloads(int(row[2]), int(row[row.index("[failed:") + 1].rstrip("]")))
        return None

    # -- the Runtime API ---------------------------------------------------------------------

    def command(self, line: str, path: Path | None = None, timeout: float = 5.0) -> str:
        """Send one CLI command (to the stats socket by default) and return HAProxy's answer."""
        chunks: list[bytes] = []
        try:
            with socket.socket(socket.AF_UNIX) as sock:
                sock.settimeout(timeout)
                sock.connect(str(path or self.stats_socket))
                sock.sendall(line.encode() + b"\n")
                sock.shutdown(socket.SHUT_WR)
                while chunk := sock.recv(65536):
                    chunks.append(chunk)
        except OSError as exc:
            raise HaproxyError(f"HAProxy's socket {path or self.stats_socket} did not answer {line.split()[0]!r}: {exc}") from None
        return b"".join(chunks).decode(errors="replace")

    def stats(self) -> list[dict[str, str]]:
        """``show stat`` as one dict per frontend, backend and server row."""
        text = self.command("show stat").lstrip("# ")
        return list(csv.DictReader(io.StringIO(text)))
