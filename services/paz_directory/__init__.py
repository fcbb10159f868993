"""paz-service-directory: the catalogue of services and the config their next deploy will use."""

from .app import service

create_app = service.create_app
main = service.main

__all__ = ["create_app", "main", "service"]
