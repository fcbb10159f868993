"""paz-orchestrator: the one front door: services, cluster, health, stats and live events."""

from paz.server import serve

from .app import create_app, settings_from_env


def main() -> None:
    serve(create_app, settings_from_env)


__all__ = ["create_app", "main"]
