"""paz-scheduler: deploy hooks, versioned zero-downtime deploys through a runtime driver, history and journal."""

from functools import partial

from paz import server, web

from .app import service

create_app = partial(web.create_app, service)
main = partial(server.serve, service)

__all__ = ["create_app", "main", "service"]
