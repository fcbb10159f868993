"""The scheduler's HTTP API: paz's hooks and config history, plus rollback, stop, units and hosts."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from flask import Response, current_app, jsonify, request, url_for

from paz.api import NAMED, Blueprint
from paz.auth import OPEN
from paz.image_registry import pushed_images
from paz.contracts.cluster import HostOut, UnitOut
from paz.contracts.deploys import ACCEPTED, HOOK_ERRORS, JournalEntryOut, JournalQuery, RollbackSchema, ServiceQuery, VersionOut
from paz.contracts.log_streams import LOG_ERRORS, LOG_FORMATS, LogsQuery
from paz.errors import NotFound
from paz.names import checked_name
from paz.web import CLIENT_GONE, request_id

from .drivers.logs import LogLine, LogQuery
from .engine import Scheduler
from .images import RegistryGate
from .schemas import (
    DeployHookSchema, DockerHubHookSchema, IgnoredPushOut, RegistryNotificationSchema, RegistryPushOut, RegistryTokenOut,
    RegistryTokenQuery, StoppedOut,
)

bp = Blueprint("scheduler", __name__, description="Deploys, versions, the journal, units and hosts.")

def scheduler() -> Scheduler:
    return current_app.extensions["paz.scheduler"]


def prefers_async() -> bool:
    """Whether the caller asked not to wait (RFC 7240's ``Prefer: respond-async``)."""
    return any(p.strip().split("=")[0].lower() == "respond-async" for p in request.headers.get("Prefer", "").split(","))


def location(document: dict[str, Any]) -> dict[str, str]:
    return {"Location": url_for("scheduler.version", name=document["service"], number=document["version"])}


def answered(document: dict[str, Any]) -> tuple[dict[str, Any], int, dict[str, str]]:
    """201 with the version once it serves (422 or the engine's refusal when it did not); with
    ``Prefer: respond-async``, or when it is still under way after the wait, 202 with where to follow it."""
    if prefers_async():
        return document, 202, {**location(document), "Preference-Applied": "respond-async"}
    finished = scheduler().awaited(document)
    if finished is None:
        return scheduler().store.version(document["service"], document["version"]), 202, location(document)
    return finished, 201, location(document)


@bp.post("/hooks/deploy")
@bp.requires("deploy", query_token=True)
@bp.arguments(DeployHookSchema)
@bp.response(201, VersionOut, description="Deployed: the new version serves and the old one is stopped")
@bp.alt_response(202, schema=VersionOut, description=ACCEPTED)
@bp.errors(*HOOK_ERRORS)
def deploy_hook(body: dict[str, Any]):
    """Deploy a service's image (with the directory's current config) as its next version.

    dockerRepository (with a tag) is the image to run; it defaults to the service's. With
    PAZ_HOOK_TOKEN set, pass ?token= or X-Paz-Token. The answer comes once the version serves,
    unless the request says Prefer: respond-async.
    """
    name = checked_name(body["serviceName"])
    return answered(scheduler().deploy(name, body.get("dockerRepository"), body.get("pushedAt"), request_id()))


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
    return answered(scheduler().deploy(service["name"], f"{repository}:{tag}", body["push_data"]["pushed_at"], request_id()))


@bp.post("/hooks/registry")
@bp.requires("deploy")
@bp.arguments(RegistryNotificationSchema)
@bp.response(202, RegistryPushOut(many=True), description="Each tagged push: the deploys taken, the services not deployed")
@bp.errors(400, 401, 403, 502, 503)
def registry_hook(body: dict[str, Any]):
    """The suite's registry's notifications: a push of <registry>/<repo>:<tag> deploys every service whose
    dockerRepository is <registry>/<repo> and whose autoDeploy is always; a push nobody follows is journaled.

    The answer comes once the deploys are wanted (the controller carries them out); events other than
    tagged pushes are ignored.
    """
    return [scheduler().pushed(repository, tag, request_id()) for repository, tag in pushed_images(body)]


def registry_gate() -> RegistryGate:
    return current_app.extensions["paz.registry_gate"]


@bp.get("/registry/token")
@bp.requires(OPEN)
@bp.arguments(RegistryTokenQuery, location="query")
@bp.response(200, RegistryTokenOut)
@bp.errors(400, 401, 503)
def registry_token(query: dict[str, Any]):
    """The suite's registry's token endpoint: basic auth as paz with a paz token for password buys a
    short-lived registry token (read pulls; deploy and admin pull and push). Anonymous callers get 401."""
    return registry_gate().token(request.authorization, query["scope"])


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
@bp.alt_response(202, schema=VersionOut, description=ACCEPTED)
@bp.errors(*HOOK_ERRORS)
def rollback(body: dict[str, Any], name: str):
    """Deploy a recorded version's image and config again, as a new version (Prefer: respond-async answers at once)."""
    return answered(scheduler().rollback(checked_name(name), body["version"], request_id()))


@bp.post("/services/<name>/stop", parameters=NAMED)
@bp.response(200, StoppedOut)
@bp.errors(400, 409, 502, 503)
def stop(name: str):
    """Stop every instance of a service and withdraw their keys (when the service is deleted)."""
    return {"stopped": scheduler().stop(checked_name(name), request_id())}


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


def log_route(path: str, description: str):
    """``GET path``: a stream of log lines, text or NDJSON as ``format`` says."""

    def decorate(view):
        view = bp.errors(*LOG_ERRORS)(view)
        view = bp.response(200, {"type": "string"}, content_type=LOG_FORMATS["text"], description=description)(view)
        view = bp.arguments(LogsQuery, location="query")(view)
        return bp.get(path, parameters=NAMED)(view)

    return decorate


def log_answer(name: str, unit_id: str | None, query: dict[str, Any]) -> Response:
    wanted = LogQuery(tail=query.get("tail"), since=query.get("since"), follow=query["follow"],
                      streams=(query["stream"],) if query.get("stream") else ("stdout", "stderr"))
    session = scheduler().logs(checked_name(name), unit_id, wanted, request.environ.get(CLIENT_GONE, lambda: False))
    shown = rendered(iter(session), query["format"], with_unit=unit_id is None, timestamps=query["timestamps"])
    answer = Response(shown, mimetype=LOG_FORMATS[query["format"]].split(";")[0],
                      headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
    answer.call_on_close(session.close)
    return answer


def rendered(lines: Iterator[LogLine], form: str, with_unit: bool, timestamps: bool) -> Iterator[str]:
    """Each line as text (``<unit> | `` first for a whole service, like ``docker service logs``) or as JSON.

    An empty first piece makes the server send the status and headers at once, before any line is there.
    """
    yield ""
    for line in lines:
        if form == "json":
            yield json.dumps(line.as_json(), ensure_ascii=False) + "\n"
            continue
        prefix = (f"{line.time} " if timestamps else "") + (f"{line.unit} | " if with_unit else "")
        yield f"{prefix}{line.text}{' [truncated]' if line.truncated else ''}\n"


@log_route("/services/<name>/logs", "Every unit's lines in time order, each after its unit id (text) or with it (json)")
def service_logs(query: dict[str, Any], name: str):
    """The output of every unit of a service, merged in time order (follow=true streams new lines)."""
    return log_answer(name, None, query)


@log_route("/services/<name>/units/<unit_id>/logs", "The unit's lines")
def unit_logs(query: dict[str, Any], name: str, unit_id: str):
    """The output of one unit (follow=true streams new lines); 404 names a unit that is gone."""
    return log_answer(name, unit_id, query)
