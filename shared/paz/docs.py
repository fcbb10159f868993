"""The suite's API documents: ``paz docs build`` and ``paz docs serve`` (paz's ``npm run docs`` and
``docs-server``).

Each document is made by the service's own app factory, the one gunicorn runs, so ``docs/`` says
exactly what the code serves. Building needs no etcd and no Docker Engine: the apps make their
clients on first use, and building an OpenAPI document makes no request.
"""

from __future__ import annotations

import functools
import importlib
import json
import logging
import os
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import ModuleType
from typing import Any

from .web import openapi_spec, render_docs

log = logging.getLogger(__name__)

SERVICE_PACKAGES = ("paz_orchestrator", "paz_directory", "paz_scheduler", "paz_haproxy_sync")
"""The suite's services, in the order the reference shows them."""

INDEX = "index.html"


def _app_modules() -> Iterator[ModuleType]:
    """The ``app`` module of every service package that is installed (a package not written yet is skipped)."""
    for package in SERVICE_PACKAGES:
        try:
            yield importlib.import_module(f"{package}.app")
        except ModuleNotFoundError as exc:
            if exc.name not in (package, f"{package}.app"):
                raise
            log.warning("service package not found; its document is left out", extra={"package": package})


def build(out: Path) -> list[Path]:
    """Write ``<service>.openapi.json`` for every service and ``index.html`` with all of them into ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    apps = [module.create_app(module.settings_from_env()) for module in _app_modules()]
    if not apps:
        raise RuntimeError(f"no service package of {', '.join(SERVICE_PACKAGES)} is installed; run bin/setup")
    written: list[Path] = []
    specs: list[dict[str, Any]] = []
    for app in apps:
        spec = openapi_spec(app)
        path = out / f"{app.extensions['paz'].settings.service_name}.openapi.json"
        path.write_text(json.dumps(spec, indent=2, sort_keys=True) + "\n")
        specs.append(spec)
        written.append(path)
    with apps[0].app_context():
        html = render_docs(*specs, title="paz", links=[path.name for path in written])
    index = out / INDEX
    index.write_text(html)
    return [*written, index]


def server(folder: Path, port: int, host: str = "127.0.0.1") -> ThreadingHTTPServer:
    """An HTTP server (not yet serving) for the files in ``folder`` on ``host:port``."""
    if not (folder / INDEX).exists():
        raise FileNotFoundError(f"{folder / INDEX} does not exist; run `paz docs build` first")
    handler = functools.partial(SimpleHTTPRequestHandler, directory=os.fspath(folder))
    return ThreadingHTTPServer((host, port), handler)
