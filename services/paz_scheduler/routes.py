"""The scheduler's HTTP API: paz's hooks and config history, plus rollback, stop, units and hosts."""

from __future__ import annotations

from typing import Any

from flask import current_app, jsonify, url_for

from paz.api import NAMED, Blueprint
from paz.errors import NotFound
from paz.names import checked_name

from .engine import Scheduler
from .schemas import (
    DeployHookSchema, DockerHubHookSchema, HostOut, IgnoredPushOut, JournalEntryOut, JournalQuery, RollbackSchema, ServiceQuery,
    StoppedOut, UnitOut, VersionOut,
)

bp = Blueprint("scheduler", __name__, description="Deploys, versions, the journal, units and hosts.")

HOOK_ERRORS = (400, 401, 404, 409, 422, 502)
"""What a deploy can answer besides success: a bad body or token, an unknown service, another deploy
holding the service, a version that did not serve (the old one keeps serving), an image that could
not be pulled."""


def scheduler() -> Scheduler:
    return current_app.extensions["paz.scheduler"]


def created(document: dict[str, Any]) -> tuple[dict[str, Any], int, dict[str, str]]:
    location = url_for("scheduler.version", name=document["service"], number=document["version"])
    return document, 201, {"Location": location}


@bp.post("/hooks/deploy")
@bp.requires("deploy", query_token=True)
@bp.arguments(DeployHookSchema)
@bp.response(201, VersionOut, description="Deployed: the new version serves and the old one is stopped")
@bp.errors(*HOOK_ERRORS)
def deploy_hook(body: dict[str, Any]):
    """Deploy a service's image (with the directory's current config) as its next version.

    dockerRepository (with a tag) is the image to run; it defaults to the service's. With
    PAZ_HOOK_TOKEN set, pass ?token= or X-Paz-Token.
    """
    name = checked_name(body["serviceName"])
    return created(scheduler().deploy(name, body.get("dockerRepository"), body.get("pushedAt")))


@bp.post("/hooks/dockerhub")
@bp.requires("deploy", query_token=True)
@bp.arguments(DockerHubHookSchema)
@bp.response(201, VersionOut, description="Deployed: the new version")
@bp.alt_response(202, schema=IgnoredPushOut, description="Ignored: the service's autoDeploy is not always")
@bp.errors(*HOOK_ERRORS)
def dockerhub_hook(body: dict[str, Any]):
    """Docker Hub's webhook: deploy <repo_name>:<tag> to the service with that repository, when its autoDeploy is always.

    A push to a service whose autoDeploy is not "always" is acknowledged with 202 and nothing runs.
    With PAZ_HOOK_TOKEN set, pass ?token= or X-Paz-Token.
    """
    repository, tag = body["repository"]["repo_name"], body["push_data"]["tag"]
    service = scheduler().service_of_repository(repository)
    if service["config"].get("autoDeploy") != "always":
        return jsonify(
            deployed=False,
            service=service["name"],
            reason=f"{service['name']} has autoDeploy {service['config'].get('autoDeploy')!r}; only 'always' deploys on a push.",
        ), 202
    return created(scheduler().deploy(service["name"], f"{repository}:{tag}", body["push_data"]["pushed_at"]))


@bp.get("/config/<name>/version/latest", parameters=NAMED)
@bp.response(200, VersionOut)
@bp.errors(400, 404)
def latest_version(name: str):
    """The service's latest version (the highest number given out, even a failed one: see status)."""
    return scheduler().store.latest(checked_name(name))


@bp.get("/config/<name>/version/<int:number>", parameters=NAMED)
@bp.response(200, VersionOut)
@bp.errors(400, 404)
def version(name: str, number: int):
    """One recorded version of a service."""
    return scheduler().store.version(checked_name(name), number)


@bp.get("/config/<name>/history", parameters=NAMED)
@bp.response(200, VersionOut(many=True), description="Newest first; empty when never deployed")
@bp.errors(400)
def history(name: str):
    """Every recorded version of a service."""
    return scheduler().store.history(checked_name(name))


@bp.get("/journal")
@bp.arguments(JournalQuery, location="query")
@bp.response(200, JournalEntryOut(many=True), description="Newest first")
@bp.errors(400)
def journal(query: dict[str, Any]):
    """Deploys, failed deploys, rollbacks, stops and instances that went down."""
    service = query.get("service")
    return scheduler().store.journal_entries(checked_name(service) if service else None, query["limit"], query["offset"])


@bp.post("/services/<name>/rollback", parameters=NAMED)
@bp.requires("deploy")
@bp.arguments(RollbackSchema)
@bp.response(201, VersionOut, description="Rolled back: the new version")
@bp.errors(400, 404, 409, 422, 502)
def rollback(body: dict[str, Any], name: str):
    """Deploy a recorded version's image and config again, as a new version."""
    return created(scheduler().rollback(checked_name(name), body["version"]))


@bp.post("/services/<name>/stop", parameters=NAMED)
@bp.response(200, StoppedOut)
@bp.errors(400, 409)
def stop(name: str):
    """Stop every instance of a service and withdraw their keys (when the service is deleted)."""
    return {"stopped": scheduler().stop(checked_name(name))}


@bp.get("/units")
@bp.arguments(ServiceQuery, location="query")
@bp.response(200, UnitOut(many=True))
@bp.errors(400)
def units(query: dict[str, Any]):
    """Every instance the scheduler runs (optionally of one service)."""
    service = query.get("service")
    return scheduler().units(checked_name(service) if service else None)


@bp.get("/units/<unit_id>")
@bp.response(200, UnitOut, description="The unit with its resource use")
@bp.errors(404)
def unit(unit_id: str):
    """One instance with its resource use."""
    return scheduler().unit(unit_id)


@bp.get("/hosts")
@bp.response(200, HostOut(many=True))
def hosts():
    """The machines instances run on (the Docker Engine, or fleet's machines)."""
    return scheduler().driver.hosts()


@bp.get("/hosts/<host_id>")
@bp.response(200, HostOut)
@bp.errors(404)
def host(host_id: str):
    """One machine."""
    for found in scheduler().driver.hosts():
        if found["id"] == host_id:
            return found
    raise NotFound(f"No host {host_id!r}; GET /hosts lists them.", {"host": host_id})
