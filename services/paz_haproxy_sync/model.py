"""What haproxy-sync routes, read from etcd values that are never trusted.

Every name that reaches haproxy.cfg is a DNS label, every address an IP and a port, every other
value matches a strict pattern; anything else is refused here with a :class:`Malformed` that names
the key and the problem, so no value from etcd can add a line, a word or a comment to the config.
"""

from __future__ import annotations

import ipaddress
import json
import re
import socket
from dataclasses import dataclass, field
from typing import Any

from paz import keys
from paz.names import CRYPT_HASH, DOMAIN, REALM, USERNAME, domain_problem, is_service_name

_LABEL = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?\Z")
_HOST_PORT = re.compile(r"^(?P<host>\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]{1,253}):(?P<port>[0-9]{1,5})\Z")
_HOSTNAME = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\Z")
# Stricter than the directory's: no quote, '$', '#' or backslash can reach an httpchk line.
_CHECK_PATH = re.compile(r"^/[A-Za-z0-9._~!&()*+,;=:@%/?-]{0,255}\Z")
DEFAULT_REALM = "paz"


class Malformed(ValueError):
    """An etcd key or value haproxy-sync will not route; the message says which rule it breaks."""


@dataclass(frozen=True)
class Instance:
    """One server of a backend: ``/paz/services/<service>/<version>/<instance>`` or a suite service."""

    service: str
    name: str
    address: str


@dataclass(frozen=True)
class HealthCheck:
    path: str
    interval: int = 2
    timeout: int = 1


@dataclass(frozen=True)
class BasicAuth:
    realm: str
    users: tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class RouterSettings:
    """A service's router settings from its directory document.

    ``refused`` holds why its basic-auth setting (or the whole document) cannot be read: such a
    service answers 503 rather than being served without the protection it may have asked for.
    """

    public: bool = False
    auth: BasicAuth | None = None
    health: HealthCheck | None = None
    refused: str | None = None
    domains: tuple[str, ...] = ()
    """Custom domains the service is served on (besides ``<service>.paz`` and ``<service>.<domain>``)."""
    https_redirect: bool = True


@dataclass(frozen=True)
class Table:
    """Everything a config is rendered from."""

    domain: str | None
    services: dict[str, tuple[Instance, ...]]
    settings: dict[str, RouterSettings] = field(default_factory=dict)
    marathon: dict[str, Any] = field(default_factory=dict)
    """Backends that route Marathon apps (:class:`~.marathon.MarathonApp` by backend name)."""
    certified: frozenset[str] = frozenset()
    """Host names HAProxy holds a certificate for (served over HTTPS)."""

    def settings_of(self, service: str) -> RouterSettings:
        return self.settings.get(service, RouterSettings())

    def public_names(self, service: str) -> list[str]:
        """The names ``service`` answers on besides ``<service>.paz``: ``<service>.<domain>`` when it is
        public-facing, and its custom domains. These are the names that get certificates."""
        router = self.settings_of(service)
        names = [f"{service}.{self.domain}"] if self.domain and router.public and not service.startswith("paz-") else []
        return names + [d for d in router.domains if d not in names]

    def https_names(self) -> dict[str, str]:
        """Every name that should be served over HTTPS, with its service (the first claim wins)."""
        names: dict[str, str] = {}
        for service in sorted(set(self.services) - set(self.marathon)):
            for name in self.public_names(service):
                names.setdefault(name, service)
        return names


def parse_address(raw: str) -> str:
    """``host:port`` as ``ip:port``; a host name is resolved once, here."""
    match = _HOST_PORT.match(raw or "")
    if not match:
        raise Malformed(f"value {raw!r} is not host:port")
    host, port = match["host"].strip("[]"), int(match["port"])
    if not 0 < port < 65536:
        raise Malformed(f"value {raw!r} has port {port}, outside 1-65535")
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        if not _HOSTNAME.match(host):
            raise Malformed(f"value {raw!r} does not name a host") from None
        try:
            ip = ipaddress.ip_address(socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][4][0])
        except (OSError, IndexError, ValueError):
            raise Malformed(f"host {host!r} of {raw!r} does not resolve") from None
    return f"{ip}:{port}"


