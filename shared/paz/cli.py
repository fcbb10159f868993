"""The ``paz`` command: run the suite on this machine (``up``, ``down``, ``status``, ``logs``)."""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from pathlib import Path

from . import docs as api_docs
from .auth import ROLES, TokenStore
from .errors import ApiError
from .etcd_client import Etcd, StoreUnavailable
from .etcd_migrate import copy_v2_tree
from .names import DOMAIN
from .settings import SettingsError, parse_endpoints
from .logs import configure_logging
from .supervisor import Supervisor, read_restarts
from .suite import ETCD_URL, HTTP_PORT, STATS_PORT, Suite, docker_answers, make_swarm_manager


def _suite(args: argparse.Namespace) -> Suite:
    return Suite(Path(args.state_dir), driver=getattr(args, "driver", None), etcd_members=getattr(args, "etcd_members", None),
                 etcd_api=getattr(args, "etcd_api", None))


def up(args: argparse.Namespace) -> int:
    suite = _suite(args)
    if args.domain is not None and args.domain and not DOMAIN.match(args.domain):
        print(f"paz up: --domain {args.domain!r} is not a domain name such as example.com", file=sys.stderr)
        return 2
    problems = suite.missing()
    if problems:
        print("paz up: cannot start:\n  " + "\n  ".join(problems), file=sys.stderr)
        return 1
    suite.save_choices()
    docker_host = suite.docker_host
    if docker_host is None or (docker_host != suite.own_docker_host and not docker_answers(docker_host)):
        print(f"paz up: no Docker Engine answers{' at ' + docker_host if docker_host else ''} and none can be started "
              "here (apt-get install docker.io and run paz up as root, or set DOCKER_HOST): everything but deploying "
              "works; deploys answer 503.", file=sys.stderr)
    print(f"etcd API           v{suite.etcd_api}: {suite.etcd_api_reason}")
    tokens_made: list[Path] | None = None
    for part in suite.wanted():
        if part.announced_as and tokens_made is None:
            tokens_made = suite.ensure_tokens()
        if suite.pid(part) is not None:
            print(f"{part.name:<18} already running (pid {suite.pid(part)}) at {part.address}")
            continue
        if part.name == "scheduler" and suite.driver == "swarm" and docker_host:
            print(f"swarm              {swarm_manager(docker_host)}")
        proc = suite.start(part)
        state = suite.wait_ready(part, proc)
        if state is None:
            print(f"paz up: {part.name} did not become ready; see {suite.log_file(part)} (paz logs {part.name})",
                  file=sys.stderr)
            return 1
        print(f"{part.name:<18} started (pid {proc.pid}) at {part.address}" + ("" if state == "healthy" else f", {state}"))
    if args.domain is not None:
        suite.set_domain(args.domain)
        print(f"domain             {args.domain or 'none'} (in etcd at /paz/config/domain)")
    print(f"HAProxy            routing <service>.paz at 127.0.0.1:{HTTP_PORT}, stats at 127.0.0.1:{STATS_PORT}")
    print(f"Docker Engine      {docker_host or 'none: deploys answer 503'}")
    made = "made now" if suite.admin_token_file in (tokens_made or []) else "made before"
    print(f"admin token        in {suite.admin_token_file} ({made}): curl -H \"Authorization: Bearer $(cat {suite.admin_token_file})\" ...")
    print(f"\nstate and logs: {suite.state_dir} (paz status, paz logs [part], paz down)")
    print("try: curl -s http://127.0.0.1:9000/services")
    return 0


def swarm_manager(docker_host: str) -> str:
    """``make_swarm_manager``'s sentence, or why the engine could not be made one (deploys then answer 503)."""
    try:
        return make_swarm_manager(docker_host, os.environ.get("PAZ_SWARM_ADVERTISE_ADDR", "127.0.0.1"))
    except Exception as exc:  # the engine refused or is unreachable: say so, and start the rest
        return f"could not make the Docker Engine at {docker_host} a swarm manager ({exc}): deploys answer 503"


