"""Running the suite on this machine: ``paz up``, ``down``, ``status``, ``suite-logs`` and ``docs``."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import click

from ..auth import ROLES, TokenStore
from ..errors import ApiError
from ..etcd import API_VERSIONS, StoreUnavailable, connect
from ..etcd_migrate import copy_v2_tree
from ..names import DOMAIN
from ..registry import declarations
from ..secrets import ensure_key_file, rotate
from ..settings import SettingsError, parse_endpoints
from ..suite import ETCD_URL, HTTP_PORT, HTTPS_PORT, STATS_PORT, Part, Suite, docker_answers, make_swarm_manager
from ..supervisor import read_restarts
from ..waiting import poll
from .client import etcd_of
from .output import FAILED, UNREACHABLE, USAGE, PazError

T = TypeVar("T")


def part_names() -> list[str]:
    """The parts ``paz up`` runs, by name, without asking anything of the machine."""
    return ["etcd", "docker", *(service.name for service in declarations()), "registry", "supervisor"]


def suite_of(ctx: click.Context, driver: str | None = None, etcd_members: int | None = None,
             etcd_api: str | None = None, prometheus: bool | None = None, registry: bool | None = None) -> Suite:
    return Suite(Path(ctx.obj["state_dir"]), driver=driver, etcd_members=etcd_members, etcd_api=etcd_api,
                 prometheus=prometheus, registry=registry)


@click.command()
@click.option("--domain", help="route <service>.<domain> for public-facing services (writes /paz/config/domain; '' removes it)")
@click.option("--driver", type=click.Choice(["docker", "swarm"]), envvar="PAZ_DRIVER", default=None,
              help="the scheduler's runtime (PAZ_DRIVER, default docker); swarm makes the engine a swarm manager")
@click.option("--etcd-members", type=click.Choice(["1", "3", "5"]), default=None,
              help="run etcd as a cluster of this many members on loopback (default 1; remembered)")
@click.option("--etcd-api", type=click.Choice(API_VERSIONS), default=None,
              help="etcd's API the services use (default: PAZ_ETCD_API, else the last choice, else 3)")
@click.option("--prometheus/--no-prometheus", default=None,
              help="also run Debian's prometheus on 127.0.0.1:9090, scraping every part (remembered)")
@click.option("--registry/--no-registry", default=None,
              help="run the suite's image registry (Debian's docker-registry at PAZ_REGISTRY_ADDR, default 127.0.0.1:5000; "
                   "remembered): docker push deploys, images kept for rollback")
@click.pass_context
def up(ctx: click.Context, domain: str | None, driver: str | None, etcd_members: str | None, etcd_api: str | None,
       prometheus: bool | None, registry: bool | None) -> None:
    """Start etcd and the services in the background, supervised."""
    suite = suite_of(ctx, driver or None, int(etcd_members) if etcd_members else None, etcd_api, prometheus, registry)
    if domain and not DOMAIN.fullmatch(domain):
        raise PazError(f"--domain {domain!r} is not a domain name such as example.com", USAGE)
    # Parts that do not need one another start together: etcd first (it needs nothing, and boots while
    # paz up reads every service's declaration), with the engine; the services once etcd answers (those
    # given the engine's bridge address once it answers too); then the supervisor.
    starting = _start_etcd(suite)
    suite.save_choices()
    docker_host = suite.docker_host
    click.echo(f"etcd API           v{suite.etcd_api}: {suite.etcd_api_reason}")
    key_made = ensure_key_file(suite.secrets_key_file)
    wanted = suite.wanted()
    stores = [*suite.etcd_parts, *(part for part in wanted if part.name == "docker")]
    services = [part for part in wanted if part.announced_as]
    beside_docker = [part for part in services if not suite.asks_docker(part)]
    after_docker = [part for part in services if suite.asks_docker(part)]
    starting.update(_start(suite, [part for part in stores if part not in suite.etcd_parts]))
    if docker_host is None or (docker_host != suite.own_docker_host and not docker_answers(docker_host)):  # while etcd starts
        click.echo(f"paz up: no Docker Engine answers{' at ' + docker_host if docker_host else ''} and none can be started "
                   "here (apt-get install docker.io and run paz up as root, or set DOCKER_HOST): everything but deploying "
                   "works; deploys answer 503.", err=True)
    _wait_ready(suite, starting, lambda part: part.name.startswith("etcd"))
    tokens_made = suite.ensure_tokens()
    starting.update(_start(suite, beside_docker))
    _wait_ready(suite, starting, lambda part: part.name == "docker")
    if suite.driver == "swarm" and docker_host and any(part.name == "scheduler" for part in after_docker):
        click.echo(f"swarm              {swarm_manager(docker_host)}")
    starting.update(_start(suite, after_docker))
    _wait_ready(suite, starting, lambda part: part in services)
    _wait_ready(suite, _start(suite, [part for part in wanted if part not in stores + services]), lambda part: True)
    _wait_routed(suite)
    if domain is not None:
        suite.set_domain(domain)
        click.echo(f"domain             {domain or 'none'} (in etcd at /paz/config/domain)")
    click.echo(f"HAProxy            routing <service>.paz at 127.0.0.1:{HTTP_PORT}, HTTPS at 127.0.0.1:{HTTPS_PORT}, "
               f"stats at 127.0.0.1:{STATS_PORT}")
    click.echo(f"Docker Engine      {docker_host or 'none: deploys answer 503'}")
    if suite.prometheus:
        click.echo(f"Prometheus         http://{suite.part('prometheus').address}/ (targets: the orchestrator's /prometheus/targets)")
    if suite.registry:
        click.echo(f"registry           {suite.registry_address}: docker login {suite.registry_address} -u paz "
                   "(a paz token as the password); paz push SERVICE builds, pushes and deploys")
    _echo_dns(suite.router_address)
    made = "made now" if suite.admin_token_file in (tokens_made or []) else "made before"
    click.echo(f"admin token        in {suite.admin_token_file} ({made}; paz uses it from here)")
    click.echo(f"secrets key        in {suite.secrets_key_file} ({'made now' if key_made else 'made before'}; "
               "keep it: secrets cannot be read without it)")
    click.echo(f"\nstate and logs: {suite.state_dir} (paz status, paz suite-logs [part], paz down)")
    click.echo("try: paz services   (or curl -s http://127.0.0.1:9000/services)")


def _start_etcd(suite: Suite) -> dict[str, tuple[Part, subprocess.Popen[bytes]]]:
    """Start etcd's members, then check that every other part is installed (which reads the services'
    declarations while etcd boots); a missing one stops the members started here."""
    _need_installed(suite, suite.etcd_parts)
    starting = _start(suite, suite.etcd_parts)
    try:
        _need_installed(suite)
    except PazError:
        for part, _ in starting.values():
            suite.stop(part)
        raise
    return starting


def _need_installed(suite: Suite, parts: list[Part] | None = None) -> None:
    """Fail, naming how to install them, when programs of ``parts`` (else of every part wanted) are missing."""
    problems = suite.missing(parts)
    if problems:
        raise PazError("cannot start:\n  " + "\n  ".join(problems), FAILED)


def _start(suite: Suite, parts: list[Part]) -> dict[str, tuple[Part, subprocess.Popen[bytes]]]:
    """Start each of ``parts`` that is not running, without waiting: ``{name: (part, process)}``."""
    started = {}
    for part in parts:
        pid = suite.pid(part)
        if pid is not None:
            click.echo(f"{part.name:<18} already running (pid {pid}) at {part.address}")
        else:
            started[part.name] = (part, suite.start(part))
    return started


def _wait_ready(suite: Suite, starting: dict[str, tuple[Part, subprocess.Popen[bytes]]], which: Callable[[Part], bool]) -> None:
    """Wait until each started part that ``which`` selects is ready, say so, and forget it."""
    for name, (part, proc) in list(starting.items()):
        if not which(part):
            continue
        state = suite.wait_ready(part, proc)
        if state is None:
            raise PazError(f"{part.name} did not become ready; see {suite.log_file(part)} (paz suite-logs {part.name})")
        click.echo(f"{part.name:<18} started (pid {proc.pid}) at {part.address}" + ("" if state == "healthy" else f", {state}"))
        del starting[name]


def _wait_routed(suite: Suite, timeout: float = 10.0) -> None:
    """Wait until HAProxy routes each of the suite's services' ``<service>.paz`` (announced is not yet routed: haproxy-sync
    applies the key a moment later), so what paz up prints works at once; say which it does not."""
    if not poll(lambda: not suite.unrouted(), timeout, 0.05):
        click.echo(f"paz up: HAProxy does not route {', '.join(suite.unrouted())} after {timeout:.0f} s; "
                   f"see {suite.log_file(suite.part('haproxy-sync'))} (paz suite-logs haproxy-sync)", err=True)


def _echo_dns(address: str | None) -> None:
    """Where the suite's name server answers, and how to send a host's ``.paz`` queries (only those) to it."""
    if not address:
        click.echo("DNS                none: no Docker Engine bridge to serve <service>.paz on (set PAZ_ROUTER_ADDRESS)")
        return
    click.echo(f"DNS                <service>.paz -> {address} (the router on {address}:80), name server {address}:53;")
    click.echo(f"                   containers use it; for this host's .paz only: resolvectl dns docker0 {address} "
               "&& resolvectl domain docker0 '~paz'")


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
    restarts = read_restarts(suite.state_dir)
    for part in suite.wanted():
        pid = suite.pid(part)
        state = (suite.probe(part) or "running, not ready") if pid else "stopped"
        all_healthy &= state == "healthy"
        record = restarts.get(part.name)
        restarted = f", restarted {record.count}x (last {record.lastAt})" if record else ""
        role = suite.leadership(part) if pid else ""
        click.echo(f"{part.name:<18} {state:<20} {part.address}" + (f" pid {pid}" if pid else "") + restarted
                   + (f", {role}" if role else ""))
    ctx.exit(0 if all_healthy else FAILED)


ETCD_OPTION = click.option("--etcd", envvar="PAZ_ETCD_ENDPOINTS", default=ETCD_URL, show_default=True,
                           help="etcd's URLs (PAZ_ETCD_ENDPOINTS)")


def token_store(etcd: str) -> TokenStore:
    return TokenStore(etcd_of(etcd, 3.0))


@click.group()
def token() -> None:
    """Make, list and revoke API tokens, straight in etcd (no token needed: whoever reaches etcd may)."""


@token.command("create")
@click.option("--role", type=click.Choice(ROLES), required=True)
@click.option("--name", default="", help="who or what it is for")
@ETCD_OPTION
def token_create(role: str, name: str, etcd: str) -> None:
    """Make a token and print its secret (shown this once; etcd keeps only its SHA-256)."""
    secret, record = _in_etcd(etcd, lambda store: store.create(role, name))
    click.echo(secret)
    click.echo(f"token {record['id']} ({record['role']}) made; its secret, above, is shown this once", err=True)


@token.command("list")
@ETCD_OPTION
def token_list(etcd: str) -> None:
    """Every token, without secrets."""
    click.echo(f"{'ID':<14}{'ROLE':<8}{'CREATED':<22}NAME")
    for record in _in_etcd(etcd, TokenStore.records):
        click.echo(f"{record['id']:<14}{record['role']:<8}{record['createdAt']:<22}{record['name']}")


@token.command("revoke")
@click.argument("token_or_id")
@ETCD_OPTION
def token_revoke(token_or_id: str, etcd: str) -> None:
    """End a token at once, given its secret or its id."""
    record = _in_etcd(etcd, lambda store: store.revoke(token_or_id))
    click.echo(f"revoked {record['id']} ({record.get('role')}, {record.get('name') or 'no name'})")


@click.group("secrets")
def secrets_group() -> None:
    """The key that seals services' secrets."""


