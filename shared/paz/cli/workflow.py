"""The daily workflow against the orchestrator: ``paz services``, ``service``, ``create``, ``config``,
``deploy`` (with its progress, live from ``/events``), ``rollback``, ``scale``, ``history``, ``logs``
and ``events``."""

from __future__ import annotations

import json
import queue
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
import requests

from .client import DEPLOY_SECONDS, EventReader, Orchestrator, orchestrator_url
from .output import USAGE, PazError, done, emit_json, exit_code_of, step, table
from .suite_commands import part_names, show_suite_logs

FOLLOW_SECONDS = 0.25
"""How often a deploy's version is read while it deploys."""
FINAL_EVENT_SECONDS = 5.0
"""How long, after the deploy answered, to wait for its last events (they go through etcd and the stream)."""
JSON_OPTION = click.option("--json", "as_json", is_flag=True, help="print JSON (for scripts) instead of text")


def orchestrator(ctx: click.Context) -> Orchestrator:
    if "orchestrator" not in ctx.obj:
        ctx.obj["orchestrator"] = Orchestrator(orchestrator_url(ctx.obj["url"]), ctx.obj["token"])
    return ctx.obj["orchestrator"]


# -- services and their config -------------------------------------------------------------------


@click.command()
@JSON_OPTION
@click.pass_context
def services(ctx: click.Context, as_json: bool) -> None:
    """List the services."""
    found = orchestrator(ctx).json("GET", "/services")
    if as_json:
        return emit_json(found)
    table([(s["name"], s.get("dockerRepository"), (s.get("config") or {}).get("numInstances"), s.get("description"))
           for s in found], ("name", "image", "instances", "description"))


@click.command()
@click.argument("name")
@JSON_OPTION
@click.pass_context
def service(ctx: click.Context, name: str, as_json: bool) -> None:
    """Show a service: its document, its last version and its units."""
    paz = orchestrator(ctx)
    document = paz.json("GET", f"/services/{name}")
    units = paz.json("GET", f"/services/{name}/units")
    history = paz.json("GET", f"/services/{name}/config/history")
    if as_json:
        return emit_json({"service": document, "lastVersion": history[0] if history else None, "units": units})
    config = document.get("config") or {}
    click.echo(f"{click.style(name, bold=True)}  {document.get('description') or ''}".rstrip())
    click.echo(f"image       {document.get('dockerRepository')}")
    click.echo(f"instances   {config.get('numInstances')}")
    click.echo(f"last        {version_line(history[0]) if history else 'never deployed'}")
    click.echo()
    table([(u["id"], u.get("state"), u.get("host") and f"{u['host']}:{u['port']}", "yes" if u.get("healthy") else "no")
           for u in units], ("unit", "state", "address", "healthy"))


def version_line(version: dict[str, Any]) -> str:
    return f"v{version['version']} {version.get('status')} ({version.get('dockerRepository')})"


@click.command()
@click.argument("file", type=click.Path(path_type=Path, dir_okay=False))
@JSON_OPTION
@click.pass_context
def create(ctx: click.Context, file: Path, as_json: bool) -> None:
    """Register a service from a JSON file (paz's service document, e.g. the tutorial's contrived-service-1.json)."""
    try:
        document = json.loads(file.read_text())
    except OSError as exc:
        raise PazError(f"Cannot read {file}: {exc.strerror}.", USAGE) from None
    except ValueError as exc:
        raise PazError(f"{file} is not JSON: {exc}.", USAGE) from None
    created = orchestrator(ctx).json("POST", "/services", json=document)
    if as_json:
        return emit_json(created)
    done(f"created {created['name']} ({created.get('dockerRepository')}); paz deploy {created['name']} runs it")


@click.command()
@click.argument("name")
@click.argument("settings", nargs=-1, metavar="[KEY=VALUE]...")
@click.option("--unset", multiple=True, metavar="KEY", help="remove an environment variable")
@click.option("--secret", "secrets", multiple=True, metavar="KEY=VALUE",
              help="set a secret: in the containers' environment, shown nowhere else")
