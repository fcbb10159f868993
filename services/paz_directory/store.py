"""Service documents in etcd, one JSON value per service under ``/paz/directory/services/``.

Reads come from the process's view of etcd (:mod:`paz.view`), or from etcd itself when asked to be
consistent; every write answers the etcd index it made, which the routes give back as ``X-Paz-Index``.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Iterator
from typing import Any

from paz import keys
from paz.contracts.service_document import (
    MalformedDocument, checked_document, document_json, metrics_problem, missing_service, stored_document,
)
from paz.errors import BadRequest, Conflict, NotFound
from paz.etcd import AlreadyExists, KeyNotFound, Store
from paz.names import is_service_name
from paz.view import EtcdView

from paz.secrets import Keyring

from .domains import DomainClaims
from .schemas import merge_config, sealed

log = logging.getLogger(__name__)

SERVICE_PATH = "/services/"
SERVICE_ROUTE = "/services/<name>"
"""The route of the read :meth:`DirectoryStore.hot_read` answers, as the app counts it."""


def _repository(image: str) -> str:
    """``user/repo`` of ``user/repo:tag`` (a registry port's ':' is kept)."""
    last = image.rsplit("/", 1)[-1]
    return image[: len(image) - len(last)] + last.split(":", 1)[0].split("@", 1)[0]


class DirectoryStore:
    """Create, read, patch and delete service documents; every update is a compare-and-swap."""

    def __init__(self, etcd: Store, view: EtcdView, keyring: Keyring) -> None:
        self.etcd = etcd
        self.view = view
        self.keyring = keyring
        self.claims = DomainClaims(etcd)

    def create(self, document: dict[str, Any]) -> tuple[dict[str, Any], int]:
        """The document as stored, and the etcd index of the write."""
        document = {**document, "config": merge_config({}, sealed(document["config"], self.keyring))}
        self._check_domains(document["name"], document["config"])
        try:
            with self._claiming(document["name"], _domains(document["config"])):
                written = self.etcd.create(keys.service_document(document["name"]), json.dumps(document, sort_keys=True))
        except AlreadyExists:
            raise Conflict(
                f"A service named {document['name']!r} already exists; PATCH /services/{document['name']}/config "
                "to change it, or DELETE it first.",
                details={"name": document["name"]},
            ) from None
        return document, written.revision

    def all(self, consistent: bool = False) -> list[dict[str, Any]]:
        """Every service document; a malformed value is left out with a warning naming its key."""
        documents = []
        nodes = self.etcd.list_prefix(keys.DIRECTORY, consistent=True).nodes if consistent else self.view.children(keys.DIRECTORY)
        for node in nodes:
            try:
                documents.append(stored_document(node.key, node.value))
            except MalformedDocument:
                log.warning("skipping a malformed service document", extra={"key": node.key})
        return sorted(documents, key=lambda doc: doc["name"])

    def get(self, name: str, consistent: bool = False) -> dict[str, Any]:
        return stored_document(*self._stored(name, consistent))

    def get_json(self, name: str, consistent: bool = False) -> bytes:
        """The document as the API answers it, rendered once per stored value (the hot read does no JSON work)."""
        return document_json(*self._stored(name, consistent))

    def hot_read(self, path: str) -> tuple[str, bytes] | None:
        """``GET /services/<name>`` from the view, for :mod:`paz.fast` (None for any other path)."""
        name = path.removeprefix(SERVICE_PATH)
        return (SERVICE_ROUTE, self.get_json(name)) if is_service_name(name) else None

    def _stored(self, name: str, consistent: bool) -> tuple[str, str]:
        key = keys.service_document(name)
        value = self.etcd.value(key, consistent=True) if consistent else self.view.get(key)
        if value is None:
            raise missing_service(name)
        return key, value

    def find_by_repository(self, image: str, consistent: bool = False) -> dict[str, Any]:
        """The service whose ``dockerRepository`` is ``image``, else the one of the same repository."""
        documents = self.all(consistent)
        matches = [d for d in documents if d["dockerRepository"] == image] or [
            d for d in documents if _repository(d["dockerRepository"]) == _repository(image)
        ]
        if not matches:
            raise NotFound(f"No service has dockerRepository {image!r}.", {"dockerRepository": image})
        return matches[0]

    def patch_config(self, name: str, patch: dict[str, Any]) -> tuple[dict[str, Any], int]:
        key = keys.service_document(name)
        patch = sealed(patch, self.keyring)

        def apply(document: Any) -> dict[str, Any]:
            config = merge_config(checked_document(key, document)["config"], patch)
            if "domains" in patch:
                self._check_domains(name, config)
                unclaimed = _domains(config) - _domains(document["config"]) - claiming
                if unclaimed:  # a retried compare-and-swap may find other domains than the first try
                    raise _Unclaimed(unclaimed)
            problem = metrics_problem(config)
            if problem:
                raise BadRequest(f"{problem}; nothing was changed.", {"metrics": config.get("metrics")})
            removed.update(_domains(document["config"]) - _domains(config))
            return {**document, "config": config}

        claiming: set[str] = set()
        removed: set[str] = set()
        while True:
            try:
                with self._claiming(name, claiming):
                    written = self.etcd.update_json(key, apply)
            except _Unclaimed as more:
                claiming |= more.domains
                continue
            except KeyNotFound:
                raise missing_service(name) from None
            except ValueError:
                raise MalformedDocument(key) from None
            self.claims.release_domains(name, removed - _domains(written[0]["config"]))
            return written

    @contextlib.contextmanager
    def _claiming(self, name: str, domains: set[str]) -> Iterator[None]:
        """Claim ``domains`` for ``name`` around the write of its document (:mod:`.domains`): confirmed
        when the write succeeds, given up when it fails."""
        claims = self.claims.claim(name, domains)
        try:
            yield
        except BaseException:
            self.claims.release(claims)
            raise
        self.claims.confirm(claims)

    def _check_domains(self, name: str, config: dict[str, Any]) -> None:
        """409 when another service already has one of ``config``'s domains (a name has one certificate
        and one backend). Read from etcd itself, so a claim made a moment before through any
        directory counts; two claims at the same instant can still both pass."""
        wanted = set(config.get("domains") or ())
        for other in self.all(consistent=True) if wanted else ():
            taken = sorted(wanted & set(other["config"].get("domains") or ()))
            if other["name"] != name and taken:
                raise Conflict(f"{taken[0]} is already a domain of service {other['name']!r}; remove it there first "
                               f"(PATCH /services/{other['name']}/config with its other domains).",
                               {"domain": taken[0], "service": other["name"]})

    def delete(self, name: str) -> int:
        """The etcd index of the delete; the service's domains are free again."""
        value = self.etcd.value(keys.service_document(name), consistent=True)
        revision = self.etcd.delete(keys.service_document(name))
        if revision is None:
            raise missing_service(name)
        try:
            self.claims.release_domains(name, _domains(json.loads(value or "{}").get("config") or {}))
        except (ValueError, AttributeError):  # a malformed document: any claim of it is taken over when met
            pass
        return revision


class _Unclaimed(Exception):
    """Domains a document's new config lists that were not claimed before its compare-and-swap."""

    def __init__(self, domains: set[str]) -> None:
        super().__init__(sorted(domains))
        self.domains = domains


def _domains(config: dict[str, Any]) -> set[str]:
    return set(config.get("domains") or ())
