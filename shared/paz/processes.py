"""Questions about processes by pid, through psutil: is it running, what command is it."""

from __future__ import annotations

import psutil


def running(pid: int) -> bool:
    """True while ``pid`` is a live process; a zombie (exited, not yet reaped) counts as gone."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def command(pid: int) -> list[str] | None:
    """``pid``'s command line, or None when it is gone or a zombie."""
    try:
        process = psutil.Process(pid)
        return process.cmdline() if process.status() != psutil.STATUS_ZOMBIE else None
    except psutil.Error:
        return None