@click.option("--unset-secret", multiple=True, metavar="KEY", help="remove a secret")
@JSON_OPTION
@click.pass_context
def config(ctx: click.Context, name: str, settings: tuple[str, ...], unset: tuple[str, ...], secrets: tuple[str, ...],
           unset_secret: tuple[str, ...], as_json: bool) -> None:
    """Show the config the next deploy uses, or set (KEY=VALUE) and --unset its environment variables and secrets."""
    patch = {key: changes for key, changes in (("env", _changes(settings, unset)), ("secrets", _changes(secrets, unset_secret)))
             if changes}
    paz = orchestrator(ctx)
    path = f"/services/{name}/config/next"
    current = paz.json("PATCH", path, json=patch) if patch else paz.json("GET", path)
    if as_json:
        return emit_json(current)
    for key, value in sorted(current.items()):
        if key not in ("env", "secrets"):
            click.echo(f"{key:<16} {json.dumps(value)}")
    for key, value in sorted((current.get("env") or {}).items()):
        click.echo(f"env {key:<12} {value}")
    for key, value in sorted((current.get("secrets") or {}).items()):
        click.echo(f"secret {key:<9} set {value.get('setAt')}")
    if patch:
        changed = sorted(key for changes in patch.values() for key in changes)
        done(f"changed {', '.join(changed)}: paz deploy {name} runs with it")


def _changes(settings: tuple[str, ...], unset: tuple[str, ...]) -> dict[str, str | None]:
    """``KEY=VALUE`` settings and keys to remove (None) as a PATCH's mapping."""
    changes: dict[str, str | None] = {key: None for key in unset}
    for setting in settings:
        key, equals, value = setting.partition("=")
        if not equals or not key:
            raise PazError("Give each setting and secret as KEY=VALUE, with a KEY before the '=' "
                           "(what was given is not repeated here: it may be a secret).", USAGE)
        changes[key] = value
    return changes


# -- deploys -------------------------------------------------------------------------------------


@click.command()
@click.argument("name")
@click.argument("image", required=False)
@JSON_OPTION
@click.pass_context
def deploy(ctx: click.Context, name: str, image: str | None, as_json: bool) -> None:
    """Deploy a service (IMAGE, with its tag, or the service's own), showing its progress."""
    body = {"dockerRepository": image} if image else {}
    answer = watched_deploy(ctx, name, f"/services/{name}/deploy", body, as_json)
    done(f"deployed {name} v{answer['version']} ({answer['dockerRepository']})")


@click.command()
@click.argument("name")
@click.argument("version", type=click.IntRange(min=1))
@JSON_OPTION
@click.pass_context
def rollback(ctx: click.Context, name: str, version: int, as_json: bool) -> None:
    """Deploy a recorded VERSION's image and config again, as a new version."""
    answer = watched_deploy(ctx, name, f"/services/{name}/rollback", {"version": version}, as_json)
    done(f"rolled back {name} to v{version} as v{answer['version']} ({answer['dockerRepository']})")


@click.command()
@click.argument("name")
@click.argument("instances", type=click.IntRange(min=1))
@JSON_OPTION
@click.pass_context
def scale(ctx: click.Context, name: str, instances: int, as_json: bool) -> None:
    """Run INSTANCES instances of a service: set numInstances and deploy the image it runs now."""
    paz = orchestrator(ctx)
    history = paz.json("GET", f"/services/{name}/config/history")
    running = next((v for v in history if v.get("status") == "running"), None)
    paz.json("PATCH", f"/services/{name}/config/next", json={"numInstances": instances})
    body = {"dockerRepository": running["dockerRepository"]} if running else {}
    answer = watched_deploy(ctx, name, f"/services/{name}/deploy", body, as_json)
    done(f"scaled {name} to {instances} instance(s) as v{answer['version']}")


@click.command()
@click.argument("name")
@JSON_OPTION
@click.pass_context
def history(ctx: click.Context, name: str, as_json: bool) -> None:
    """List a service's versions, newest first."""
    versions = orchestrator(ctx).json("GET", f"/services/{name}/config/history")
    if as_json:
        return emit_json(versions)
    table([(f"v{v['version']}", v.get("status"), v.get("dockerRepository"), v.get("deployedAt"),
            f"rollback of v{v['rollbackOf']}" if v.get("rollbackOf") else v.get("message"))
           for v in versions], ("version", "status", "image", "deployed", "note"))


