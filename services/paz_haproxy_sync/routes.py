"""haproxy-sync's HTTP API: the config in force and HAProxy's view of each backend.

These run in gunicorn's workers; they read the files the engine writes and HAProxy's stats socket.
"""

from __future__ import annotations

from typing import Any

from flask import Response, current_app

from paz.api import Blueprint
from paz.errors import Unavailable

from .haproxy import Haproxy, HaproxyError
from .render import UNKNOWN_BACKEND
from .schemas import BackendOut

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
    return backend_list(rows)


def _number(row: dict[str, str], column: str) -> int:
    value = row.get(column) or "0"
    return int(value) if value.lstrip("-").isdigit() else 0


def backend_list(rows: list[dict[str, str]]) -> list[dict[str, Any]]:
    """``show stat`` rows grouped into the /backends shape."""
    found: dict[str, dict[str, Any]] = {}
    for row in rows:
        proxy, server = row.get("pxname", ""), row.get("svname", "")
        if proxy in _OWN_PROXIES or server == "FRONTEND":
            continue
        entry = found.setdefault(proxy, {"service": proxy, "servers": [], "stats": {}})
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
