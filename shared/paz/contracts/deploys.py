"""Deploys as the scheduler answers them and the orchestrator relays them: versions, rollbacks, the journal."""

from __future__ import annotations

from marshmallow import Schema, fields, validate

from paz.contracts.service_document import ConfigSchema

JOURNAL_TYPES = ("deploy", "deploy-failed", "rollback", "stop", "instance-down", "certificate", "certificate-failed",
                 "push-ignored", "image-deleted")
STATUSES = ("deploying", "running", "failed", "replaced", "stopped")
"""A version's life: ``deploying`` until its instances answer, then ``running`` (announced); it ends
``failed`` (never served), ``replaced`` (a newer version took over, or was wanted before this one
served: then without ``deployedAt``) or ``stopped`` (service stopped)."""
HOOK_ERRORS = (400, 401, 404, 409, 422, 502, 503)
"""What a deploy can answer besides success: a bad body or token, an unknown service, a newer deploy
(or a stop) that superseded it before it served, a version that did not serve (the old one keeps
serving), an image that could not be pulled or an engine that refused (naming it and its reason)."""

ACCEPTED = ("Accepted (Prefer: respond-async, or still deploying after the wait): the version, deploying; "
            "follow Location (its status ends running or failed) or GET /events")
"""The 202 of a deploy or rollback: RFC 7240's ``Prefer: respond-async`` answers at once."""


class RollbackSchema(Schema):
    version = fields.Integer(required=True, strict=True, validate=validate.Range(min=1))


class ServiceQuery(Schema):
    service = fields.String(metadata={"description": "only this service's"})


class JournalQuery(ServiceQuery):
    limit = fields.Integer(load_default=50, validate=validate.Range(1, 1000))
    offset = fields.Integer(load_default=0, validate=validate.Range(0, 10**9))


class VersionOut(Schema):
    """A deployed (or attempted) version of a service."""

    service = fields.String()
    version = fields.Integer()
    dockerRepository = fields.String(metadata={"description": "the image run, with its tag"})
    config = fields.Nested(ConfigSchema, metadata={"description": "the config it ran with; secrets by name and time set only"})
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
    service = fields.String(metadata={"description": "the service; for push-ignored, the repository pushed"})
    version = fields.Integer()
    image = fields.String(metadata={"description": "push-ignored and image-deleted: the image"})
    message = fields.String()