def parse_instance(key: str, value: str | None) -> Instance:
    """The server a key below ``/paz/services`` stands for; :class:`Malformed` when it is not one."""
    parts = key.removeprefix(keys.SERVICES + "/").split("/")
    if len(parts) == 1 and is_service_name(parts[0]):
        return Instance(parts[0], parts[0], parse_address(value or ""))
    if len(parts) != 3:
        raise Malformed(f"key {key!r} is not /paz/services/<service>/<version>/<instance> or /paz/services/paz-<name>")
    service, version, instance = parts
    if not is_service_name(service):
        raise Malformed(f"key {key!r}: service {service!r} is not a lowercase DNS label")
    if not (_LABEL.match(version) and _LABEL.match(instance)):
        raise Malformed(f"key {key!r}: version and instance must be letters, digits and '-'")
    return Instance(service, f"{service}-{version}-{instance}", parse_address(value or ""))


def parse_host_name(raw: str) -> str:
    """A host name requests may name (a Marathon app's ``HAPROXY_{n}_VHOST``), lowercased."""
    host = raw.lower().rstrip(".")
    if len(host) > 253 or not _HOSTNAME.match(host):
        raise Malformed(f"{raw[:100]!r} is not a host name (letters, digits, '-' and dots)")
    return host


def parse_domain(value: str | None) -> str | None:
    """The public domain from ``/paz/config/domain`` (None when unset or empty)."""
    domain = (value or "").strip().lower().rstrip(".")
    if not domain:
        return None
    if not DOMAIN.fullmatch(domain):
        raise Malformed(f"{keys.DOMAIN} = {value!r} is not a domain name such as example.com")
    return domain


def parse_router_settings(name: str, raw: str | None) -> tuple[RouterSettings, list[str]]:
    """Router settings from a directory document, and the problems found in it (for the log).

    A bad health check is dropped (the service routes without one); an unreadable document or
    basic-auth setting makes the service refuse requests (``refused``) instead of exposing it.
    """
    try:
        document = json.loads(raw or "")
    except ValueError:
        document = None
    config = document.get("config") if isinstance(document, dict) else None
    if not isinstance(config, dict):
        problem = f"the directory document of {name!r} is not JSON with a config object"
        return RouterSettings(refused=problem), [problem]
    auth, refused = basic_auth(config.get("basicAuth"))
    health = _health_check(config.get("healthCheck"))
    domains, bad_domains = _domains(config.get("domains"))
    problems = [refused] if refused else []
    if config.get("healthCheck") is not None and health is None:
        problems.append("healthCheck is not {path, intervalSeconds, timeoutSeconds} with a plain path; routing without a health check")
    problems += [f"domain {d[:100]!r} is not a domain name; not served on it" for d in bad_domains]
    return RouterSettings(public=config.get("publicFacing") is True, auth=auth, health=health, refused=refused,
                          domains=domains, https_redirect=config.get("httpsRedirect") is not False), problems


def _domains(raw: Any) -> tuple[tuple[str, ...], list[Any]]:
    """The valid custom domains of a config's ``domains``, and the values that are not."""
    values = raw if isinstance(raw, list) else []
    good = tuple(dict.fromkeys(d for d in values if isinstance(d, str) and domain_problem(d) is None))
    return good, [d for d in values if d not in good]


def basic_auth(raw: Any) -> tuple[BasicAuth | None, str | None]:
    if raw is None:
        return None, None
    if not isinstance(raw, dict) or not isinstance(raw.get("users"), list):
        return None, "basicAuth is not {realm, users: [...]}"
    users = tuple(
        (user["username"], user["passwordHash"])
        for user in raw["users"]
        if isinstance(user, dict)
        and isinstance(user.get("username"), str) and USERNAME.fullmatch(user["username"])
        and isinstance(user.get("passwordHash"), str) and CRYPT_HASH.fullmatch(user["passwordHash"])
    )
    if len(users) != len(raw["users"]) or not users:
        return None, "basicAuth has a user without a valid username and crypt passwordHash"
    realm = raw.get("realm")
    return BasicAuth(realm if isinstance(realm, str) and REALM.fullmatch(realm) else DEFAULT_REALM, users), None


def _health_check(raw: Any) -> HealthCheck | None:
    if not isinstance(raw, dict) or not isinstance(raw.get("path"), str) or not _CHECK_PATH.match(raw["path"]):
        return None
    interval, timeout = raw.get("intervalSeconds", 2), raw.get("timeoutSeconds", 1)
    if not all(isinstance(n, int) and not isinstance(n, bool) and 1 <= n <= 3600 for n in (interval, timeout)):
        return None
    return HealthCheck(raw["path"], interval, timeout)

