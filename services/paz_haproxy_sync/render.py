"""haproxy.cfg from a :class:`~.model.Table`.

Only validated names and addresses (see :mod:`.model`) and this module's own constants reach the
text. One backend per service (named as the service), chosen by the request's host name:
``<service>.paz`` always, ``<service>.<domain>`` too when the service is public-facing.
"""

from __future__ import annotations

from .model import RouterSettings, Table
from .settings import SyncSettings

UNKNOWN_BACKEND = "paz_unknown"
ACME_BACKEND = "paz_acme"
ACME_PATH = "/.well-known/acme-challenge/"
"""Where an ACME CA asks for an HTTP-01 answer: haproxy-sync's own API answers it from etcd, on every router."""
EXPORTER_PATH = "/metrics"
"""Where HAProxy's built-in Prometheus exporter answers on the stats port."""
ROUTER_PORT = 80
"""The port the router also listens on at ``PAZ_ROUTER_ADDRESS``, where ``http://<service>.paz/`` goes."""
TEXT = 'content-type "text/plain; charset=utf-8"'


def render(table: Table, settings: SyncSettings, servers: bool = True) -> str:
    """The whole config; with ``servers=False`` its structure only (what a runtime change cannot alter)."""
    lines = [*_global(settings), *_frontend(table, settings), *_service_ports(table, settings), *_fixed(settings),
             *_acme_backend(settings)]
    for name in sorted(table.services):
        lines += _backend(table, name, servers)
    return "\n".join(lines) + "\n"


def server_line(name: str, address: str, router: RouterSettings) -> str:
    """What follows ``server`` in the config, and ``add server <backend>/`` on the Runtime API."""
    return f"{name} {address}{server_options(router)}"


def server_options(router: RouterSettings) -> str:
    if router.health is None:
        return ""
    return f" check inter {router.health.interval * 1000} rise 2 fall 2"


def _global(settings: SyncSettings) -> list[str]:
    return [
        "# Written by paz-haproxy-sync from etcd; changes made here are replaced at the next change.",
        "global",
        "    master-worker",
        f"    stats socket {settings.stats_socket} mode 600 level admin expose-fd listeners",
        "    stats timeout 30s",
        "    hard-stop-after 60s",
        "",
        "defaults",
        "    mode http",
        "    option redispatch",
        # An old worker answers the next request on an idle keep-alive connection (with Connection:
        # close) instead of closing it under the client's feet during a reload.
        "    option idle-close-on-response",
        "    retries 3",
        "    timeout connect 3s",
        "    timeout client 30s",
        "    timeout server 60s",
        "    timeout queue 10s",
        "    timeout http-request 10s",
        "    timeout http-keep-alive 10s",
        f'    http-error status 503 {TEXT} string "paz: this service has no live instance right now; '
        'see its units with the orchestrator.\\n"',
        "",
    ]


def _frontend(table: Table, settings: SyncSettings) -> list[str]:
    lines = [
        "frontend paz_router",
        *(f"    bind {address}" for address in router_binds(settings)),
        *_tls_bind(settings),
        "    http-request set-var(txn.host) req.hdr(host),field(1,:),lower",
        *_https_redirect(table, settings),
        f"    use_backend {ACME_BACKEND} if {{ path_beg {ACME_PATH} }}",
    ]
    for name in sorted(table.services, key=lambda n: (n in table.marathon, n)):  # paz's own services win a host name
        hosts = list(table.marathon[name].hosts) if name in table.marathon else [f"{name}.paz", *table.public_names(name)]
        lines.append(f"    use_backend {name} if {{ var(txn.host) -m str {' '.join(hosts)} }}")
    lines += [f"    default_backend {UNKNOWN_BACKEND}", ""]
    return lines