def _tokens(args: argparse.Namespace) -> TokenStore:
    return TokenStore(Etcd(parse_endpoints(args.etcd), 3.0))


def etcd_migrate(args: argparse.Namespace) -> int:
    source = Etcd(parse_endpoints(args.etcd), 5.0, api="2")
    target = Etcd(parse_endpoints(args.to or args.etcd), 5.0, api="3")
    done = copy_v2_tree(source, target)
    print(f"paz etcd migrate: {done.copied} keys copied to the v3 API, {done.unchanged} already there")
    return 0


def token_create(args: argparse.Namespace) -> int:
    secret, record = _tokens(args).create(args.role, args.name)
    print(secret)
    print(f"token {record['id']} ({record['role']}) made; its secret, above, is shown this once", file=sys.stderr)
    return 0


def token_list(args: argparse.Namespace) -> int:
    print(f"{'ID':<14}{'ROLE':<8}{'CREATED':<22}NAME")
    for record in _tokens(args).records():
        print(f"{record['id']:<14}{record['role']:<8}{record['createdAt']:<22}{record['name']}")
    return 0


def token_revoke(args: argparse.Namespace) -> int:
    try:
        record = _tokens(args).revoke(args.token)
    except ApiError as exc:
        print(f"paz token revoke: {exc.message}", file=sys.stderr)
        return 1
    print(f"revoked {record['id']} ({record.get('role')}, {record.get('name') or 'no name'})")
    return 0


def down(args: argparse.Namespace) -> int:
    suite = _suite(args)
    for part in reversed(suite.parts):
        print(f"{part.name:<18} {'stopped' if suite.stop(part) else 'was not running'}")
    return 0


def status(args: argparse.Namespace) -> int:
    suite = _suite(args)
    all_healthy = True
    restarts = read_restarts(suite)
    for part in suite.wanted():
        pid = suite.pid(part)
        state = (suite.probe(part) or "running, not ready") if pid else "stopped"
        all_healthy &= state == "healthy"
        record = restarts.get(part.name)
        restarted = f", restarted {record.count}x (last {record.lastAt})" if record else ""
        print(f"{part.name:<18} {state:<20} {part.address}" + (f" pid {pid}" if pid else "") + restarted)
    return 0 if all_healthy else 1


def supervise(args: argparse.Namespace) -> int:
    configure_logging("paz-supervisor")
    stopping = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stopping.set())
    Supervisor(_suite(args)).run(stopping)
    return 0


def logs(args: argparse.Namespace) -> int:
    suite = _suite(args)
    parts = [suite.part(args.name)] if args.name else suite.parts
    for part in parts:
        path = suite.log_file(part)
        lines = path.read_text(errors="replace").splitlines()[-args.lines:] if path.exists() else []
        for line in lines:
            print(f"{part.name}: {line}")
    return 0


def docs_build(args: argparse.Namespace) -> int:
    try:
        written = api_docs.build(Path(args.dir))
    except (SettingsError, OSError) as exc:
        print(f"paz docs build: {exc}", file=sys.stderr)
        return 1
    for path in written:
        print(f"wrote {path}")
    return 0


