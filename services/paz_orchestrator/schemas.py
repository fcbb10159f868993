"""What the orchestrator accepts and answers of its own.

Answers relayed from the directory and the scheduler keep their shapes, so the routes document them
with the schemas those services answer (:mod:`paz.contracts`); this module has the cluster views,
health, stats and queries.
"""

from __future__ import annotations

from marshmallow import Schema, ValidationError, fields, validate, validates_schema

from paz.api import Pattern
from paz.auth import ROLES
from paz.contracts.common import ErrorSchema
from paz.contracts.cluster import BackendOut, HostOut
from paz.names import IMAGE_REFERENCE

NOT_AN_EVENT_ID = "is not an event id (a whole number, the etcd index of an event)"


class Failure(Schema):
    status = fields.Integer(required=True, metadata={"description": "the HTTP status of the failure"})
    message = fields.String(required=True)


class Problem(Failure):
    source = fields.String(required=True, metadata={"description": "the service that could not be asked"})


class Counted(Schema):
    total = fields.Integer(required=True)
    healthy = fields.Integer(required=True)


class ClusterOut(Schema):
    services = fields.Integer(required=True, allow_none=True, metadata={"description": "services in the directory; null when it is down"})
    hosts = fields.Nested(Counted, required=True, allow_none=True, metadata={"description": "null when the scheduler is down"})
    units = fields.Nested(Counted, required=True, allow_none=True, metadata={"description": "null when the scheduler is down"})
    loadBalancers = fields.Nested(Counted, required=True)
    healthy = fields.Boolean(required=True, metadata={"description": "every host, unit and load balancer healthy, every source answering"})
    problems = fields.List(fields.Nested(Problem), required=True)


class ItemHealth(Schema):
    """A host's, unit's or load balancer's health: answered with 200 when healthy, 503 when not."""

    id = fields.String(required=True)
    healthy = fields.Boolean(required=True)
    reason = fields.String(metadata={"description": "why it is not healthy"})


UNHEALTHY = {"oneOf": [ItemHealth, ErrorSchema]}
"""A health route's 503: the item is not healthy, or what says so could not be asked."""


class DeployBody(Schema):
    """What to deploy; the service comes from the path. Forwarded to the scheduler, which validates it."""

    dockerRepository = fields.String(metadata={"description": "the image with its tag; default: the service's"})
    pushedAt = fields.Raw(metadata={"description": "seconds since the epoch or ISO 8601"})


class DeletedOut(Schema):
    service = fields.String(required=True)
    deleted = fields.Boolean(required=True)
    stopped = fields.List(fields.String(), required=True, metadata={"description": "ids of the instances the scheduler stopped"})
    warning = fields.String(metadata={"description": "only with force=true when the scheduler could not stop them"})


class DeleteQuery(Schema):
    force = fields.Boolean(load_default=False, metadata={"description": "delete even if the instances could not be stopped"})


class BalancerTraffic(Schema):
    """One load balancer's figures for a service (HAProxy's, through its haproxy-sync)."""

    loadBalancer = fields.String(required=True)
    requestRate = fields.Integer()
    requests = fields.Integer()
    errors5xx = fields.Integer()
    responseTimeMs = fields.Integer()


class Traffic(Schema):
    requestRate = fields.Integer(required=True, allow_none=True, metadata={"description": "requests per second (HAProxy's rate)"})
    requests = fields.Integer(required=True, allow_none=True)
    errors5xx = fields.Integer(required=True, allow_none=True)
    errorRate = fields.Float(required=True, metadata={"description": "errors5xx / requests"})
    responseTimeMs = fields.Float(required=True, allow_none=True, metadata={"description": "weighted by each load balancer's requests"})
    loadBalancers = fields.List(fields.Nested(BalancerTraffic), required=True)


class InstanceStats(Schema):
    id = fields.String(required=True)
    host = fields.String(required=True, allow_none=True)
    cpuPercent = fields.Float(allow_none=True)
    memoryBytes = fields.Integer(allow_none=True)
    memoryLimitBytes = fields.Integer(allow_none=True)


class Totals(Schema):
    instancesRunning = fields.Integer(required=True)
    cpuPercent = fields.Float(required=True, allow_none=True)
    memoryBytes = fields.Integer(required=True, allow_none=True)


class ServiceStatsOut(Schema):
    service = fields.String(required=True)
    source = fields.String(metadata={"description": "marathon for an app routed from Marathon (no Docker figures then)"})
    marathonApp = fields.String(metadata={"description": "the Marathon app id, for an app routed from Marathon"})
    traffic = fields.Nested(Traffic, required=True, allow_none=True, metadata={"description": "null when no load balancer routes it"})
    instances = fields.List(fields.Nested(InstanceStats), required=True, metadata={"description": "each running instance, from Docker"})
    totals = fields.Nested(Totals, required=True)


class HostStats(Schema):
    units = fields.Integer(required=True)
    unitsRunning = fields.Integer(required=True)
    cpuPercent = fields.Float(required=True, allow_none=True)
    memoryBytes = fields.Integer(required=True, allow_none=True)


