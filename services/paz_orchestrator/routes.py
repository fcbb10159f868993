"""The orchestrator's HTTP API: paz's front-door paths.

``/services...`` and ``/services/<name>/config/...`` are relayed to the directory and the scheduler
with their status codes and bodies unchanged (:mod:`.relay`), but for plain reads of the directory's
documents, answered from this orchestrator's view before Flask (:mod:`.reads`); ``/cluster...`` combines the
scheduler's units and hosts with every load balancer's backends; ``/events`` is the live event stream.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Any

from flask import Response, current_app, request

from paz import keys
from paz.api import NAMED
from paz.auth import TokenStore
from paz.contracts.certs import CERTIFICATE_NAME, CertificateIn, CertificateOut, CertificatesOut
from paz.contracts.cluster import HostOut, UnitOut
from paz.contracts.deploys import ACCEPTED, HOOK_ERRORS, JournalEntryOut, JournalQuery, RollbackSchema, VersionOut
from paz.contracts.log_streams import LOG_ERRORS, LOG_FORMATS, LogsQuery
from paz.contracts.service_document import ConfigSchema, RepositoryQuery, ServiceOut, ServiceSchema
from paz.errors import ApiError, NotFound, Unavailable
from paz.names import MARATHON_APP_ID, checked_name
from paz.context import paz_context
from paz.front import hand_over, in_loop
from paz.web import INDEX_HEADER, error_response

from .events import EventStreams
from .marathon import MarathonForwarder
from .relay import RelayBlueprint, forwarded, relay
from .schemas import (
    UNHEALTHY, ClusterOut, DeletedOut, DeleteQuery, DeployBody, EventsHeaders, EventsQuery, HostWithStatsOut, ItemHealth,
    LoadBalancerOut, MarathonAppChange, MarathonDeploymentOut, MarathonForceQuery, NewTokenOut, ServiceStatsOut, TargetGroupOut,
    TokenIn, TokenOut,
)
from .targets import targets, version_config
from .upstream import DEPLOY_SECONDS, DIRECTORY, LOAD_BALANCER, SCHEDULER, Cluster, segment

if TYPE_CHECKING:
    import httpx

log = logging.getLogger(__name__)

bp = RelayBlueprint("orchestrator", __name__, description="Services, the cluster, health, stats and live events.")

View = Callable[..., Any]


def cluster() -> Cluster:
    return current_app.extensions["paz.cluster"]


def marathon() -> MarathonForwarder:
    return current_app.extensions["paz.marathon"]


def streams() -> EventStreams:
    return current_app.extensions["paz.events"]


def relayed(service: str, method: str, path: str, **kwargs: Any) -> Response:
    """``service``'s answer to ``method path``, given back as it is; the index a write made is
    recorded, so reads from this orchestrator's view wait for it (:mod:`.reads`)."""
    answer = relay(service, method, path, cluster().upstream.call(service, method, path, **kwargs))
    index = answer.headers.get(INDEX_HEADER, "")
    if index.isdigit():
        paz_context().written.record(int(index))
    return answer


def service_path(name: str, rest: str = "") -> str:
    """The directory's path of service ``name`` (400 when it cannot be a service name)."""
    return f"/services/{checked_name(name)}{rest}"


def health_route(path: str, *errors: int, parameters: list[dict[str, Any]] | None = None) -> Callable[[View], View]:
    """``GET path`` answering :class:`ItemHealth`: 200 when healthy, 503 when not, so a monitor can use the status alone."""

    def decorate(view: View) -> View:
        view = bp.errors(404, 502, *errors)(view)
        view = bp.alt_response(503, schema=UNHEALTHY, description="Not healthy (reason says why), or its source cannot be asked")(view)
        view = bp.response(200, ItemHealth, description="Healthy")(view)
        return bp.get(path, parameters=parameters)(view)

    return decorate


def health_answer(item_id: str, reason: str | None) -> tuple[dict[str, Any], int]:
    """Healthy when there is no ``reason`` not to be."""
    if reason is None:
        return {"id": item_id, "healthy": True}, 200
    return {"id": item_id, "healthy": False, "reason": reason}, 503


# Services: the directory's catalogue, the scheduler's versions and units


