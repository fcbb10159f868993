"""``paz push SERVICE [DIR]``: build ``DIR/Dockerfile`` on the Docker Engine, push it to the suite's
registry as ``<registry>/<service>:<next version>`` and deploy it, showing each step.

A service that follows ``<registry>/<service>`` with autoDeploy ``always`` is deployed by the
registry's notification (:mod:`paz.image_registry`); ``paz push`` then follows that deploy instead of
asking for a second one. Any other service is deployed with the pushed image explicitly.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click
import docker
import requests
from docker.utils import parse_repository_tag

from .. import image_registry
from ..suite import Suite
from .output import FAILED, UNREACHABLE, USAGE, PazError, done, step
from .registry_commands import registry_address
from .workflow import JSON_OPTION, orchestrator, watched_deploy, watched_version

NOTIFIED_SECONDS = 30.0
"""How long a push to a service that deploys on pushes may take to become its version (the registry's notification)."""
QUIET_PUSH_STATUSES = ("Preparing", "Waiting", "Pushing")


@click.command()
@click.argument("name")
@click.argument("folder", default=".", type=click.Path(path_type=Path, file_okay=False))
@JSON_OPTION
@click.pass_context
def push(ctx: click.Context, name: str, folder: Path, as_json: bool) -> None:
    """Build FOLDER's Dockerfile (default .), push it to the suite's registry as <registry>/NAME:<next
    version> and deploy it, showing the build, the push and the deploy."""
    if not (folder / "Dockerfile").is_file():
        raise PazError(f"{folder} has no Dockerfile: give the folder to build (paz push {name} DIR).", USAGE)
    paz = orchestrator(ctx)
    document = paz.json("GET", f"/services/{name}")
    address = registry_address()
    reachable(address)
    history = paz.json("GET", f"/services/{name}/config/history")
    image = f"{address}/{name}:{(history[0]['version'] if history else 0) + 1}"
    engine = docker_engine(ctx)
    say = (lambda _text: None) if as_json else step
    built(engine, folder, image, say)
    pushed(engine, image, ctx.obj["token"] or "", say)
    if follows_pushes(document, address):
        answer = watched_version(ctx, name, lambda: notified_version(ctx, name, image), as_json)
    else:
        answer = watched_deploy(ctx, name, f"/services/{name}/deploy", {"dockerRepository": image}, as_json)
    done(f"pushed and deployed {name} v{answer['version']} ({image})")


def reachable(address: str) -> None:
    """A PazError (exit 3, as a 503 would give) when the registry does not answer."""
    try:
        requests.get(f"http://{address}/v2/", timeout=5)
    except requests.RequestException:
        raise PazError(f"The suite's registry {image_registry.NAME} at {address} does not answer: start it with "
                       "paz up --registry (or set PAZ_REGISTRY_ADDR).", UNREACHABLE) from None


def docker_engine(ctx: click.Context) -> docker.DockerClient:
    """The engine that builds: ``DOCKER_HOST``, else the one paz up uses."""
    host = os.environ.get("DOCKER_HOST") or Suite(Path(ctx.obj["state_dir"])).docker_host
    try:
        client = docker.DockerClient(base_url=host, timeout=600) if host else docker.from_env(timeout=600)
        client.ping()
    except (docker.errors.DockerException, requests.RequestException) as exc:
        raise PazError(f"The Docker Engine at {host or 'the default socket'} does not answer ({exc}): start it, or set "
                       "DOCKER_HOST.", UNREACHABLE) from None
    return client


def _messages(stream: Iterator[dict[str, Any]], what: str) -> Iterator[dict[str, Any]]:
    """The engine's JSON messages, with its error (``{"error": ...}``) raised as a PazError (exit 1)."""
    try:
        for message in stream:
            if message.get("error"):
                raise PazError(f"{what} failed: {str(message['error']).strip()}", FAILED)
            yield message
    except docker.errors.APIError as exc:
        raise PazError(f"{what} failed: {exc.explanation or exc}", FAILED) from None


def built(engine: docker.DockerClient, folder: Path, image: str, say: Any) -> None:
    """Build ``folder`` as ``image`` with the engine's own builder, showing its steps."""
    say(f"building {folder} as {image}")
    stream = engine.api.build(path=str(folder), tag=image, rm=True, forcerm=True, decode=True)
    for message in _messages(stream, "The build"):
        text = str(message.get("stream") or "").rstrip()
        if text:
            say(f"  {text}")


def pushed(engine: docker.DockerClient, image: str, token: str, say: Any) -> None:
    """Push ``image`` with ``token`` as the registry password, showing each layer once it is there."""
    repository, tag = parse_repository_tag(image)
    say(f"pushing {image}")
    credentials = {"username": image_registry.USER, "password": token}
    stream = engine.api.push(repository, tag=tag, stream=True, decode=True, auth_config=credentials)
    for message in _messages(stream, "The push"):
        status = str(message.get("status") or "")
        if status and status not in QUIET_PUSH_STATUSES:
            say(f"  {message['id']}: {status}" if message.get("id") else f"  {status}")


def follows_pushes(document: dict[str, Any], address: str) -> bool:
    """Whether a push to ``<address>/<name>`` deploys the service by itself (the registry's notification)."""
    repository = parse_repository_tag(document.get("dockerRepository") or "")[0]
    return repository == f"{address}/{document['name']}" and (document.get("config") or {}).get("autoDeploy") == "always"


def notified_version(ctx: click.Context, name: str, image: str) -> dict[str, Any]:
    """The version the registry's notification made of ``image``, once the scheduler took it."""
    paz = orchestrator(ctx)
    deadline = time.monotonic() + NOTIFIED_SECONDS
    while time.monotonic() < deadline:
        found = next((v for v in paz.json("GET", f"/services/{name}/config/history") if v.get("dockerRepository") == image), None)
        if found:
            return found
        time.sleep(0.25)
    raise PazError(f"{image} was pushed, but no deploy of it began within {NOTIFIED_SECONDS:g}s: is the registry's "
                   f"notification reaching the scheduler? (paz logs registry); paz deploy {name} {image} deploys it.")
