"""The scheduler's records in etcd: what each service should run, versions, and the journal.

Layout (under ``/paz/scheduler/``): ``desired/<name>`` what the service should run (written by a
request, carried out by :mod:`.controller`); ``services/<name>/latest`` holds the last version number
given out (a compare-and-swap counter, so concurrent deploys get distinct versions);
``services/<name>/versions/<n>`` the version document, its status written by the controller;
``journal/<in-order key>`` one entry each (etcd's in-order keys keep them in order across workers and
restarts).
"""

from __future__ import annotations

import json
from typing import Any

from paz import journal, keys
from paz.errors import NotFound
from paz.etcd import AlreadyExists, Store



class SchedulerStore:
    """Desired records, versions and the journal, every read-modify-write a compare-and-swap."""

    def __init__(self, etcd: Store) -> None:
        self.etcd = etcd

    def next_version(self, name: str) -> int:
        """A version number no other deploy of ``name`` gets (compare-and-swap on ``latest``)."""
        return self.etcd.update_json(keys.latest_version(name), lambda n: n + 1, create=0)[0]

    def latest_number(self, name: str) -> int | None:
        value = self.etcd.value(keys.latest_version(name))
        return int(value) if value is not None else None

    def create_version(self, document: dict[str, Any]) -> dict[str, Any]:
        """Record ``document`` unless its version is recorded already (the request and the controller
        both may: whichever comes first); the document that holds."""
        key = keys.version_document(document["service"], document["version"])
        try:
            self.etcd.create(key, json.dumps(document, sort_keys=True))
            return document
        except AlreadyExists:
            return self.version(document["service"], document["version"])

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

    def journal(self, kind: str, service: str, message: str, version: int | None = None, image: str | None = None) -> dict[str, Any]:
        return journal.write(self.etcd, kind, service, message, version, image)

    def journal_entries(self, service: str | None, limit: int, offset: int) -> list[dict[str, Any]]:
        """Journal entries, newest first, optionally of one service only."""
        nodes = self.etcd.list_prefix(keys.JOURNAL).nodes
        entries = [{"id": n.key.rsplit("/", 1)[-1], **json.loads(n.value)} for n in nodes]
        entries.sort(key=lambda e: e["id"], reverse=True)
        if service:
            entries = [e for e in entries if e["service"] == service]
        return entries[offset: offset + limit]

    # -- what each service should run ---------------------------------------------------------

    def desired(self, name: str) -> dict[str, Any] | None:
        """The service's desired record, read from etcd's leader (not a member that may lag)."""
        node = self.etcd.get(keys.desired(name), consistent=True)
        return json.loads(node.value) if node else None

    def want(self, record: dict[str, Any]) -> tuple[dict[str, Any], int]:
        """Make ``record`` the service's desired record unless a newer one is there already (see :func:`rank`);
        the record that holds afterwards (``record`` or the newer one) and the revision it was read or written at."""
        def newer(current: dict[str, Any]) -> dict[str, Any]:
            return record if rank(record) >= rank(current) else current

        return self.etcd.update_json(keys.desired(record["service"]), newer, create={})

    def observe(self, name: str, record_id: str) -> None:
        """Write back that the world matches desired record ``record_id`` (unless a newer record replaced it)."""
        def observed(current: dict[str, Any]) -> dict[str, Any]:
            return {**current, "observed": record_id} if current.get("id") == record_id else current

        self.etcd.update_json(keys.desired(name), observed)


def rank(record: dict[str, Any]) -> tuple[int, int]:
    """Which of two desired records is the newer: the higher version number; at the same number a stop
    (written after that version was given out) wins over the deploy of it."""
    if not record:
        return (-1, 0)
    return int(record.get("version") or 0), 1 if record.get("stopped") else 0
