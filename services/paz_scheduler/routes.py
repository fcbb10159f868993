"""The scheduler's HTTP API: paz's hooks and config history, plus rollback, stop, units and hosts."""

from __future__ import annotations

import hmac

from flask import Blueprint, current_app, jsonify, request, url_for

from paz.errors import BadRequest, NotFound, Unauthorized
from paz.names import checked_name
from paz.web import load_json

from .engine import Scheduler
from .schemas import DeployHookSchema, DockerHubHookSchema, RollbackSchema

bp = Blueprint("scheduler", __name__)


def scheduler() -> Scheduler:
    return current_app.extensions["paz.scheduler"]


def check_token() -> None:
    """When PAZ_HOOK_TOKEN is set, a hook must carry it (``?token=`` or ``X-Paz-Token``), compared in constant time."""
    expected = scheduler().settings.hook_token
    if not expected:
        return
    given = request.args.get("token") or request.headers.get("X-Paz-Token") or ""
    if not hmac.compare_digest(given.encode(), expected.encode()):
        raise Unauthorized("This hook needs the scheduler's token: add ?token=<PAZ_HOOK_TOKEN> or the header X-Paz-Token.")


def created(document: dict):
    response = jsonify(document)
    response.status_code = 201
    response.headers["Location"] = url_for("scheduler.version", name=document["service"], number=document["version"])
    return response


@bp.post("/hooks/deploy")
def deploy_hook():
    """Deploy a service.
    ---
    post:
      summary: Deploy a service's image (with the directory's current config) as its next version
      description: >
        Waits until the new version serves and the old one is stopped. dockerRepository (with a tag)
        is the image to run; it defaults to the service's. With PAZ_HOOK_TOKEN set, pass ?token= or X-Paz-Token.
      requestBody: {required: true, content: {application/json: {schema: DeployHookSchema}}}
      responses:
        201: {description: Deployed; the new version, content: {application/json: {schema: VersionOut}}}
        400: {description: The body is not valid}
        401: {description: Missing or wrong token}
        404: {description: The service is not in the directory}
        409: {description: Another deploy of the service did not finish in time}
        422: {description: The new version did not serve (exited, or no answer in time); the old one keeps serving}
        502: {description: The image could not be pulled and the engine does not have it}
        503: {description: The directory, etcd or the Docker Engine is unreachable}
    """
    check_token()
    body = load_json(DeployHookSchema())
    name = checked_name(body["serviceName"])
    return created(scheduler().deploy(name, body.get("dockerRepository"), body.get("pushedAt")))


@bp.post("/hooks/dockerhub")
def dockerhub_hook():
    """Docker Hub's webhook.
    ---
    post:
      summary: Deploy <repo_name>:<tag> to the service with that repository, when its autoDeploy is always
      description: >
        A push to a service whose autoDeploy is not "always" is acknowledged with 202 and
        {"deployed": false, "reason"} and nothing runs. With PAZ_HOOK_TOKEN set, pass ?token= or X-Paz-Token.
      requestBody: {required: true, content: {application/json: {schema: DockerHubHookSchema}}}
      responses:
        201: {description: Deployed; the new version, content: {application/json: {schema: VersionOut}}}
        202: {description: Ignored because the service's autoDeploy is not always}
        400: {description: Not a Docker Hub webhook body}
        401: {description: Missing or wrong token}
        404: {description: No service has that repository}
        422: {description: The new version did not serve; the old one keeps serving}
    """
    check_token()
    body = load_json(DockerHubHookSchema())
    repository, tag = body["repository"]["repo_name"], body["push_data"]["tag"]
    service = scheduler().service_of_repository(repository)
    if service["config"].get("autoDeploy") != "always":
        return jsonify(
            deployed=False,
            service=service["name"],
            reason=f"{service['name']} has autoDeploy {service['config'].get('autoDeploy')!r}; only 'always' deploys on a push.",
        ), 202
    return created(scheduler().deploy(service["name"], f"{repository}:{tag}", body["push_data"]["pushed_at"]))


@bp.get("/config/<name>/version/latest")
def latest_version(name: str):
    """The latest version.
    ---
    get:
      summary: The service's latest version (the highest number given out; see status)
      parameters: [{name: name, in: path, required: true, schema: {type: string}}]
      responses:
        200: {description: The version, content: {application/json: {schema: VersionOut}}}
        404: {description: Never deployed}
    """
    return jsonify(scheduler().store.latest(checked_name(name)))


