"""Custom domains, one service each, even when two services claim one at the same instant.

A claim is a create-only key, ``/paz/directory/domains/<domain>``, made *pending* (bound to a short
lease) before the service document that lists the domain is written, and *confirmed* (the lease let
go) once it is. Of two directories claiming one domain at once, etcd lets one create the key; the
other answers 409. A pending claim always holds: its write is under way, or it ends with its lease
should the directory die. A confirmed claim holds while its service's document lists the domain; one
left behind (a service deleted, or the domain removed, by a directory that died before releasing it)
is taken over. Documents stored before claims existed are still checked by reading them
(:meth:`paz_directory.store.DirectoryStore.check_domains`).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable

from paz import keys
from paz.errors import Conflict
from paz.etcd import AlreadyExists, CompareFailed, KeyNotFound, Node, Store

log = logging.getLogger(__name__)

PENDING_SECONDS = 30
"""How long a pending claim lasts if its directory dies before confirming it."""


def _value(service: str, pending: bool) -> str:
    return json.dumps({"service": service, "pending": pending}, sort_keys=True)


class DomainClaims:
    def __init__(self, etcd: Store) -> None:
        self.etcd = etcd

    def claim(self, service: str, domains: Iterable[str]) -> list[Node]:
        """Pending claims of ``domains`` for ``service``; 409 naming the service that holds one (the
        claims made before it are released). Confirm them once the document is written, else release them."""
        made: list[Node] = []
        try:
            for domain in sorted(domains):
                made.append(self._take(service, domain))
        except BaseException:
            self.release(made)
            raise
        return made

    def confirm(self, claims: list[Node]) -> None:
        for claim in claims:
            service = json.loads(claim.value)["service"]
            try:
                self.etcd.swap(claim.key, _value(service, pending=False), claim.revision)
            except (CompareFailed, KeyNotFound):  # it outlived its lease: the document still lists the domain
                log.warning("a domain claim ran out before its document was written", extra={"key": claim.key})

    def release(self, claims: list[Node]) -> None:
        for claim in claims:
            self._delete(claim.key, claim.value)

    def release_domains(self, service: str, domains: Iterable[str]) -> None:
        """Give up ``service``'s confirmed claims of ``domains`` (removed from its document, or the service deleted)."""
        for domain in domains:
            self._delete(keys.domain_claim(domain), _value(service, pending=False))

    def _take(self, service: str, domain: str) -> Node:
        key = keys.domain_claim(domain)
        lease = self.etcd.grant(PENDING_SECONDS)
        try:
            return self.etcd.create(key, _value(service, pending=True), lease)
        except AlreadyExists:
            pass
        held = self.etcd.get(key, consistent=True)
        if held is not None:
            owner, pending = self._holder(domain, held)
            if owner == service:  # another change of this service's domains is under way
                raise Conflict(f"The domains of service {service!r} are being changed at this moment; retry.", {"domain": domain})
            if owner and pending:
                raise Conflict(f"{domain} is being claimed by service {owner!r} at this moment; retry to see whether "
                               "it took it.", {"domain": domain, "service": owner})
            if owner:
                raise Conflict(f"{domain} is already a domain of service {owner!r}; remove it there first "
                               f"(PATCH /services/{owner}/config with its other domains).", {"domain": domain, "service": owner})
            self._delete(key, held.value)  # left behind: taken over below, unless another claim is quicker
        try:
            return self.etcd.create(key, _value(service, pending=True), lease)
        except AlreadyExists:
            raise Conflict(f"{domain} is being claimed by another service at this moment; retry to see which.",
                           {"domain": domain}) from None

    def _holder(self, domain: str, claim: Node) -> tuple[str | None, bool]:
        """The service ``claim`` holds ``domain`` for (None when it was left behind), and whether the
        claim is still pending."""
        try:
            held = json.loads(claim.value)
            owner, pending = held["service"], bool(held["pending"])
        except (ValueError, KeyError, TypeError):
            return None, False
        if pending:
            return owner, True
        document = self.etcd.value(keys.service_document(owner), consistent=True)
        try:
            listed = domain in (json.loads(document)["config"].get("domains") or ()) if document else False
        except (ValueError, KeyError, TypeError, AttributeError):
            listed = False
        return (owner if listed else None), False

    def _delete(self, key: str, value: str) -> None:
        try:
            self.etcd.delete(key, if_value=value)
        except (CompareFailed, KeyNotFound):  # changed since: no longer this claim to give up
            pass
