"""The dashboard, declared: HTML pages over the orchestrator's API, live through its event stream."""

from __future__ import annotations

from flask import Flask

from paz.api import Blueprint
from paz.context import Paz
from paz.service import Service
from paz.upstream import Upstream

from .cache import EventCache
from .orchestrator import ORCHESTRATOR, Orchestrator
from .pages import attach_pages
from .settings import WebSettings

api = Blueprint("web", __name__, description="paz-web has no API of its own: its pages are HTML, made from the orchestrator's.")


def attach_dashboard(app: Flask, paz: Paz) -> None:
    settings = paz.settings
    upstream = Upstream(paz.discovery, settings.upstream_timeout)
    cache = EventCache(upstream, ORCHESTRATOR, settings.cache_seconds, settings.events_read_timeout)
    app.extensions["paz.orchestrator"] = Orchestrator(upstream, cache)
    attach_pages(app, settings)


service = Service(
    name="web",
    port=9004,
    description="The dashboard: cluster, services, deploys, history, units, traffic and live events.",
    blueprint=api,
    settings=WebSettings,
    extend=attach_dashboard,
    defaults={"threads": 32},  # gthread only: an open page holds one for its live event relay (gevent, the default: a greenlet)
)
