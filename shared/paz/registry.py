"""The suite's services. Adding one is a new package declaring a :class:`~paz.service.Service` in its
``app.py``, and one line here."""

from __future__ import annotations

import importlib

from .service import Service

PACKAGES = ("paz_directory", "paz_scheduler", "paz_haproxy_sync", "paz_orchestrator", "paz_web")
"""In the order ``paz up`` starts them (the orchestrator, the front door, after the services it asks; the dashboard, which asks it, last)."""


def declaration(package: str) -> Service:
    """The service declared by ``package`` (its ``app.service``)."""
    return importlib.import_module(f"{package}.app").service


def declarations() -> list[Service]:
    return [declaration(package) for package in PACKAGES]
