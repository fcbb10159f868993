"""The orchestrator, declared: the one front door: services, cluster, health, stats and live events."""

from __future__ import annotations

from flask import Flask

from paz import fast, keys
from paz.context import Paz
from paz.service import Service
from paz.settings import Settings, SettingsError
from paz.upstream import Upstream

from .events import EventStreams
from .marathon import MarathonForwarder
from .reads import SERVICES, hot_reads
from .routes import bp
from .settings import OrchestratorSettings
from .upstream import Cluster


def attach_cluster(app: Flask, paz: Paz) -> None:
    settings = paz.settings
    app.extensions["paz.cluster"] = Cluster(Upstream(paz.discovery, settings.upstream_timeout, settings.token), paz.view)
    app.extensions["paz.events"] = EventStreams(paz.etcd, paz.view, settings)
    app.extensions["paz.marathon"] = MarathonForwarder(paz.etcd, settings.marathon_urls, settings.upstream_timeout)
    fast.install(app, paz, SERVICES, hot_reads(paz.view))


def check_settings(settings: Settings) -> None:
    """The event streams are coroutines of the ``asgi`` server's loop (:mod:`paz.front`): no other server sends them."""
    if settings.worker_class != "asgi":
        raise SettingsError(f"PAZ_WORKER_CLASS={settings.worker_class!r}: the orchestrator runs on asgi only "
                            "(its event streams are coroutines of that server's event loop); unset it")


service = Service(
    name="orchestrator", port=9000,
    description="Central command for the paz platform: services, cluster, health, stats and live events.",
    blueprint=bp, settings=OrchestratorSettings, extend=attach_cluster, checks=(check_settings,),
    watches=(keys.ROOT,),  # the event stream follows everything below /paz
    defaults={"threads": 32},  # relayed requests wait on the others (a deploy) in a thread each; streams hold none
)