KEY_FILE_OPTION = click.option("--key-file", envvar="PAZ_SECRETS_KEY_FILE", type=click.Path(path_type=Path),
                               help="the key file the services use (PAZ_SECRETS_KEY_FILE; default: secrets.key in the state folder)")


@secrets_group.command("init")
@KEY_FILE_OPTION
@click.pass_context
def secrets_init(ctx: click.Context, key_file: Path | None) -> None:
    """Make a key file (mode 0600) unless there is one: for compose and fleet hosts (paz up makes its own)."""
    path = key_file or Path(ctx.obj["state_dir"]) / "secrets.key"
    made = ensure_key_file(path)
    click.echo(f"{'made' if made else 'kept'} the secrets key file {path}" + ("" if made else " (it was there)"))


@secrets_group.command("rotate")
@KEY_FILE_OPTION
@ETCD_OPTION
@click.pass_context
def secrets_rotate(ctx: click.Context, key_file: Path | None, etcd: str) -> None:
    """Re-seal everything sealed in etcd (secrets of services, versions and deploys; certificates' keys) under a new key, and keep only it.

    The services keep running: they read the key file again when it changes, and open secrets with
    either key while the new one is being written. Run it where the key file is.
    """
    path = key_file or Path(ctx.obj["state_dir"]) / "secrets.key"
    try:
        count = rotate(etcd_of(etcd, 3.0), path)
    except SettingsError as exc:
        raise PazError(str(exc), USAGE) from None
    except StoreUnavailable as exc:
        raise PazError(str(exc), UNREACHABLE) from None
    click.echo(f"re-sealed {count} etcd value(s) under a new key, now alone in {path}")


