"""How the ``paz`` command talks to a person: tables for lists, ``--json`` for scripts, one-sentence
errors on stderr, colour only on a terminal (click strips it otherwise), and exit codes that say what
happened."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import click

OK = 0
FAILED = 1
"""The action was tried and failed: a deploy that does not serve, another deploy in the way, a refusal."""
USAGE = 2
"""The request was wrong: a bad argument or file, or no such service, unit, version or part (click's own code for usage)."""
UNREACHABLE = 3
"""The suite could not be asked: the orchestrator (or etcd, to find it) does not answer, or failed."""


class PazError(click.ClickException):
    """A failure told as ``<command>: <sentence>`` on stderr (``paz deploy: ...``), exiting with ``exit_code``."""

    def __init__(self, message: str, exit_code: int = FAILED) -> None:
        super().__init__(message)
        self.exit_code = exit_code
        context = click.get_current_context(silent=True)
        self.command = context.command_path if context else "paz"

    def show(self, file: Any = None) -> None:
        click.echo(click.style(f"{self.command}: ", fg="red", bold=True) + self.format_message(), err=True)


def exit_code_of(status: int) -> int:
    """The exit code for an HTTP error status of the orchestrator."""
    if status in (400, 404, 405):
        return USAGE
    if status >= 500 and status != 501:
        return UNREACHABLE
    return FAILED


def table(rows: Sequence[Sequence[Any]], headers: Sequence[str]) -> None:
    """Columns padded to their widest cell, headers in bold; ``-`` for an empty cell."""
    cells = [[("-" if value is None or value == "" else str(value)) for value in row] for row in rows]
    widths = [max(len(h), *(len(row[i]) for row in cells)) if cells else len(h) for i, h in enumerate(headers)]
    click.echo(click.style("  ".join(h.upper().ljust(w) for h, w in zip(headers, widths)).rstrip(), bold=True))
    for row in cells:
        click.echo("  ".join(value.ljust(w) for value, w in zip(row, widths)).rstrip())


def emit_json(value: Any) -> None:
    click.echo(json.dumps(value, indent=2, sort_keys=True))


def step(text: str, colour: str | None = None) -> None:
    """One line of progress."""
    click.echo(click.style(text, fg=colour) if colour else text)


def done(text: str) -> None:
    click.echo(click.style(text, fg="green", bold=True))
