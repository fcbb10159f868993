"""paz-haproxy-sync: keeps HAProxy routing <service>.paz (and <service>.<domain>) to the live instances."""

from paz.server import serve

from .app import create_app, settings_from_env
from .engine import start_engine


def main() -> None:
    serve(create_app, settings_from_env, tasks=[start_engine])


__all__ = ["create_app", "main"]