def docs_serve(args: argparse.Namespace) -> int:
    try:
        httpd = api_docs.server(Path(args.dir), args.port)
    except (FileNotFoundError, OSError) as exc:
        print(f"paz docs serve: {exc}", file=sys.stderr)
        return 1
    print(f"serving {args.dir}/ at http://127.0.0.1:{args.port}/ (Ctrl-C stops)")
    try:
        httpd.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        httpd.server_close()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="paz", description="Run the paz suite on this machine.")
    parser.add_argument("--state-dir", default=os.environ.get("PAZ_STATE_DIR", ".paz"), help="where pid files, logs and etcd data live (PAZ_STATE_DIR)")
    commands = parser.add_subparsers(dest="command", required=True)
    up_parser = commands.add_parser("up", help="start etcd and the services in the background")
    up_parser.add_argument("--domain", help="route <service>.<domain> for public-facing services (writes /paz/config/domain; '' removes it)")
    up_parser.add_argument("--etcd-members", type=int, choices=(1, 3, 5), default=None,
                           help="run etcd as a cluster of this many members on loopback (default 1; remembered)")
    up_parser.add_argument("--driver", choices=("docker", "swarm"), default=os.environ.get("PAZ_DRIVER") or None,
                           help="the scheduler's runtime (PAZ_DRIVER, default docker); swarm makes the engine a swarm manager")
    up_parser.add_argument("--etcd-api", choices=("2", "3"), default=None,
                           help="etcd's API to speak (PAZ_ETCD_API; default: 3 when the etcd found or started has no v2 API; remembered)")
    up_parser.set_defaults(run=up)
    commands.add_parser("down", help="stop what paz up started").set_defaults(run=down)
    commands.add_parser("supervise", help="(started by paz up) restart parts that exit on their own").set_defaults(run=supervise)
    commands.add_parser("status", help="show each part and its health").set_defaults(run=status)
    logs_parser = commands.add_parser("logs", help="show the last lines of the logs")
    logs_parser.add_argument("name", nargs="?", help="one part, e.g. service-directory")
    logs_parser.add_argument("-n", "--lines", type=int, default=50)
    logs_parser.set_defaults(run=logs)
    token_parser = commands.add_parser("token", help="make, list and revoke API tokens (straight in etcd)")
    etcd_option = argparse.ArgumentParser(add_help=False)
    etcd_option.add_argument("--etcd", default=os.environ.get("PAZ_ETCD_ENDPOINTS", ETCD_URL), help="etcd's URLs (PAZ_ETCD_ENDPOINTS)")
    etcd_parser = commands.add_parser("etcd", help="etcd chores")
    etcd_commands = etcd_parser.add_subparsers(dest="etcd_command", required=True)
    migrate_parser = etcd_commands.add_parser("migrate", parents=[etcd_option],
                                              help="copy the suite's v2 keys (/paz) into v3 keys of the same names; safe to run again")
    migrate_parser.add_argument("--to", default=None, help="the v3 etcd's URLs, when not the same etcd (default: --etcd)")
    migrate_parser.set_defaults(run=etcd_migrate)
    token_commands = token_parser.add_subparsers(dest="token_command", required=True)
    create_parser = token_commands.add_parser("create", parents=[etcd_option], help="make a token and print its secret (once)")
    create_parser.add_argument("--role", choices=ROLES, required=True)
    create_parser.add_argument("--name", default="", help="who or what it is for")
    create_parser.set_defaults(run=token_create)
    token_commands.add_parser("list", parents=[etcd_option], help="every token, without secrets").set_defaults(run=token_list)
    revoke_parser = token_commands.add_parser("revoke", parents=[etcd_option], help="end a token at once")
    revoke_parser.add_argument("token", help="the token's secret or its id")
    revoke_parser.set_defaults(run=token_revoke)
    docs_parser = commands.add_parser("docs", help="build or serve the API documents (docs/)")
    docs_commands = docs_parser.add_subparsers(dest="docs_command", required=True)
    build_parser = docs_commands.add_parser("build", help="write each service's OpenAPI document and index.html")
    serve_parser = docs_commands.add_parser("serve", help="serve the documents on 127.0.0.1")
    serve_parser.add_argument("--port", type=int, default=9090)
    for sub, run in ((build_parser, docs_build), (serve_parser, docs_serve)):
        sub.add_argument("--dir", default="docs", help="the documents' folder (default: docs)")
        sub.set_defaults(run=run)
    args = parser.parse_args(argv)
    try:
        return args.run(args)
    except KeyError as exc:
        print(f"paz: {exc.args[0]}", file=sys.stderr)
        return 2
    except StoreUnavailable as exc:
        print(f"paz: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
