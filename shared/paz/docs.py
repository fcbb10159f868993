"""The suite's documentation site: ``paz docs build`` (mkdocs, strict) and ``paz docs serve``.

The pages a person writes are in ``docs/``; the references are made here from the code at each build,
so they cannot drift: every setting from the services' declarations, every ``paz`` command and option
from click, every route of every service from its OpenAPI document (made by the service's own app
factory and rendered to Markdown by essentials-openapi), and the etcd layout from :mod:`paz.keys`.
Building needs no etcd and no Docker Engine: the apps make their clients on first use.
"""

from __future__ import annotations

import ast
import functools
import inspect
import json
import os
import re
from collections.abc import Iterator
from dataclasses import MISSING, Field, fields
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import click
from mkdocs.commands.build import build as mkdocs_build
from mkdocs.config import load_config
from mkdocs.plugins import BasePlugin
from mkdocs.structure.files import File
from openapidocs.mk.v3 import OpenAPIV3DocumentationHandler

from . import auth, keys, server as paz_server, written
from .registry import declarations
from .service import Service
from .settings import Settings
from .web import create_app, openapi_spec

INDEX = "index.html"
API = "reference/api"

SET_BY_THE_SUITE = {
    written.ENV: "set by a service's server for its workers: the shared memory of its write mark (read your writes)",
    paz_server.GRANIAN_PACKAGE: "set by paz.server for granian's workers: the service package they run",
    paz_server.GRANIAN_PARENT: "set by paz.server for granian's workers: the pid of the server's main process",
    auth.DELEGATED: "set by a service for the calls it makes on behalf of a request (the caller's role travels along)",
}
"""Variables the suite sets for its own processes; never set by hand."""


def build(site: Path, command: click.Group, config: Path = Path("mkdocs.yml")) -> Path:
    """Build the site described by ``config`` into ``site`` in strict mode (any warning fails it), with the
    reference of ``command`` (the ``paz`` command, passed in so that this module does not import it)."""
    loaded = load_config(config_file=os.fspath(config), strict=True, site_dir=os.fspath(site.resolve()))
    loaded.plugins["paz-reference"] = ReferencePages(command)
    mkdocs_build(loaded)
    return site


def server(folder: Path, port: int, host: str = "127.0.0.1") -> ThreadingHTTPServer:
    """An HTTP server (not yet serving) for the built site in ``folder`` on ``host:port``."""
    if not (folder / INDEX).exists():
        raise FileNotFoundError(f"{folder / INDEX} does not exist; run `paz docs build` first")
    handler = functools.partial(SimpleHTTPRequestHandler, directory=os.fspath(folder))
    return ThreadingHTTPServer((host, port), handler)


class ReferencePages(BasePlugin):
    """Adds the generated reference pages (and the OpenAPI documents) to the site's files."""

    def __init__(self, command: click.Group) -> None:
        super().__init__()
        self.command = command

    def on_files(self, files: Any, config: Any) -> Any:
        for path, content in reference_pages(self.command).items():
            files.append(File.generated(config, path, content=content))
        return files


def reference_pages(command: click.Group) -> dict[str, str]:
    """Every generated file of the site, by its path in the site's sources."""
    services = declarations()
    pages = {"reference/settings.md": settings_page(services), "reference/cli.md": cli_page(command),
             "reference/etcd.md": etcd_page(), f"{API}/index.md": api_index(services)}
    for service, spec in zip(services, (openapi_spec(create_app(service)) for service in services)):
        name = f"paz-{service.name}"
        pages[f"{API}/{name}.openapi.json"] = json.dumps(spec, indent=2, sort_keys=True) + "\n"
        pages[f"{API}/{name}.md"] = api_page(name, spec)
    return pages


# --- settings -------------------------------------------------------------------------------------

def settings_page(services: list[Service]) -> str:
    """Every environment variable a service reads, from the settings classes its declaration names."""
    lines = ["# Settings", "", "Made from the services' declarations (`paz.settings` and each service's settings class).",
             "A bad value stops the service at once, naming the variable.", "",
             "## Every service", "", *_settings_table(Settings, {}), "",
             "`PAZ_PORT` defaults to the service's own port: " +
             ", ".join(f"{service.name} {service.port}" for service in services) + ".", ""]
    for service in services:
        own = [spec for spec in fields(service.settings) if spec.name not in {f.name for f in fields(Settings)}]
        overridden = {key: value for key, value in service.defaults.items() if key != "port"}
        if own or overridden:
            lines += [f"## paz-{service.name}", "", *_settings_table(service.settings, overridden, own), ""]
    lines += ["## Set by the suite for its own processes", "", "| variable | meaning |", "| --- | --- |",
              *(f"| `{var}` | {meaning} |" for var, meaning in SET_BY_THE_SUITE.items()),
              "| `PAZ_<NAME>_ADDR` | pins another service's `host:port` instead of reading etcd, e.g. `PAZ_SCHEDULER_ADDR` |", ""]
    return "\n".join(lines)


def _settings_table(cls: type[Settings], overridden: dict[str, Any], only: list[Field] | None = None) -> list[str]:
    meanings = field_docstrings(cls)
    rows = ["| variable | default | meaning |", "| --- | --- | --- |"]
    for spec in only if only is not None else fields(cls):
        var = spec.metadata.get("env")
        if var:
            default = overridden.get(spec.name, spec.default)
            rows.append(f"| `{var}` | {_default(default)} | {_cell(meanings.get(spec.name, ''))} |")
    for name, value in overridden.items():
        if only is not None and name not in {spec.name for spec in only}:
            var = next(spec.metadata["env"] for spec in fields(cls) if spec.name == name)
            rows.append(f"| `{var}` | {_default(value)} | this service's own default |")
    return rows