def watched_deploy(ctx: click.Context, name: str, path: str, body: dict[str, Any], as_json: bool) -> dict[str, Any]:
    """POST ``path`` (a deploy or rollback) while showing ``name``'s events; the new version, or a PazError."""
    paz = orchestrator(ctx)
    return watched_version(ctx, name, lambda: paz.json("POST", path, json=body, headers={"Prefer": "respond-async"}), as_json)


def watched_version(ctx: click.Context, name: str, begun: Callable[[], dict[str, Any]], as_json: bool) -> dict[str, Any]:
    """Follow the version ``begun`` answers (it starts a deploy, or finds one) while showing ``name``'s
    events; the version once it runs, or a PazError.

    The event stream is opened first, so no step is missed; the version is followed in a thread
    (:func:`followed_version`), and once it ends, the events up to its journal entry are still shown
    (bounded by FINAL_EVENT_SECONDS). With ``--json`` nothing but the version is printed.
    """
    paz = orchestrator(ctx)
    events = None if as_json else paz.events(service=name)
    happened: queue.Queue[tuple[str, Any]] = queue.Queue()
    if events is not None:
        threading.Thread(target=forward_events, args=(events, happened), daemon=True).start()

    def follow() -> None:
        try:
            happened.put(("answer", followed_version(paz, name, begun())))
        except PazError as exc:
            happened.put(("error", exc))

    threading.Thread(target=follow, daemon=True).start()
    try:
        outcome = show_progress(happened, events is not None)
    finally:
        if events is not None:
            events.close()
    if isinstance(outcome, PazError):
        outcome.command = ctx.command_path  # made in the request's thread, outside the command
        raise outcome
    if as_json:
        emit_json(outcome)
        ctx.exit(0)
    return outcome


def followed_version(paz: Orchestrator, name: str, document: dict[str, Any]) -> dict[str, Any]:
    """Read the version ``document`` (asked without holding the request: ``Prefer: respond-async``)
    until it ends: its document once it runs, else a PazError with the reason it did not.

    The deploy belongs to the scheduler's controller, so an interrupted command (or a restarted
    scheduler) changes nothing about how it ends; ``paz history`` shows that later.
    """
    version, deadline = document["version"], time.monotonic() + DEPLOY_SECONDS
    while document.get("status") == "deploying":
        if time.monotonic() > deadline:
            raise PazError(f"v{version} of {name} is still deploying after {DEPLOY_SECONDS:.0f} s; "
                           f"paz history {name} shows how it ends.")
        time.sleep(FOLLOW_SECONDS)
        document = paz.json("GET", f"/services/{name}/config/history/{version}")
    if document.get("status") == "failed":
        raise PazError(document.get("message") or f"v{version} of {name} was not deployed.",
                       exit_code_of(document.get("failureStatus", 422)))
    if not document.get("deployedAt"):  # replaced or stopped before it served
        raise PazError(document.get("message") or f"v{version} of {name} never served: a newer deploy or a stop came first.")
    return document


def forward_events(events: EventReader, into: queue.Queue[tuple[str, Any]]) -> None:
    for kind, data in events:
        into.put((kind, data))


def show_progress(happened: queue.Queue[tuple[str, Any]], with_events: bool) -> Any:
    """Print each event until the deploy answered and its last event came; the answer (or its PazError)."""
    outcome: Any = None
    while True:
        try:
            kind, data = happened.get(timeout=FINAL_EVENT_SECONDS if outcome is not None else None)
        except queue.Empty:
            return outcome
        if kind in ("answer", "error"):
            outcome = data
            if not with_events or finished(outcome, None):
                return outcome
            continue
        describe_progress(kind, data)
        if outcome is not None and finished(outcome, (kind, data)):
            return outcome


def finished(outcome: Any, event: tuple[str, dict[str, Any]] | None) -> bool:
    """Whether ``event`` is the last one of the deploy that answered ``outcome``: its journal entry."""
    if event is None:
        return False
    kind, data = event
    entry = data.get("entry") or {}
    if kind != "journal" or entry.get("type") not in ("deploy", "rollback", "deploy-failed"):
        return False
    if isinstance(outcome, PazError):
        return entry.get("type") == "deploy-failed"
    return entry.get("version") == outcome.get("version")


