"""The scheduler's records in etcd: versions per service, the journal, and per-service deploy locks.

Layout (under ``/paz/scheduler/``): ``services/<name>/latest`` holds the last version number given
out (a compare-and-swap counter, so concurrent deploys get distinct versions);
``services/<name>/versions/<n>`` the version document; ``journal/<in-order key>`` one entry each
(etcd's POST in-order keys keep them in order across workers and restarts).
"""

from __future__ import annotations

import json
from typing import Any

from paz import keys
from paz.waiting import poll
from paz.errors import Conflict, NotFound
from paz.etcd import AlreadyExists, CompareFailed, Store, StoreUnavailable

from .schemas import iso_now

class SchedulerStore:
    """Versions, the journal and deploy locks, every read-modify-write a compare-and-swap."""

    def __init__(self, etcd: Store) -> None:
        self.etcd = etcd

    def next_version(self, name: str) -> int:
        """A version number no other deploy of ``name`` gets (compare-and-swap on ``latest``)."""
        return self.etcd.update_json(keys.latest_version(name), lambda n: n + 1, create=0)[0]

    def latest_number(self, name: str) -> int | None:
        value = self.etcd.value(keys.latest_version(name))
        return int(value) if value is not None else None

    def create_version(self, document: dict[str, Any]) -> dict[str, Any]:
        key = keys.version_document(document["service"], document["version"])
        self.etcd.create(key, json.dumps(document, sort_keys=True))
        return document

    def update_version(self, name: str, version: int, **changes: Any) -> dict[str, Any]:
        return self.etcd.update_json(keys.version_document(name, version), lambda doc: {**doc, **changes})[0]

    def version(self, name: str, version: int) -> dict[str, Any]:
        value = self.etcd.value(keys.version_document(name, version))
        if value is None:
            raise NotFound(
                f"{name} has no version {version}; GET /config/{name}/history lists its versions.",
                {"service": name, "version": version},
            )
        return json.loads(value)

    def latest(self, name: str) -> dict[str, Any]:
        number = self.latest_number(name)
        if number is None:
            raise NotFound(f"{name} was never deployed; POST /hooks/deploy deploys it.", {"service": name})
        return self.version(name, number)

    def history(self, name: str) -> list[dict[str, Any]]:
        """Every version of ``name``, newest first."""
        nodes = self.etcd.list_prefix(keys.versions(name)).nodes
        return sorted((json.loads(n.value) for n in nodes), key=lambda d: d["version"], reverse=True)

    def versions_with_status(self, name: str, *statuses: str) -> list[dict[str, Any]]:
        return [doc for doc in self.history(name) if doc["status"] in statuses]

    def journal(self, kind: str, service: str, message: str, version: int | None = None) -> dict[str, Any]:
        entry: dict[str, Any] = {"at": iso_now(), "type": kind, "service": service}
        if version is not None:
            entry["version"] = version
        entry["message"] = message
        node = self.etcd.append(keys.JOURNAL, json.dumps(entry))
        return {"id": node.key.rsplit("/", 1)[-1], **entry}

    def journal_entries(self, service: str | None, limit: int, offset: int) -> list[dict[str, Any]]:
        """Journal entries, newest first, optionally of one service only."""
        nodes = self.etcd.list_prefix(keys.JOURNAL).nodes
        entries = [{"id": n.key.rsplit("/", 1)[-1], **json.loads(n.value)} for n in nodes]
        entries.sort(key=lambda e: e["id"], reverse=True)
        if service:
            entries = [e for e in entries if e["service"] == service]
        return entries[offset: offset + limit]

    def locked(self, name: str, owner: str, ttl: int, wait: float) -> "DeployLock":
        return DeployLock(self.etcd, keys.deploy_lock(name), owner, ttl, wait, name)


class DeployLock:
    """One deploy (or rollback, or stop) of a service at a time, across workers and scheduler processes.

    The key has a TTL, so a scheduler killed mid-deploy does not block the service for ever.
    """

    POLL_SECONDS = 0.1

    def __init__(self, etcd: Store, key: str, owner: str, ttl: int, wait: float, service: str) -> None:
        self.etcd, self.key, self.owner, self.ttl, self.wait, self.service = etcd, key, owner, ttl, wait, service

    def __enter__(self) -> "DeployLock":
        if not poll(self._take, self.wait, self.POLL_SECONDS):
            raise Conflict(
                f"Another deploy of {self.service} is still running after {self.wait:g}s; try again when it is done "
                "(GET /journal shows it).",
                {"service": self.service},
            )
        return self

    def _take(self) -> bool:
        try:
            self.etcd.create(self.key, self.owner, self.etcd.grant(self.ttl))
            return True
        except AlreadyExists:
            return False

    def __exit__(self, *_: Any) -> None:
        try:
            self.etcd.delete(self.key, if_value=self.owner)
        except (CompareFailed, StoreUnavailable):
            pass  # gone already, or left to its TTL

