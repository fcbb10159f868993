"""The Flask app every paz service is made from.

:func:`create_app` gives a service its common behaviour, so each service only adds a blueprint:

* an ``X-Request-Id`` on every answer (the caller's, when it sent a sane one) and in every log line;
* JSON errors ``{"error": {"status", "message", "details"?, "requestId"}}`` for every failure,
  including unknown routes, bad JSON, validation errors and etcd being down (503), never a traceback;
* ``GET /health`` (etcd plus the service's own checks), ``GET /openapi.json`` built by apispec from
  the routes' docstrings and marshmallow schemas, and ``GET /docs`` rendered from it with a local
  template (no CDN).
"""

from __future__ import annotations

import logging
import re
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from apispec import APISpec
from apispec.ext.marshmallow import MarshmallowPlugin
from apispec_webframeworks.flask import FlaskPlugin
from flask import Blueprint, Flask, current_app, g, jsonify, render_template, request
from marshmallow import Schema, ValidationError
from werkzeug.exceptions import HTTPException

from . import __version__
from .discovery import Discovery
from .errors import ApiError, BadRequest
from .etcd_client import Etcd, StoreUnavailable
from .logs import configure_logging
from .settings import Settings

log = logging.getLogger(__name__)

_SANE_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
HealthCheck = Callable[[], dict[str, Any]]


@dataclass
class Paz:
    """What a service's routes reach through :func:`paz_context`."""

    settings: Settings
    etcd: Etcd
    discovery: Discovery
    health_checks: dict[str, HealthCheck] = field(default_factory=dict)
    spec: dict[str, Any] | None = None


def paz_context() -> Paz:
    return current_app.extensions["paz"]


def create_app(settings: Settings, blueprints: Iterable[Blueprint], description: str = "") -> Flask:
    """A Flask app for service ``settings.name`` serving ``blueprints`` with the suite's common routes."""
    configure_logging(settings.service_name, settings.log_level)
    app = Flask(settings.service_name, template_folder="templates", root_path=__file__.rsplit("/", 1)[0])
    app.json.sort_keys = False
    store = Etcd.from_settings(settings)
    paz = Paz(settings=settings, etcd=store, discovery=Discovery(store, settings))
    paz.health_checks["etcd"] = lambda: _check_etcd(store)
    app.extensions["paz"] = paz
    app.config["PAZ_DESCRIPTION"] = description
    _install_request_ids(app)
    _install_error_handlers(app)
    app.register_blueprint(common)
    for blueprint in blueprints:
        app.register_blueprint(blueprint)
    return app


def _check_etcd(store: Etcd) -> dict[str, Any]:
    store.get("/paz/config/domain")
    return {"endpoints": list(store.endpoints)}


def request_id() -> str:
    return g.get("request_id", "")


def _install_request_ids(app: Flask) -> None:
    @app.before_request
    def take_request_id() -> None:
        given = request.headers.get("X-Request-Id", "")
        g.request_id = given if _SANE_REQUEST_ID.match(given) else uuid.uuid4().hex
        g.started = time.monotonic()

    @app.after_request
    def give_request_id(response):
        response.headers["X-Request-Id"] = request_id()
        if request.endpoint != "common.health":
            log.info(
                "request",
                extra={
                    "method": request.method,
                    "path": request.path,
                    "status": response.status_code,
                    "duration_ms": round((time.monotonic() - g.get("started", time.monotonic())) * 1000, 2),
                },
            )
        return response


def error_response(status: int, message: str, details: Any = None):
    body: dict[str, Any] = {"status": status, "message": message}
    if details is not None:
        body["details"] = details
    body["requestId"] = request_id()
    return jsonify(error=body), status


