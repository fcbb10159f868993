"""What only the scheduler accepts (hook bodies) and answers (ignored pushes, stops).

Its versions, journal, units, hosts and log queries are contracts the orchestrator relays too:
:mod:`paz.contracts`.
"""

from __future__ import annotations


from marshmallow import EXCLUDE, Schema, fields, validate

from paz.api import Pattern
from paz.contracts.times import Timestamp
from paz.image_registry import REPOSITORY
from paz.names import IMAGE_REFERENCE


def _image(required: bool = True) -> fields.String:
    return fields.String(
        required=required,
        validate=Pattern(IMAGE_REFERENCE, error="must be a Docker image reference such as 'user/repo:1.0'"),
    )


class DeployHookSchema(Schema):
    """paz's deploy hook: ``dockerRepository`` (with a tag) is the image to run; it defaults to the service's."""

    serviceName = fields.String(required=True, validate=validate.Length(1, 63))
    dockerRepository = _image(required=False)
    pushedAt = Timestamp(load_default=None)


class DockerHubRepository(Schema):
    class Meta:
        unknown = EXCLUDE

    repo_name = fields.String(required=True, validate=Pattern(IMAGE_REFERENCE, error="is not a repository name"))


class DockerHubPushData(Schema):
    class Meta:
        unknown = EXCLUDE

    tag = fields.String(load_default="latest", validate=Pattern(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$", error="is not a Docker tag"))
    pushed_at = Timestamp(load_default=None)


class DockerHubHookSchema(Schema):
    """The parts of Docker Hub's webhook body the scheduler uses; the rest is ignored."""

    class Meta:
        unknown = EXCLUDE

    repository = fields.Nested(DockerHubRepository, required=True)
    push_data = fields.Nested(DockerHubPushData, load_default=lambda: DockerHubPushData().load({}))


class IgnoredPushOut(Schema):
    deployed = fields.Boolean(required=True, metadata={"description": "always false"})
    service = fields.String(required=True)
    reason = fields.String(required=True)


class StoppedOut(Schema):
    stopped = fields.List(fields.String(), required=True, metadata={"description": "the unit ids stopped"})


class RegistryTarget(Schema):
    class Meta:
        unknown = EXCLUDE

    repository = fields.String(required=True, validate=[validate.Length(1, 255), Pattern(REPOSITORY.pattern, error="is not a repository name")])
    tag = fields.String(validate=Pattern(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$", error="is not a Docker tag"))
    mediaType = fields.String()


class RegistryEvent(Schema):
    class Meta:
        unknown = EXCLUDE

    action = fields.String(required=True)
    target = fields.Nested(RegistryTarget, required=True)


class RegistryNotificationSchema(Schema):
    """The registry's notification envelope (the parts used: each event's action and target)."""

    class Meta:
        unknown = EXCLUDE

    events = fields.List(fields.Nested(RegistryEvent), required=True)


class PushOutcome(Schema):
    service = fields.String(allow_none=True)
    version = fields.Integer()
    reason = fields.String()


class RegistryPushOut(Schema):
    image = fields.String(required=True)
    deployed = fields.List(fields.Nested(PushOutcome), required=True, metadata={"description": "services and the version taken"})
    ignored = fields.List(fields.Nested(PushOutcome), required=True, metadata={"description": "services not deployed, and why"})


class RegistryTokenQuery(Schema):
    class Meta:
        unknown = EXCLUDE

    service = fields.String(validate=Pattern(r"^[!-~]{0,100}$", error="is not a registry's name"))
    scope = fields.List(fields.String(validate=Pattern(r"^[!-~]{1,255}$", error="is not a registry scope")),
                        validate=validate.Length(max=3), load_default=list,
                        metadata={"description": "repository:<name>:<actions>, as the registry asks (at most 3)"})


class RegistryTokenOut(Schema):
    token = fields.String(required=True)
    access_token = fields.String(required=True)
    expires_in = fields.Integer(required=True)
