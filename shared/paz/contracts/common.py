"""What every service answers: its failures, in one shape, and its health (read by the orchestrator and ``paz status``)."""

from __future__ import annotations

from marshmallow import Schema, fields


class ErrorDetail(Schema):
    status = fields.Integer(required=True, metadata={"description": "the HTTP status again"})
    message = fields.String(required=True, metadata={"description": "what went wrong and what to do, in one or two sentences"})
    details = fields.Raw(metadata={"description": "per-field problems, or the values concerned"})
    requestId = fields.String(required=True, metadata={"description": "also in the X-Request-Id header and every log line"})


class ErrorSchema(Schema):
    """``{"error": {status, message, details?, requestId}}``: every answer that is not a success."""

    error = fields.Nested(ErrorDetail, required=True)


class HealthOut(Schema):
    service = fields.String(required=True)
    status = fields.String(required=True, metadata={"description": "ok, or degraded when a check fails"})
    address = fields.String(metadata={"description": "with PAZ_AUTH_READS=token: only for a request with a token"})
    version = fields.String(metadata={"description": "with PAZ_AUTH_READS=token: only for a request with a token"})
    checks = fields.Dict(keys=fields.String(), values=fields.Dict(), metadata={
        "description": "per dependency: {ok, error?, ...what it found}; with PAZ_AUTH_READS=token only for a request with a token"})
