"""The HAProxy that haproxy-sync owns: start or adopt, check, install, seamless reload, Runtime API.

HAProxy runs in master-worker mode as a daemon (so restarting haproxy-sync leaves it serving), with
its master CLI on ``master.sock`` and an admin stats socket that hands its listening sockets to the
next worker (``expose-fd listeners``), so a reload drops no connection.

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

from .settings import SyncSettings

log = logging.getLogger(__name__)

VALID = "Configuration file is valid"


class HaproxyError(Exception):
    """HAProxy refused a config or a command, or is not running."""


def _alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie does not: nothing may reap a daemon's exited master here)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


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
        """The master's pid, if the pid file names a live HAProxy master using our socket."""
        try:
            pid = int(self.pid_file.read_text().split()[0])
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
        except (OSError, ValueError, IndexError):
            return None
        return pid if "haproxy" in cmdline and str(self.master_socket) in cmdline else None

    def start(self) -> int:
        """Start HAProxy on the installed config and wait until its worker answers."""
        log_path = self.config_path.with_name("haproxy-start.log")
        with open(log_path, "ab") as out:
            subprocess.Popen(
                [self.binary, "-W", "-D", "-S", f"{self.master_socket},mode,600", "-f", str(self.config_path), "-p", str(self.pid_file)],
                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
            )
        deadline = time.monotonic() + self.START_SECONDS
        while time.monotonic() < deadline:
            pid = self.master_pid()
            if pid and self.worker_pid():
                log.info("haproxy started", extra={"pid": pid, "config": str(self.config_path)})
                return pid
            time.sleep(0.05)
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
            while _alive(pid) and time.monotonic() < deadline:
                time.sleep(0.02)
            if not _alive(pid):
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
        """Seamless reload through the master CLI; returns once the new worker answers.

        The new worker is the one answering the stats socket (its listener moves to it). The master
        CLI can leave a connection unanswered while it re-executes, so it is asked with short timeouts.
        """
        before, failed = self.worker_pid(), self.failed_reloads()
        self.command("reload", self.master_socket, tolerate_drop=True, timeout=1.0)
        deadline = time.monotonic() + self.RELOAD_SECONDS
        while time.monotonic() < deadline:
            worker = self.worker_pid()
            if worker and worker != before:
                return
            if failed is not None and (self.failed_reloads() or 0) > failed:
                raise HaproxyError("HAProxy's master could not load the new config; the old worker keeps serving")
            time.sleep(0.01)
        raise HaproxyError(f"no new HAProxy worker within {self.RELOAD_SECONDS:.0f}s of a reload")

    def failed_reloads(self) -> int | None:
        """How many reloads the master could not complete (``show proc`` on the master CLI), if it answers."""
        try:
            text = self.command("show proc", self.master_socket, timeout=0.5)
        except HaproxyError:
            return None
        for row in (line.split() for line in text.splitlines()):
            if row[1:2] == ["master"] and "[failed:" in row:
                return int(row[row.index("[failed:") + 1].rstrip("]"))
        return None

    # -- the Runtime API ---------------------------------------------------------------------

    def command(self, line: str, path: Path | None = None, tolerate_drop: bool = False, timeout: float = 5.0) -> str:
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
            if not tolerate_drop:
                raise HaproxyError(f"HAProxy's socket {path or self.stats_socket} did not answer {line.split()[0]!r}: {exc}") from None
        return b"".join(chunks).decode(errors="replace")

    def stats(self) -> list[dict[str, str]]:
        """``show stat`` as one dict per frontend, backend and server row."""
        text = self.command("show stat").lstrip("# ")
        return list(csv.DictReader(io.StringIO(text)))
