"""The dashboard's forms: what a person types, turned into the orchestrator's request bodies, and the
orchestrator's validation errors turned back into messages beside the fields they concern."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from werkzeug.datastructures import MultiDict

from paz.errors import BadRequest

AUTO_DEPLOY = ("never", "always")


def env_text(env: Mapping[str, str]) -> str:
    """``env`` as the lines a person edits: ``KEY=value``, one a line."""
    return "\n".join(f"{key}={value}" for key, value in env.items())


def parse_env(text: str) -> dict[str, str]:
    """``KEY=value`` lines (blank lines skipped); the directory checks the names."""
    env: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        key, sep, value = line.partition("=")
        if not sep or not key.strip():
            raise BadRequest("The form is not valid: see details for each field.",
                             {"env": [f"line {number} is not KEY=value"]})
        env[key.strip()] = value
    return env


def parse_whole(raw: str) -> int | str:
    """A whole number, or ``raw`` itself for the directory to refuse in its own words."""
    try:
        return int(raw.strip())
    except ValueError:
        return raw


def parse_ports(raw: str) -> list[dict[str, Any]]:
    """``8080`` or ``8080:80`` (container, or container:host), separated by commas."""
    ports = []
    for item in (part.strip() for part in raw.split(",") if part.strip()):
        container, _, host = item.partition(":")
        port: dict[str, Any] = {"container": parse_whole(container)}
        if host:
            port["host"] = parse_whole(host)
        ports.append(port)
    return ports


def ports_text(ports: list[dict[str, Any]]) -> str:
    return ", ".join(f"{p['container']}:{p['host']}" if p.get("host") else str(p["container"]) for p in ports)


def new_service(form: Mapping[str, str]) -> dict[str, Any]:
    """The body of ``POST /services`` from the register form."""
    body: dict[str, Any] = {
        "name": form.get("name", "").strip(),
        "description": form.get("description", "").strip(),
        "dockerRepository": form.get("dockerRepository", "").strip(),
        "config": config_of(form),
    }
    return body


def config_of(form: Mapping[str, str]) -> dict[str, Any]:
    """The config keys a form sets: instances, ports, env, a secret, public-facing and auto-deploy."""
    config: dict[str, Any] = {
        "numInstances": parse_whole(form.get("numInstances", "1")),
        "publicFacing": form.get("publicFacing") == "on",
        "autoDeploy": form.get("autoDeploy", "never"),
        "env": parse_env(form.get("env", "")),
    }
    ports = parse_ports(form.get("ports", ""))
    if ports:
        config["ports"] = ports
    secrets = secrets_of(form)
    if secrets:
        config["secrets"] = secrets
    return config


def secrets_of(form: Mapping[str, str]) -> dict[str, str | None]:
    """The secrets a form changes: the boxes ticked to remove one (``removeSecret``, repeated) and the
    one typed (``secretName`` and the password field ``secretValue``; the directory checks the name)."""
    removed = form.getlist("removeSecret") if isinstance(form, MultiDict) else []
    secrets: dict[str, str | None] = {name: None for name in removed}
    name, value = form.get("secretName", "").strip(), form.get("secretValue", "")
    if value and not name:
        raise BadRequest("The form is not valid: see details for each field.", {"secrets": ["give the secret a name"]})
    if name:
        secrets[name] = value
    return secrets


def config_patch(form: Mapping[str, str], current: Mapping[str, Any]) -> dict[str, Any]:
    """The ``PATCH config/next`` body from the edit form: env keys no longer there are removed (null)."""
    patch = config_of(form)
    patch["env"] = {**{key: None for key in current.get("env", {})}, **patch["env"]}
    patch["ports"] = patch.get("ports", [])
    return patch


def field_errors(details: Any) -> dict[str, str]:
    """The API's per-field details as one message per form field (``config`` keys are fields of the form too)."""
    if not isinstance(details, Mapping):
        return {}
    errors: dict[str, str] = {}
    for field, value in details.items():
        if field == "config" and isinstance(value, Mapping):
            errors.update(field_errors(value))
        else:
            errors[field] = " ".join(messages(value))
    return errors


def messages(value: Any) -> list[str]:
    """Every message in a marshmallow error value, nested ones prefixed by where they are."""
    if isinstance(value, Mapping):
        return [f"{key}: {message}" for key, inner in value.items() for message in messages(inner)]
    if isinstance(value, list):
        return [message for inner in value for message in messages(inner)]
    return [str(value)]
