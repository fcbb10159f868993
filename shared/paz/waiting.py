"""Waiting for a condition with a deadline: the one loop the suite uses, on tenacity."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import tenacity

T = TypeVar("T")


def poll(check: Callable[[], T], timeout: float, interval: float) -> T:
    """Call ``check`` every ``interval`` seconds until it returns something truthy or ``timeout``
    seconds pass; return its last result. An exception from ``check`` ends the wait at once."""
    retrying = tenacity.Retrying(
        stop=tenacity.stop_after_delay(timeout),
        wait=tenacity.wait_fixed(interval),
        retry=tenacity.retry_if_result(lambda result: not result),
        retry_error_callback=lambda state: state.outcome.result(),
        reraise=True,
    )
    return retrying(check)
