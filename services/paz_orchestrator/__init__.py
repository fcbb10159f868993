"""paz-orchestrator: the one front door: services, cluster, health, stats and live events."""

from .app import service

create_app = service.create_app
main = service.main

__all__ = ["create_app", "main", "service"]
