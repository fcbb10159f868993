"""What the scheduler accepts (hook bodies, rollbacks) and returns (versions, journal entries, units, hosts)."""

from __future__ import annotations

import datetime as dt
from typing import Any

import re

from marshmallow import EXCLUDE, Schema, ValidationError, fields, validate

from paz.names import IMAGE_REFERENCE

JOURNAL_TYPES = ("deploy", "deploy-failed", "rollback", "stop", "instance-down")
STATUSES = ("deploying", "running", "failed", "replaced", "stopped")
"""A version's life: ``deploying`` until its instances answer, then ``running`` (announced); it ends
``failed`` (never served), ``replaced`` (a newer version took over, or was wanted before this one
served: then without ``deployedAt``) or ``stopped`` (service stopped)."""


def iso_now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


class Timestamp(fields.Field):
    """``pushedAt``: seconds since the epoch (paz's walkthrough sends ``date +%s``) or ISO 8601; kept as ISO 8601 UTC."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> str:
        if isinstance(value, bool):
            raise ValidationError("must be seconds since the epoch or an ISO 8601 date")
        try:
            if isinstance(value, (int, float)):
                moment = dt.datetime.fromtimestamp(value, dt.timezone.utc)
            elif isinstance(value, str):
                moment = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
                moment = moment if moment.tzinfo else moment.replace(tzinfo=dt.timezone.utc)
            else:
                raise ValueError
        except (ValueError, OverflowError, OSError):
            raise ValidationError("must be seconds since the epoch or an ISO 8601 date") from None
        return moment.astimezone(dt.timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


def _image(required: bool = True) -> fields.String:
    return fields.String(
        required=required,
        validate=validate.Regexp(IMAGE_REFERENCE, error="must be a Docker image reference such as 'user/repo:1.0'"),
    )


class DeployHookSchema(Schema):
    """paz's deploy hook: ``dockerRepository`` (with a tag) is the image to run; it defaults to the service's."""

    serviceName = fields.String(required=True, validate=validate.Length(1, 63))
    dockerRepository = _image(required=False)
    pushedAt = Timestamp(load_default=None)


class DockerHubRepository(Schema):
    class Meta:
        unknown = EXCLUDE

    repo_name = fields.String(required=True, validate=validate.Regexp(IMAGE_REFERENCE, error="is not a repository name"))


class DockerHubPushData(Schema):
    class Meta:
        unknown = EXCLUDE

    tag = fields.String(load_default="latest", validate=validate.Regexp(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$", error="is not a Docker tag"))
    pushed_at = Timestamp(load_default=None)


class DockerHubHookSchema(Schema):
    """The parts of Docker Hub's webhook body the scheduler uses; the rest is ignored."""

    class Meta:
        unknown = EXCLUDE

    repository = fields.Nested(DockerHubRepository, required=True)
    push_data = fields.Nested(DockerHubPushData, load_default=lambda: DockerHubPushData().load({}))


DURATION = re.compile(r"^(\d+(?:\.\d+)?)(s|m|h|d)$")
DURATION_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


class Since(fields.Field):
    """``since``: seconds since the epoch, an ISO 8601 time, or a duration back from now (``90s``, ``10m``, ``2h``, ``1d``)."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> float:
        text = str(value).strip()
        duration = DURATION.match(text)
        if duration:
            return dt.datetime.now(dt.timezone.utc).timestamp() - float(duration[1]) * DURATION_SECONDS[duration[2]]
        try:
            return float(text) if re.fullmatch(r"\d+(\.\d+)?", text) else dt.datetime.fromisoformat(
                Timestamp().deserialize(text).replace("Z", "+00:00")).timestamp()
        except (ValidationError, ValueError):
            raise ValidationError("must be seconds since the epoch, an ISO 8601 time, or a duration such as 10m") from None


class LogsQuery(Schema):
    """Which lines of a service's (or a unit's) output, and in what form."""

    tail = fields.Integer(validate=validate.Range(0, 100_000), metadata={"description": "only the last N lines"})
    since = Since(metadata={"description": "only lines after this: epoch seconds, ISO 8601, or 10s/5m/2h/1d back"})
    follow = fields.Boolean(load_default=False, metadata={"description": "then stream new lines as they come"})
    stream = fields.String(validate=validate.OneOf(("stdout", "stderr")), metadata={"description": "only this stream"})
    format = fields.String(load_default="text", validate=validate.OneOf(("text", "json")),
                           metadata={"description": "text lines, or one JSON object a line (unit, stream, time, text, truncated)"})
    timestamps = fields.Boolean(load_default=False, metadata={"description": "text: start each line with its time"})


class RollbackSchema(Schema):
    version = fields.Integer(required=True, strict=True, validate=validate.Range(min=1))


class ServiceQuery(Schema):
    service = fields.String(metadata={"description": "only this service's"})


class JournalQuery(ServiceQuery):
    limit = fields.Integer(load_default=50, validate=validate.Range(1, 1000))
    offset = fields.Integer(load_default=0, validate=validate.Range(0, 10**9))


class IgnoredPushOut(Schema):
    deployed = fields.Boolean(required=True, metadata={"description": "always false"})
    service = fields.String(required=True)
    reason = fields.String(required=True)


class StoppedOut(Schema):
    stopped = fields.List(fields.String(), required=True, metadata={"description": "the unit ids stopped"})


class VersionOut(Schema):
    """A deployed (or attempted) version of a service."""

    service = fields.String()
    version = fields.Integer()
    dockerRepository = fields.String(metadata={"description": "the image run, with its tag"})
    config = fields.Dict()
    pushedAt = fields.String(allow_none=True)
    deployedAt = fields.String(allow_none=True)
    status = fields.String(validate=validate.OneOf(STATUSES))
    rollbackOf = fields.Integer(metadata={"description": "the version this one restored, for a rollback"})
    message = fields.String(metadata={"description": "why a deploy failed, or why it never served"})
    failureStatus = fields.Integer(metadata={"description": "a failed deploy's HTTP status: 422 (it did not serve), 502 or 503 (the engine refused)"})
    progress = fields.Dict(metadata={"description": "the deploy's last step: image-pulled, instance-started (started of total), old-stopped"})


class JournalEntryOut(Schema):
    id = fields.String()
    at = fields.String()
    type = fields.String(validate=validate.OneOf(JOURNAL_TYPES))
    service = fields.String()
    version = fields.Integer()
    message = fields.String()


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
