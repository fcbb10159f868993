"""The directory's app factory and settings."""

from __future__ import annotations

from flask import Flask

from paz.settings import Settings
from paz.web import create_app as create_paz_app

from .routes import bp
from .store import DirectoryStore

NAME = "service-directory"
PORT = 9001


def settings_from_env() -> Settings:
    return Settings.from_env(name=NAME, port=PORT)


def create_app(settings: Settings | None = None) -> Flask:
    settings = settings or settings_from_env()
    app = create_paz_app(
        settings,
        [bp],
        description="The catalogue of services and the config their next deploy will use.",
    )
    app.extensions["paz.directory"] = DirectoryStore(app.extensions["paz"].etcd)
    return app