def _in_etcd(etcd: str, action: Callable[[TokenStore], T]) -> T:
    try:
        return action(token_store(etcd))
    except StoreUnavailable as exc:
        raise PazError(str(exc), UNREACHABLE) from None
    except ApiError as exc:
        raise PazError(exc.message, FAILED) from None


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
    """Build or serve the documentation site (docs/ and the references made from the code)."""


SITE_OPTION = click.option("--site", "site", default="site", show_default=True, type=click.Path(path_type=Path),
                           help="the built site's folder")


@docs.command("build")
@SITE_OPTION
@click.option("--config", default="mkdocs.yml", show_default=True, type=click.Path(path_type=Path),
              help="the site's mkdocs configuration (its pages are in its docs_dir)")
@click.pass_context
def docs_build(ctx: click.Context, site: Path, config: Path) -> None:
    """Build the site with mkdocs in strict mode: a broken link or a missing page fails it."""
    from mkdocs.exceptions import MkDocsException

    from .. import docs as site_docs

    try:
        site_docs.build(site, ctx.find_root().command, config)
    except (SettingsError, OSError, MkDocsException) as exc:
        raise PazError(str(exc) or "the site has warnings (strict mode): see above") from None
    click.echo(f"built {site}/ (open {site}/index.html, or run paz docs serve)")


