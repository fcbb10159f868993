"""The cluster as the orchestrator shows it: the scheduler's units and hosts, and haproxy-sync's backends."""

from __future__ import annotations

from marshmallow import Schema, fields


class StatsOut(Schema):
    cpuPercent = fields.Float(allow_none=True)
    memoryBytes = fields.Integer(allow_none=True)
    memoryLimitBytes = fields.Integer(allow_none=True)


class UnitOut(Schema):
    id = fields.String(metadata={"description": "<service>-<version>-<instance>, also the container name"})
    service = fields.String()
    version = fields.Integer()
    instance = fields.Integer()
    host = fields.String(allow_none=True)
    port = fields.Integer(allow_none=True)
    image = fields.String()
    containerId = fields.String(allow_none=True)
    state = fields.String(metadata={"description": "as the runtime says: running, exited, ..."})
    announced = fields.Boolean()
    healthy = fields.Boolean(metadata={"description": "running and announced"})
    stats = fields.Nested(StatsOut, metadata={"description": "only on GET /units/<id>"})


class HostOut(Schema):
    id = fields.String()
    name = fields.String(allow_none=True)
    driver = fields.String()
    address = fields.String(allow_none=True)
    cores = fields.Integer(allow_none=True)
    memoryBytes = fields.Integer(allow_none=True)
    containersRunning = fields.Integer(allow_none=True)
    healthy = fields.Boolean()
    role = fields.String(allow_none=True, metadata={"description": "swarm: manager or worker"})
    availability = fields.String(allow_none=True, metadata={"description": "swarm: active, pause or drain"})
    state = fields.String(allow_none=True, metadata={"description": "swarm: ready, down, ..."})


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
