"""The suite's shared vocabulary: what a service name and an image reference may be.

Every service that takes a name or an image checks it here, so the directory, the scheduler and
the orchestrator refuse the same things with the same words. The patterns are JSON Schema patterns
in the OpenAPI documents too; Python checks a value with ``fullmatch`` (or :class:`paz.api.Pattern`),
since Python's ``$`` also matches before a final newline, so ``"web\\n"`` is no service name.
"""

from __future__ import annotations

import re

from .errors import BadRequest

NAME_RULE = (
    "a service name is 3 to 63 characters of lowercase letters, digits and '-', "
    "starting with a letter and not ending with '-' (a DNS label, as it becomes <name>.paz)"
)
SERVICE_NAME = re.compile(r"^[a-z][a-z0-9-]{1,61}[a-z0-9]$")
IMAGE_REFERENCE = re.compile(
    r"^(?:[a-z0-9]+(?:[._-][a-z0-9]+)*(?::[0-9]+)?/)?[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
    r"(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*(?::[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?(?:@sha256:[a-f0-9]{64})?$"
)
"""A Docker image reference: ``[registry[:port]/]path[:tag][@sha256:digest]``."""
USERNAME = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
"""A router basic-auth user name."""
CRYPT_HASH = re.compile(r"^\$(?:6|5|y|2b)\$[./A-Za-z0-9$]{8,200}$")
"""A crypt(3) password hash HAProxy's userlist reads."""
DOMAIN = re.compile(r"^(?=.{1,253}$)[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)+$")
"""A public domain such as ``example.com``: services are routed as ``<service>.<domain>``."""
REALM = re.compile(r"^[A-Za-z0-9 ._-]{1,64}$")
"""A basic-auth realm: it is quoted in haproxy.cfg, so no quote or backslash."""

MARATHON_APP_ID = re.compile(r"^(/[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)+$")
"""A Marathon app id as the suite routes and forwards it: ``/group/app``, each part a lowercase DNS label
(Marathon also allows dots and ``..``; the suite does not, so an id always makes a host name)."""


def marathon_name(app_id: str) -> str:
    """The name Marathon app ``/a/b/c`` is routed as: ``c-b-a`` (Mesos-DNS's naming), so ``c-b-a.paz``."""
    return "-".join(reversed(app_id.strip("/").split("/")))


def is_service_name(name: str) -> bool:
    return bool(SERVICE_NAME.fullmatch(name))


RESERVED_PREFIX = "paz-"
"""Every name starting with it is the suite's own: ``paz-<part>`` is how each part announces itself
in ``/paz/services`` and how its containers and units are named, so a user's service may not take
any of them (all of ``paz-*``, not only the parts that exist today, so a part added later is never
shadowed by a service registered before it)."""


def reserved_problem(name: str) -> str | None:
    """Why ``name`` is the suite's own and cannot be registered, or None when it is free."""
    if name.startswith(RESERVED_PREFIX):
        return (f"starts with {RESERVED_PREFIX!r}, which the suite keeps for its own parts (paz-scheduler, "
                "paz-web, ...): choose a name that does not")
    return None


def name_problem(name: str) -> str | None:
    """Why ``name`` cannot be a service name, or None when it can."""
    if SERVICE_NAME.fullmatch(name):
        return None
    if len(name) > 63:
        return f"is {len(name)} characters long: {NAME_RULE}"
    if len(name) < 3:
        return f"is too short: {NAME_RULE}"
    if any(c.isupper() for c in name):
        return f"has capital letters: {NAME_RULE}"
    if any(c in name for c in "/ \n\r\t") or ".." in name:
        return f"has '/', '..', spaces or line breaks: {NAME_RULE}"
    return f"is not a DNS label: {NAME_RULE}"


def domain_problem(value: str) -> str | None:
    """Why ``value`` cannot be a custom domain of a service (served over HTTPS with a certificate
    ordered by HTTP-01, so no wildcard), or None when it can."""
    if not DOMAIN.fullmatch(value):
        return "is not a lowercase domain name such as www.example.com (letters, digits, '-' and dots; no '*')"
    if value.endswith(".paz"):
        return "ends in .paz, which the suite's name server answers for its own services"
    return None


def checked_name(name: str) -> str:
    """``name`` when it can be a service name; a 400 that says why otherwise (for names in URL paths)."""
    problem = name_problem(name)
    if problem:
        raise BadRequest(f"{name!r} {problem}", {"name": name})
    return name
