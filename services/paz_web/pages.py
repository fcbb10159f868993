"""The dashboard's pages: HTML made on the server (readable without JavaScript), each kept live by
htmx re-reading its live region when the orchestrator's event stream (relayed by :func:`event_stream`)
says something changed. Every mutating form carries the session's CSRF token."""

from __future__ import annotations

import datetime as dt
import hmac
import logging
import secrets
from pathlib import Path
from typing import Any

import requests
from flask import (
    Blueprint, Flask, Response, current_app, flash, g, redirect, render_template, request, send_from_directory, session,
    stream_with_context, url_for,
)
from werkzeug.exceptions import HTTPException

from paz.auth import DELEGATED, reads_need_token
from paz.errors import ApiError, BadRequest, NotFound
from paz.names import checked_name

from . import forms, views
from .history import last_hour
from .orchestrator import LONG_CALL_SECONDS, RESPOND_ASYNC, Orchestrator, path_of
from .settings import WebSettings

log = logging.getLogger(__name__)

HERE = Path(__file__).resolve().parent
NODE_MODULES = HERE / "assets" / "node_modules"
VENDOR = {
    "htmx.min.js": "htmx.org/dist/htmx.min.js",
    "sse.js": "htmx-ext-sse/sse.js",
    "uPlot.iife.min.js": "uplot/dist/uPlot.iife.min.js",
    "uPlot.min.css": "uplot/dist/uPlot.min.css",
}
"""The pinned npm files paz-web serves (bin/setup installs them with ``npm ci``); nothing comes from a CDN."""
LIVE_EVENTS = (
    "service-created", "service-deleted", "config-changed", "deploy-started", "deploy-finished", "deploy-failed",
    "instance-up", "instance-down", "journal", "events-lost",
)
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
                               "img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; form-action 'self'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}

pages = Blueprint("pages", __name__, template_folder="templates", static_folder="static", static_url_path="/assets/paz")


LOGIN = ("pages.login_page", "pages.login")


def attach_pages(app: Flask, settings: WebSettings) -> None:
    app.secret_key = settings.session_secret()
    app.config.update(SESSION_COOKIE_HTTPONLY=True, SESSION_COOKIE_SAMESITE="Lax", SESSION_COOKIE_NAME="paz-web")
    app.extensions["paz.web.settings"] = settings
    app.jinja_env.globals.update(csrf_token=csrf_token, live_trigger=live_trigger, live_events=LIVE_EVENTS)
    app.register_blueprint(pages)
    app.config[DELEGATED] = True


def orchestrator() -> Orchestrator:
    return current_app.extensions["paz.orchestrator"]


def csrf_token() -> str:
    """This session's token, which every mutating form sends back (a signed cookie holds it)."""
    if "csrf" not in session:
        session["csrf"] = secrets.token_urlsafe(32)
    return session["csrf"]


def live_trigger() -> str:
    """htmx's trigger for a live region: any event of the stream, bursts folded into one re-read, and
    the stream's opening (``paz:resync``, from paz.js)."""
    return ", ".join([*(f"sse:{event} delay:300ms" for event in LIVE_EVENTS), "paz:resync"])


@pages.before_request
def carry_token() -> Any:
    """The token of the person logged in goes with every call to the orchestrator (paz.auth); with
    ``PAZ_AUTH_READS=token`` a person not logged in is shown the login form (401) instead of a page."""
    g.bearer = session.get("token")
    if not g.bearer and request.endpoint not in LOGIN and reads_need_token(current_app.extensions["paz"].settings):
        return render_template("login.html", error="Reading this dashboard needs a token: log in with one."), 401
    return None


@pages.before_request
def check_csrf() -> None:
    if request.method != "POST":
        return
    expected = session.get("csrf", "")
    given = request.form.get("csrf_token", "")
    if not expected or not hmac.compare_digest(given.encode(), expected.encode()):
        raise ApiError("This form was not sent from this dashboard's page, or the page is too old: "
                       "reload the page and send it again.", status=403)


@pages.after_request
def secure(response: Response) -> Response:
    response.headers.update(SECURITY_HEADERS)
    return response


@pages.errorhandler(ApiError)
def api_error(exc: ApiError):
    return render_template("error.html", status=exc.status, message=exc.message), exc.status


@pages.errorhandler(HTTPException)
def http_error(exc: HTTPException):
    return render_template("error.html", status=exc.code, message=exc.description), exc.code or 500


@pages.errorhandler(Exception)
def unexpected(exc: Exception):
    log.exception("unhandled error")
    return render_template("error.html", status=500, message="Something went wrong in paz-web; its log has the details."), 500


# The cluster