@docs.command("serve")
@SITE_OPTION
@click.option("--port", type=int, default=8000, show_default=True)
def docs_serve(site: Path, port: int) -> None:
    """Serve the built site on 127.0.0.1 (offline: every file is local)."""
    from .. import docs as site_docs

    try:
        httpd = site_docs.server(site, port)
    except OSError as exc:
        raise PazError(str(exc)) from None
    click.echo(f"serving {site}/ at http://127.0.0.1:{port}/ (Ctrl-C stops)")
    try:
        httpd.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        httpd.server_close()


@click.group("etcd")
def etcd_group() -> None:
    """etcd's data: moving from the v2 API to v3."""


@etcd_group.command("migrate")
@ETCD_OPTION
@click.option("--to", default=None, help="the v3 etcd's URLs, when not the same etcd (default: --etcd)")
def etcd_migrate(etcd: str, to: str | None) -> None:
    """Copy the /paz tree of etcd's v2 API into v3 keys of the same names (safe to run again)."""
    try:
        source = connect(parse_endpoints(etcd), 5.0, api="2")
        target = connect(parse_endpoints(to or etcd), 5.0, api="3")
        done = copy_v2_tree(source, target)
    except SettingsError as exc:
        raise PazError(str(exc), USAGE) from None
    except StoreUnavailable as exc:
        raise PazError(str(exc), UNREACHABLE) from None
    click.echo(f"paz etcd migrate: {done.copied} keys copied to the v3 API, {done.unchanged} already there")


COMMANDS = (up, down, status, suite_logs, token, secrets_group, etcd_group, docs)