@bp.get("/services")
@bp.arguments(RepositoryQuery, location="query")
@bp.response(200, {"oneOf": [ServiceOut(many=True), ServiceOut]},
             description="Every service by name; with dockerRepository, the one service that has it")
@bp.errors(400, 404, 502)
def list_services(query: dict[str, Any]):
    """List every service, or find the one whose dockerRepository matches (the directory's documents; a plain list from this orchestrator's view of etcd)."""
    return relayed(DIRECTORY, "GET", "/services", params=query)


@bp.post("/services")
@bp.arguments(forwarded(ServiceSchema()), description="The directory's service document (paz's SVCDOC works as it is); the directory validates it")
@bp.response(201, ServiceOut, description="Created; Location names it")
@bp.errors(400, 409, 502)
def create_service(body: dict[str, Any]):
    """Register a service (relayed to the directory)."""
    return relayed(DIRECTORY, "POST", "/services", json=body)


@bp.get("/services/<name>", parameters=NAMED)
@bp.response(200, ServiceOut)
@bp.errors(400, 404, 409, 502)
def get_service(name: str):
    """One service by name (the directory's document; a plain read from this orchestrator's view of etcd)."""
    return relayed(DIRECTORY, "GET", service_path(name))


@bp.delete("/services/<name>", parameters=NAMED)
@bp.arguments(DeleteQuery, location="query")
@bp.response(200, DeletedOut, description="Deleted, after its instances were stopped")
@bp.errors(400, 404, 409, 502)
def delete_service(query: dict[str, Any], name: str):
    """Stop every instance through the scheduler, then delete the service from the directory.

    When the scheduler cannot stop the instances (it is down, or refuses), nothing is deleted and the
    answer is the scheduler's error, so no container is left running without a service.
    force=true deletes from the directory anyway and answers with a warning.
    """
    path = service_path(name)
    found = relayed(DIRECTORY, "GET", path)
    if found.status_code != 200:
        return found
    stopped = stop_instances(name, query["force"])
    deleted = relayed(DIRECTORY, "DELETE", path)
    if deleted.status_code >= 300:
        return deleted
    return {"service": name, "deleted": True, **stopped}


def stop_instances(name: str, force: bool) -> dict[str, Any]:
    """``stopped``: the instances the scheduler stopped; with ``force``, a ``warning`` instead of its error."""
    try:
        return {"stopped": cluster().stop_service(name)}
    except ApiError as exc:
        if not force:
            raise ApiError(
                f"{name} was not deleted, because its instances could not be stopped: {exc.message} "
                f"Retry when the scheduler answers, or DELETE /services/{name}?force=true to delete it "
                "from the directory and leave its instances running.",
                exc.details,
                status=exc.status,
            ) from exc
        return {"stopped": [], "warning": f"Its instances may still be running: {exc.message}"}


@bp.get("/services/<name>/config/next", parameters=NAMED)
@bp.response(200, ConfigSchema, description="The config the service's next deploy will use")
@bp.errors(400, 404, 409, 502)
def next_config(name: str):
    """The config the next deploy will use (the directory's; a plain read from this orchestrator's view of etcd)."""
    return relayed(DIRECTORY, "GET", service_path(name, "/config"))


@bp.patch("/services/<name>/config/next", parameters=NAMED)
@bp.arguments(forwarded(ConfigSchema(partial=True)), description="The keys to change; env, secrets and volume merge key by key (null removes one); a secret is answered as its name and when it was set, never its value")
@bp.response(200, ConfigSchema, description="The whole config after the change")
@bp.errors(400, 404, 409, 502)
def patch_next_config(patch: dict[str, Any], name: str):
    """Merge keys into the next config; nothing changes when any is invalid (relayed to the directory)."""
    return relayed(DIRECTORY, "PATCH", service_path(name, "/config"), json=patch)


@bp.get("/services/<name>/config/last", parameters=NAMED)
@bp.response(200, VersionOut, description="The version document, with the config it ran with")
@bp.errors(400, 404, 502)
def last_config(name: str):
    """The last deployed version of the service (relayed to the scheduler)."""
    return relayed(SCHEDULER, "GET", f"/config/{checked_name(name)}/version/latest")


