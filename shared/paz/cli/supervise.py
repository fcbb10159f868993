"""``paz supervise``, in a module of its own: the supervisor runs as long as the suite does, and
imports only this, not every command's modules (:class:`paz.cli.Paz`)."""

from __future__ import annotations

import signal
import threading
from pathlib import Path

import click

from ..logs import configure_logging
from ..suite import Suite
from ..supervisor import Supervisor


@click.command()
@click.pass_context
def supervise(ctx: click.Context) -> None:
    """(Started by paz up, as its last part) restart parts that exit on their own."""
    configure_logging("paz-supervisor")
    stopping = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stopping.set())
    state_dir = Path(ctx.obj["state_dir"]).resolve()
    Supervisor(state_dir, lambda: Suite(state_dir)).run(stopping)