def _install_error_handlers(app: Flask) -> None:
    @app.errorhandler(ApiError)
    def api_error(exc: ApiError):
        return error_response(exc.status, exc.message, exc.details)

    @app.errorhandler(ValidationError)
    def invalid(exc: ValidationError):
        return error_response(400, "The request body is not valid: see details for each field.", exc.messages)

    @app.errorhandler(StoreUnavailable)
    def etcd_down(exc: StoreUnavailable):
        log.warning("etcd unavailable", extra={"reason": str(exc)})
        return error_response(503, f"{exc} Try again once etcd is back; nothing was changed.")

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException):
        message = exc.description or exc.name
        if exc.code == 404:
            message = f"No route {request.method} {request.path}; GET /docs lists them."
        elif exc.code == 405:
            message = f"{request.method} is not allowed on {request.path}; allowed: {', '.join(exc.valid_methods or [])}."
        return error_response(exc.code or 500, message)

    @app.errorhandler(Exception)
    def unexpected(exc: Exception):
        log.exception("unhandled error")
        return error_response(500, "An unexpected error occurred; the logs carry this request id.")


def load_json(schema: Schema, partial: bool = False) -> Any:
    """The request's JSON body validated by ``schema``; a 400 that says what is wrong otherwise."""
    if not request.is_json:
        raise BadRequest("Send a JSON body with the header Content-Type: application/json.")
    body = request.get_json(silent=True)
    if body is None:
        raise BadRequest("The request body is not valid JSON.")
    if not isinstance(body, dict):
        raise BadRequest("The request body must be a JSON object.")
    return schema.load(body, partial=partial)


common = Blueprint("common", __name__)


@common.get("/health")
def health():
    """Health of this service and of what it depends on.
    ---
    get:
      summary: Health of this service and its dependencies
      responses:
        200: {description: Everything this service needs answers}
        503: {description: A dependency is failing; see checks}
    """
    paz = paz_context()
    checks: dict[str, Any] = {}
    for name, check in paz.health_checks.items():
        try:
            checks[name] = {"ok": True, **check()}
        except Exception as exc:  # a failing check is reported, never raised
            checks[name] = {"ok": False, "error": str(exc)}
    healthy = all(check["ok"] for check in checks.values())
    body = {
        "service": paz.settings.service_name,
        "status": "ok" if healthy else "degraded",
        "address": paz.settings.address,
        "version": __version__,
        "checks": checks,
    }
    return jsonify(body), 200 if healthy else 503


@common.get("/openapi.json")
def openapi():
    """The OpenAPI document of this service.
    ---
    get:
      summary: The OpenAPI 3 document of this service
      responses:
        200: {description: OpenAPI document}
    """
    return jsonify(openapi_spec(current_app))


@common.get("/docs")
def docs():
    """Human-readable API reference, rendered from the OpenAPI document with local files only.
    ---
    get:
      summary: API reference as HTML
      responses:
        200: {description: HTML page}
    """
    return render_docs(openapi_spec(current_app))


def render_docs(*specs: dict[str, Any], title: str = "", links: Sequence[str] = ()) -> str:
    """An HTML reference of one or more OpenAPI documents, one section each.

    ``links[i]`` is where the document of ``specs[i]`` is downloaded (``openapi.json``, this
    service's own route, when not given); ``title`` names the page (the first document's title).
    """
    sections = [
        {"spec": spec, "link": links[i] if i < len(links) else "openapi.json", "id": _anchor(spec["info"]["title"])}
        for i, spec in enumerate(specs)
    ]
    return render_template("docs.html", title=title or specs[0]["info"]["title"], sections=sections)


def _anchor(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9-]+", "-", text).strip("-").lower() or "api"


def openapi_spec(app: Flask) -> dict[str, Any]:
    """The OpenAPI document for ``app``, built once from its routes' docstrings and schemas."""
    paz = app.extensions["paz"]
    if paz.spec is None:
        spec = APISpec(
            title=paz.settings.service_name,
            version=__version__,
            openapi_version="3.0.3",
            info={"description": app.config["PAZ_DESCRIPTION"]},
            plugins=[FlaskPlugin(), MarshmallowPlugin()],
        )
        spec.components.schema("Error", {"type": "object", "properties": {"error": {"type": "object"}}})
        with app.test_request_context():
            for rule in sorted(app.url_map.iter_rules(), key=lambda r: r.rule):
                view = app.view_functions[rule.endpoint]
                if rule.endpoint != "static" and (view.__doc__ or "").find("---") >= 0:
                    spec.path(view=view, app=app)
        paz.spec = spec.to_dict()
    return paz.spec