@pages.get("/")
def cluster():
    """Hosts, units and load balancers with their health; problems named.

    The counts are made here from the lists the page shows, rather than asked of ``/cluster``, which
    would list the units (a Docker query) a second time."""
    ask = orchestrator()
    answers = ask.gather(services=lambda: ask.get("/services"), hosts=lambda: ask.get("/cluster/hosts"),
                         units=lambda: ask.get("/cluster/units"), balancers=lambda: ask.get("/cluster/load-balancers"),
                         certificates=lambda: ask.get("/certs"))
    services, hosts, units, balancers, certificates = (
        views.answered(answers[key]) for key in ("services", "hosts", "units", "balancers", "certificates"))
    if balancers == []:
        answers.pop("certificates")  # no router runs, so none serves a certificate: nothing to name
    problems = [*views.failures(answers), *views.unhealthy("host", hosts), *views.unhealthy("unit", units),
                *views.unhealthy("load balancer", balancers),
                *views.certificate_problems(certificates, dt.datetime.now(dt.timezone.utc))]
    summary = {"services": None if services is None else len(services), "hosts": views.counted(hosts),
               "units": views.counted(units), "loadBalancers": views.counted(balancers), "healthy": not problems}
    return render_template("cluster.html", summary=summary, hosts=hosts or [], units=units or [], balancers=balancers or [],
                           certificates=(certificates or {}).get("certificates", []), problems=problems)


# Services


@pages.get("/services")
def services():
    return services_page()


def services_page(form: dict[str, str] | None = None, errors: dict[str, str] | None = None, message: str = "", status: int = 200):
    ask = orchestrator()
    answers = ask.gather(services=lambda: ask.get("/services"), units=lambda: ask.get("/cluster/units"))
    rows = views.service_rows(views.answered(answers["services"], []), views.answered(answers["units"]))
    return render_template("services.html", rows=rows, problems=views.failures(answers), form=form or {},
                           errors=errors or {}, message=message), status


@pages.post("/services")
def register():
    """Register a service; the API's validation errors are shown beside the fields."""
    try:
        created = orchestrator().send("POST", "/services", forms.new_service(request.form))
    except ApiError as exc:
        if exc.status >= 500:
            raise
        return services_page(request.form.to_dict(), forms.field_errors(exc.details), exc.message, exc.status)
    flash(f"Registered {created['name']}. Deploy it when its config is ready.")
    return redirect(url_for("pages.service", name=created["name"]), 303)


@pages.get("/services/<name>")
def service(name: str):
    return service_page(checked_name(name))


def service_page(name: str, errors: dict[str, str] | None = None, message: str = "", status: int = 200):
    ask = orchestrator()
    answers = ask.gather(
        document=lambda: ask.get(path_of(name)),
        last=lambda: ask.get(path_of(name, "/config/last")),
        history=lambda: ask.get(path_of(name, "/config/history")),
        units=lambda: ask.get(path_of(name, "/units")),
        journal=lambda: ask.get("/journal", service=name, limit=20),
    )
    document = answers["document"]
    if isinstance(document, ApiError):
        raise document
    last = answers["last"]
    never_deployed = isinstance(last, ApiError) and last.status == 404
    problems = views.failures({k: v for k, v in answers.items() if not (k == "last" and never_deployed)})
    running = views.answered(last, {}).get("config") if not never_deployed else None
    return render_template(
        "service.html", service=document, stream_service=name, last=None if never_deployed else views.answered(last),
        diff=views.config_diff(running, document["config"]), history=views.answered(answers["history"], []),
        units=views.answered(answers["units"], []), journal=views.answered(answers["journal"], []),
        problems=problems, errors=errors or {}, message=message, env_text=forms.env_text(document["config"].get("env", {})),
        ports_text=forms.ports_text(document["config"].get("ports", [])),
        traffic_history=last_hour(current_app.extensions["paz.web.settings"].prometheus_url, name),
    ), status


@pages.get("/services/<name>/stats")
def stats(name: str):
    """CPU, memory and HAProxy's traffic: a fragment the service page polls, or a page of its own without JavaScript."""
    name = checked_name(name)
    figures = orchestrator().get(path_of(name, "/stats"))
    template = "stats.html" if request.headers.get("HX-Request") else "stats_page.html"
    return render_template(template, name=name, stats=figures)


@pages.post("/services/<name>/config")
def edit_config(name: str):
    name = checked_name(name)
    ask = orchestrator()
    current = ask.get(path_of(name, "/config/next"))
    try:
        ask.send("PATCH", path_of(name, "/config/next"), forms.config_patch(request.form, current))
    except ApiError as exc:
        if exc.status >= 500:
            raise
        return service_page(name, forms.field_errors(exc.details), exc.message, exc.status)
    flash("Saved the next config: deploy to run it.")
    return redirect(url_for("pages.service", name=name), 303)