PROGRESS: dict[str, Callable[[dict[str, Any]], tuple[str, str | None]]] = {
    "deploy-started": lambda e: (f"v{e.get('version')} taken: deploying {e.get('dockerRepository')}", "cyan"),
    "deploy-finished": lambda e: (f"serving: v{e.get('version')} runs", "green"),
    "deploy-failed": lambda e: (f"failed: {e.get('message')}", "red"),
    "instance-up": lambda e: (f"  {e.get('unit')} is up at {e.get('address')}", None),
    "instance-down": lambda e: (f"  {e.get('unit')} is down ({e.get('reason')})", None),
}
STEPS: dict[str, Callable[[dict[str, Any]], str]] = {
    "image-pulled": lambda e: f"image pulled: {e.get('image')}",
    "instance-started": lambda e: f"instances started {e.get('started')}/{e.get('total')} ({e.get('unit')})",
    "old-stopped": lambda e: f"old version stopped ({', '.join(e.get('stopped') or []) or 'none was running'})",
}


def describe_progress(kind: str, event: dict[str, Any]) -> None:
    if kind == "deploy-progress" and event.get("step") in STEPS:
        step(STEPS[event["step"]](event))
    elif kind in PROGRESS:
        text, colour = PROGRESS[kind](event)
        step(text, colour)


# -- logs and events -----------------------------------------------------------------------------


@click.command()
@click.argument("name", required=False)
@click.option("-f", "--follow", is_flag=True, help="keep printing new lines until Ctrl-C")
@click.option("--unit", "unit_id", metavar="ID", help="only this unit's lines (e.g. web-3-1)")
@click.option("-n", "--lines", "--tail", "tail", type=click.IntRange(min=0), help="only the last N lines")
@click.option("--since", help="only lines after this: epoch seconds, ISO 8601, or 10s/5m/2h/1d back")
@click.option("--timestamps", is_flag=True, help="start each line with its time")
@JSON_OPTION
@click.pass_context
def logs(ctx: click.Context, name: str | None, follow: bool, unit_id: str | None, tail: int | None, since: str | None,
         timestamps: bool, as_json: bool) -> None:
    """Show a service's logs (every unit's lines, after the unit's id), or the suite's own when NAME is one
    of its parts (etcd, scheduler, ...) or is left out."""
    if name is None or (name in part_names() and not (follow or unit_id or since or timestamps or as_json)):
        return show_suite_logs(ctx, name, 50 if tail is None else tail)
    params: dict[str, Any] = {"follow": str(follow).lower(), "timestamps": str(timestamps).lower(),
                              "format": "json" if as_json else "text"}
    params.update({k: v for k, v in (("tail", tail), ("since", since)) if v is not None})
    path = f"/services/{name}/units/{unit_id}/logs" if unit_id else f"/services/{name}/logs"
    try:
        for line in orchestrator(ctx).lines(path, params):
            click.echo(line)
    except PazError as exc:
        if exc.exit_code == USAGE and unit_id is None:  # maybe a misspelt part: say those too
            exc.message = f"{exc.message.rstrip('.')}; and no part named {name!r}: the parts are {', '.join(part_names())}."
        raise
    except KeyboardInterrupt:
        pass


@click.command()
@click.option("--service", "name", metavar="NAME", help="only this service's events")
@JSON_OPTION
@click.pass_context
def events(ctx: click.Context, name: str | None, as_json: bool) -> None:
    """Print the suite's events as they happen (Ctrl-C stops); reconnects where the stream left off."""
    paz = orchestrator(ctx)
    last_id: int | None = None
    try:
        while True:
            stream = paz.events(service=name, last_id=last_id)
            if last_id is None:
                click.echo(f"following the events of {name or 'every service'} (Ctrl-C stops)", err=True)
            for kind, data in stream:
                if as_json:
                    click.echo(json.dumps({"event": kind, **data}, sort_keys=True))
                else:
                    details = {k: v for k, v in data.items() if k not in ("id", "type", "service")}
                    click.echo(f"{click.style(kind, bold=True)} {data.get('service') or '-'} {json.dumps(details, sort_keys=True)}")
            last_id = stream.last_id if stream.last_id is not None else last_id
    except (KeyboardInterrupt, requests.RequestException):
        pass


COMMANDS = (services, service, create, config, deploy, rollback, scale, history, logs, events)
