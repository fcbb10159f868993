"""What haproxy-sync's routes answer, for the OpenAPI document."""

from __future__ import annotations

from marshmallow import Schema, fields


class ServerOut(Schema):
    name = fields.String(metadata={"description": "the unit id <service>-<version>-<instance>, or the suite service's name"})
    address = fields.String(metadata={"description": "host:port HAProxy sends requests to"})
    state = fields.String(metadata={"description": "HAProxy's status: UP, DOWN, MAINT, no check, ..."})


class BackendStats(Schema):
    requestRate = fields.Integer(metadata={"description": "sessions per second over the last second"})
    requests = fields.Integer(metadata={"description": "HTTP requests since HAProxy's worker started"})
    errors5xx = fields.Integer()
    responseTimeMs = fields.Integer(metadata={"description": "average over the last 1024 requests"})


class BackendOut(Schema):
    service = fields.String()
    servers = fields.List(fields.Nested(ServerOut))
    stats = fields.Nested(BackendStats)
