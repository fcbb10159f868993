"""``paz supervise``: the last part ``paz up`` starts, restarting any part that exits on its own.

Every half second it looks at each part's pid file: a part whose file names a process that is gone
(or a zombie) exited without ``paz down`` (which stops the supervisor first, then removes each pid
file as it stops the part), so it is started again. A part that keeps dying is restarted with a
growing delay (1, 2, 4 ... up to 30 seconds between attempts); one that stayed up a minute starts
the count again. Each restart is a log line (``paz logs supervisor``) and a count in
``run/restarts.json`` that ``paz status`` shows.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import subprocess
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from .suite import Part, Suite

log = logging.getLogger("paz.supervisor")

CHECK_SECONDS = 0.5
MAX_DELAY_SECONDS = 30.0
STABLE_SECONDS = 60.0


@dataclass
class Restarts:
    count: int = 0
    lastAt: str | None = None
    streak: int = 0
    startedAt: float = 0.0


def restarts_file(suite: Suite) -> Path:
    return suite.state_dir / "run" / "restarts.json"


def read_restarts(suite: Suite) -> dict[str, Restarts]:
    try:
        return {name: Restarts(**value) for name, value in json.loads(restarts_file(suite).read_text()).items()}
    except (OSError, ValueError, TypeError):
        return {}


class Supervisor:
    def __init__(self, suite: Suite) -> None:
        self.suite = suite
        self.restarts = read_restarts(suite)
        self.children: list[subprocess.Popen[bytes]] = []

    def run(self, stopping: threading.Event) -> None:
        log.info("supervising", extra={"parts": [part.name for part in self.watched()]})
        while not stopping.wait(CHECK_SECONDS):
            for part in self.watched():
                if self.exited(part) and self.due(part):
                    self.restart(part)
            self.children = [child for child in self.children if child.poll() is None]  # reap the exited

    def watched(self) -> list[Part]:
        return [part for part in self.suite.wanted() if part.name != "supervisor"]

    def exited(self, part: Part) -> bool:
        """Started by paz up (its pid file is there) and no longer running."""
        return self.suite.pid_file(part).exists() and self.suite.pid(part) is None

    def due(self, part: Part) -> bool:
        record = self.restarts.get(part.name)
        if record is None or record.streak == 0:
            return True
        return time.time() >= record.startedAt + min(MAX_DELAY_SECONDS, 2.0 ** (record.streak - 1))

    def restart(self, part: Part) -> None:
        record = self.restarts.setdefault(part.name, Restarts())
        stable = record.startedAt and time.time() - record.startedAt > STABLE_SECONDS
        record.streak = 1 if stable else record.streak + 1
        record.count += 1
        record.lastAt = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")
        record.startedAt = time.time()
        self.children.append(self.suite.start(part))
        log.warning("restarted", extra={"part": part.name, "restarts": record.count, "streak": record.streak})
        restarts_file(self.suite).write_text(json.dumps({name: asdict(r) for name, r in self.restarts.items()}) + "\n")
