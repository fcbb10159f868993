"""The Flask app every paz service is made from.

:func:`create_app` gives a service its common behaviour, so each service only declares itself
(:class:`paz.service.Service`) and adds a blueprint:

* an ``X-Request-Id`` on every answer (the caller's, when it sent a sane one) and in every log line;
* JSON errors ``{"error": {"status", "message", "details"?, "requestId"}}`` for every failure,
  including unknown routes, bad JSON, validation errors and etcd being down (503), never a traceback;
* ``X-Paz-Index`` on every answer to a write (:func:`wrote`), and reads that carry an index wait for
  the process's view of etcd to reach it (:func:`read_from_etcd`), so a client reads its own writes
  whichever worker answers;
* ``GET /health`` (etcd plus the service's own checks), ``GET /openapi.json`` made by flask-smorest
  from the views' schemas (:mod:`paz.api`), and ``GET /docs`` rendered from it with a local
  template (no CDN).

The service's routes reach the app's settings, etcd and view through :func:`paz.context.paz_context`.
"""

from __future__ import annotations

import logging
import re
import time
import uuid
from collections.abc import Sequence
from typing import Any

from flask import Flask, current_app, g, jsonify, render_template, request
from werkzeug.exceptions import HTTPException

from . import __version__, auth, etcd, metrics
from .api import Blueprint, make_api
from .context import Paz, paz_context
from .contracts.common import HealthOut
from .discovery import Discovery
from .errors import ApiError, BadRequest, NotFound
from .etcd import Store, StoreUnavailable
from .keys import DOMAIN, SERVICES
from .logs import configure_logging
from .service import Service
from .settings import Settings
from .view import EtcdView

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 1024 * 1024
"""A larger body answers 413: no document of the suite comes near it."""
CLIENT_GONE = "paz.client_gone"
"""The WSGI environ's key of a function that says whether the client has closed its connection (gevent's
server, :mod:`paz.green`, sets it), for a stream that may write nothing for long (a followed log)."""
_SANE_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


def create_app(service: Service, settings: Settings | None = None) -> Flask:
    """The Flask app of ``service``, configured by ``settings`` (by default, from the environment), with the suite's common routes."""
    settings = settings or service.settings_from_env()
    configure_logging(settings.service_name, settings.log_level)
    app = Flask(settings.service_name, template_folder="templates", root_path=__file__.rsplit("/", 1)[0])
    app.json.sort_keys = False
    app.config["MAX_CONTENT_LENGTH"] = MAX_BODY_BYTES
    store = etcd.from_settings(settings)
    view = EtcdView(store, (SERVICES, *service.watches))
    paz = Paz(settings=settings, etcd=store, view=view, discovery=Discovery(view, settings),
              metrics=metrics.Exporter() if settings.metrics else None)
    paz.health_checks["etcd"] = lambda: _check_etcd(store)
    app.extensions["paz"] = paz
    api = make_api(app, settings.service_name, __version__, service.description)
    _install_request_ids(app)
    auth.install(app)
    _install_error_handlers(app)
    api.register_blueprint(common)
    api.register_blueprint(service.blueprint)
    if service.extend:
        service.extend(app, paz)
    return app


def _check_etcd(store: Store) -> dict[str, Any]:
    store.get(DOMAIN)
    return {"endpoints": list(store.endpoints)}


def request_id() -> str:
    return g.get("request_id", "")


def request_id_from(given: str) -> str:
    """The caller's ``X-Request-Id`` when it is sane, else a new one."""
    return given if _SANE_REQUEST_ID.fullmatch(given) else uuid.uuid4().hex


def log_request(method: str, path: str, status: int, started: float, **extra: Any) -> None:
    """The one log line of every answered request (but health checks)."""
    if log.isEnabledFor(logging.INFO):
        duration = round((time.monotonic() - started) * 1000, 2)
        log.info("request", extra={"method": method, "path": path, "status": status, "duration_ms": duration, **extra})


INDEX_HEADER = "X-Paz-Index"


def wrote(index: int) -> None:
    """This request's write made etcd ``index``: its answer says so in ``X-Paz-Index``, and every
    worker's next read waits for it (:mod:`paz.written`)."""
    g.paz_index = max(index, g.get("paz_index", 0))
    paz_context().written.record(index)


def read_from_etcd(query: dict[str, Any]) -> bool:
    """Whether this read must go to etcd itself rather than to the process's view.

    ``?consistent=true`` asks for it. An index (``X-Paz-Index`` header or ``?index=``, else the last
    write any worker of this server made) waits, up to ``PAZ_VIEW_WAIT`` seconds, for the view to
    reach it; an index the view does not reach by then (a write outside the subtrees it follows, or
    etcd slow) is read from etcd, so the answer always includes the client's write.
    """
    if query.get("consistent"):
        return True
    paz = paz_context()
    index = query.get("index", _header_index())
    if index is None:
        index = paz.written.index
    return not paz.view.wait_for(index, paz.settings.view_wait)


