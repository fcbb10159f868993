"""Answers the orchestrator passes on as the directory or the scheduler gave them.

A relayed route documents the upstream's own schemas and statuses. Its request body is forwarded
unread (:class:`ForwardingParser`): the upstream validates it, so its 400 (message, details, request
id) comes back exactly as it wrote it. An upstream that fails (a 5xx other than 502 or 503) or
answers something that is not JSON is a 502 that names it.
"""

from __future__ import annotations

from typing import Any

from flask import Response
from marshmallow import Schema

from paz.api import Blueprint, BodyParser

from .upstream import Answer, unusable_answer

RELAYED_HEADERS = ("Content-Type", "Location", "Preference-Applied", "Retry-After", "X-Paz-Index")


def forwarded(schema: Schema) -> Schema:
    """``schema`` as the document shows a relayed body; the body itself is forwarded unread."""
    schema.paz_forwarded = True  # type: ignore[attr-defined]
    return schema


class ForwardingParser(BodyParser):
    """Relayed bodies (:func:`forwarded`) must be JSON objects and are handed to the view unread;
    the orchestrator's own bodies and every query are validated as usual."""

    def parse(self, argmap: Any, req: Any = None, *, location: str | None = None, **kwargs: Any) -> Any:
        if location == "json" and getattr(argmap, "paz_forwarded", False):
            return self.load_json(req if req is not None else self.get_default_request(), argmap)
        return super().parse(argmap, req, location=location, **kwargs)


class RelayBlueprint(Blueprint):
    """A blueprint whose bodies are forwarded to the service that validates them."""

    ARGUMENTS_PARSER = ForwardingParser()


def relay(service: str, method: str, path: str, response: Answer) -> Response:
    """``service``'s answer to ``method path`` given back as it was: status, body and the headers that matter."""
    problem = unusable_answer(service, method, path, response)
    if problem is not None:
        raise problem
    relayed = Response(response.content, status=response.status_code)
    for header in RELAYED_HEADERS:
        if header in response.headers:
            relayed.headers[header] = response.headers[header]
    return relayed
