"""``paz supervise``: the last part ``paz up`` starts, restarting any part that exits on its own.

Every half second it looks at each part's pid file: a part whose file names a process that is gone
(or a zombie) exited without ``paz down`` (which stops the supervisor first, then removes each pid
file as it stops the part), so it is started again. A part that keeps dying is restarted with a
growing delay (1, 2, 4 ... up to 30 seconds between attempts); one that stayed up a minute starts
the count again. Each restart is a log line (``paz logs supervisor``) and a count in
``run/restarts.json`` that ``paz status`` shows.

It runs as long as the suite, so it keeps little: what needs every service's declaration (flask, the
services' schemas), listing the parts and starting one again, runs in a forked child
(:func:`in_a_child`), and the supervisor itself only reads pid files.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from .suite import Suite, running_program

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


@dataclass(frozen=True)
class Watched:
    """A part as the supervisor watches it: its pid file, and the program that file must name."""

    name: str
    pid_file: Path
    program: str


def restarts_file(state_dir: Path) -> Path:
    return state_dir / "run" / "restarts.json"


def read_restarts(state_dir: Path) -> dict[str, Restarts]:
    try:
        return {name: Restarts(**value) for name, value in json.loads(restarts_file(state_dir).read_text()).items()}
    except (OSError, ValueError, TypeError):
        return {}


def in_a_child(work: Callable[[], Any]) -> Any:
    """What ``work()`` returns (made of JSON's types), computed in a forked child whose imports die with it.

    The supervisor has no thread of its own, so the fork copies no held lock."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: answer, and leave at once (nothing of the parent's runs twice)
        os.close(read)
        try:
            answer = {"value": work()}
        except Exception as exc:  # told to the parent, which logs it
            answer = {"error": f"{type(exc).__name__}: {exc}"}
        with os.fdopen(write, "w") as out:
            json.dump(answer, out)
        os._exit(0)
    os.close(write)
    with os.fdopen(read) as answer_file:
        text = answer_file.read()
    os.waitpid(pid, 0)
    answer = json.loads(text or '{"error": "the child died without an answer"}')
    if "error" in answer:
        raise RuntimeError(answer["error"])
    return answer["value"]


class Supervisor:
    def __init__(self, state_dir: Path, make_suite: Callable[[], Suite]) -> None:
        self.state_dir = state_dir
        self.make_suite = make_suite
        self.restarts = read_restarts(state_dir)

    def run(self, stopping: threading.Event) -> None:
        watched = [Watched(name, Path(pid_file), program) for name, pid_file, program in in_a_child(self._parts)]
        log.info("supervising", extra={"parts": [part.name for part in watched]})
        while not stopping.wait(CHECK_SECONDS):
            for part in watched:
                if self.exited(part) and self.due(part):
                    self.restart(part)

    def _parts(self) -> list[tuple[str, str, str]]:
        suite = self.make_suite()
        return [(part.name, str(suite.pid_file(part)), os.path.basename(part.argv[0]))
                for part in suite.wanted() if part.name != "supervisor"]

    def exited(self, part: Watched) -> bool:
        """Started by paz up (its pid file is there) and no longer running."""
        return part.pid_file.exists() and running_program(part.pid_file, part.program) is None
    def due(self, part: Watched) -> bool:
        record = self.restarts.get(part.name)
        if record is None or record.streak == 0:
            return True
        return time.time() >= record.startedAt + min(MAX_DELAY_SECONDS, 2.0 ** (record.streak - 1))

    def restart(self, part: Watched) -> None:
        record = self.restarts.setdefault(part.name, Restarts())
        stable = record.startedAt and time.time() - record.startedAt > STABLE_SECONDS
        record.streak = 1 if stable else record.streak + 1
        record.count += 1
        record.lastAt = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")
        record.startedAt = time.time()
        try:
            pid = in_a_child(lambda: self._start(part.name))
        except RuntimeError as exc:
            log.error("restart failed", extra={"part": part.name, "reason": str(exc)})
            pid = None
        log.warning("restarted", extra={"part": part.name, "pid": pid, "restarts": record.count, "streak": record.streak})
        restarts_file(self.state_dir).write_text(json.dumps({name: asdict(r) for name, r in self.restarts.items()}) + "\n")

    def _start(self, name: str) -> int:
        suite = self.make_suite()
        return suite.start(suite.part(name)).pid