class HostWithStatsOut(HostOut):
    stats = fields.Nested(HostStats, required=True, metadata={"description": "summed over the units on the host"})


class LoadBalancerOut(Schema):
    id = fields.String(required=True, metadata={"description": "paz-haproxy-sync, or paz-haproxy-sync-<suffix>"})
    address = fields.String(required=True, allow_none=True)
    healthy = fields.Boolean(required=True)
    backends = fields.List(fields.Nested(BackendOut), required=True)
    error = fields.Nested(Failure, metadata={"description": "why it could not be asked"})


class TargetGroupOut(Schema):
    """One target of Prometheus' HTTP service discovery."""

    targets = fields.List(fields.String(), required=True, metadata={"description": "one host:port"})
    labels = fields.Dict(keys=fields.String(), values=fields.String(), required=True, metadata={
        "description": "part (paz-<name>, haproxy or app) and host; load_balancer for a router; service, version, unit "
                       "and __metrics_path__ for an app instance"})


class TokenIn(Schema):
    role = fields.String(required=True, validate=validate.OneOf(ROLES), metadata={"description": "read, deploy or admin"})
    name = fields.String(load_default="", validate=Pattern(r"^[A-Za-z0-9 ._@-]{0,64}$", error="up to 64 letters, digits, spaces, '.', '_', '@' or '-'"),
                         metadata={"description": "who or what it is for"})


class TokenOut(Schema):
    id = fields.String(required=True, metadata={"description": "safe to show: the first 12 hex digits of the secret's SHA-256"})
    name = fields.String(required=True)
    role = fields.String(required=True, validate=validate.OneOf(ROLES))
    createdAt = fields.String(required=True)


class NewTokenOut(TokenOut):
    token = fields.String(required=True, metadata={"description": "the secret, shown this once: it is not stored"})


def event_id(description: str, **kwargs: str) -> fields.Integer:
    """An event id as a client sends it back (header or query): the etcd index of an event."""
    return fields.Integer(validate=validate.Range(min=0, error=NOT_AN_EVENT_ID), error_messages={"invalid": NOT_AN_EVENT_ID},
                          metadata={"description": description}, **kwargs)


class EventsQuery(Schema):
    lastEventId = event_id("as the Last-Event-ID header, for clients that cannot send it")
    service = fields.String(metadata={"description": "only this service's events"})


class EventsHeaders(Schema):
    lastEventId = event_id("the id of the last event received: the stream goes on after it", data_key="Last-Event-ID")


_LABEL_VALUE = Pattern(r"^[^\x00]*$", error="must not hold NUL characters")


class MarathonDocker(Schema):
    image = fields.String(required=True, validate=Pattern(IMAGE_REFERENCE, error="is not a Docker image reference"))


class MarathonContainer(Schema):
    docker = fields.Nested(MarathonDocker, required=True)


class MarathonPortDefinition(Schema):
    port = fields.Integer(required=True, strict=True, validate=validate.Range(0, 65535),
                          metadata={"description": "the service port (0: Marathon picks one)"})
    protocol = fields.String(validate=validate.OneOf(["tcp", "udp", "udp,tcp"]))
    name = fields.String(validate=Pattern(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$", error="is not a lowercase DNS label"))
    labels = fields.Dict(keys=fields.String(validate=validate.Length(1, 255)), values=fields.String(validate=_LABEL_VALUE))


class MarathonAppChange(Schema):
    """The part of a Marathon app definition the orchestrator forwards; any other field is refused."""

    instances = fields.Integer(strict=True, validate=validate.Range(0, 10000))
    cpus = fields.Float(validate=validate.Range(min=0.001, max=1024))
    mem = fields.Float(validate=validate.Range(min=1, max=10_000_000), metadata={"description": "MiB"})
    env = fields.Dict(keys=fields.String(validate=Pattern(r"^[A-Za-z_][A-Za-z0-9_]{0,254}$", error="is not a variable name")),
                      values=fields.String(validate=_LABEL_VALUE))
    labels = fields.Dict(keys=fields.String(validate=validate.Length(1, 255)), values=fields.String(validate=_LABEL_VALUE))
    container = fields.Nested(MarathonContainer, metadata={"description": "only container.docker.image"})
    portDefinitions = fields.List(fields.Nested(MarathonPortDefinition), validate=validate.Length(max=100))

    @validates_schema
    def not_empty(self, data: dict, **_: object) -> None:
        if not data:
            raise ValidationError("give at least one of instances, cpus, mem, env, labels, container, portDefinitions")


class MarathonForceQuery(Schema):
    force = fields.Boolean(load_default=False, metadata={"description": "passed to Marathon: override the deployment that holds the app"})


class MarathonDeploymentOut(Schema):
    app = fields.String(required=True, metadata={"description": "the Marathon app id, /group/app"})
    deploymentId = fields.String(required=True, metadata={"description": "Marathon's deployment of the change"})
    version = fields.String(required=True, metadata={"description": "the app version Marathon made"})
    marathon = fields.String(required=True, metadata={"description": "the Marathon base URL that took the change"})