def _header_index() -> int | None:
    raw = request.headers.get(INDEX_HEADER)
    if raw is None:
        return None
    if not raw.strip().isdigit():
        raise BadRequest(f"{INDEX_HEADER} must be an etcd index (a whole number), as a write answered it; got {raw[:40]!r}.")
    return int(raw)


def _install_request_ids(app: Flask) -> None:
    @app.before_request
    def take_request_id() -> None:
        g.request_id = request_id_from(request.headers.get("X-Request-Id", ""))
        g.started = time.monotonic()

    @app.after_request
    def give_request_id(response):
        response.headers["X-Request-Id"] = request_id()
        if "paz_index" in g:
            response.headers[INDEX_HEADER] = str(g.paz_index)
        started = g.get("started", time.monotonic())
        if request.endpoint != "common.health":
            log_request(request.method, request.path, response.status_code, started)
        if paz_context().metrics:
            route = request.url_rule.rule if request.url_rule else metrics.UNMATCHED
            metrics.figures().request(request.method, route, response.status_code, time.monotonic() - started)
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

    @app.errorhandler(StoreUnavailable)
    def etcd_down(exc: StoreUnavailable):
        log.warning("etcd unavailable", extra={"reason": str(exc.cause or exc)})
        return error_response(503, f"{exc}; nothing was changed, try again once it is back.")

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException):
        message = exc.description or exc.name
        if exc.code == 404:
            message = f"No route {request.method} {request.path}; GET /docs lists them."
        elif exc.code == 413:
            message = f"The request body is larger than {MAX_BODY_BYTES // 1024} KiB; nothing the suite takes is that big."
        elif exc.code == 405:
            message = f"{request.method} is not allowed on {request.path}; allowed: {', '.join(exc.valid_methods or [])}."
        return error_response(exc.code or 500, message)

    @app.errorhandler(Exception)
    def unexpected(exc: Exception):
        log.exception("unhandled error")
        return error_response(500, "An unexpected error occurred; the logs carry this request id.")


common = Blueprint("common", __name__, description="What every paz service answers.")


@common.get("/health")
@common.requires(auth.OPEN)
@common.response(200, HealthOut, description="Everything this service needs answers")
@common.alt_response(503, schema=HealthOut, description="A dependency is failing; see checks")
def health():
    """Health of this service and of what it depends on.

    Open to all, for probes and load balancers that carry no token: the status code and ``status``
    say live and healthy. With ``PAZ_AUTH_READS=token`` the rest (address, version, each check and
    its error, which name hosts and ports) is shown only to a request with a valid token.
    """
    paz = paz_context()
    checks: dict[str, Any] = {}
    for name, check in paz.health_checks.items():
        try:
            checks[name] = {"ok": True, **check()}
        except Exception as exc:  # a failing check is reported, never raised
            checks[name] = {"ok": False, "error": str(exc)}
    healthy = all(check["ok"] for check in checks.values())
    body = {"service": paz.settings.service_name, "status": "ok" if healthy else "degraded"}
    if auth.may_read():
        body.update(address=paz.settings.address, version=__version__, checks=checks)
    return body, 200 if healthy else 503


@common.get("/metrics")
@auth.checked_here
@common.response(200, {"type": "string"}, content_type=metrics.CONTENT_TYPE, description="Prometheus' text format")
@common.alt_response(404, description="This service was started with PAZ_METRICS=false")
def metrics_page():
    """This service's figures for Prometheus: its requests by route and status, and its part's own.

    Every process of the service (its workers and its companion) added up, so a service is one
    target. Needs a token when reads do (``PAZ_AUTH_READS=token``).
    """
    exporter = paz_context().metrics
    if exporter is None:
        raise NotFound("This service does not measure itself: it was started with PAZ_METRICS=false.")
    return current_app.response_class(exporter.exposition(), content_type=metrics.CONTENT_TYPE)


@common.get("/openapi.json")
@common.response(200, {"type": "object"}, description="The OpenAPI 3 document")
def openapi():
    """The OpenAPI document of this service."""
    return jsonify(openapi_spec(current_app))


@common.get("/docs")
@common.response(200, {"type": "string"}, content_type="text/html", description="An HTML page")
def docs():
    """Human-readable API reference, rendered from the OpenAPI document with local files only."""
    return current_app.response_class(render_docs(openapi_spec(current_app)), mimetype="text/html")


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
    """The OpenAPI document for ``app``, made once by flask-smorest from its views."""
    paz = app.extensions["paz"]
    if paz.spec is None:
        paz.spec = app.extensions["flask-smorest"]["apis"][""]["ext_obj"].spec.to_dict()
    return paz.spec
