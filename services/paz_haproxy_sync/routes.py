"""haproxy-sync's HTTP API: the config in force and HAProxy's view of each backend.

These run in gunicorn's workers; they read the files the engine writes and HAProxy's stats socket.
"""

from __future__ import annotations

from typing import Any

from flask import Response, current_app, request

from paz.api import Blueprint
from paz.auth import OPEN
from paz.contracts.cluster import BackendOut
from paz.errors import Forbidden, Unavailable
from paz.context import paz_context

from .haproxy import Haproxy, HaproxyError
from .marathon import EVENT_TYPES, send_hint
from .marathon_model import BACKEND_PREFIX
from .render import UNKNOWN_BACKEND
from .schemas import MarathonEventIn, MarathonEventOut
from .status import StatusFile

bp = Blueprint("haproxy_sync", __name__, description="The HAProxy config in force and its backends.")
_OWN_PROXIES = ("paz_router", "paz_stats", UNKNOWN_BACKEND)


def haproxy() -> Haproxy:
    return current_app.extensions["paz.haproxy"]


@bp.get("/config")
@bp.response(200, {"type": "string"}, content_type="text/plain",
             description="The haproxy.cfg HAProxy runs: the last one that passed haproxy -c")
def config():
    """The HAProxy config in force (503 until one has been applied)."""
    text = haproxy().installed()
    if text is None:
        raise Unavailable(f"No HAProxy config has been applied yet at {haproxy().config_path}; see this service's log.")
    return Response(text, mimetype="text/plain")


@bp.get("/backends")
@bp.response(200, BackendOut(many=True), description="One entry per routed service, by name")
def backends():
    """Every service HAProxy routes, its servers with their state, and traffic figures (503 when HAProxy does not answer)."""
    try:
        rows = haproxy().stats()
    except HaproxyError as exc:
        raise Unavailable(f"{exc}. Is HAProxy running? GET /health says.") from None
    app_ids = marathon_status().get("appIds") or {}
    return backend_list(rows, app_ids if isinstance(app_ids, dict) else {})


def marathon_status() -> dict[str, Any]:
    """What the engine last told of Marathon (``status.json``'s ``marathon``)."""
    status = StatusFile(paz_context().settings.status_path).read().get("marathon")
    return status if isinstance(status, dict) else {}


@bp.post("/marathon/events")
@bp.requires(OPEN)  # Marathon cannot send a token; only its own hosts are let in
@bp.arguments(MarathonEventIn, description="Marathon's event, as it POSTs it to a callback URL")
@bp.response(200, MarathonEventOut)
@bp.errors(400, 403)
def marathon_event(event: dict[str, Any]):
    """Take an event from Marathon (the seed's callback mode): only from Marathon's own hosts, else 403.

    Events are hints: one of interest makes haproxy-sync read every app again from Marathon.
    """
    allowed = marathon_status().get("allowedAddresses") or []
    if request.remote_addr not in allowed:
        raise Forbidden(
            f"Events are accepted only from the configured Marathon hosts ({', '.join(allowed) or 'none configured'}), "
            f"not from {request.remote_addr}; set /paz/config/marathon or PAZ_MARATHON_URLS.",
            {"from": request.remote_addr},
        )
    accepted = event["eventType"] in EVENT_TYPES
    if accepted and not send_hint(paz_context().settings, event["eventType"]):
        raise Unavailable("haproxy-sync's engine is not running (no hint socket); see GET /health.")
    return {"eventType": event["eventType"], "accepted": accepted}


def _number(row: dict[str, str], column: str) -> int:
    value = row.get(column) or "0"
    return int(value) if value.lstrip("-").isdigit() else 0


def backend_list(rows: list[dict[str, str]], app_ids: dict[str, str]) -> list[dict[str, Any]]:
    """``show stat`` rows grouped into the /backends shape; ``app_ids`` names Marathon's apps by routed name."""
    found: dict[str, dict[str, Any]] = {}
    for row in rows:
        proxy, server = row.get("pxname", ""), row.get("svname", "")
        if proxy in _OWN_PROXIES or server == "FRONTEND":
            continue
        entry = found.setdefault(proxy, _backend_entry(proxy, app_ids))
        if server == "BACKEND":
            entry["stats"] = {
                "requestRate": _number(row, "rate"),
                "requests": _number(row, "req_tot"),
                "errors5xx": _number(row, "hrsp_5xx"),
                "responseTimeMs": _number(row, "rtime"),
            }
        else:
            entry["servers"].append({"name": server, "address": row.get("addr", ""), "state": row.get("status", "")})
    return sorted(found.values(), key=lambda entry: entry["service"])


def _backend_entry(proxy: str, app_ids: dict[str, str]) -> dict[str, Any]:
    if not proxy.startswith(BACKEND_PREFIX):
        return {"service": proxy, "source": "etcd", "servers": [], "stats": {}}
    name = proxy.removeprefix(BACKEND_PREFIX)
    entry = {"service": name, "source": "marathon", "servers": [], "stats": {}}
    if isinstance(app_ids.get(name), str):
        entry["marathonApp"] = app_ids[name]
    return entry