@bp.get("/services/<name>/config/history", parameters=NAMED)
@bp.response(200, VersionOut(many=True), description="Newest first; empty when never deployed")
@bp.errors(400, 404, 502)
def config_history(name: str):
    """Every deployed version of the service (relayed to the scheduler)."""
    return relayed(SCHEDULER, "GET", f"/config/{checked_name(name)}/history")


@bp.get("/services/<name>/config/history/<int:version>", parameters=NAMED)
@bp.response(200, VersionOut)
@bp.errors(400, 404, 502)
def config_version(name: str, version: int):
    """One deployed version of the service (relayed to the scheduler)."""
    return relayed(SCHEDULER, "GET", f"/config/{checked_name(name)}/version/{version}")


DEPLOY_HEADERS = ("X-Paz-Token", "Prefer")
"""What a deploy or rollback passes on to the scheduler: the caller's hook token, and whether it waits."""


def relayed_deploy(name: str, path: str, body: dict[str, Any]) -> Response:
    """A deploy or rollback of ``name`` relayed to the scheduler; its ``Location`` names the
    orchestrator's own path of the version."""
    headers = {header: request.headers[header] for header in DEPLOY_HEADERS if header in request.headers}
    answer = relayed(SCHEDULER, "POST", path, json=body, headers=headers, timeout=DEPLOY_SECONDS)
    version = (answer.get_json(silent=True) or {}).get("version") if answer.status_code < 300 else None
    if isinstance(version, int):
        answer.headers["Location"] = service_path(name, f"/config/history/{version}")
    return answer


@bp.post("/services/<name>/deploy", parameters=NAMED)
@bp.requires("deploy")
@bp.arguments(DeployBody, description="dockerRepository (with a tag) defaults to the service's; the scheduler validates it")
@bp.response(201, VersionOut, description="Deployed: the new version serves and the old one is stopped")
@bp.alt_response(202, schema=VersionOut, description=ACCEPTED)
@bp.errors(*HOOK_ERRORS)
def deploy(body: dict[str, Any], name: str):
    """Deploy a service as its next version, with the config its next deploy uses (relayed to the scheduler's deploy hook).

    The answer comes when the version serves (or failed: 422 with the reason, the old version
    keeping on), unless the request says Prefer: respond-async (202 at once, Location names the
    version); GET /events?service=<name> shows its progress meanwhile.
    """
    return relayed_deploy(name, "/hooks/deploy", {**body, "serviceName": checked_name(name)})


@bp.post("/services/<name>/rollback", parameters=NAMED)
@bp.requires("deploy")
@bp.arguments(RollbackSchema)
@bp.response(201, VersionOut, description="Rolled back: the new version")
@bp.alt_response(202, schema=VersionOut, description=ACCEPTED)
@bp.errors(*HOOK_ERRORS)
def rollback(body: dict[str, Any], name: str):
    """Deploy a recorded version's image and config again, as a new version (relayed to the scheduler; Prefer: respond-async answers at once)."""
    return relayed_deploy(name, f"/services/{checked_name(name)}/rollback", body)


@bp.get("/certs")
@bp.response(200, CertificatesOut, description="Every certificate the routers serve, and the names whose order failed")
@bp.errors(502, 503)
def certificates():
    """The routers' certificates (name, source, issuer, validity; never a key) and failed orders (relayed to haproxy-sync)."""
    return relayed(LOAD_BALANCER, "GET", "/certs")


@bp.put("/certs/<name>", parameters=[CERTIFICATE_NAME])
@bp.requires("admin")
@bp.arguments(forwarded(CertificateIn()), description="The PEM chain (leaf first) and its unencrypted private key")
@bp.response(200, CertificateOut, description="Stored (its key sealed); every router serves it within a moment")
@bp.errors(400, 502, 503)
def bring_certificate(body: dict[str, Any], name: str):
    """Serve a certificate you bring for a host name (relayed to haproxy-sync; it is not renewed)."""
    return relayed(LOAD_BALANCER, "PUT", f"/certs/{segment(name)}", json=body)


@bp.delete("/certs/<name>", parameters=[CERTIFICATE_NAME])
@bp.requires("admin")
@bp.response(204, description="Removed")
@bp.errors(404, 502, 503)
def remove_certificate(name: str):
    """Stop serving a certificate (relayed to haproxy-sync)."""
    return relayed(LOAD_BALANCER, "DELETE", f"/certs/{segment(name)}")


