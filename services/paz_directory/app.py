"""The directory, declared: the catalogue of services and the config their next deploy will use."""

from __future__ import annotations

from flask import Flask

from paz import fast, keys
from paz.context import Paz
from paz.secrets import Keyring, check_settings
from paz.service import Service

from .routes import bp
from .store import SERVICE_PATH, DirectoryStore


def attach_store(app: Flask, paz: Paz) -> None:
    keyring = Keyring(paz.settings.secrets_key_file)
    store = app.extensions["paz.directory"] = DirectoryStore(paz.etcd, paz.view, keyring)
    fast.install(app, paz, SERVICE_PATH, store.hot_read)


service = Service(
    name="service-directory", port=9001,
    description="The catalogue of services and the config their next deploy will use.",
    blueprint=bp, extend=attach_store, watches=(keys.DIRECTORY,), checks=(check_settings,),
    # under granian a client that trickles a body holds one of its threads, so it gets many (tests/test_hostile.py)
    defaults={"threads": 64},
)
