"""Running the suite on this machine: ``paz up``, ``down``, ``status``, ``suite-logs`` and ``docs``."""

from __future__ import annotations

import os
from pathlib import Path

import click

from .. import docs as api_docs
from ..names import DOMAIN
from ..registry import declarations
from ..settings import SettingsError
from ..suite import HTTP_PORT, STATS_PORT, Suite, docker_answers, make_swarm_manager
from .output import FAILED, USAGE, PazError


def part_names() -> list[str]:
    """The parts ``paz up`` runs, by name, without asking anything of the machine."""
    return ["etcd", "docker", *(service.name for service in declarations())]


def suite_of(ctx: click.Context, driver: str | None = None) -> Suite:
    return Suite(Path(ctx.obj["state_dir"]), driver=driver)


@click.command()
@click.option("--domain", help="route <service>.<domain> for public-facing services (writes /paz/config/domain; '' removes it)")
@click.option("--driver", type=click.Choice(["docker", "swarm"]), envvar="PAZ_DRIVER", default=None,
              help="the scheduler's runtime (PAZ_DRIVER, default docker); swarm makes the engine a swarm manager")
@click.pass_context
def up(ctx: click.Context, domain: str | None, driver: str | None) -> None:
    """Start etcd and the services in the background."""
    suite = suite_of(ctx, driver or None)
    if domain and not DOMAIN.match(domain):
        raise PazError(f"--domain {domain!r} is not a domain name such as example.com", USAGE)
    problems = suite.missing()
    if problems:
        raise PazError("cannot start:\n  " + "\n  ".join(problems), FAILED)
    docker_host = suite.docker_host
    if docker_host is None or (docker_host != suite.own_docker_host and not docker_answers(docker_host)):
        click.echo(f"paz up: no Docker Engine answers{' at ' + docker_host if docker_host else ''} and none can be started "
                   "here (apt-get install docker.io and run paz up as root, or set DOCKER_HOST): everything but deploying "
                   "works; deploys answer 503.", err=True)
    for part in suite.wanted():
        if suite.pid(part) is not None:
            click.echo(f"{part.name:<18} already running (pid {suite.pid(part)}) at {part.address}")
            continue
        if part.name == "scheduler" and suite.driver == "swarm" and docker_host:
            click.echo(f"swarm              {swarm_manager(docker_host)}")
        proc = suite.start(part)
        state = suite.wait_ready(part, proc)
        if state is None:
            raise PazError(f"{part.name} did not become ready; see {suite.log_file(part)} (paz suite-logs {part.name})")
        click.echo(f"{part.name:<18} started (pid {proc.pid}) at {part.address}" + ("" if state == "healthy" else f", {state}"))
    if domain is not None:
        suite.set_domain(domain)
        click.echo(f"domain             {domain or 'none'} (in etcd at /paz/config/domain)")
    click.echo(f"HAProxy            routing <service>.paz at 127.0.0.1:{HTTP_PORT}, stats at 127.0.0.1:{STATS_PORT}")
    click.echo(f"Docker Engine      {docker_host or 'none: deploys answer 503'}")
    click.echo(f"\nstate and logs: {suite.state_dir} (paz status, paz suite-logs [part], paz down)")
    click.echo("try: paz services   (or curl -s http://127.0.0.1:9000/services)")


def swarm_manager(docker_host: str) -> str:
    """``make_swarm_manager``'s sentence, or why the engine could not be made one (deploys then answer 503)."""
    try:
        return make_swarm_manager(docker_host, os.environ.get("PAZ_SWARM_ADVERTISE_ADDR", "127.0.0.1"))
    except Exception as exc:  # the engine refused or is unreachable: say so, and start the rest
        return f"could not make the Docker Engine at {docker_host} a swarm manager ({exc}): deploys answer 503"


@click.command()
@click.pass_context
def down(ctx: click.Context) -> None:
    """Stop what paz up started."""
    suite = suite_of(ctx)
    for part in reversed(suite.parts):
        click.echo(f"{part.name:<18} {'stopped' if suite.stop(part) else 'was not running'}")


@click.command()
@click.pass_context
def status(ctx: click.Context) -> None:
    """Show each part and its health (exit 1 when one is not healthy)."""
    suite = suite_of(ctx)
    all_healthy = True
    for part in suite.wanted():
        pid = suite.pid(part)
        state = (suite.probe(part) or "running, not ready") if pid else "stopped"
        all_healthy &= state == "healthy"
        click.echo(f"{part.name:<18} {state:<20} {part.address}" + (f" pid {pid}" if pid else ""))
    ctx.exit(0 if all_healthy else FAILED)


def show_suite_logs(ctx: click.Context, name: str | None, lines: int) -> None:
    """The last ``lines`` lines of one part's log (or of every part's), each after its part's name."""
    suite = suite_of(ctx)
    try:
        parts = [suite.part(name)] if name else suite.parts
    except KeyError as exc:
        raise PazError(exc.args[0], USAGE) from None
    for part in parts:
        path = suite.log_file(part)
        for line in path.read_text(errors="replace").splitlines()[-lines:] if path.exists() else []:
            click.echo(f"{part.name}: {line}")


@click.command("suite-logs")
@click.argument("part", required=False)
@click.option("-n", "--lines", type=click.IntRange(min=0), default=50, show_default=True)
@click.pass_context
def suite_logs(ctx: click.Context, part: str | None, lines: int) -> None:
    """Show the last lines of the suite's own logs (one PART, e.g. scheduler, or all)."""
    show_suite_logs(ctx, part, lines)


@click.group()
def docs() -> None:
    """Build or serve the API documents (docs/)."""


DIR_OPTION = click.option("--dir", "folder", default="docs", show_default=True, type=click.Path(path_type=Path),
                          help="the documents' folder")


@docs.command("build")
@DIR_OPTION
def docs_build(folder: Path) -> None:
    """Write each service's OpenAPI document and index.html."""
    try:
        written = api_docs.build(folder)
    except (SettingsError, OSError) as exc:
        raise PazError(str(exc)) from None
    for path in written:
        click.echo(f"wrote {path}")


@docs.command("serve")
@DIR_OPTION
@click.option("--port", type=int, default=9090, show_default=True)
def docs_serve(folder: Path, port: int) -> None:
    """Serve the documents on 127.0.0.1."""
    try:
        httpd = api_docs.server(folder, port)
    except OSError as exc:
        raise PazError(str(exc)) from None
    click.echo(f"serving {folder}/ at http://127.0.0.1:{port}/ (Ctrl-C stops)")
    try:
        httpd.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        httpd.server_close()


COMMANDS = (up, down, status, suite_logs, docs)
