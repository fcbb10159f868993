"""The suite's etcd layout, in one place: every prefix, every key builder, and what etcd's actions mean.

| key | value |
| --- | --- |
| ``/paz/services/paz-<name>`` | ``host:port`` of a suite service (TTL) |
| ``/paz/services/<svc>/<version>/<instance>`` | ``host:port`` of a running instance (TTL) |
| ``/paz/config/domain`` | optional public domain |
| ``/paz/config/marathon`` | optional Marathon base URLs, comma-separated |
| ``/paz/auth/tokens/<sha256 of the secret>`` | an API token's id, name, role (JSON; the secret is never stored) |
| ``/paz/marathon/apps/<name>`` | a Marathon app haproxy-sync routes (JSON: app id, hosts, servers) |
| ``/paz/marathon/changes/<in-order key>`` | a change the orchestrator forwarded to Marathon (JSON, TTL) |
| ``/paz/directory/services/<name>`` | a service document (JSON) |
| ``/paz/directory/domains/<domain>`` | the service that claimed a custom domain (its name) |
| ``/paz/scheduler/services/<name>/latest`` | the last version number given out |
| ``/paz/scheduler/services/<name>/versions/<n>`` | a version document (JSON) |
| ``/paz/scheduler/journal/<in-order key>`` | a journal entry (JSON) |
| ``/paz/scheduler/desired/<name>`` | what the service should run: a version with its image and config, or stopped (JSON) |
| ``/paz/scheduler/locks/<name>`` | the controller working on a service (bound to its lease) |
| ``/paz/leaders/<part>`` | the instance of a suite part that leads (bound to its lease) |
| ``/paz/registry/signing-key`` | the key the registry's tokens are signed with (sealed with the secrets key) |

Services reach each other's data through these names or through each other's HTTP APIs, never by
spelling a path themselves.
"""

from __future__ import annotations

import re

ROOT = "/paz"
SERVICES = f"{ROOT}/services"
"""Announcements: the suite's own services and every running instance."""
DOMAIN = f"{ROOT}/config/domain"
MARATHON = f"{ROOT}/config/marathon"
MARATHON_ROOT = f"{ROOT}/marathon"
MARATHON_APPS = f"{MARATHON_ROOT}/apps"
MARATHON_CHANGES = f"{MARATHON_ROOT}/changes"
DIRECTORY = f"{ROOT}/directory/services"
DOMAIN_CLAIMS = f"{ROOT}/directory/domains"
"""Which service a custom domain belongs to: made create-only, so of two services claiming one at once, one wins."""
TOKENS = f"{ROOT}/auth/tokens"
SCHEDULER = f"{ROOT}/scheduler"
SCHEDULER_SERVICES = f"{SCHEDULER}/services"
JOURNAL = f"{SCHEDULER}/journal"
LOCKS = f"{SCHEDULER}/locks"
DESIRED = f"{SCHEDULER}/desired"
LEADERS = f"{ROOT}/leaders"
CERTS = f"{ROOT}/certs"
"""The routers' certificates, one record per host name, the private key sealed."""
ACME = f"{ROOT}/acme"
ACME_ACCOUNT = f"{ACME}/account"
ACME_CHALLENGES = f"{ACME}/challenges"
ACME_FAILURES = f"{ACME}/failures"
"""Why the last order of a name failed, and when the next try is: every router's /health says it."""
REGISTRY_SIGNING_KEY = f"{ROOT}/registry/signing-key"
"""The private key of the image registry's tokens (:mod:`paz.image_registry`), sealed with the secrets key."""
SECRETS_KEY_CHECK = f"{ROOT}/secrets/keycheck"
"""A constant sealed with the suite's secrets key: a service given another key finds out at start.
It holds no secret and never the key."""


_VERSION_DOCUMENT = re.compile(rf"^{SCHEDULER_SERVICES}/([^/]+)/versions/(\d+)$")


def suite_service(name: str) -> str:
    """Where suite service ``name`` (e.g. ``paz-scheduler``) announces ``host:port``."""
    return f"{SERVICES}/{name}"


def instance(service: str, version: int, number: int) -> str:
    """Where instance ``number`` of ``service``'s ``version`` announces ``host:port``."""
    return f"{SERVICES}/{service}/{version}/{number}"


def token(digest: str) -> str:
    return f"{TOKENS}/{digest}"


def marathon_app(name: str) -> str:
    """Where haproxy-sync publishes Marathon app ``name`` (``c-b-a`` for ``/a/b/c``) as it routes it."""
    return f"{MARATHON_APPS}/{name}"


def service_document(name: str) -> str:
    return f"{DIRECTORY}/{name}"


def domain_claim(domain: str) -> str:
    return f"{DOMAIN_CLAIMS}/{domain}"


def latest_version(name: str) -> str:
    return f"{SCHEDULER_SERVICES}/{name}/latest"


def versions(name: str) -> str:
    """The folder of ``name``'s version documents."""
    return f"{SCHEDULER_SERVICES}/{name}/versions"


def version_document(name: str, version: int) -> str:
    return f"{versions(name)}/{version}"


def deploy_lock(name: str) -> str:
    return f"{LOCKS}/{name}"


def desired(name: str) -> str:
    """Where the scheduler's record of what ``name`` should run is kept."""
    return f"{DESIRED}/{name}"


def leader(part: str) -> str:
    """Where the instance of suite part ``part`` (e.g. ``paz-scheduler``) that leads says so."""
    return f"{LEADERS}/{part}"


def parse_version_document(key: str) -> tuple[str, int] | None:
    """``(service, version)`` of a version document's key, else None."""
    match = _VERSION_DOCUMENT.match(key)
    return (match.group(1), int(match.group(2))) if match else None


def relative(key: str, prefix: str) -> str | None:
    """What follows ``prefix/`` in ``key``, or None when ``key`` is not below ``prefix``."""
    return key[len(prefix) + 1:] if key.startswith(prefix + "/") else None


def certificate(name: str) -> str:
    return f"{CERTS}/{name}"


def acme_challenge(token: str) -> str:
    """Where the key authorization of HTTP-01 ``token`` waits for the CA (every router answers it)."""
    return f"{ACME_CHALLENGES}/{token}"


def acme_failure(name: str) -> str:
    return f"{ACME_FAILURES}/{name}"
