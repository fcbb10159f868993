"""Service documents in etcd, one JSON value per service under ``/paz/directory/services/``."""

from __future__ import annotations

import json
from typing import Any

from paz.errors import Conflict, NotFound
from paz.etcd_client import AlreadyExists, Etcd, KeyNotFound

from .schemas import merge_config

PREFIX = "/paz/directory/services"


def service_key(name: str) -> str:
    return f"{PREFIX}/{name}"


def _repository(image: str) -> str:
    """``user/repo`` of ``user/repo:tag`` (a registry port's ':' is kept)."""
    last = image.rsplit("/", 1)[-1]
    return image[: len(image) - len(last)] + last.split(":", 1)[0].split("@", 1)[0]


def _missing(name: str) -> NotFound:
    return NotFound(f"No service named {name!r} in the directory; GET /services lists them.", {"name": name})


class DirectoryStore:
    """Create, read, patch and delete service documents; every update is a compare-and-swap."""

    def __init__(self, etcd: Etcd) -> None:
        self.etcd = etcd

    def create(self, document: dict[str, Any]) -> dict[str, Any]:
        document = {**document, "config": merge_config({}, document["config"])}
        try:
            self.etcd.write(service_key(document["name"]), json.dumps(document, sort_keys=True), prevExist=False)
        except AlreadyExists:
            raise Conflict(
                f"A service named {document['name']!r} already exists; PATCH /services/{document['name']}/config "
                "to change it, or DELETE it first.",
                details={"name": document["name"]},
            ) from None
        return document

    def all(self) -> list[dict[str, Any]]:
        nodes = self.etcd.children(PREFIX)
        return sorted((json.loads(node.value) for node in nodes), key=lambda doc: doc["name"])

    def get(self, name: str) -> dict[str, Any]:
        value = self.etcd.get(service_key(name))
        if value is None:
            raise _missing(name)
        return json.loads(value)

    def find_by_repository(self, image: str) -> dict[str, Any]:
        """The service whose ``dockerRepository`` is ``image``, else the one of the same repository."""
        documents = self.all()
        matches = [d for d in documents if d["dockerRepository"] == image] or [
            d for d in documents if _repository(d["dockerRepository"]) == _repository(image)
        ]
        if not matches:
            raise NotFound(f"No service has dockerRepository {image!r}.", {"dockerRepository": image})
        return matches[0]

    def patch_config(self, name: str, patch: dict[str, Any]) -> dict[str, Any]:
        def apply(document: dict[str, Any]) -> dict[str, Any]:
            return {**document, "config": merge_config(document["config"], patch)}

        try:
            return self.etcd.update_json(service_key(name), apply)
        except KeyNotFound:
            raise _missing(name) from None

    def delete(self, name: str) -> None:
        try:
            self.etcd.delete(service_key(name))
        except KeyNotFound:
            raise _missing(name) from None
