"""Shapes of the orchestrator's own answers (the ones relayed from other services keep their shape)."""

from __future__ import annotations

from marshmallow import Schema, fields


class Problem(Schema):
    source = fields.String(metadata={"description": "the service that could not be asked"})
    status = fields.Integer()
    message = fields.String()


class Counted(Schema):
    total = fields.Integer()
    healthy = fields.Integer()


class ClusterOut(Schema):
    services = fields.Integer(allow_none=True, metadata={"description": "services in the directory; null when it is down"})
    hosts = fields.Nested(Counted, allow_none=True)
    units = fields.Nested(Counted, allow_none=True)
    loadBalancers = fields.Nested(Counted)
    healthy = fields.Boolean(metadata={"description": "every host, unit and load balancer healthy, every source answering"})
    problems = fields.List(fields.Nested(Problem))


class HealthOut(Schema):
    id = fields.String()
    healthy = fields.Boolean()
    reason = fields.String(metadata={"description": "why it is not healthy"})


class DeletedOut(Schema):
    service = fields.String()
    deleted = fields.Boolean()
    stopped = fields.List(fields.String(), metadata={"description": "ids of the instances the scheduler stopped"})
    warning = fields.String(metadata={"description": "only with force=true when the scheduler could not stop them"})


class Traffic(Schema):
    requestRate = fields.Float(allow_none=True, metadata={"description": "requests per second (HAProxy's req_rate)"})
    requests = fields.Float(allow_none=True)
    errors5xx = fields.Float(allow_none=True)
    errorRate = fields.Float(metadata={"description": "errors5xx / requests"})
    responseTimeMs = fields.Float(allow_none=True)
    loadBalancers = fields.List(fields.Dict())


class ServiceStatsOut(Schema):
    service = fields.String()
    traffic = fields.Nested(Traffic, allow_none=True, metadata={"description": "null when no load balancer routes it"})
    instances = fields.List(fields.Dict(), metadata={"description": "per running instance: id, host, cpuPercent, memoryBytes, memoryLimitBytes"})
    totals = fields.Dict()


class LoadBalancerOut(Schema):
    id = fields.String()
    address = fields.String(allow_none=True)
    healthy = fields.Boolean()
    backends = fields.List(fields.Dict(), metadata={"description": "haproxy-sync's /backends: service, servers, stats"})
    error = fields.Dict()
