"""paz-service-directory: the catalogue of services and the config their next deploy will use."""

from paz.server import serve

from .app import create_app, settings_from_env


def main() -> None:
    serve(create_app, settings_from_env)


__all__ = ["create_app", "main"]
