"""Settings read from environment variables; the site's settings reference is made from these declarations.

Each field names its variable and its parser; a service that needs more settings subclasses
:class:`Settings` in its declaration and adds fields the same way, with the parsers of this module
(every rule for a setting's value lives here: one for seconds, one for booleans, ...). A bad value
is a :class:`SettingsError` that names the variable, the value and what was expected, raised before
anything starts.

Why not environs or pydantic-settings: a field here is one line naming its variable, parser and
default, errors already name the variable, and the services' settings are frozen dataclasses that
a companion process rebuilds from the same environment; a library would add a dependency without
removing code.
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from . import etcd


class SettingsError(ValueError):
    """An environment variable holds a value the suite cannot use."""


def _number(convert: Callable[[str], Any], accept: Callable[[Any], bool], expected: str) -> Callable[[str], Any]:
    """A parser of numbers made by ``convert`` that ``accept`` allows; ``expected`` says which otherwise."""

    def parse(raw: str) -> Any:
        value = convert(raw)
        if not accept(value):
            raise ValueError(expected)
        return value

    return parse


parse_port = _number(int, lambda port: 0 < port < 65536, "a port is a whole number from 1 to 65535")
parse_port_or_off = _number(int, lambda port: 0 <= port < 65536, "a port is a whole number from 1 to 65535 (0: off)")
parse_positive_int = _number(int, lambda value: value >= 1, "expected a whole number of at least 1")
parse_positive_float = _number(float, lambda value: value > 0, "expected a number above 0")
parse_seconds = _number(float, lambda value: value >= 0, "expected a number of seconds, 0 or more")


def parse_seconds_up_to(limit: float) -> Callable[[str], float]:
    """A parser of seconds above 0 and at most ``limit``."""

    def parse(raw: str) -> float:
        value = parse_positive_float(raw)
        if value > limit:
            raise ValueError(f"expected a number of seconds above 0, at most {limit:g}")
        return value

    return parse


_TRUE, _FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off")


def parse_bool(raw: str) -> bool:
    if raw.lower() not in _TRUE + _FALSE:
        raise ValueError("expected true or false")
    return raw.lower() in _TRUE


def parse_choice(*choices: str) -> Callable[[str], str]:
    """A parser accepting exactly one of ``choices``."""

    def parse(raw: str) -> str:
        if raw not in choices:
            raise ValueError(f"expected {' or '.join(choices)}")
        return raw

    return parse


def parse_url(raw: str) -> str:
    if not re.match(r"^https?://[^\s/]+(/\S*)?\Z", raw):
        raise ValueError("expected http://host:port")
    return raw.rstrip("/")


def parse_secret(raw: str) -> str:
    if len(raw) < 16:
        raise ValueError("a secret of at least 16 characters")
    return raw


def parse_path(raw: str) -> str:
    return str(Path(raw).expanduser())


_LABEL_KEY = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/-]{0,127}\Z")
RESERVED_LABELS = ("paz.service", "paz.version", "paz.instance", "paz.port")


def parse_labels(raw: str) -> tuple[tuple[str, str], ...]:
    """``k=v,k2=v2`` into pairs; the ``paz.`` labels the scheduler sets itself cannot be given."""
    pairs = []
    for item in (part.strip() for part in raw.split(",") if part.strip()):
        key, sep, value = item.partition("=")
        if not sep or not _LABEL_KEY.match(key) or any(c in value for c in "\n\r\0"):
            raise ValueError(f"{item!r} is not key=value (keys: letters, digits, '.', '_', '/', '-')")
        if key in RESERVED_LABELS:
            raise ValueError(f"{key} is set by the scheduler itself")
        pairs.append((key, value))
    return tuple(pairs)


def parse_readable_file(raw: str) -> str:
    path = Path(raw).resolve()
    if not path.is_file() or not os.access(path, os.R_OK):
        raise ValueError(f"{path} is not a file this process can read")
    return str(path)


_SOCKET_PATH_MAX = 97
"""HAProxy's limit on a socket's path (the kernel's is 107 bytes; HAProxy binds a longer temporary name first)."""


def parse_socket_dir(raw: str) -> str:
    """A folder that will hold Unix sockets (``master.sock``, ``stats.sock``): short enough for their paths."""
    path = Path(raw).resolve()
    if len(str(path / "master.sock")) > _SOCKET_PATH_MAX:
        raise ValueError(f"{path} is too long for Unix sockets inside it; use a shorter folder")
    return str(path)


_HOSTNAME = re.compile(r"^(?=.{1,253}\Z)[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\Z")


def parse_host(raw: str) -> str:
    try:
        return str(ipaddress.ip_address(raw))
    except ValueError:
        if _HOSTNAME.match(raw):
            return raw
    raise ValueError("expected an IP address or a host name")


def parse_ip(raw: str) -> str:
    """An IP address, or the empty string for none."""
    try:
        return str(ipaddress.ip_address(raw)) if raw else ""
    except ValueError:
        raise ValueError("expected an IP address") from None


DEFAULT_REGISTRY_ADDRESS = "127.0.0.1:5000"


def parse_host_port(raw: str) -> str:
    """``host:port`` (an IPv4 address or a host name, and a port), as a registry's address is written."""
    host, colon, port = raw.rpartition(":")
    if not colon:
        raise ValueError("expected host:port, e.g. 127.0.0.1:5000")
    return f"{parse_host(host)}:{parse_port(port)}"


def parse_ip_ports(raw: str) -> tuple[tuple[str, int], ...]:
    """``10.0.0.2,127.0.0.1:5353`` into ``(address, port)`` pairs, port 53 unless given (IPv4 only then)."""
    pairs = []
    for item in (part.strip() for part in raw.split(",") if part.strip()):
        host, port = item.split(":") if item.count(":") == 1 else (item, "53")
        if not host:
            raise ValueError(f"{item!r} names no address")
        pairs.append((parse_ip(host), parse_port(port)))
    return tuple(pairs)


def parse_endpoints(raw: str) -> tuple[str, ...]:
    """``http://a:2379,http://b:2379`` into a tuple of base URLs."""
    endpoints = tuple(part.strip().rstrip("/") for part in raw.split(",") if part.strip())
    if not endpoints:
        raise ValueError("expected one or more etcd URLs separated by commas")
    for endpoint in endpoints:
        url = urlsplit(endpoint)
        if url.scheme not in ("http", "https") or not url.hostname or url.port is None:
            raise ValueError(f"{endpoint!r} is not of the form http://host:port")
    return endpoints


def parse_base_urls(raw: str) -> tuple[str, ...]:
    """``http://a:8080,https://b`` into a tuple of base URLs (empty when ``raw`` is blank), e.g. Marathon's."""
    urls = tuple(part.strip().rstrip("/") for part in raw.split(",") if part.strip())
    for url in urls:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname or not (_HOSTNAME.match(parts.hostname) or _is_ip(parts.hostname)):
            raise ValueError(f"{url!r} is not of the form http://host[:port]")
        try:
            parts.port  # noqa: B018 - urlsplit checks the port only when asked
        except ValueError:
            raise ValueError(f"{url!r} has a port outside 1-65535") from None
        if parts.query or parts.fragment or parts.username or any(c in url for c in " \t\r\n"):
            raise ValueError(f"{url!r} must be a plain base URL (no credentials, query or spaces)")
    return urls


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def parse_log_level(raw: str) -> str:
    level = raw.upper()
    if level not in ("DEBUG", "INFO", "WARNING", "ERROR"):
        raise ValueError("expected DEBUG, INFO, WARNING or ERROR")
    return level


def env(var: str, parse: Callable[[str], Any], default: Any) -> Any:
    """A settings field read from environment variable ``var`` through ``parse``."""
    return field(default=default, metadata={"env": var, "parse": parse})


@dataclass(frozen=True)
class Settings:
    """What every paz service is configured with."""

    name: str = ""
    port: int = env("PAZ_PORT", parse_port, 0)
    """Port to listen on; by default the service's own (see below)."""
    host: str = env("PAZ_HOST", parse_host, "127.0.0.1")
    """Address to listen on."""
    announce_host: str = env("PAZ_ANNOUNCE_HOST", parse_host, "")
    """Address announced in etcd, when other machines reach this one differently; empty: ``PAZ_HOST``."""
    announce_ttl: int = env("PAZ_ANNOUNCE_TTL", parse_positive_int, 60)
    """Seconds the announce key lives; refreshed every third of it."""
    registry_address: str = env("PAZ_REGISTRY_ADDR", parse_host_port, DEFAULT_REGISTRY_ADDRESS)
    """The suite's image registry (``paz up --registry``), as the Docker Engine reaches it: a service
    registered without an image follows ``<this>/<name>``; the scheduler pulls images named
    ``<this>/<repository>`` with its own token, and pushes there deploy the services that follow them."""
    etcd_endpoints: tuple[str, ...] = env("PAZ_ETCD_ENDPOINTS", parse_endpoints, ("http://127.0.0.1:2379",))
    """Comma-separated etcd URLs; the client fails over between them (``https://`` with ``PAZ_ETCD_CA``)."""
    etcd_timeout: float = env("PAZ_ETCD_TIMEOUT", parse_positive_float, 2.0)
    """Seconds an etcd request may take."""
    etcd_ca: str = env("PAZ_ETCD_CA", parse_readable_file, "")
    """The CA file that etcd's server certificate is checked against (etcd over TLS)."""
    etcd_cert: str = env("PAZ_ETCD_CERT", parse_readable_file, "")
    """This client's certificate file, for etcd's ``--client-cert-auth``; goes with ``PAZ_ETCD_KEY``."""
    etcd_key: str = env("PAZ_ETCD_KEY", parse_readable_file, "")
    """The key file of ``PAZ_ETCD_CERT``."""
    etcd_api: str = env("PAZ_ETCD_API", parse_choice(*etcd.API_VERSIONS), etcd.DEFAULT_API)
    """``3``: etcd's v3 API (etcd 3.6 has no other); ``2``: the v2 API (python-etcd; etcd with ``--enable-v2``)."""
    workers: int = env("PAZ_WORKERS", parse_positive_int, 1)
    """Worker processes of granian or gunicorn; ``gevent`` and ``asgi`` serve in one process and ignore it. One by
    default: a worker costs about 30 MB, and one granian worker already reads faster than etcd answers."""
    worker_class: str = env("PAZ_WORKER_CLASS", parse_choice("gthread", "gevent", "sync", "granian", "asgi"), "gevent")
    """``gevent`` (gevent's server, one process), ``gthread`` or ``sync`` (gunicorn's worker classes),
    ``granian`` (its WSGI workers) or ``asgi`` (granian's embedded ASGI server, one process)."""
    threads: int = env("PAZ_THREADS", parse_positive_int, 8)
    """Threads per worker (gunicorn's ``gthread``, granian's blocking threads, the Flask app's under ``asgi``)."""
    connections: int = env("PAZ_CONNECTIONS", parse_positive_int, 4096)
    """Connections one ``gevent`` or ``asgi`` server holds at once (it raises its open-file limit to match)."""
    view_wait: float = env("PAZ_VIEW_WAIT", parse_positive_float, 2.0)
    """Seconds a read carrying an index waits for the process's view before it reads etcd itself."""
    log_level: str = env("PAZ_LOG_LEVEL", parse_log_level, "INFO")
    """``DEBUG``, ``INFO``, ``WARNING`` or ``ERROR``; logs are JSON lines with the request id."""
    auth: str = env("PAZ_AUTH", parse_choice("required", "off"), "required")
    """``required``: changes need a token; ``off``: no check (tests, never a shared machine)."""
    auth_reads: str = env("PAZ_AUTH_READS", parse_choice("open", "token"), "open")
    """``open``: reads need no token; ``token``: reads need one too (role ``read`` or more)."""
    metrics: bool = env("PAZ_METRICS", parse_bool, True)
    """Count requests and answer ``GET /metrics`` (Prometheus' text format); ``false``: neither, and no cost."""
    token: str = env("PAZ_TOKEN", str, "")
    """This service's own token, for the calls it makes on its own (not on behalf of a request)."""
    hook_token: str = env("PAZ_HOOK_TOKEN", str, "")
    """A static token with the role deploy, taken by the deploy hooks only (e.g. in Docker Hub's webhook URL)."""
    secrets_key_file: str = env("PAZ_SECRETS_KEY_FILE", parse_path, ".paz/secrets.key")
    """The key that seals services' secrets (``paz up`` makes it, mode 0600); read by the services that
    declare they need it (the directory and the scheduler), which refuse to start without it."""

    def __post_init__(self) -> None:
        if bool(self.etcd_cert) != bool(self.etcd_key):
            raise SettingsError("PAZ_ETCD_CERT and PAZ_ETCD_KEY go together: give both (this client's certificate and its key) or neither")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **defaults: Any) -> "Settings":
        """Settings from ``environ`` (the process environment by default) over ``defaults``."""
        environ = os.environ if environ is None else environ
        values = dict(defaults)
        for spec in fields(cls):
            var = spec.metadata.get("env")
            if var and environ.get(var, "") != "":
                raw = environ[var]
                try:
                    values[spec.name] = spec.metadata["parse"](raw)
                except ValueError as exc:
                    raise SettingsError(f"{var}={raw!r} is not usable: {exc}") from None
        return cls(**values)

    @property
    def service_name(self) -> str:
        """The name the service is announced under, e.g. ``paz-service-directory``."""
        return f"paz-{self.name}"

    @property
    def address(self) -> str:
        """``host:port`` that other services reach this one at."""
        return f"{self.announce_host or self.host}:{self.port}"

    def override(self, name: str, environ: Mapping[str, str] | None = None) -> str | None:
        """An address pinned for service ``name`` by ``PAZ_<NAME>_ADDR``, if any.

        ``paz-scheduler`` is pinned by ``PAZ_SCHEDULER_ADDR``; tests and odd networks use this
        instead of the address announced in etcd.
        """
        environ = os.environ if environ is None else environ
        var = "PAZ_" + name.removeprefix("paz-").upper().replace("-", "_") + "_ADDR"
        return environ.get(var) or None
