"""The directory's HTTP API: paz's ``/services`` paths."""

from __future__ import annotations

from typing import Any

from flask import current_app, jsonify, url_for

from paz.api import NAMED, Blueprint, ReadQuery
from paz.contracts.service_document import ConfigSchema, RepositoryQuery, ServiceOut, ServiceSchema
from paz.errors import BadRequest
from paz.names import checked_name
from paz.web import read_from_etcd, wrote

from .store import DirectoryStore

bp = Blueprint(
    "directory", __name__,
    description="Services and the config their next deploy will use. Writes answer X-Paz-Index (the etcd index "
                "they made); a read given that index (X-Paz-Index header or ?index=) includes the write. A config's "
                "secrets are write-only: stored sealed, answered as each name and when it was set, opened only "
                "into the containers' environment at deploy.",
)


READ_QUERY = ReadQuery()
"""One instance: webargs would make a schema per request from the class."""


def store() -> DirectoryStore:
    return current_app.extensions["paz.directory"]


@bp.get("/services")
@bp.arguments(RepositoryQuery, location="query")
@bp.response(200, {"oneOf": [ServiceOut(many=True), ServiceOut]},
             description="Every service by name; with dockerRepository, the one service that has it")
@bp.errors(400, 404)
def list_services(query: dict[str, Any]):
    """List every service, or find the one whose dockerRepository matches (a tag is optional)."""
    image, consistent = query.get("dockerRepository"), read_from_etcd(query)
    found = store().all(consistent) if image is None else store().find_by_repository(image, consistent)
    return jsonify(ServiceOut(many=image is None).dump(found))


@bp.post("/services")
@bp.arguments(ServiceSchema)
@bp.response(201, ServiceOut, description="Created; Location names it")
@bp.errors(400, 409)
def create_service(body: dict[str, Any]):
    """Register a service; config keys may be nested under config or given at the top level. Without a
    dockerRepository it follows <PAZ_REGISTRY_ADDR>/<name> in the suite's registry (paz push fills it)."""
    body.setdefault("dockerRepository", f"{current_app.extensions['paz'].settings.registry_address}/{body['name']}")
    document, index = store().create(body)
    wrote(index)
    return document, 201, {"Location": url_for("directory.get_service", name=document["name"])}


@bp.get("/services/<name>", parameters=NAMED)
@bp.arguments(READ_QUERY, location="query")
@bp.response(200, ServiceOut)
@bp.errors(400, 404, 409)
def get_service(query: dict[str, Any], name: str):
    """One service by name."""
    body = store().get_json(checked_name(name), read_from_etcd(query))
    return current_app.response_class(body, mimetype="application/json")


@bp.delete("/services/<name>", parameters=NAMED)
@bp.response(204, description="Deleted")
@bp.errors(400, 404)
def delete_service(name: str):
    """Remove a service from the directory (its running instances are the scheduler's)."""
    wrote(store().delete(checked_name(name)))
    return current_app.response_class(status=204)


@bp.get("/services/<name>/config", parameters=NAMED)
@bp.arguments(READ_QUERY, location="query")
@bp.response(200, ConfigSchema, description="The config the service's next deploy will use")
@bp.errors(400, 404, 409)
def get_config(query: dict[str, Any], name: str):
    """A service's config."""
    return store().get(checked_name(name), read_from_etcd(query))["config"]


@bp.patch("/services/<name>/config", parameters=NAMED)
@bp.arguments(ConfigSchema(partial=True), description="The keys to change; env, secrets and volume merge key by key (null removes one); a secret is answered as its name and when it was set, never its value")
@bp.response(200, ConfigSchema, description="The whole config after the change")
@bp.errors(400, 404, 409)
def patch_config(patch: dict[str, Any], name: str):
    """Merge the given keys into the config; nothing changes when any is invalid."""
    checked_name(name)
    if not patch:
        raise BadRequest("Give at least one config key to change.")
    document, index = store().patch_config(name, patch)
    wrote(index)
    return document["config"]
