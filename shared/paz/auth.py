"""Who may change what: API tokens with roles, checked before every view.

A token is a random secret (``paz_...``) given once to whoever creates it; etcd keeps only its
SHA-256 digest, at ``/paz/auth/tokens/<digest>``, with its id (the digest's first 12 hex digits, safe
to show), name, role and creation time. Roles rank ``read`` < ``deploy`` < ``admin``:

* a view that changes something (POST, PUT, PATCH, DELETE) needs ``admin`` unless it declares less
  with ``@bp.requires("deploy")`` (the hooks, rollback);
* reads are open, or need ``read`` when ``PAZ_AUTH_READS=token``;
* ``PAZ_AUTH=off`` turns the check off (a development setting; ``paz up`` keeps it on).

A token comes in ``Authorization: Bearer <token>``; views declared with ``query_token=True`` (the
hooks, which Docker Hub can only call as a URL) also take ``?token=``. A scheduler's
``PAZ_HOOK_TOKEN`` is one more token with the role ``deploy``, for the hooks only. Failures are 401
(no token, or not one of ours) and 403 (a token whose role is too low), logged with the request id
and the token's id, never with the secret. A revoked token fails from the next request on: tokens
are looked up in etcd on every check.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import logging
import os
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import Any

from flask import Flask, current_app, g, request

from . import keys
from .errors import ApiError, Forbidden, NotFound, Unauthorized
from .etcd import Store

log = logging.getLogger(__name__)

ROLES = ("read", "deploy", "admin")
RANK = {role: rank for rank, role in enumerate(ROLES)}
MUTATING = frozenset({"POST", "PUT", "PATCH", "DELETE"})
PREFIX = "paz_"


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


class TokenStore:
    """Tokens in etcd, by the digest of their secret."""

    def __init__(self, etcd: Store) -> None:
        self.etcd = etcd

    def create(self, role: str, name: str = "") -> tuple[str, dict[str, Any]]:
        """A new token: its secret (shown once, never stored) and its record."""
        if role not in RANK:
            raise ValueError(f"a role is one of {', '.join(ROLES)}")
        secret = PREFIX + secrets.token_urlsafe(32)
        key = digest(secret)
        record = {"id": key[:12], "name": name, "role": role, "createdAt": now()}
        self.etcd.create(keys.token(key), json.dumps(record, sort_keys=True))
        return secret, record

    def records(self) -> list[dict[str, Any]]:
        """Every token's record (no secrets: etcd has none), oldest first."""
        found = [_record(node.value) for node in self.etcd.list_prefix(keys.TOKENS).nodes]
        return sorted((r for r in found if r), key=lambda r: (r["createdAt"], r["id"]))

    def role_of(self, secret: str) -> tuple[str, str] | None:
        """``(token id, role)`` of the token with this secret, or None when there is none."""
        record = _record(self.etcd.value(keys.token(digest(secret))))
        return (record["id"], record["role"]) if record else None

    def revoke(self, token: str) -> dict[str, Any]:
        """End the token given by its secret or its id; its record. NotFound when there is none."""
        for node in self.etcd.list_prefix(keys.TOKENS).nodes:
            key = node.key.rsplit("/", 1)[-1]
            if hmac.compare_digest(key, digest(token)) or key[:12] == token:
                self.etcd.delete(node.key)
                return _record(node.value) or {"id": key[:12]}
        raise NotFound(f"No token {token[:12]!r}: GET /tokens lists them by id.", {"token": token[:12]})


def ensure_token_file(store: TokenStore, path: Path, role: str, name: str) -> bool:
    """Make a token of ``role`` in ``path`` unless the file holds one etcd knows; whether one was made.
    The file is readable by its owner only."""
    if path.exists() and store.role_of(path.read_text().strip()) is not None:
        return False
    secret, _ = store.create(role, name)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as file:
        file.write(secret + "\n")
    return True


def _record(value: str | None) -> dict[str, Any] | None:
    try:
        record = json.loads(value or "")
    except ValueError:
        return None
    return record if isinstance(record, dict) and record.get("role") in RANK else None


OPEN = "open"
"""A view that checks its caller itself (Marathon's event callback: only from Marathon's hosts)."""


