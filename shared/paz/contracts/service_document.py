"""The service document and its config: what the directory stores and answers, and the orchestrator relays.

A document is ``{name, description, dockerRepository, config: {...}}`` as paz stored it. On create,
config keys may also stand at the top level (the seed's walkthrough posts ``ports`` and
``numInstances`` there) and ``dockerImage`` is accepted for ``dockerRepository``.
"""

from __future__ import annotations

import functools
import json
import re
from typing import Any

from marshmallow import Schema, ValidationError, fields, post_load, pre_load, validate, validates, validates_schema

from passlib.hash import sha512_crypt

from paz.api import Pattern, ReadQuery
from paz.errors import Conflict, NotFound
from paz.names import CRYPT_HASH, IMAGE_REFERENCE, REALM, USERNAME, domain_problem, name_problem, reserved_problem
from paz.secrets import NAME_RULE, public

_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_PATTERN = re.compile(r"^[a-z0-9*][a-z0-9*-]{0,62}$")
_HTTP_PATH = re.compile(r"^/[A-Za-z0-9._~!$&'()*+,;=:@%/?-]{0,255}$")
_METRICS_PATH = re.compile(r"^/[A-Za-z0-9._~/-]{0,255}$")
AUTO_DEPLOY = ("always", "never")
CRYPT = sha512_crypt.using(rounds=5000)
"""SHA-512 crypt as HAProxy's userlist reads it; 5000 rounds is crypt(3)'s default and leaves ``rounds=`` out of the hash."""


def check_name(name: str) -> None:
    problem = name_problem(name) or reserved_problem(name)
    if problem:
        raise ValidationError(f"{name!r} {problem}")


def check_domain(value: str) -> None:
    problem = domain_problem(value)
    if problem:
        raise ValidationError(f"{value[:100]!r} {problem}")


def _no_nul(value: str) -> None:
    if "\x00" in value:
        raise ValidationError("may not contain a NUL character")


def _absolute_path(value: str) -> None:
    if not value.startswith("/") or any(c in value for c in "\x00\n\r:"):
        raise ValidationError(f"{value!r} must be an absolute path without ':' or line breaks")


class PortSchema(Schema):
    container = fields.Integer(required=True, strict=True, validate=validate.Range(1, 65535))
    host = fields.Integer(strict=True, validate=validate.Range(1, 65535))


class HealthCheckSchema(Schema):
    path = fields.String(
        required=True,
        validate=Pattern(_HTTP_PATH, error="must start with '/' and hold no spaces, quotes or line breaks"),
    )
    intervalSeconds = fields.Integer(strict=True, load_default=2, validate=validate.Range(1, 3600))
    timeoutSeconds = fields.Integer(strict=True, load_default=1, validate=validate.Range(1, 600))


class MetricsSchema(Schema):
    """Where an instance answers Prometheus: ``GET /prometheus/targets`` lists each running instance."""

    path = fields.String(required=True, validate=Pattern(_METRICS_PATH, error="must start with '/' and hold only letters, digits and . _ ~ / -"))
    port = fields.Integer(strict=True, validate=validate.Range(1, 65535), metadata={
        "description": "a container port listed in ports (not the first: with a fixed host port); absent: the port instances are announced on"})


class UserSchema(Schema):
    """A router basic-auth user; a plain ``password`` is stored only as its SHA-512 crypt hash."""

    username = fields.String(
        required=True, validate=Pattern(USERNAME, error="1 to 64 letters, digits, '.', '_' or '-'")
    )
    password = fields.String(load_only=True, validate=[validate.Length(1, 256), _no_nul])
    passwordHash = fields.String(validate=Pattern(CRYPT_HASH, error="must be a crypt(3) hash ($6$, $5$, $y$ or $2b$)"))

    @post_load
    def hash_password(self, data: dict[str, Any], **_: Any) -> dict[str, Any]:
        password = data.pop("password", None)
        if password is None and "passwordHash" not in data:
            raise ValidationError("give password or passwordHash", "password")
        if password is not None:
            data["passwordHash"] = CRYPT.hash(password)
        return data


class BasicAuthSchema(Schema):
    realm = fields.String(load_default="paz", validate=Pattern(REALM, error="1 to 64 letters, digits, spaces, '.', '_' or '-'"))
    users = fields.List(fields.Nested(UserSchema), required=True, validate=validate.Length(min=1, max=100))


