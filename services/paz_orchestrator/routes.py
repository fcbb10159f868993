"""The orchestrator's HTTP API: paz's front-door paths.

``/services...`` and ``/services/<name>/config/...`` are relayed to the directory and the scheduler
with their status codes and bodies unchanged; ``/cluster...`` combines the scheduler's units and
hosts with every load balancer's backends; ``/events`` is the live event stream.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, current_app, jsonify, request

from paz.errors import ApiError, BadRequest, NotFound, Unavailable
from paz.web import error_response

from . import schemas  # noqa: F401  (registers the schemas the docstrings below name)
from .events import EventStreams
from .upstream import Cluster, relay, segment

bp = Blueprint("orchestrator", __name__)

TRUE = ("1", "true", "yes")


def cluster() -> Cluster:
    return current_app.extensions["paz.cluster"]


def streams() -> EventStreams:
    return current_app.extensions["paz.events"]


def health_answer(item_id: str, healthy: bool, reason: str | None = None) -> tuple[Response, int]:
    """A health answer: 200 when healthy, 503 when not, so a monitor can use the status alone."""
    body: dict[str, Any] = {"id": item_id, "healthy": healthy}
    if not healthy and reason:
        body["reason"] = reason
    return jsonify(body), 200 if healthy else 503


# Services: the directory's catalogue


@bp.get("/services")
def list_services():
    """List services (relayed to the directory).
    ---
    get:
      summary: Every service in the directory, or the one whose dockerRepository matches
      parameters:
        - {name: dockerRepository, in: query, required: false, schema: {type: string}}
      responses:
        200: {description: The directory's answer}
        503: {description: The directory is not announced or unreachable; the message names it}
    """
    return relay(cluster().directory("GET", "/services", params=request.args))


@bp.post("/services")
def create_service():
    """Register a service (relayed to the directory as it is).
    ---
    post:
      summary: Register a service; the body is the directory's service document (paz's SVCDOC works as it is)
      requestBody: {required: true, content: {application/json: {schema: {type: object}}}}
      responses:
        201: {description: Created; the stored document}
        400: {description: The directory refused the document; its message and details pass through}
        409: {description: A service of that name exists}
        503: {description: The directory is not announced or unreachable}
    """
    headers = {"Content-Type": request.content_type} if request.content_type else {}
    return relay(cluster().directory("POST", "/services", data=request.get_data(), headers=headers))


@bp.get("/services/<name>")
def get_service(name: str):
    """One service (relayed to the directory).
    ---
    get:
      summary: One service by name
      parameters: [{name: name, in: path, required: true, schema: {type: string}}]
      responses:
        200: {description: The service}
        404: {description: No such service}
    """
    return relay(cluster().directory("GET", f"/services/{segment(name)}"))


@bp.delete("/services/<name>")
def delete_service(name: str):
    """Stop a service's instances, then remove it from the directory.
    ---
    delete:
      summary: Stop every instance through the scheduler, then delete the service from the directory
      description: >
        When the scheduler cannot stop the instances (it is down, or refuses), nothing is deleted and
        the answer is the scheduler's error, so no container is left running without a service.
        `force=true` deletes from the directory anyway and answers with a warning.
      parameters:
        - {name: name, in: path, required: true, schema: {type: string}}
        - {name: force, in: query, required: false, schema: {type: boolean}, description: "delete even if the instances could not be stopped"}
      responses:
        200: {description: Deleted, content: {application/json: {schema: DeletedOut}}}
        404: {description: No such service}
        503: {description: The scheduler (or directory) is unreachable; nothing was deleted}
    """
    found = cluster().directory("GET", f"/services/{segment(name)}")
    if not found.ok:
        return relay(found)
    answer: dict[str, Any] = {"service": name, "deleted": True, "stopped": []}
    try:
        answer["stopped"] = cluster().stop_service(name)
    except ApiError as exc:
        if request.args.get("force", "").lower() not in TRUE:
            raise ApiError(
                f"{name} was not deleted, because its instances could not be stopped: {exc.message} "
                f"Retry when the scheduler answers, or DELETE /services/{name}?force=true to delete it "
                "from the directory and leave its instances running.",
                exc.details,
                status=exc.status,
            ) from exc
        answer["warning"] = f"Its instances may still be running: {exc.message}"
    deleted = cluster().directory("DELETE", f"/services/{segment(name)}")
    if not deleted.ok:
        return relay(deleted)
    return jsonify(answer)


@bp.route("/services/<name>/config/next", methods=["GET", "PATCH"])
def config_next(name: str):
    """The config the next deploy will use (relayed to the directory).
    ---
    get:
      summary: The config the service's next deploy will use
      parameters: [{name: name, in: path, required: true, schema: {type: string}}]
      responses:
        200: {description: The config}
        404: {description: No such service}
    patch:
      summary: Merge keys into the next config (env and volume key by key, null removes one)
      parameters: [{name: name, in: path, required: true, schema: {type: string}}]
      requestBody: {required: true, content: {application/json: {schema: {type: object}}}}
      responses:
        200: {description: The whole config after the change}
        400: {description: Unknown or invalid keys; nothing was changed}
        404: {description: No such service}
    """
    headers = {"Content-Type": request.content_type} if request.content_type else {}
    body = request.get_data() if request.method == "PATCH" else None
    return relay(cluster().directory(request.method, f"/services/{segment(name)}/config", data=body, headers=headers))


@bp.get("/services/<name>/config/last")
def config_last(name: str):
    """The version document of the last deploy (relayed to the scheduler).
    ---
    get:
      summary: The last deployed version of the service, with the config it ran with
      parameters: [{name: name, in: path, required: true, schema: {type: string}}]
      responses:
        200: {description: "The version document: service, version, dockerRepository, config, pushedAt, deployedAt, status"}
        404: {description: Never deployed}
        503: {description: The scheduler is not announced or unreachable; the message names it}
    """
    return relay(cluster().scheduler("GET", f"/config/{segment(name)}/version/latest"))


@bp.get("/services/<name>/config/history")
def config_history(name: str):
    """Every deployed version (relayed to the scheduler).
    ---
    get:
      summary: The service's deploy history
      parameters: [{name: name, in: path, required: true, schema: {type: string}}]
      responses:
        200: {description: The scheduler's history}
        503: {description: The scheduler is not announced or unreachable}
    """
    return relay(cluster().scheduler("GET", f"/config/{segment(name)}/history"))


@bp.get("/services/<name>/config/history/<version>")
def config_version(name: str, version: str):
    """One deployed version (relayed to the scheduler).
    ---
    get:
      summary: One version document of the service
      parameters:
        - {name: name, in: path, required: true, schema: {type: string}}
        - {name: version, in: path, required: true, schema: {type: integer}}
      responses:
        200: {description: The version document}
        404: {description: No such version}
    """
    if not version.isdigit():
        raise BadRequest(f"Version {version!r} is not a version number; GET /services/{name}/config/history lists them.")
    return relay(cluster().scheduler("GET", f"/config/{segment(name)}/version/{int(version)}"))


@bp.get("/services/<name>/units")
def service_units(name: str):
    """A service's instances (from the scheduler).
    ---
    get:
      summary: "Every instance of the service: id, version, instance, host, port, container state, announced, healthy"
      parameters: [{name: name, in: path, required: true, schema: {type: string}}]
      responses:
        200: {description: An array of units}
    """
    return jsonify(cluster().units(name))


@bp.get("/services/<name>/units/<unit_id>")
def service_unit(name: str, unit_id: str):
    """One instance of a service, with its CPU and memory.
    ---
    get:
      summary: One instance, with stats (cpuPercent, memoryBytes, memoryLimitBytes) from Docker
      parameters:
        - {name: name, in: path, required: true, schema: {type: string}}
        - {name: unit_id, in: path, required: true, schema: {type: string}}
      responses:
        200: {description: The unit}
        404: {description: No such unit in this service}
    """
    found = cluster().unit(unit_id)
    if found.get("service") != name:
        raise NotFound(f"No unit {unit_id!r} in service {name!r}; GET /services/{name}/units lists them.", {"unit": unit_id})
    return jsonify(found)


@bp.get("/services/<name>/units/<unit_id>/health")
def service_unit_health(name: str, unit_id: str):
    """Whether one instance of a service is healthy.
    ---
    get:
      summary: Healthy while its container runs and its key is announced in etcd
      parameters:
        - {name: name, in: path, required: true, schema: {type: string}}
        - {name: unit_id, in: path, required: true, schema: {type: string}}
      responses:
        200: {description: Healthy, content: {application/json: {schema: HealthOut}}}
        503: {description: Not healthy; reason says why}
        404: {description: No such unit}
    """
    return unit_health_answer(cluster().unit_state(unit_id, name))


@bp.get("/services/<name>/stats")
def service_stats(name: str):
    """Traffic and resource use of a service.
    ---
    get:
      summary: Request rate, error rate and response time from HAProxy; CPU and memory of each running instance
      parameters: [{name: name, in: path, required: true, schema: {type: string}}]
      responses:
        200: {description: The stats, content: {application/json: {schema: ServiceStatsOut}}}
        404: {description: No such service}
    """
    cluster().directory_json(f"/services/{segment(name)}")
    return jsonify(cluster().service_stats(name))


def unit_health_answer(unit: dict[str, Any]) -> tuple[Response, int]:
    healthy = unit.get("state") == "running" and bool(unit.get("announced"))
    reason = None
    if unit.get("state") != "running":
        reason = f"its container is {unit.get('state') or 'missing'}"
    elif not unit.get("announced"):
        reason = "its container runs but its address is not announced in etcd"
    return health_answer(unit["id"], healthy, reason)


# The cluster


@bp.get("/cluster")
def cluster_summary():
    """The cluster counted.
    ---
    get:
      summary: Hosts, services, units and load balancers, counted with how many are healthy
      description: A source that cannot be asked gives null and a line in problems; the answer is still 200.
      responses:
        200: {description: The counts, content: {application/json: {schema: ClusterOut}}}
    """
    return jsonify(cluster().summary())


@bp.get("/cluster/hosts")
def hosts():
    """The machines instances run on (the scheduler's driver).
    ---
    get:
      summary: "Every host: id, name, driver, address, cores, memoryBytes, containersRunning, healthy"
      responses:
        200: {description: An array of hosts}
        503: {description: The scheduler is not announced or unreachable}
    """
    return jsonify(cluster().hosts())


@bp.get("/cluster/hosts/<host_id>")
def host(host_id: str):
    """One host, with the totals of the units on it.
    ---
    get:
      summary: One host, with stats (units, unitsRunning, cpuPercent and memoryBytes summed over its running units)
      parameters: [{name: host_id, in: path, required: true, schema: {type: string}}]
      responses:
        200: {description: The host}
        404: {description: No such host}
    """
    return jsonify(cluster().host_with_stats(host_id))


@bp.get("/cluster/hosts/<host_id>/health")
def host_health(host_id: str):
    """Whether a host's engine answers.
    ---
    get:
      summary: Healthy while its Docker Engine (or fleet machine) answers
      parameters: [{name: host_id, in: path, required: true, schema: {type: string}}]
      responses:
        200: {description: Healthy, content: {application/json: {schema: HealthOut}}}
        503: {description: Not healthy, or the scheduler cannot be asked}
    """
    found = cluster().host(host_id)
    return health_answer(host_id, bool(found.get("healthy")), found.get("error") or "its engine does not answer")


@bp.get("/cluster/units")
def units():
    """Every instance in the cluster.
    ---
    get:
      summary: "Every unit: id, service, version, instance, host, port, image, container state, announced, healthy"
      responses:
        200: {description: An array of units}
        503: {description: The scheduler is not announced or unreachable}
    """
    return jsonify(cluster().units())


@bp.get("/cluster/units/<unit_id>")
def unit(unit_id: str):
    """One instance, with its CPU and memory.
    ---
    get:
      summary: One unit, with stats (cpuPercent, memoryBytes, memoryLimitBytes) from Docker
      parameters: [{name: unit_id, in: path, required: true, schema: {type: string}}]
      responses:
        200: {description: The unit}
        404: {description: No such unit}
    """
    return jsonify(cluster().unit(unit_id))


@bp.get("/cluster/units/<unit_id>/health")
def unit_health(unit_id: str):
    """Whether one instance is healthy.
    ---
    get:
      summary: Healthy while its container runs and its key is announced in etcd
      parameters: [{name: unit_id, in: path, required: true, schema: {type: string}}]
      responses:
        200: {description: Healthy, content: {application/json: {schema: HealthOut}}}
        503: {description: Not healthy; reason says why}
        404: {description: No such unit}
    """
    return unit_health_answer(cluster().unit_state(unit_id))


@bp.get("/cluster/load-balancers")
def load_balancers():
    """Every load balancer (haproxy-sync) announced, with its backends.
    ---
    get:
      summary: Every haproxy-sync, its health and its backends with servers' states and HAProxy's stats
      responses:
        200: {description: An array of load balancers, content: {application/json: {schema: LoadBalancerOut}}}
    """
    return jsonify(cluster().load_balancers())


@bp.get("/cluster/load-balancers/<lb_id>")
def load_balancer(lb_id: str):
    """One load balancer.
    ---
    get:
      summary: One haproxy-sync, its health and its backends
      parameters: [{name: lb_id, in: path, required: true, schema: {type: string}}]
      responses:
        200: {description: The load balancer, content: {application/json: {schema: LoadBalancerOut}}}
        404: {description: No such load balancer}
    """
    return jsonify(cluster().load_balancer(lb_id))


@bp.get("/cluster/load-balancers/<lb_id>/health")
def load_balancer_health(lb_id: str):
    """Whether a load balancer answers.
    ---
    get:
      summary: Healthy while its haproxy-sync answers /health (and so HAProxy runs)
      parameters: [{name: lb_id, in: path, required: true, schema: {type: string}}]
      responses:
        200: {description: Healthy, content: {application/json: {schema: HealthOut}}}
        503: {description: Not healthy; reason says why}
        404: {description: No such load balancer}
    """
    found = cluster().load_balancer(lb_id)
    reason = (found.get("error") or {}).get("message") or "its /health answers that it is not healthy"
    return health_answer(lb_id, found["healthy"], reason)


# Live events


def last_event_id() -> int | None:
    raw = request.headers.get("Last-Event-ID") or request.args.get("lastEventId")
    if raw is None or raw == "":
        return None
    if not raw.isdigit():
        raise BadRequest(f"Last-Event-ID {raw!r} is not an event id (a whole number, the etcd index of an event).")
    return int(raw)


@bp.get("/events")
def events():
    """The live event stream (Server-Sent Events).
    ---
    get:
      summary: "service-created, config-changed, service-deleted, deploy-started/finished/failed, instance-up/down, journal"
      description: >
        text/event-stream; each event has `id` (the etcd index of the change), `event` (its type) and
        `data` (JSON with id, type, service and details). Reconnect with the Last-Event-ID header (or
        lastEventId) to get every change etcd still holds since then; `events-lost` says when it holds
        no longer. Keep-alive comments come every PAZ_EVENTS_KEEPALIVE seconds.
      parameters:
        - {name: Last-Event-ID, in: header, required: false, schema: {type: integer}}
        - {name: lastEventId, in: query, required: false, schema: {type: integer}}
        - {name: service, in: query, required: false, schema: {type: string}, description: only this service's events}
      responses:
        200: {description: The stream, content: {text/event-stream: {schema: {type: string}}}}
        400: {description: Last-Event-ID is not a number}
        503: {description: Too many streams on this worker (Retry-After), or etcd is down}
    """
    try:
        stream = streams().open(last_event_id(), request.args.get("service") or None)
    except Unavailable as exc:
        response, status = error_response(exc.status, exc.message, exc.details)
        response.headers["Retry-After"] = "5"
        return response, status
    return Response(
        stream,
        mimetype="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )
