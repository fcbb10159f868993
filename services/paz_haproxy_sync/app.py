"""haproxy-sync, declared: keeps HAProxy routing <service>.paz to the live instances announced in
etcd; its process runs the watch → render → apply loop (:mod:`.engine`) beside the app."""

from __future__ import annotations

from flask import Flask

from paz.context import Paz
from paz.secrets import Keyring
from paz.service import Service

from .engine import start_engine
from .figures import certificate_figures
from .haproxy import Haproxy
from .routes import bp
from .settings import SyncSettings
from .status import certificates_health, haproxy_health


def attach_haproxy(app: Flask, paz: Paz) -> None:
    settings = paz.settings
    app.extensions["paz.haproxy"] = Haproxy(settings)
    app.extensions["paz.keyring"] = Keyring(settings.secrets_key_file)  # seals the keys of brought certificates
    paz.health_checks["haproxy"] = lambda: haproxy_health(settings)
    paz.health_checks["https"] = lambda: certificates_health(paz.etcd, settings)
    if paz.metrics:
        paz.metrics.add(lambda: certificate_figures(paz.etcd))


service = Service(
    name="haproxy-sync", port=9003,
    description="Keeps HAProxy routing <service>.paz to the live instances announced in etcd.",
    blueprint=bp, settings=SyncSettings, extend=attach_haproxy, tasks=(start_engine,),
)
