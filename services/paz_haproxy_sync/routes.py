"""haproxy-sync's HTTP API: the config in force and HAProxy's view of each backend.

They read the files the engine writes and HAProxy's stats socket, never the engine's memory: the server
may run them in worker processes of their own (``PAZ_WORKER_CLASS``).
"""

from __future__ import annotations

from typing import Any

import json
import re

from flask import Response, current_app, request

from paz import keys
from paz.api import Blueprint
from paz.auth import OPEN
from paz.contracts.certs import CERTIFICATE_NAME, CertificateIn, CertificateOut, CertificatesOut
from paz.contracts.cluster import BackendOut
from paz.errors import BadRequest, Forbidden, NotFound, Unavailable
from paz.context import paz_context
from paz.names import domain_problem

from .haproxy import Haproxy, HaproxyError
from .marathon import EVENT_TYPES, send_hint
from .certs import BadCertificate
from .marathon_model import BACKEND_PREFIX
from .orders import brought
from .render import ACME_BACKEND, UNKNOWN_BACKEND
from .schemas import MarathonEventIn, MarathonEventOut
from .status import StatusFile

bp = Blueprint("haproxy_sync", __name__, description="The HAProxy config in force and its backends.")
_OWN_PROXIES = ("paz_router", "paz_stats", UNKNOWN_BACKEND, ACME_BACKEND)
_TOKEN = re.compile(r"[A-Za-z0-9_-]{1,128}")
"""An ACME token: base64url (RFC 8555, 8.3)."""


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


@bp.get("/.well-known/acme-challenge/<token>")
@bp.requires(OPEN)  # the ACME CA asks without a token
@bp.response(200, {"type": "string"}, content_type="text/plain", description="The key authorization of an order under way")
@bp.errors(404)
def acme_challenge(token: str):
    """An ACME CA's HTTP-01 request, which the router sends here: answered on every router from etcd."""
    value = paz_context().etcd.value(keys.acme_challenge(token), consistent=True) if _TOKEN.fullmatch(token) else None
    if value is None:
        raise NotFound("No certificate order is waiting for this token.")
    return Response(value, mimetype="text/plain")


@bp.get("/certs")
@bp.response(200, CertificatesOut, description="Every certificate the routers serve, and the names whose order failed")
def certificates():
    """The certificates in etcd (name, source, issuer, validity; never a key) and the failed orders with their reasons."""
    etcd = paz_context().etcd
    return {"certificates": [json.loads(node.value) for node in etcd.list_prefix(keys.CERTS).nodes],
            "failures": [json.loads(node.value) for node in etcd.list_prefix(keys.ACME_FAILURES).nodes]}


@bp.put("/certs/<name>", parameters=[CERTIFICATE_NAME])
@bp.requires("admin")
@bp.arguments(CertificateIn)
@bp.response(200, CertificateOut, description="Stored (its key sealed); every router serves it within a moment")
@bp.errors(400)
def bring_certificate(body: dict[str, Any], name: str):
    """Serve a certificate you bring for a host name (it replaces one the routers ordered; it is not renewed)."""
    problem = domain_problem(name)
    if problem:
        raise BadRequest(f"{name[:100]!r} {problem}.")
    try:
        return brought(paz_context().etcd, current_app.extensions["paz.keyring"], name, body["certificate"],
                       body["privateKey"]).summary()
    except BadCertificate as exc:
        raise BadRequest(f"Not stored: {exc}.", {"name": name}) from None


@bp.delete("/certs/<name>", parameters=[CERTIFICATE_NAME])
@bp.requires("admin")
@bp.response(204, description="Removed; a name still served over HTTPS gets a new order")
@bp.errors(404)
def remove_certificate(name: str):
    """Stop serving a certificate (the routers withdraw it within a moment)."""
    if paz_context().etcd.delete(keys.certificate(name)) is None:
        raise NotFound(f"No certificate for {name[:100]!r}; GET /certs lists them.")
    return Response(status=204)


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
