"""The directory, declared: the catalogue of services and the config their next deploy will use."""

from __future__ import annotations

from flask import Flask

from paz import keys
from paz.service import Service
from paz.web import Paz

from .routes import bp
from .store import DirectoryStore


def attach_store(app: Flask, paz: Paz) -> None:
    app.extensions["paz.directory"] = DirectoryStore(paz.etcd, paz.view)


service = Service(
    package=__package__,
    name="service-directory",
    port=9001,
    description="The catalogue of services and the config their next deploy will use.",
    blueprint=bp,
    extend=attach_store,
    watches=(keys.DIRECTORY,),
)
