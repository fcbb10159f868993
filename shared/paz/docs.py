"""The suite's API documents: ``paz docs build`` and ``paz docs serve`` (paz's ``npm run docs`` and
``docs-server``).

Each document is made by the service's own app factory, the one gunicorn runs, so ``docs/`` says
exactly what the code serves. Building needs no etcd and no Docker Engine: the apps make their
clients on first use, and building an OpenAPI document makes no request.
"""

from __future__ import annotations

import functools
import json
import os
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from .registry import declarations
from .web import create_app, openapi_spec, render_docs

INDEX = "index.html"


def build(out: Path) -> list[Path]:
    """Write ``<service>.openapi.json`` for every service and ``index.html`` with all of them into ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    apps = [create_app(service) for service in declarations()]
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
