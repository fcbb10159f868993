"""Starting and stopping the whole suite on one machine (``paz up`` / ``paz down``).

Every part runs in the background with its pid file and log under one state folder
(``PAZ_STATE_DIR``, default ``.paz/``). A part already running (its pid file names a live process
with the expected command) is left alone, so ``paz up`` twice starts nothing twice, and ``paz down``
stops exactly the processes whose pid files it wrote.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import requests

from .announce import service_key
from .etcd_client import Etcd, StoreUnavailable


@dataclass
class Part:
    """One process of the suite."""

    name: str
    argv: list[str]
    port: int
    env: dict[str, str] = field(default_factory=dict)
    announced_as: str | None = None
    install_hint: str = ""

    def health_url(self) -> str | None:
        if self.name == "etcd":
            return f"http://127.0.0.1:{self.port}/health"
        return f"http://127.0.0.1:{self.port}/health" if self.announced_as else None


def _script(name: str) -> str:
    """A console script of this installation (beside the running Python), else from PATH."""
    local = Path(sys.executable).parent / name
    return str(local) if local.exists() else (shutil.which(name) or name)


class Suite:
    """The parts ``paz up`` starts, in order, and what it knows of them."""

    def __init__(self, state_dir: Path, environ: dict[str, str] | None = None) -> None:
        self.state_dir = state_dir.resolve()
        environ = dict(os.environ if environ is None else environ)
        self.etcd_url = "http://127.0.0.1:2379"
        common = {"PAZ_ETCD_ENDPOINTS": self.etcd_url, "PAZ_HOST": "127.0.0.1"}
        data = self.state_dir / "etcd-data"
        self.parts = [
            Part(
                "etcd",
                [shutil.which("etcd") or "/usr/bin/etcd", "--name", "paz", "--data-dir", str(data), "--enable-v2",
                 "--listen-client-urls", self.etcd_url, "--advertise-client-urls", self.etcd_url,
                 "--listen-peer-urls", "http://127.0.0.1:2380", "--initial-advertise-peer-urls", "http://127.0.0.1:2380",
                 "--initial-cluster", "paz=http://127.0.0.1:2380", "--log-level", "warn"],
                2379,
                install_hint="apt-get install etcd-server",
            ),
            Part("service-directory", [_script("paz-service-directory")], 9001, {**common, "PAZ_PORT": "9001"},
                 announced_as="paz-service-directory"),
        ]
        self.environ = environ

    def part(self, name: str) -> Part:
        for part in self.parts:
            if part.name == name:
                return part
        raise KeyError(f"no part named {name!r}; the parts are {', '.join(p.name for p in self.parts)}")

    def pid_file(self, part: Part) -> Path:
        return self.state_dir / "run" / f"{part.name}.pid"

    def log_file(self, part: Part) -> Path:
        return self.state_dir / "logs" / f"{part.name}.log"

    def pid(self, part: Part) -> int | None:
        """The pid of ``part`` if its pid file names a live process running its command."""
        try:
            pid = int(self.pid_file(part).read_text().strip())
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except (OSError, ValueError):
            return None
        program = os.path.basename(part.argv[0]).encode()
        return pid if any(os.path.basename(arg) == program for arg in cmdline[:2]) else None

    def missing(self) -> list[str]:
        """One line per part whose program is not installed, naming how to install it."""
        return [
            f"{part.name}: {part.argv[0]} not found; install it with: {part.install_hint}"
            for part in self.parts
            if not (os.access(part.argv[0], os.X_OK) or shutil.which(part.argv[0]))
        ]

    def start(self, part: Part) -> int:
        for folder in ("run", "logs"):
            (self.state_dir / folder).mkdir(parents=True, exist_ok=True)
        with open(self.log_file(part), "ab") as log:
            proc = subprocess.Popen(
                part.argv, env={**self.environ, **part.env}, stdout=log, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, start_new_session=True,
            )
        self.pid_file(part).write_text(f"{proc.pid}\n")
        return proc.pid

    def healthy(self, part: Part) -> bool:
        url = part.health_url()
        try:
            if url and not requests.get(url, timeout=1).ok:
                return False
            if part.announced_as:
                return bool(Etcd([self.etcd_url], 1.0).get(service_key(part.announced_as)))
            return True
        except (requests.RequestException, StoreUnavailable):
            return False

    def wait_healthy(self, part: Part, timeout: float = 30.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.pid(part) is None:
                return False
            if self.healthy(part):
                return True
            time.sleep(0.2)
        return False

    def stop(self, part: Part, timeout: float = 20.0) -> bool:
        """SIGTERM the process in ``part``'s pid file (only if it is still ours) and wait for it."""
        pid = self.pid(part)
        if pid is not None:
            os.kill(pid, signal.SIGTERM)
            deadline = time.monotonic() + timeout
            while self.pid(part) is not None and time.monotonic() < deadline:
                time.sleep(0.1)
            if self.pid(part) is not None:
                os.kill(pid, signal.SIGKILL)
        self.pid_file(part).unlink(missing_ok=True)
        return pid is not None
