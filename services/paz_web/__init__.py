"""paz-web: the dashboard, talking only to the orchestrator."""

from .app import service

create_app = service.create_app
main = service.main

__all__ = ["create_app", "main", "service"]