def field_docstrings(cls: type) -> dict[str, str]:
    """The docstring under each field of dataclass ``cls`` and its bases (the string literal after it)."""
    found: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if klass is object or not hasattr(klass, "__dataclass_fields__"):
            continue
        body = ast.parse(inspect.getsource(klass)).body[0].body  # type: ignore[attr-defined]
        for field_node, after in zip(body, body[1:]):
            if (isinstance(field_node, ast.AnnAssign) and isinstance(field_node.target, ast.Name)
                    and isinstance(after, ast.Expr) and isinstance(after.value, ast.Constant)
                    and isinstance(after.value.value, str)):
                found[field_node.target.id] = inspect.cleandoc(after.value.value)
    return found


def _default(value: Any) -> str:
    if value is MISSING or value in ("", (), 0):
        return ""
    return f"`{','.join(value) if isinstance(value, tuple) else value}`"


def _cell(text: str) -> str:
    return re.sub(r"``([^`]+)``", r"`\1`", " ".join(text.split())).replace("|", "\\|")


# --- the paz command ------------------------------------------------------------------------------

def cli_page(command: click.Group) -> str:
    """Every ``paz`` command and option, from the click group."""
    lines = ["# The paz command", "", "Made from the `paz` command's click declarations (`shared/paz/cli/`).", ""]
    for path, sub in _commands(command, ("paz",)):
        lines += _command_section(path, sub)
    return "\n".join(lines)


def _commands(command: click.Command, path: tuple[str, ...]) -> Iterator[tuple[tuple[str, ...], click.Command]]:
    yield path, command
    if isinstance(command, click.Group):
        context = click.Context(command)
        for name in sorted(command.list_commands(context)):
            sub = command.get_command(context, name)
            if sub is not None:
                yield from _commands(sub, (*path, name))


def _command_section(path: tuple[str, ...], command: click.Command) -> list[str]:
    title = " ".join(path)
    usage = " ".join([title, *command.collect_usage_pieces(click.Context(command))])
    lines = [f"## `{title}`", "", f"```text\n{usage}\n```", "", inspect.cleandoc(command.help or ""), ""]
    options = [param for param in command.params if isinstance(param, click.Option)]
    if options:
        lines += ["| option | default | meaning |", "| --- | --- | --- |", *(_option_row(option) for option in options), ""]
    return lines


def _option_row(option: click.Option) -> str:
    names = ", ".join(f"`{name}`" for name in [*option.opts, *option.secondary_opts])
    envvar = f" (`{option.envvar}`)" if isinstance(option.envvar, str) else ""
    plain = isinstance(option.default, (str, int, float)) and not option.is_flag
    default = option.default if plain else ""
    return f"| {names}{envvar} | {_default(default)} | {_cell(option.help or '')} |"


# --- etcd ------------------------------------------------------------------------------------------

def etcd_page() -> str:
    """The etcd layout: :mod:`paz.keys`'s table, and every key its builders make."""
    lines = ["# The etcd layout", "", "Made from `paz.keys`, the one module that spells a `/paz/...` key.", "",
             _cell_text(keys.__doc__ or ""), "", "## Key builders", "", "| builder | key | meaning |", "| --- | --- | --- |"]
    for name, builder in inspect.getmembers(keys, inspect.isfunction):
        example = _example_key(builder)
        if builder.__module__ == keys.__name__ and example:
            lines.append(f"| `keys.{name}` | `{example}` | {_cell(builder.__doc__ or '')} |")
    return "\n".join([*lines, ""])


def _example_key(builder: Any) -> str | None:
    parameters = inspect.signature(builder).parameters
    try:
        key = builder(*(f"<{name}>" for name in parameters))
    except (TypeError, ValueError):
        return None
    return key if isinstance(key, str) and key.startswith(keys.ROOT) else None


def _cell_text(text: str) -> str:
    return re.sub(r"``([^`]+)``", r"`\1`", inspect.cleandoc(text))


# --- API -------------------------------------------------------------------------------------------

def api_index(services: list[Service]) -> str:
    lines = ["# The services' APIs", "",
             "Made from each service's OpenAPI document, which its own app factory makes from its routes; a running "
             "service serves the same at `GET /openapi.json` and `GET /docs`.", "",
             "| service | port | what it is | OpenAPI document |", "| --- | --- | --- | --- |"]
    lines += [f"| [paz-{s.name}](paz-{s.name}.md) | {s.port} | {s.description} | [paz-{s.name}.openapi.json](paz-{s.name}.openapi.json) |"
              for s in services]
    return "\n".join([*lines, ""])


def api_page(name: str, spec: dict[str, Any]) -> str:
    """One service's routes, rendered from its OpenAPI document by essentials-openapi (no script, no CDN)."""
    body = OpenAPIV3DocumentationHandler(spec, style="MARKDOWN").write()
    body = re.sub(r"^### (Response|Request)", r"#### \1", body, flags=re.MULTILINE)  # below their route, not beside it
    return f"Download: [{name}.openapi.json]({name}.openapi.json)\n\n{body}"
