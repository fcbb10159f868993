"""A suite service, declared once: plain data, which nothing here runs.

Each service package declares itself in its ``app.py``::

    service = Service(
        name="service-directory", port=9001,
        description="The catalogue of services ...",
        blueprint=bp, extend=attach_store,
    )

and everything else reads that declaration: the app factory (:func:`paz.web.create_app`), the
server that runs it (:func:`paz.server.serve`), ``paz docs build`` and
``paz up`` (through :mod:`paz.registry`, which lists the packages).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from .settings import Settings

if TYPE_CHECKING:  # types only: loading a declaration loads no web framework and no etcd client
    from flask import Flask

    from .api import Blueprint
    from .context import Paz


class Stoppable(Protocol):
    def stop(self) -> None: ...


BackgroundTask = Callable[[Settings], Stoppable]
"""A module-level callable, found again through the service's declaration where it runs (:mod:`paz.server`)."""


@dataclass(frozen=True)
class Service:
    """What makes a service: its name and port, settings, routes, and the work it does in the background."""

    name: str
    """Without the ``paz-`` prefix, e.g. ``service-directory``; announced as ``paz-<name>``."""
    port: int
    description: str
    blueprint: "Blueprint"
    settings: type[Settings] = Settings
    extend: Callable[["Flask", "Paz"], None] | None = None
    """Attaches the service's store or engine to the app (``app.extensions``) and adds health checks."""
    watches: tuple[str, ...] = ()
    """The etcd subtrees its workers read on hot paths, kept in the process's view (:mod:`paz.view`);
    ``/paz/services`` (discovery) always is."""
    tasks: tuple[BackgroundTask, ...] = ()
    """Run once per service, whatever its number of workers (see :mod:`paz.server`)."""
    checks: tuple[Callable[[Settings], None], ...] = ()
    """Run before the service starts; a :class:`~paz.settings.SettingsError` stops it (exit 2) with its sentence."""
    defaults: Mapping[str, Any] = field(default_factory=dict)
    """Settings this service defaults differently from the rest, e.g. ``{"threads": 32}``."""

    @property
    def package(self) -> str:
        """The Python package, e.g. ``paz_directory``: the one its blueprint is defined in."""
        return self.blueprint.import_name.partition(".")[0]

    @property
    def announced_as(self) -> str:
        return f"paz-{self.name}"

    @property
    def program(self) -> str:
        """The console script that runs it."""
        return self.announced_as

    def settings_from_env(self, environ: Mapping[str, str] | None = None) -> Settings:
        return self.settings.from_env(environ, name=self.name, port=self.port, **self.defaults)