def requires(role: str, query_token: bool = False) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Declare the role a view needs (instead of the default for its method), or :data:`OPEN`."""
    if role not in RANK and role != OPEN:
        raise ValueError(f"a role is one of {', '.join(ROLES)}, or open")

    def decorate(view: Callable[..., Any]) -> Callable[..., Any]:
        view._apidoc = {**getattr(view, "_apidoc", {}), "paz_role": role, "paz_query_token": query_token}
        return view

    return decorate


def checked_here(view: Callable[..., Any]) -> Callable[..., Any]:
    """Check this view's caller even in an app that otherwise passes the person's token on (:data:`DELEGATED`):
    a route that answers from the app's own figures (``/metrics``), not from another service."""
    view._apidoc = {**getattr(view, "_apidoc", {}), "paz_checked_here": True}
    return view


def declared(view: Callable[..., Any] | None) -> dict[str, Any]:
    return getattr(view, "_apidoc", {}) if view is not None else {}


def role_needed(method: str, declaration: dict[str, Any], reads_need_token: bool) -> str | None:
    """The role a request needs, or None when it is open."""
    if declaration.get("paz_role"):
        return None if declaration["paz_role"] == OPEN else declaration["paz_role"]
    if method in MUTATING:
        return "admin"
    return "read" if reads_need_token else None


def reads_need_token(settings: Any) -> bool:
    return settings.auth != "off" and settings.auth_reads == "token"


def may_read() -> bool:
    """Whether this request may see what a read shows: reads are open, or it carries a valid token."""
    paz = current_app.extensions["paz"]
    if current_app.config.get(DELEGATED) or not reads_need_token(paz.settings):
        return True
    given = _given_token({})
    return bool(given) and TokenStore(paz.etcd).role_of(given) is not None


def _given_token(declaration: dict[str, Any]) -> str:
    scheme, _, value = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    if declaration.get("paz_query_token"):
        return request.args.get("token") or request.headers.get("X-Paz-Token") or ""
    return ""


def check_request() -> None:
    """Refuse the request (401/403) unless it carries a token good enough for its view."""
    declaration = declared(current_app.view_functions.get(request.endpoint or ""))
    if current_app.config.get(DELEGATED) and not declaration.get("paz_checked_here"):
        return
    settings = current_app.extensions["paz"].settings
    hook_token = settings.hook_token if declaration.get("paz_query_token") else ""
    if settings.auth == "off" and not hook_token:
        return
    role = role_needed(request.method, declaration, settings.auth_reads == "token")
    if role is None or request.endpoint is None:
        return
    given = _given_token(declaration)
    where = f"{request.method} {request.path}"
    if not given:
        raise _refused(Unauthorized, f"{where} needs a token: send the header Authorization: Bearer <token> "
                                     f"(paz token create --role {role} makes one).")
    if hook_token and hmac.compare_digest(given.encode(), hook_token.encode()):
        granted: tuple[str, str] | None = ("hook-token", "deploy")
    else:
        granted = TokenStore(current_app.extensions["paz"].etcd).role_of(given) if settings.auth != "off" else None
    if granted is None:
        raise _refused(Unauthorized, f"The token sent with {where} is not valid (revoked, or never made here).")
    g.token_id, granted_role = granted
    if RANK[granted_role] < RANK[role]:
        raise _refused(Forbidden, f"{where} needs a token with the role {role}; this one has {granted_role}.")


def _refused(kind: type[ApiError], message: str) -> ApiError:
    log.warning("refused", extra={"status": kind.status, "reason": message, "token": g.get("token_id")})
    return kind(message)


DELEGATED = "PAZ_AUTH_DELEGATED"
"""App config: this app guards nothing itself and passes the person's token on with every call
(paz-web: the orchestrator checks the token of the person logged in)."""


def install(app: Flask) -> None:
    app.before_request(check_request)


def caller_authorization() -> dict[str, str]:
    """The header to forward on a call made for this request: the caller's own token (or the one an
    app that logs people in put in ``g.bearer``), so every service checks the person's role, not the
    forwarding service's."""
    if g.get("bearer"):
        return {"Authorization": f"Bearer {g.bearer}"}
    header = request.headers.get("Authorization")
    return {"Authorization": header} if header else {}
