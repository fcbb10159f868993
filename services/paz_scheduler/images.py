"""The suite's image registry as the scheduler serves it: the token endpoint ``docker login`` goes
through (see :mod:`paz.image_registry` for why tokens and not htpasswd), and its own tokens for the
registry's API (pruning old images)."""

from __future__ import annotations

import logging
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec
from werkzeug.datastructures import Authorization

from paz import image_registry
from paz.auth import TokenStore
from paz.errors import Unauthorized, Unavailable
from paz.etcd import Store
from paz.image_registry import Access
from paz.secrets import Keyring

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
