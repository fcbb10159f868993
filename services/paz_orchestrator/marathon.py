"""Forwarding configuration changes to Marathon (the second seed's second job).

``PUT``/``PATCH /marathon/apps/<app id>`` take a validated subset of an app definition
(:class:`~.schemas.MarathonAppChange`) and send it, as it was given, to Marathon's
``PUT``/``PATCH /v2/apps/<app id>``. Marathon's base URLs come from ``PAZ_MARATHON_URLS`` or, read at
each request, ``/paz/config/marathon``; they are tried in turn while one cannot be reached. Its
answers are mapped to the suite's: ``{deploymentId, version}`` passed on, 409 (a deployment holds
the app) a 409 that says so, 400/422 a 400 with Marathon's message, unreachable a 503 naming it, none
configured a 409 saying where to set one.
Each forwarded change is written to ``/paz/marathon/changes`` (with a TTL), so ``/events`` tells it.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

import requests
from marshmallow import ValidationError

from paz import keys
from paz.errors import BadGateway, BadRequest, Conflict, NotFound, Unavailable
from paz.etcd import Store, StoreUnavailable
from paz.names import MARATHON_APP_ID
from paz.settings import parse_base_urls

from .schemas import MarathonAppChange

log = logging.getLogger(__name__)

CHANGE_TTL_SECONDS = 86400
"""How long a forwarded change stays in etcd for ``/events`` readers that reconnect."""


def checked_app_id(raw: str) -> str:
    """``/group/app`` from the path's ``group/app``; a 400 saying the rule otherwise."""
    app_id = "/" + raw.strip("/")
    if not MARATHON_APP_ID.fullmatch(app_id):
        raise BadRequest(
            f"{raw!r} is not a Marathon app id the suite forwards: /group/app, each part lowercase letters, digits and '-'",
            {"app": raw},
        )
    return app_id


def _message(answer: requests.Response) -> tuple[str, Any]:
    try:
        body = answer.json()
    except ValueError:
        return answer.text[:300], None
    if not isinstance(body, dict):
        return str(body)[:300], body
    return str(body.get("message") or body)[:300], body


class MarathonForwarder:
    """Sends app changes to the first Marathon that answers."""

    def __init__(self, etcd: Store, urls: tuple[str, ...], timeout: float) -> None:
        self.etcd = etcd
        self.pinned = urls
        self.timeout = timeout

    def urls(self) -> tuple[str, ...]:
        if self.pinned:
            return self.pinned
        try:
            raw = self.etcd.value(keys.MARATHON) or ""
        except StoreUnavailable as exc:
            raise Unavailable(f"Marathon's URLs cannot be read from {keys.MARATHON}: {exc}") from None
        try:
            urls = parse_base_urls(raw)
        except ValueError as exc:
            raise Unavailable(f"{keys.MARATHON} holds {raw!r}, which is not Marathon's base URLs: {exc}") from None
        if not urls:  # the suite's state, not a failure: there is nothing to forward to
            raise Conflict(f"No Marathon is configured: set {keys.MARATHON} to its base URLs (comma-separated) or PAZ_MARATHON_URLS.")
        return urls

    def forward(self, method: str, raw_id: str, body: Any, force: bool) -> dict[str, Any]:
        """Send ``body`` (validated here) to Marathon; its deployment id and version, or the mapped error."""
        app_id = checked_app_id(raw_id)
        try:
            change = MarathonAppChange().load(body)
        except ValidationError as exc:
            raise BadRequest("The request body is not valid: see details for each field.", exc.messages) from None
        answer, url = self._send(method, app_id, change, force)
        message, details = _message(answer)
        if answer.status_code == 409:
            raise Conflict(
                f"A deployment is in progress for {app_id}, so Marathon refused the change ({message}). Retry when it "
                "finishes, or add ?force=true to override it.",
                {"marathon": url, "answer": details},
            )
        if answer.status_code in (400, 422):
            raise BadRequest(f"Marathon refused the change to {app_id}: {message}", {"marathon": url, "answer": details})
        if answer.status_code == 404:
            raise NotFound(f"Marathon has no app {app_id} ({message}); PUT creates it, PATCH only changes it.", {"marathon": url})
        if not answer.ok or not isinstance(details, dict) or "deploymentId" not in details or "version" not in details:
            raise BadGateway(f"Marathon at {url} answered {answer.status_code} without a deployment: {message}", {"marathon": url})
        result = {"app": app_id, "deploymentId": str(details["deploymentId"]), "version": str(details["version"]), "marathon": url}
        self._record(method, result, change)
        return result

    def _send(self, method: str, app_id: str, change: dict[str, Any], force: bool) -> tuple[requests.Response, str]:
        problems = []
        for url in self.urls():
            try:
                answer = requests.request(method, f"{url}/v2/apps{app_id}", json=change,
                                          params={"force": "true"} if force else None, timeout=self.timeout)
                return answer, url
            except requests.RequestException as exc:
                problems.append(f"{url} ({type(exc).__name__})")
        raise Unavailable(f"Marathon is unreachable at {', '.join(problems)}; the change was not forwarded.", {"app": app_id})

    def _record(self, method: str, result: dict[str, Any], change: dict[str, Any]) -> None:
        entry = {**result, "method": method, "changed": sorted(change), "at": time.time()}
        try:
            self.etcd.append(keys.MARATHON_CHANGES, json.dumps(entry), self.etcd.grant(CHANGE_TTL_SECONDS))
        except StoreUnavailable as exc:
            log.warning("a forwarded change could not be written to etcd for /events", extra={"reason": str(exc), **result})
