"""paz-scheduler: deploy hooks, versioned zero-downtime deploys through a runtime driver, history and journal."""

from paz.server import serve

from .app import create_app, settings_from_env
from .reconcile import start_background


def main() -> None:
    serve(create_app, settings_from_env, tasks=[start_background])


__all__ = ["create_app", "main"]
