"""paz-scheduler: deploy hooks, versioned zero-downtime deploys through a runtime driver, history and journal."""

from .app import service

create_app = service.create_app
main = service.main

__all__ = ["create_app", "main", "service"]