class PatternList(fields.Field):
    """``conflictsWith`` / ``mustShareWith``: a service name pattern or a list of them (``*`` as wildcard)."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> list[str]:
        values = [value] if isinstance(value, str) else value
        if not isinstance(values, list) or not all(isinstance(v, str) and _PATTERN.match(v) for v in values):
            raise ValidationError("must be a service name pattern ('*' allowed) or a list of them")
        return values

    def _serialize(self, value: Any, attr: str | None, obj: Any, **kwargs: Any) -> Any:
        return value


class SecretsField(fields.Dict):
    """``secrets``: name to value on the way in (null removes one); on the way out each name with when
    it was set, never a value (whatever the document holds, sealed or not)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(
            keys=fields.String(validate=Pattern(_ENV_NAME, error=NAME_RULE)),
            values=fields.String(allow_none=True, validate=[validate.Length(max=65536), _no_nul]),
            metadata={"description": "in: name to value (null removes one); out: name to {setAt}, never a value"},
            **kwargs,
        )

    def _serialize(self, value: Any, attr: str | None, obj: Any, **kwargs: Any) -> Any:
        return public(value)


class ConfigSchema(Schema):
    """What a service's next deploy uses. Unknown keys are refused."""

    publicFacing = fields.Boolean(load_default=False)
    loadBalanced = fields.Boolean(load_default=True)
    ports = fields.List(fields.Nested(PortSchema), load_default=list, validate=validate.Length(max=32))
    env = fields.Dict(keys=fields.String(validate=Pattern(_ENV_NAME, error="env names are letters, digits and '_', not starting with a digit")),
                      values=fields.String(allow_none=True, validate=_no_nul), load_default=dict)
    secrets = SecretsField(load_default=dict)
    volume = fields.Dict(keys=fields.String(validate=_absolute_path), values=fields.String(allow_none=True, validate=_absolute_path), load_default=dict)
    numInstances = fields.Integer(strict=True, load_default=1, validate=validate.Range(1, 100))
    autoDeploy = fields.String(load_default="never", validate=validate.OneOf(AUTO_DEPLOY))
    conflictsWith = PatternList(load_default=list)
    mustShareWith = PatternList(load_default=list)
    healthCheck = fields.Nested(HealthCheckSchema, allow_none=True)
    basicAuth = fields.Nested(BasicAuthSchema, allow_none=True)
    domains = fields.List(fields.String(validate=check_domain), validate=validate.Length(max=50), metadata={
        "description": "custom domains served over HTTPS (each belongs to one service); none when absent"})
    httpsRedirect = fields.Boolean(metadata={
        "description": "plain HTTP on a name with a certificate answers 308 to HTTPS; true when absent"})

    metrics = fields.Nested(MetricsSchema, allow_none=True, metadata={
        "description": "where instances answer Prometheus (path, port); listed by the orchestrator's GET /prometheus/targets"})

    @validates_schema
    def metrics_port_is_published(self, data: dict[str, Any], partial: Any = None, **_: Any) -> None:
        problem = None if partial else metrics_problem(data)  # a PATCH is checked once merged (the directory's store)
        if problem:
            raise ValidationError(problem, "metrics")

    @validates("domains")
    def unique_domains(self, domains: list[str], **_: Any) -> None:
        if len(set(domains)) != len(domains):
            raise ValidationError("each domain may be listed once")

    @validates("ports")
    def unique_container_ports(self, ports: list[dict[str, int]], **_: Any) -> None:
        containers = [p["container"] for p in ports if "container" in p]
        if len(set(containers)) != len(containers):
            raise ValidationError("each container port may be listed once")


ANNOUNCED_PORT = 0
"""What :func:`metrics_host_port` answers for the port an instance is announced on."""


def metrics_host_port(config: dict[str, Any]) -> int | None:
    """The host port an instance of ``config`` answers Prometheus on: :data:`ANNOUNCED_PORT` (the port it
    is announced on, the first of ``ports``), a fixed host port, or None when it cannot be reached."""
    port = (config.get("metrics") or {}).get("port")
    ports = config.get("ports") or []
    if port is None or (ports and ports[0].get("container") == port):
        return ANNOUNCED_PORT
    return next((p["host"] for p in ports if p.get("container") == port and p.get("host")), None)


