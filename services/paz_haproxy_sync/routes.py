"""haproxy-sync's HTTP API: the config in force and HAProxy's view of each backend.

These run in gunicorn's workers; they read the files the engine writes and HAProxy's stats socket.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, current_app, jsonify

from paz.errors import Unavailable

from .haproxy import Haproxy, HaproxyError
from .render import UNKNOWN_BACKEND

bp = Blueprint("haproxy_sync", __name__)
_OWN_PROXIES = ("paz_router", "paz_stats", UNKNOWN_BACKEND)


def haproxy() -> Haproxy:
    return current_app.extensions["paz.haproxy"]


@bp.get("/config")
def config():
    """The HAProxy config in force.
    ---
    get:
      summary: The text of the haproxy.cfg HAProxy runs (the last one that passed haproxy -c)
      responses:
        200: {description: The config, content: {text/plain: {schema: {type: string}}}}
        503: {description: No config has been applied yet}
    """
    text = haproxy().installed()
    if text is None:
        raise Unavailable(f"No HAProxy config has been applied yet at {haproxy().config_path}; see this service's log.")
    return Response(text, mimetype="text/plain")


@bp.get("/backends")
def backends():
    """Each routed service with its servers and their state, from HAProxy's stats.
    ---
    get:
      summary: Every service HAProxy routes, its servers and traffic figures
      responses:
        200: {description: One entry per service, content: {application/json: {schema: {type: array, items: BackendOut}}}}
        503: {description: HAProxy's stats socket does not answer}
    """
    try:
        rows = haproxy().stats()
    except HaproxyError as exc:
        raise Unavailable(f"{exc}. Is HAProxy running? GET /health says.") from None
    return jsonify(backend_list(rows))


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
