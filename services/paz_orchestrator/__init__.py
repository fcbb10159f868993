"""paz-orchestrator: the one front door: services, cluster, health, stats and live events."""

from functools import partial

from paz import server, web

from .app import service

create_app = partial(web.create_app, service)
main = partial(server.serve, service)

__all__ = ["create_app", "main", "service"]
