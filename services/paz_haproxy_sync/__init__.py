"""paz-haproxy-sync: keeps HAProxy routing <service>.paz (and <service>.<domain>) to the live instances."""

from .app import service

create_app = service.create_app
main = service.main

__all__ = ["create_app", "main", "service"]
