"""The suite's flask-smorest layer: the OpenAPI document is made from the code that validates.

A service's views carry ``@bp.arguments(Schema)`` for what they accept, ``@bp.response(status,
Schema)`` for what they answer and ``@bp.errors(400, 404, ...)`` for every failure they can answer,
so the document cannot drift from the code. Every failure has one JSON shape, :class:`paz.contracts.common.ErrorSchema`;
every operation also declares 503, since any of them can meet etcd (or another service) down.
"""

from __future__ import annotations

import http
import json
from collections.abc import Callable
from typing import Any

import flask_smorest
from flask import Flask
from apispec.ext.marshmallow import MarshmallowPlugin
from marshmallow import Schema, ValidationError, fields, validate
from webargs.flaskparser import FlaskParser

from . import auth
from .contracts.common import ErrorSchema
from .errors import BadRequest, PayloadTooDeep
from .names import SERVICE_NAME

UNAVAILABLE = 503
BEARER = "bearerToken"
TOKEN_PARAMETER = {"in": "query", "name": "token", "required": False, "schema": {"type": "string"},
                   "description": "the token, for callers that can only call a URL (Docker Hub); Authorization: Bearer is better"}
NAMED = [{
    "in": "path",
    "name": "name",
    "required": True,
    "description": "a service name: a DNS label (any other answers 400)",
    "schema": {"type": "string", "pattern": SERVICE_NAME.pattern},
}]
"""The ``<name>`` path parameter of ``/services/<name>...`` routes, as the documents show it."""


class Pattern(validate.Regexp):
    """``validate.Regexp`` over the whole value: Python's ``$`` also matches before a final newline,
    which would let ``"web\\n"`` through; the pattern itself stays as the OpenAPI document shows it."""

    def __call__(self, value: str) -> str:
        if self.regex.fullmatch(value) is None:
            raise ValidationError(self._format_error(value))
        return value

class ReadQuery(Schema):
    """How fresh a read from the process's view of etcd must be (see :func:`paz.web.read_from_etcd`)."""

    index = fields.Integer(
        strict=False, validate=lambda n: n >= 0,
        metadata={"description": "an etcd index (a write's X-Paz-Index): the answer includes that write; "
                                 "the X-Paz-Index request header does the same"},
    )
    consistent = fields.Boolean(metadata={"description": "true reads etcd itself (a quorum read) instead of this process's view"})


class BodyParser(FlaskParser):
    """webargs' Flask parser with the suite's answers: 400 (not 422) naming what is wrong with a body."""

    DEFAULT_VALIDATION_STATUS = 400

    def load_json(self, req: Any, schema: Schema) -> Any:
        if not req.is_json:
            raise BadRequest("Send a JSON body with the header Content-Type: application/json.")
        try:
            body = json.loads(req.get_data(cache=True) or b"null")
        except RecursionError:
            raise PayloadTooDeep() from None
        except ValueError:
            raise BadRequest("The request body is not valid JSON.") from None
        if not isinstance(body, dict):
            raise BadRequest("The request body must be a JSON object.")
        return body

    def handle_error(self, error: Any, req: Any, schema: Schema, *, error_status_code: int | None,
                     error_headers: Any) -> None:
        (location, messages), = error.messages.items()
        where = {"json": "body", "query": "query", "headers": "headers"}.get(location, location)
        raise BadRequest(f"The request {where} is not valid: see details for each field.", messages)


def _declare(doc_info: dict[str, Any], *statuses: int) -> None:
    responses = doc_info.setdefault("response", {}).setdefault("responses", {})
    for status in statuses:
        responses.setdefault(status, [http.HTTPStatus(status).name])


def _document_unavailable(doc: dict[str, Any], doc_info: dict[str, Any], **_: Any) -> dict[str, Any]:
    _declare(doc_info, UNAVAILABLE)
    return doc


def _document_auth(doc: dict[str, Any], doc_info: dict[str, Any], *, method: str, **_: Any) -> dict[str, Any]:
    """A view that needs a token (:mod:`paz.auth`) says so, with its 401 and 403."""
    if auth.role_needed(method.upper(), doc_info, reads_need_token=False) is None:
        return doc
    _declare(doc_info, 401, 403)
    doc["security"] = [{BEARER: []}]
    if doc_info.get("paz_query_token"):
        doc_info.setdefault("arguments", {}).setdefault("parameters", []).append(TOKEN_PARAMETER)
    return doc


class Blueprint(flask_smorest.Blueprint):
    """A flask-smorest blueprint whose bodies are read by :class:`BodyParser` and whose failures are declared."""

    ARGUMENTS_PARSER = BodyParser()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._prepare_doc_cbks[:0] = [_document_unavailable, _document_auth]

    requires = staticmethod(auth.requires)

    def errors(self, *statuses: int) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        """Declare that a view may answer each of ``statuses`` with the error shape."""

        def decorate(view: Callable[..., Any]) -> Callable[..., Any]:
            for status in statuses:
                view = self.alt_response(status, response=http.HTTPStatus(status).name)(view)
            return view

        return decorate


class Api(flask_smorest.Api):
    """flask-smorest's Api with the suite's error shape and no catch-all ``default`` response.

    Error handlers are :mod:`paz.web`'s, so smorest's own are not installed; neither are its
    documentation routes (``/openapi.json`` and ``/docs`` are the suite's own views).
    """

    ERROR_SCHEMA = ErrorSchema
    DEFAULT_ERROR_RESPONSE_NAME = None

    def _register_error_handlers(self) -> None:
        pass


def schema_name(schema: type[Schema] | Schema) -> str:
    """A schema's name in the document: its class name without ``Schema``, ``...Patch`` when partial."""
    cls = schema if isinstance(schema, type) else type(schema)
    return cls.__name__.removesuffix("Schema") + ("Patch" if getattr(schema, "partial", False) else "")


def make_api(app: Flask, title: str, version: str, description: str) -> Api:
    app.config.update(API_TITLE=title, API_VERSION=version, OPENAPI_VERSION="3.0.3")
    plugin = MarshmallowPlugin(schema_name_resolver=schema_name)
    api = Api(app, spec_kwargs={"info": {"description": description}, "marshmallow_plugin": plugin})
    api.spec.components.security_scheme(BEARER, {"type": "http", "scheme": "bearer", "description": "a paz token (paz token create)"})
    return api
