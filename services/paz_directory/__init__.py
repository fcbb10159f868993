"""paz-service-directory: the catalogue of services and the config their next deploy will use."""

from functools import partial

from paz import server, web

from .app import service

create_app = partial(web.create_app, service)
main = partial(server.serve, service)

__all__ = ["create_app", "main", "service"]
