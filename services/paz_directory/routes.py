"""The directory's HTTP API: paz's ``/services`` paths."""

from __future__ import annotations

from flask import Blueprint, current_app, jsonify, request, url_for

from paz.errors import BadRequest
from paz.names import checked_name
from paz.web import load_json

from .schemas import ConfigSchema, ServiceSchema
from .store import DirectoryStore

bp = Blueprint("directory", __name__)


def store() -> DirectoryStore:
    return current_app.extensions["paz.directory"]


@bp.get("/services")
def list_services():
    """List services, or find the one with a Docker repository.
    ---
    get:
      summary: List every service, or the one whose dockerRepository matches
      parameters:
        - {name: dockerRepository, in: query, required: false, schema: {type: string}, description: "e.g. lukebond/demo-api; a tag is optional"}
      responses:
        200: {description: "An array of services, or one service when dockerRepository is given", content: {application/json: {schema: ServiceOut}}}
        404: {description: No service has that repository}
    """
    image = request.args.get("dockerRepository")
    if image is not None:
        return jsonify(store().find_by_repository(image))
    return jsonify(store().all())


@bp.post("/services")
def create_service():
    """Register a service.
    ---
    post:
      summary: Register a service; config keys may be nested under config or given at the top level
      requestBody: {required: true, content: {application/json: {schema: ServiceSchema}}}
      responses:
        201: {description: Created, content: {application/json: {schema: ServiceOut}}}
        400: {description: The document is not valid; details name each field}
        409: {description: A service of that name exists}
    """
    document = store().create(load_json(ServiceSchema()))
    response = jsonify(document)
    response.status_code = 201
    response.headers["Location"] = url_for("directory.get_service", name=document["name"])
    return response


@bp.get("/services/<name>")
def get_service(name: str):
    """One service.
    ---
    get:
      summary: One service by name
      parameters: [{name: name, in: path, required: true, schema: {type: string}}]
      responses:
        200: {description: The service, content: {application/json: {schema: ServiceOut}}}
        400: {description: Not a valid service name}
        404: {description: No such service}
    """
    return jsonify(store().get(checked_name(name)))


@bp.delete("/services/<name>")
def delete_service(name: str):
    """Remove a service from the directory.
    ---
    delete:
      summary: Remove a service from the directory (its running instances are the scheduler's)
      parameters: [{name: name, in: path, required: true, schema: {type: string}}]
      responses:
        204: {description: Deleted}
        404: {description: No such service}
    """
    store().delete(checked_name(name))
    return "", 204


@bp.get("/services/<name>/config")
def get_config(name: str):
    """A service's config.
    ---
    get:
      summary: The config the service's next deploy will use
      parameters: [{name: name, in: path, required: true, schema: {type: string}}]
      responses:
        200: {description: The config, content: {application/json: {schema: ConfigSchema}}}
        404: {description: No such service}
    """
    return jsonify(store().get(checked_name(name))["config"])


@bp.patch("/services/<name>/config")
def patch_config(name: str):
    """Change part of a service's config.
    ---
    patch:
      summary: Merge the given keys into the config; env and volume merge key by key (null removes one)
      parameters: [{name: name, in: path, required: true, schema: {type: string}}]
      requestBody: {required: true, content: {application/json: {schema: ConfigSchema}}}
      responses:
        200: {description: The whole config after the change, content: {application/json: {schema: ConfigSchema}}}
        400: {description: Unknown or invalid keys; nothing was changed}
        404: {description: No such service}
    """
    checked_name(name)
    patch = load_json(ConfigSchema(), partial=True)
    if not patch:
        raise BadRequest("Give at least one config key to change.")
    return jsonify(store().patch_config(name, patch)["config"])
