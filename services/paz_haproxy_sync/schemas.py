"""What haproxy-sync's routes answer (the orchestrator's load balancer views embed :class:`BackendOut`)."""

from __future__ import annotations

from marshmallow import Schema, fields


class ServerOut(Schema):
    name = fields.String(required=True, metadata={"description": "the unit id <service>-<version>-<instance>, or the suite service's name"})
    address = fields.String(required=True, metadata={"description": "host:port HAProxy sends requests to"})
    state = fields.String(required=True, metadata={"description": "HAProxy's status: UP, DOWN, MAINT, no check, ..."})


class BackendStats(Schema):
    requestRate = fields.Integer(metadata={"description": "sessions per second over the last second"})
    requests = fields.Integer(metadata={"description": "HTTP requests since HAProxy's worker started"})
    errors5xx = fields.Integer()
    responseTimeMs = fields.Integer(metadata={"description": "average over the last 1024 requests"})


class BackendOut(Schema):
    """A routed service: its servers and traffic (stats is empty until HAProxy reports the backend)."""

    service = fields.String(required=True)
    servers = fields.List(fields.Nested(ServerOut), required=True)
    stats = fields.Nested(BackendStats, required=True)