@bp.get("/services/<name>/units", parameters=NAMED)
@bp.response(200, UnitOut(many=True))
@bp.errors(400, 404, 502)
def service_units(name: str):
    """Every instance of the service: id, version, instance, host, port, container state, announced, healthy."""
    return cluster().units(checked_name(name))


@bp.get("/services/<name>/units/<unit_id>", parameters=NAMED)
@bp.response(200, UnitOut, description="The unit, with stats (cpuPercent, memoryBytes, memoryLimitBytes) from Docker")
@bp.errors(400, 404, 502)
def service_unit(name: str, unit_id: str):
    """One instance of a service, with its CPU and memory."""
    checked_name(name)
    found = cluster().unit(unit_id)
    if found.get("service") != name:
        raise NotFound(f"No unit {unit_id!r} in service {name!r}; GET /services/{name}/units lists them.", {"unit": unit_id})
    return found


@health_route("/services/<name>/units/<unit_id>/health", 400, parameters=NAMED)
def service_unit_health(name: str, unit_id: str):
    """Whether one instance of a service is healthy: its container runs and its key is announced in etcd."""
    return unit_health(cluster().unit_state(unit_id, checked_name(name)))


@bp.get("/services/<name>/stats", parameters=NAMED)
@bp.response(200, ServiceStatsOut)
@bp.errors(400, 404, 409, 502)
def service_stats(name: str):
    """Request rate, error rate and response time from HAProxy; CPU and memory of each running instance.

    A Marathon app routed by a load balancer (by its routed name, c-b-a for /a/b/c) answers its traffic
    and its tasks, with source marathon.
    """
    return cluster().service_stats(checked_name(name))


FOLLOW_READ_SECONDS = 3600.0
"""How long a followed log stream may stay silent: the scheduler ends it after PAZ_LOGS_MAX_SECONDS anyway."""


