"""What haproxy-sync's routes answer (the orchestrator's load balancer views embed :class:`BackendOut`)."""

from __future__ import annotations

from marshmallow import INCLUDE, Schema, fields


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

    service = fields.String(required=True, metadata={"description": "the service, or the routed name c-b-a of Marathon app /a/b/c"})
    source = fields.String(required=True, metadata={"description": "etcd (paz's services) or marathon"})
    marathonApp = fields.String(metadata={"description": "the Marathon app id, for a backend from Marathon"})
    servers = fields.List(fields.Nested(ServerOut), required=True)
    stats = fields.Nested(BackendStats, required=True)


class MarathonEventIn(Schema):
    """An event Marathon POSTs to a callback URL (``POST /v2/eventSubscriptions?callbackUrl=``)."""

    class Meta:
        unknown = INCLUDE

    eventType = fields.String(required=True, metadata={"description": "e.g. status_update_event"})


class MarathonEventOut(Schema):
    eventType = fields.String(required=True)
    accepted = fields.Boolean(required=True, metadata={"description": "true when it makes haproxy-sync read Marathon's apps again"})