def metrics_problem(config: dict[str, Any]) -> str | None:
    """Why ``config``'s ``metrics.port`` cannot be scraped, or None."""
    if not config.get("metrics") or metrics_host_port(config) is not None:
        return None
    return (f"metrics.port {config['metrics']['port']} must be the first of ports (the one instances are announced on), "
            "or another container port listed in ports with a fixed host port")


CONFIG_KEYS = tuple(ConfigSchema().fields)


class ServiceSchema(Schema):
    """A service as POSTed: config keys may be nested under ``config`` or at the top level."""

    name = fields.String(required=True, validate=check_name)
    description = fields.String(load_default="", validate=[validate.Length(max=1000), _no_nul])
    dockerRepository = fields.String(
        validate=Pattern(IMAGE_REFERENCE, error="must be a Docker image reference such as 'user/repo' or 'user/repo:1.0'"),
        metadata={"description": "left out: <PAZ_REGISTRY_ADDR>/<name>, the suite's registry, where paz push gives it its first image"},
    )
    config = fields.Nested(ConfigSchema, load_default=lambda: ConfigSchema().load({}))

    @pre_load
    def accept_paz_shapes(self, data: Any, **_: Any) -> Any:
        if not isinstance(data, dict):
            return data
        data = dict(data)
        if "dockerImage" in data:
            image = data.pop("dockerImage")
            if data.setdefault("dockerRepository", image) != image:
                raise ValidationError("give dockerRepository or its alias dockerImage, not two different values", "dockerImage")
        lifted = {key: data.pop(key) for key in CONFIG_KEYS if key in data}
        if lifted:
            config = data.get("config", {})
            if not isinstance(config, dict):
                raise ValidationError("must be an object", "config")
            clash = sorted(set(lifted) & set(config))
            if clash:
                raise ValidationError(f"{', '.join(clash)} given both at the top level and in config", "config")
            data["config"] = {**config, **lifted}
        return data


class ServiceOut(Schema):
    """A stored service document, as every route returns it."""

    name = fields.String(required=True)
    description = fields.String(required=True)
    dockerRepository = fields.String(required=True)
    config = fields.Nested(ConfigSchema, required=True)


def missing_service(name: str) -> NotFound:
    return NotFound(f"No service named {name!r} in the directory; GET /services lists them.", {"name": name})


class MalformedDocument(Conflict):
    """A value under the directory's prefix that is not a service document (written around the API)."""

    def __init__(self, key: str) -> None:
        super().__init__(
            f"The value at {key} in etcd is not a service document; DELETE the service and create it again.",
            {"key": key},
        )


def checked_document(key: str, document: Any) -> dict[str, Any]:
    """``document`` if it has the shape the directory writes, else :class:`MalformedDocument`."""
    if not (
        isinstance(document, dict)
        and isinstance(document.get("name"), str)
        and isinstance(document.get("dockerRepository"), str)
        and isinstance(document.get("config"), dict)
    ):
        raise MalformedDocument(key)
    return document


def stored_document(key: str, value: str) -> dict[str, Any]:
    """The document stored at ``key`` as ``value``, or :class:`MalformedDocument`."""
    try:
        return checked_document(key, json.loads(value))
    except ValueError:
        raise MalformedDocument(key) from None


@functools.lru_cache(maxsize=1024)
def document_json(key: str, value: str) -> bytes:
    """The answer to ``GET /services/<name>`` for a stored value, rendered once per value (the hot reads do no JSON work)."""
    return _compact(ServiceOut().dump(stored_document(key, value)))


@functools.lru_cache(maxsize=1024)
def config_json(key: str, value: str) -> bytes:
    """The answer to a read of the service's config for a stored value, rendered once per value."""
    return _compact(ConfigSchema().dump(stored_document(key, value)["config"]))


def _compact(answer: Any) -> bytes:
    return json.dumps(answer, separators=(",", ":")).encode()


class RepositoryQuery(ReadQuery):
    dockerRepository = fields.String(metadata={"description": "e.g. lukebond/demo-api; a tag is optional"})