def router_binds(settings: SyncSettings) -> list[str]:
    """``host:port`` the router serves on: ``PAZ_ROUTER_BIND`` and, for containers, port 80 of the
    router address (unless the first already covers it)."""
    binds = [f"{settings.router_bind}:{settings.http_port}"]
    extra = settings.router_listen
    wildcard = settings.router_bind in ("0.0.0.0", "::") and settings.http_port == ROUTER_PORT
    if extra and not wildcard and f"{extra}:{ROUTER_PORT}" not in binds:
        binds.append(f"{extra}:{ROUTER_PORT}")
    return binds


def _tls_bind(settings: SyncSettings) -> list[str]:
    """TLS on ``PAZ_HTTPS_PORT``: SNI picks the certificate from the crt-list (filled at runtime);
    a name without one fails the handshake ("unrecognized name"), never gets another site's."""
    if not settings.https_port:
        return []
    return [f"    bind {settings.router_bind}:{settings.https_port} ssl crt-list {settings.crt_list} strict-sni alpn h2,http/1.1"]


def _https_redirect(table: Table, settings: SyncSettings) -> list[str]:
    """308 to HTTPS, path and query kept, for plain HTTP on a name with a certificate (unless its
    service says ``httpsRedirect: false``); an ACME CA's HTTP-01 request is never redirected."""
    names = sorted(name for name, service in table.https_names().items()
                   if name in table.certified and table.settings_of(service).https_redirect)
    if not settings.https_port or not names:
        return []
    port = "" if settings.https_port == 443 else f":{settings.https_port}"
    return [f"    http-request redirect code 308 location https://%[var(txn.host)]{port}%[capture.req.uri] "
            f"if !{{ ssl_fc }} !{{ path_beg {ACME_PATH} }} {{ var(txn.host) -m str {' '.join(names)} }}"]


def _acme_backend(settings: SyncSettings) -> list[str]:
    host = "127.0.0.1" if settings.host in ("0.0.0.0", "::", "") else settings.host
    return [f"backend {ACME_BACKEND}", f"    server haproxy-sync {host}:{settings.port}", ""]


def _service_ports(table: Table, settings: SyncSettings) -> list[str]:
    """A frontend per Marathon app with a service port (the seed's per-service ``port``)."""
    lines: list[str] = []
    for backend, app in sorted(table.marathon.items()):
        if app.service_port:
            lines += [f"frontend port_{app.service_port}", f"    bind {settings.router_bind}:{app.service_port}",
                      f"    default_backend {backend}", ""]
    return lines


def _fixed(settings: SyncSettings) -> list[str]:
    return [
        f"backend {UNKNOWN_BACKEND}",
        f'    http-request return status 503 {TEXT} lf-string "paz: no service is routed for the host name '
        "'%[var(txn.host)]'. Services answer at <name>.paz (and <name>.<domain> when public-facing).\\n\"",
        "",
        "listen paz_stats",
        f"    bind {settings.router_bind}:{settings.stats_port}",
        # HAProxy's built-in Prometheus exporter: requests, errors and latencies per frontend, backend and server
        f"    http-request use-service prometheus-exporter if {{ path {EXPORTER_PATH} }}",
        "    stats enable",
        "    stats uri /",
        "    stats refresh 5s",
        "",
    ]


def _backend(table: Table, name: str, servers: bool) -> list[str]:
    router = table.settings_of(name)
    lines: list[str] = []
    if router.auth:
        lines += [f"userlist users_{name}"]
        lines += [f"    user {user} password {password_hash}" for user, password_hash in router.auth.users]
        lines += [""]
    lines += [f"backend {name}", "    balance roundrobin"]
    if router.refused:
        lines.append(
            f'    http-request return status 503 {TEXT} string "paz: {name} is not served because its router '
            'settings in the directory cannot be read; fix its basicAuth with PATCH /services/<name>/config.\\n"'
        )
    if router.auth:
        lines.append(f'    http-request auth realm "{router.auth.realm}" unless {{ http_auth(users_{name}) }}')
    if router.health:
        lines += [f"    option httpchk GET {router.health.path}", f"    timeout check {router.health.timeout}s"]
    if servers:
        lines += [f"    server {server_line(i.name, i.address, router)}" for i in table.services[name]]
    return lines + [""]