@pages.post("/services/<name>/deploy")
def deploy(name: str):
    name = checked_name(name)
    return started(name, "deploy", "/deploy", {})


@pages.post("/services/<name>/rollback")
def rollback(name: str):
    name = checked_name(name)
    version = forms.parse_whole(request.form.get("version", ""))
    if not isinstance(version, int):
        raise BadRequest("Choose a version to roll back to.")
    return started(name, f"rollback to version {version}", "/rollback", {"version": version})


def started(name: str, what: str, path: str, body: dict[str, Any]):
    """Start a deploy or rollback (the orchestrator answers at once, 202) and show the service page,
    where its progress appears from the event stream; a refusal is shown instead."""
    try:
        answer = orchestrator().send("POST", path_of(name, path), body, headers=RESPOND_ASYNC)
    except ApiError as exc:
        log.warning("refused", extra={"service": name, "what": what, "reason": exc.message})
        flash(f"The {what} of {name} did not happen: {exc.message}", "error")
    else:
        flash(f"The {what} of {name} has started as version {answer.get('version')}; its progress appears below as it happens.")
    return redirect(url_for("pages.service", name=name), 303)


@pages.get("/services/<name>/delete")
def confirm_delete(name: str):
    name = checked_name(name)
    orchestrator().get(path_of(name))
    return render_template("delete.html", name=name)


@pages.post("/services/<name>/delete")
def delete(name: str):
    name = checked_name(name)
    if request.form.get("confirm") != name:
        return render_template("delete.html", name=name, error=f"Type {name} to confirm."), 400
    answer = orchestrator().send("DELETE", path_of(name), timeout=LONG_CALL_SECONDS)
    stopped = ", ".join(answer.get("stopped", [])) or "none"
    flash(f"Deleted {name}; stopped instances: {stopped}.")
    return redirect(url_for("pages.services"), 303)


# Logging in: the orchestrator checks the token with every change; paz-web only keeps it in the session


@pages.get("/login")
def login_page():
    return render_template("login.html")


@pages.post("/login")
def login():
    token = request.form.get("token", "").strip()
    if not token.startswith("paz_") or len(token) > 200:
        return render_template("login.html", error="A paz token starts with paz_ (paz token create --role deploy makes one)."), 400
    session["token"] = token
    flash("Logged in: changes are made with this token's role.")
    return redirect(url_for("pages.cluster"), 303)


@pages.post("/logout")
def logout():
    session.pop("token", None)
    flash("Logged out: pages can still be read, changes need a token again.")
    return redirect(url_for("pages.cluster"), 303)


# Events


@pages.get("/events")
def events():
    """The live stream (filterable by service); without JavaScript, the recent journal."""
    service_filter = request.args.get("service", "")
    params = {"limit": 50, **({"service": checked_name(service_filter)} if service_filter else {})}
    ask = orchestrator()
    answers = ask.gather(journal=lambda: ask.get("/journal", **params), services=lambda: ask.get("/services"))
    return render_template("events.html", service_filter=service_filter, stream_service=service_filter, journal=views.answered(answers["journal"], []),
                           services=views.answered(answers["services"], []), problems=views.failures(answers))


@pages.get("/events/stream")
def event_stream():
    """The orchestrator's ``/events`` relayed as it comes, so the browser only talks to paz-web."""
    params = {"service": checked_name(request.args["service"])} if request.args.get("service") else {}
    last_id = request.headers.get("Last-Event-ID") or request.args.get("lastEventId")
    headers = {"Accept": "text/event-stream", **({"Last-Event-ID": last_id} if last_id else {})}
    settings = current_app.extensions["paz.web.settings"]
    upstream = orchestrator().stream("/events", params, headers, settings.events_read_timeout)
    if upstream.status_code != 200:
        upstream.close()
        return Response(": the orchestrator refused the stream\nretry: 5000\n\n", status=200, mimetype="text/event-stream")

    def relay():
        try:
            yield from upstream.iter_content(chunk_size=None)
        except requests.RequestException as exc:
            log.info("event relay ended", extra={"reason": str(exc)})
        finally:
            upstream.close()

    return Response(stream_with_context(relay()), mimetype="text/event-stream",
                    headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


@pages.get("/assets/<path:filename>")
def vendor(filename: str):
    """A pinned npm file (htmx, its SSE extension, uPlot), served from where ``npm ci`` put it."""
    if filename not in VENDOR:
        raise NotFound(f"No asset {filename!r}.")
    if not (NODE_MODULES / VENDOR[filename]).is_file():
        raise NotFound(f"{filename} is not installed: run bin/setup (it needs npm). The pages work without it, but do not update live.")
    return send_from_directory(NODE_MODULES, VENDOR[filename], max_age=3600)