def relayed_logs(path: str) -> Response:
    """The scheduler's log stream at ``path``, passed on as it comes (its errors as they are).

    The stream is opened and relayed in the event loop: a followed log holds no thread, so any number
    of them leave the threads to the other requests."""
    follow = request.args.get("follow", "").lower() in ("true", "1", "yes", "on")
    answer = in_loop(cluster().upstream.opening(SCHEDULER, "GET", path, params=list(request.args.items(multi=True)),
                                                read_timeout=FOLLOW_READ_SECONDS if follow else None))
    if answer.status_code != 200:
        in_loop(answer.aread())
        return relay(SCHEDULER, "GET", path, answer)
    hand_over(passed_on(answer))  # the status and headers go at once, before any line is there
    return Response(iter(()), mimetype=answer.headers.get("Content-Type", LOG_FORMATS["text"]).split(";")[0],
                    headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


async def passed_on(answer: httpx.Response) -> AsyncIterator[bytes]:
    """``answer``'s body as it comes; a scheduler that stops mid-stream ends it (the client sees the end)."""
    import httpx  # loaded already: it opened ``answer``

    try:
        async for chunk in answer.aiter_bytes():
            yield chunk
    except httpx.HTTPError as exc:
        log.warning("a relayed log stream broke off", extra={"reason": str(exc)})
    finally:
        await answer.aclose()


@bp.get("/services/<name>/logs", parameters=NAMED)
@bp.arguments(LogsQuery, location="query")
@bp.response(200, {"type": "string"}, content_type=LOG_FORMATS["text"],
             description="Every unit's lines in time order, each after its unit id (text) or with it (format=json)")
@bp.errors(*LOG_ERRORS)
def service_logs(query: dict[str, Any], name: str):
    """The output of every unit of a service, merged in time order, like docker service logs.

    tail=N keeps the last N lines, since= those after a time (epoch seconds, ISO 8601, or 10m back),
    stream= one of stdout and stderr; follow=true streams new lines until the client leaves (or
    PAZ_LOGS_MAX_SECONDS); format=json gives one object a line with unit, stream, time and text.
    The fleet driver answers 501 with the fleetctl command to run instead.
    """
    return relayed_logs(service_path(name, "/logs"))


@bp.get("/services/<name>/units/<unit_id>/logs", parameters=NAMED)
@bp.arguments(LogsQuery, location="query")
@bp.response(200, {"type": "string"}, content_type=LOG_FORMATS["text"], description="The unit's lines")
@bp.errors(*LOG_ERRORS)
def service_unit_logs(query: dict[str, Any], name: str, unit_id: str):
    """The output of one instance of a service (the same query as the service's logs); 404 names a unit that is gone."""
    return relayed_logs(service_path(name, f"/units/{segment(unit_id)}/logs"))


def unit_health(unit: dict[str, Any]) -> tuple[dict[str, Any], int]:
    reason = None
    if unit.get("state") != "running":
        reason = f"its container is {unit.get('state') or 'missing'}"
    elif not unit.get("announced"):
        reason = "its container runs but its address is not announced in etcd"
    return health_answer(unit["id"], reason)


# The cluster


@bp.get("/cluster")
@bp.response(200, ClusterOut, description="The counts; a source that cannot be asked gives null and a line in problems")
def cluster_summary():
    """Hosts, services, units and load balancers, counted with how many are healthy."""
    return cluster().summary()


@bp.get("/cluster/hosts")
@bp.response(200, HostOut(many=True))
@bp.errors(502)
def hosts():
    """Every host instances run on: id, name, driver, address, cores, memoryBytes, containersRunning, healthy."""
    return cluster().hosts()


@bp.get("/cluster/hosts/<host_id>")
@bp.response(200, HostWithStatsOut)
@bp.errors(404, 502)
def host(host_id: str):
    """One host, with the units on it and their CPU and memory summed."""
    return cluster().host_with_stats(host_id)


@health_route("/cluster/hosts/<host_id>/health")
def host_health(host_id: str):
    """Whether a host is healthy: its Docker Engine (or fleet machine) answers."""
    found = cluster().host(host_id)
    return health_answer(host_id, None if found.get("healthy") else found.get("error") or "its engine does not answer")


@bp.get("/cluster/units")
@bp.response(200, UnitOut(many=True))
@bp.errors(502)
def units():
    """Every instance in the cluster: id, service, version, instance, host, port, image, state, announced, healthy."""
    return cluster().units()


@bp.get("/cluster/units/<unit_id>")
@bp.response(200, UnitOut, description="The unit, with stats (cpuPercent, memoryBytes, memoryLimitBytes) from Docker")
@bp.errors(404, 502)
def unit(unit_id: str):
    """One instance, with its CPU and memory."""
    return cluster().unit(unit_id)


@health_route("/cluster/units/<unit_id>/health")
def cluster_unit_health(unit_id: str):
    """Whether one instance is healthy: its container runs and its key is announced in etcd."""
    return unit_health(cluster().unit_state(unit_id))


@bp.get("/cluster/load-balancers")
@bp.response(200, LoadBalancerOut(many=True))
def load_balancers():
    """Every load balancer (haproxy-sync) announced: its health and its backends, with servers' states and HAProxy's stats."""
    return cluster().load_balancers()


@bp.get("/cluster/load-balancers/<lb_id>")
@bp.response(200, LoadBalancerOut)
@bp.errors(404)
def load_balancer(lb_id: str):
    """One load balancer: its health and its backends."""
    return cluster().load_balancer(lb_id)


@health_route("/cluster/load-balancers/<lb_id>/health")
def load_balancer_health(lb_id: str):
    """Whether a load balancer is healthy: its haproxy-sync answers /health (and so HAProxy runs)."""
    found = cluster().load_balancer(lb_id)
    reason = (found.get("error") or {}).get("message") or "its /health answers that it is not healthy"
    return health_answer(lb_id, None if found["healthy"] else reason)


@bp.get("/prometheus/targets")
@bp.response(200, TargetGroupOut(many=True), description="Prometheus' HTTP service-discovery format")
def prometheus_targets():
    """What Prometheus scrapes: every suite process, each router's HAProxy exporter, and each running
    instance of a service whose config declares ``metrics`` (``http_sd_configs`` reads this)."""
    paz = paz_context()
    return targets(paz.view.nodes(keys.SERVICES), version_config(paz.view.get), cluster().exporters())


# Tokens (paz.auth): every route here needs an admin token


@bp.post("/tokens")
@bp.arguments(TokenIn)
@bp.response(201, NewTokenOut, description="The new token; its secret is shown this once")
@bp.errors(400)
def create_token(body: dict[str, Any]):
    """Make an API token with a role."""
    secret, record = TokenStore(paz_context().etcd).create(body["role"], body["name"])
    return {**record, "token": secret}, 201


@bp.get("/tokens")
@bp.requires("admin")
@bp.response(200, TokenOut(many=True), description="Oldest first, without their secrets")
def list_tokens():
    """Every API token: id, name, role, when it was made."""
    return TokenStore(paz_context().etcd).records()


@bp.delete("/tokens/<token_id>")
@bp.response(200, TokenOut, description="The token revoked; it stops working at once")
@bp.errors(404)
def revoke_token(token_id: str):
    """Revoke a token, named by its id (or its secret)."""
    return TokenStore(paz_context().etcd).revoke(token_id)


# Marathon


MARATHON_APP = [{
    "in": "path", "name": "app_id", "required": True,
    "description": "the Marathon app id without its leading '/', e.g. group/app (any other answers 400)",
    "schema": {"type": "string", "pattern": MARATHON_APP_ID.pattern.replace("^(/", "^/?(")},
}]


def marathon_change(method: str):
    """``method /marathon/apps/<app id>``: the change forwarded to Marathon."""

    def decorate(view: View) -> View:
        view = bp.errors(400, 404, 409, 502)(view)
        view = bp.response(200, MarathonDeploymentOut, description="Marathon took the change: its deployment and the app's new version")(view)
        view = bp.arguments(MarathonForceQuery, location="query")(view)
        view = bp.arguments(MarathonAppChange, description="Only these fields of an app definition; any other is refused")(view)
        return bp.route("/marathon/apps/<path:app_id>", methods=[method], parameters=MARATHON_APP)(view)

    return decorate


@marathon_change("PUT")
def put_marathon_app(change: dict[str, Any], query: dict[str, Any], app_id: str):
    """Forward a change of an app to Marathon (PUT /v2/apps/<id>): 409 while a deployment holds it (unless force=true) or when no Marathon is configured."""
    return marathon().forward("PUT", app_id, change, query["force"])


@marathon_change("PATCH")
def patch_marathon_app(change: dict[str, Any], query: dict[str, Any], app_id: str):
    """Forward a partial change of an existing app to Marathon (PATCH /v2/apps/<id>, Marathon 1.4 and later)."""
    return marathon().forward("PATCH", app_id, change, query["force"])


# The journal and live events


@bp.get("/journal")
@bp.arguments(JournalQuery, location="query")
@bp.response(200, JournalEntryOut(many=True), description="Newest first")
@bp.errors(400, 502)
def journal(query: dict[str, Any]):
    """Deploys, failed deploys, rollbacks, stops and instances that went down (relayed to the scheduler)."""
    if query.get("service"):
        checked_name(query["service"])
    return relayed(SCHEDULER, "GET", "/journal", params=query)


@bp.get("/events")
@bp.arguments(EventsQuery, location="query")
@bp.arguments(EventsHeaders, location="headers")
@bp.response(200, {"type": "string"}, content_type="text/event-stream", description="The stream, until PAZ_EVENTS_MAX_SECONDS")
@bp.errors(400)
def events(query: dict[str, Any], headers: dict[str, Any]):
    """The live event stream (Server-Sent Events): services, configs, deploys, instances and the journal.

    Each event has id (the etcd index of the change), event (its type: service-created,
    config-changed, service-deleted, deploy-started/progress/finished/failed, instance-up/down, journal) and
    data (JSON with id, type, service and details). Reconnect with the Last-Event-ID header (or
    lastEventId) to get every change etcd still holds since then; events-lost says when it holds no
    longer. Keep-alive comments come every PAZ_EVENTS_KEEPALIVE seconds. 503 with Retry-After when
    this worker already serves PAZ_EVENTS_MAX_CLIENTS streams.
    """
    since = headers.get("lastEventId", query.get("lastEventId"))
    try:
        stream = streams().open(since, query.get("service") or None)
    except Unavailable as exc:
        response, status = error_response(exc.status, exc.message, exc.details)
        response.headers["Retry-After"] = "5"
        return response, status
    hand_over(stream)  # sent by the event loop: an open stream holds no thread
    return Response(iter(()), mimetype="text/event-stream", headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
