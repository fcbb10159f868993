"""The suite's image registry as the scheduler serves it: the token endpoint ``docker login`` goes
through (see :mod:`paz.image_registry` for why tokens and not htpasswd), and the images it keeps for
rollback (:class:`ImageKeeper`)."""

from __future__ import annotations

import logging
from typing import Any

import requests
from cryptography.hazmat.primitives.asymmetric import ec
from docker.utils import parse_repository_tag
from werkzeug.datastructures import Authorization

from paz import image_registry, keys
from paz.auth import TokenStore
from paz.errors import ApiError, Unauthorized, Unavailable
from paz.etcd import Store, StoreUnavailable
from paz.image_registry import Access
from paz.secrets import Keyring
from paz.view import EtcdView

from .store import SchedulerStore

log = logging.getLogger(__name__)


class RegistryGate:
    """Signs the registry's tokens for callers who show a paz token, with the actions its role allows."""

    def __init__(self, etcd: Store, keyring: Keyring) -> None:
        self.etcd = etcd
        self.keyring = keyring

    def key(self) -> ec.EllipticCurvePrivateKey:
        key = image_registry.signing_key(self.etcd, self.keyring)
        if key is None:
            raise Unavailable(f"No image registry was set up here ({image_registry.SIGNING_KEY} is not in etcd): "
                              "start one with paz up --registry.", {"registry": image_registry.NAME})
        return key

    def token(self, authorization: Authorization | None, scopes: list[str]) -> dict[str, Any]:
        """A registry token for the basic-auth ``paz:<paz token>`` in ``authorization``; 401 without one."""
        if authorization is None or authorization.type != "basic" or not authorization.password:
            raise Unauthorized(f"The registry needs a login: docker login -u {image_registry.USER} with a paz token "
                               "as the password (paz token create --role deploy makes one).")
        found = TokenStore(self.etcd).role_of(authorization.password)
        if authorization.username != image_registry.USER or found is None:
            raise Unauthorized(f"Log in to the registry as {image_registry.USER!r} with a valid paz token as the password "
                               "(revoked, or never made here).")
        token_id, role = found
        access = [image_registry.granted(role, asked) for asked in map(image_registry.parse_scope, scopes) if asked]
        log.info("registry token", extra={"token": token_id, "role": role,
                                          "access": [f"{a.name}:{','.join(a.actions)}" for a in access]})
        signed = image_registry.issue_token(self.key(), token_id, access)
        return {"token": signed, "access_token": signed, "expires_in": image_registry.TOKEN_SECONDS}

    def own_token(self, repository: str, *actions: str) -> str:
        """A token of the scheduler's own for the registry's API (to delete what it no longer keeps)."""
        return image_registry.issue_token(self.key(), "paz-scheduler", [Access("repository", repository, actions)])


MANIFEST_TYPES = ", ".join((
    "application/vnd.docker.distribution.manifest.v2+json", "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.oci.image.manifest.v1+json", "application/vnd.oci.image.index.v1+json",
))


class ImageKeeper:
    """Keeps in the suite's registry the images of a service's newest ``PAZ_KEEP_VERSIONS`` versions
    (what ``paz rollback`` can go back to) and deletes the older ones' manifests; ``paz registry gc``
    then frees their space. An image a kept version also runs (the same digest) is never deleted.

    Images are named with ``PAZ_REGISTRY_ADDR`` (as the Docker Engines reach the registry); its API is
    asked where the registry is announced, which differs where it runs in a container (compose)."""

    def __init__(self, settings: Any, store: SchedulerStore, gate: RegistryGate, view: EtcdView) -> None:
        self.address, self.keep, self.store, self.gate = settings.registry_address, settings.keep_versions, store, gate
        self.view = view

    def prune(self, name: str) -> list[str]:
        """Delete the images of ``name``'s versions beyond the newest ``keep``; the images deleted.
        The registry not answering (or none set up) leaves them for the next deploy's turn."""
        history = [v for v in self.store.history(name) if self._repository_tag(v["dockerRepository"])]
        old = [v for v in history[self.keep:] if not v.get("imageDeleted")]
        if not old:
            return []
        try:
            kept = {self._digest(v["dockerRepository"]) for v in history[:self.keep]}
            deleted = [v for v in old if self._delete(v["dockerRepository"], kept)]
        except (requests.RequestException, ApiError, StoreUnavailable) as exc:
            log.warning("registry unreachable: old images not deleted", extra={"service": name, "reason": str(exc)})
            return []
        for version in old:
            self.store.update_version(name, version["version"], imageDeleted=True)
        for version in deleted:
            self.store.journal("image-deleted", name, f"v{version['version']}'s image is deleted from the registry "
                               f"(PAZ_KEEP_VERSIONS={self.keep}); paz registry gc frees its space.",
                               version["version"], image=version["dockerRepository"])
        return [v["dockerRepository"] for v in deleted]

    def _repository_tag(self, image: str) -> tuple[str, str] | None:
        """``(repository, tag)`` of an image in the suite's registry, else None."""
        if not image.startswith(f"{self.address}/"):
            return None
        repository, tag = parse_repository_tag(image.removeprefix(f"{self.address}/"))
        return (repository, tag) if tag else None

    def _call(self, method: str, repository: str, reference: str, *actions: str) -> requests.Response:
        headers = {"Authorization": f"Bearer {self.gate.own_token(repository, *actions)}", "Accept": MANIFEST_TYPES}
        api = self.view.get(keys.suite_service(image_registry.NAME)) or self.address
        answer = requests.request(method, f"http://{api}/v2/{repository}/manifests/{reference}", headers=headers, timeout=10)
        if answer.status_code >= 500 or answer.status_code in (401, 403):
            raise requests.RequestException(f"the registry answered {method} with {answer.status_code}")
        return answer

    def _digest(self, image: str) -> str | None:
        found = self._repository_tag(image)
        if found is None:
            return None
        answer = self._call("HEAD", *found, "pull")
        return answer.headers.get("Docker-Content-Digest") if answer.ok else None

    def _delete(self, image: str, kept: set[str | None]) -> bool:
        digest = self._digest(image)
        if digest is None or digest in kept:
            return False
        repository, _ = self._repository_tag(image) or ("", "")
        return self._call("DELETE", repository, digest, "pull", "delete").ok