@bp.get("/config/<name>/version/<int:number>")
def version(name: str, number: int):
    """One version.
    ---
    get:
      summary: One recorded version of a service
      parameters:
        - {name: name, in: path, required: true, schema: {type: string}}
        - {name: number, in: path, required: true, schema: {type: integer}}
      responses:
        200: {description: The version, content: {application/json: {schema: VersionOut}}}
        404: {description: No such version}
    """
    return jsonify(scheduler().store.version(checked_name(name), number))


@bp.get("/config/<name>/history")
def history(name: str):
    """Every version.
    ---
    get:
      summary: Every recorded version of a service, newest first (an empty array when never deployed)
      parameters: [{name: name, in: path, required: true, schema: {type: string}}]
      responses:
        200: {description: The versions, content: {application/json: {schema: {type: array, items: VersionOut}}}}
    """
    return jsonify(scheduler().store.history(checked_name(name)))


def _int_arg(name: str, default: int, low: int, high: int) -> int:
    raw = request.args.get(name, str(default))
    if not raw.isdigit() or not low <= int(raw) <= high:
        raise BadRequest(f"{name} must be a whole number from {low} to {high}.", {name: raw})
    return int(raw)


@bp.get("/journal")
def journal():
    """The journal.
    ---
    get:
      summary: Deploys, failed deploys, rollbacks, stops and instances that went down; newest first
      parameters:
        - {name: service, in: query, required: false, schema: {type: string}}
        - {name: limit, in: query, required: false, schema: {type: integer, default: 50, maximum: 1000}}
        - {name: offset, in: query, required: false, schema: {type: integer, default: 0}}
      responses:
        200: {description: Entries, content: {application/json: {schema: {type: array, items: JournalEntryOut}}}}
        400: {description: Bad limit, offset or service}
    """
    service = request.args.get("service")
    limit, offset = _int_arg("limit", 50, 1, 1000), _int_arg("offset", 0, 0, 10**9)
    return jsonify(scheduler().store.journal_entries(checked_name(service) if service else None, limit, offset))


@bp.post("/services/<name>/rollback")
def rollback(name: str):
    """Roll back.
    ---
    post:
      summary: Deploy a recorded version's image and config again, as a new version
      parameters: [{name: name, in: path, required: true, schema: {type: string}}]
      requestBody: {required: true, content: {application/json: {schema: RollbackSchema}}}
      responses:
        201: {description: Rolled back; the new version, content: {application/json: {schema: VersionOut}}}
        400: {description: The body is not valid}
        404: {description: No such version}
        422: {description: The restored version did not serve; the current one keeps serving}
    """
    body = load_json(RollbackSchema())
    return created(scheduler().rollback(checked_name(name), body["version"]))


@bp.post("/services/<name>/stop")
def stop(name: str):
    """Stop a service.
    ---
    post:
      summary: Stop every instance of a service and withdraw their keys (when the service is deleted)
      parameters: [{name: name, in: path, required: true, schema: {type: string}}]
      responses:
        200: {description: "{stopped: [unit ids]}"}
    """
    return jsonify(stopped=scheduler().stop(checked_name(name)))


@bp.get("/units")
def units():
    """Units.
    ---
    get:
      summary: Every instance the scheduler runs (optionally of one service)
      parameters: [{name: service, in: query, required: false, schema: {type: string}}]
      responses:
        200: {description: Units, content: {application/json: {schema: {type: array, items: UnitOut}}}}
        503: {description: The runtime is unreachable}
    """
    service = request.args.get("service")
    return jsonify(scheduler().units(checked_name(service) if service else None))


@bp.get("/units/<unit_id>")
def unit(unit_id: str):
    """One unit.
    ---
    get:
      summary: One instance with its resource use
      parameters: [{name: unit_id, in: path, required: true, schema: {type: string}}]
      responses:
        200: {description: The unit, content: {application/json: {schema: UnitOut}}}
        404: {description: No such unit}
    """
    return jsonify(scheduler().unit(unit_id))


@bp.get("/hosts")
def hosts():
    """Hosts.
    ---
    get:
      summary: The machines instances run on (the Docker Engine, or fleet's machines)
      responses:
        200: {description: Hosts, content: {application/json: {schema: {type: array, items: HostOut}}}}
    """
    return jsonify(scheduler().driver.hosts())


@bp.get("/hosts/<host_id>")
def host(host_id: str):
    """One host.
    ---
    get:
      summary: One machine
      parameters: [{name: host_id, in: path, required: true, schema: {type: string}}]
      responses:
        200: {description: The host, content: {application/json: {schema: HostOut}}}
        404: {description: No such host}
    """
    for found in scheduler().driver.hosts():
        if found["id"] == host_id:
            return jsonify(found)
    raise NotFound(f"No host {host_id!r}; GET /hosts lists them.", {"host": host_id})
