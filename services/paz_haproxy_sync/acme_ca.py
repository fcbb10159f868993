"""Ordering a certificate from an ACME CA (RFC 8555), answering HTTP-01 through etcd.

certbot's ``acme`` library speaks the protocol (JWS, nonces, the directory, polling, finalizing):
the other maintained clients are whole programs (certbot, lego, acme.sh) that want to own the web
server or the files, while here the router is HAProxy and the state is etcd. The account key is
kept in etcd, sealed with the suite's secrets key, so every router and every restart orders as the
same account. A challenge's answer is written to ``/paz/acme/challenges/<token>`` on a lease, where
every router's haproxy-sync answers it (:data:`.render.ACME_PATH`): whichever router the CA reaches.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager

import josepy as jose
from acme import challenges, client, crypto_util, errors, messages
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from paz import keys
from paz.etcd import AlreadyExists, Store
from paz.secrets import Keyring

from .certs import OrderFailed
from .settings import SyncSettings

log = logging.getLogger(__name__)

ORDER_SECONDS = 90
"""How long one order may take: the CA validating every name, then issuing."""
CHALLENGE_TTL = 600
USER_AGENT = "paz-haproxy-sync"


class AcmeCa:
    """One ACME CA at ``PAZ_ACME_DIRECTORY``, as one account."""

    def __init__(self, settings: SyncSettings, etcd: Store, keyring: Keyring) -> None:
        self.settings, self.etcd, self.keyring = settings, etcd, keyring

    def order(self, name: str) -> tuple[str, str]:
        """A new certificate for ``name``: its PEM chain and its private key (PEM); OrderFailed if not."""
        try:
            return self._order(name)
        except OrderFailed:
            raise
        except errors.Error as exc:
            raise OrderFailed(f"the ACME CA at {self.settings.acme_directory} refused: {_reason(exc)}") from None
        except messages.Error as exc:
            raise OrderFailed(f"the ACME CA at {self.settings.acme_directory} refused: {exc.detail or exc.typ}") from None
        except OSError as exc:  # requests' ConnectionError and SSLError are OSErrors
            raise OrderFailed(f"the ACME CA at {self.settings.acme_directory} cannot be reached: {exc}") from None

    def _order(self, name: str) -> tuple[str, str]:
        account_key = self._account_key()
        acme = self._client(account_key)
        key = ec.generate_private_key(ec.SECP256R1()).private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
        order = acme.new_order(crypto_util.make_csr(key, [name]))
        with self._answering(order, account_key) as answers:
            for challenge, response in answers:
                acme.answer_challenge(challenge, response)
            deadline = dt.datetime.now() + dt.timedelta(seconds=ORDER_SECONDS)
            finished = acme.poll_and_finalize(order, deadline=deadline)
        log.info("certificate ordered", extra={"host": name, "ca": self.settings.acme_directory})
        return finished.fullchain_pem, key.decode()

    def _client(self, account_key: jose.JWK) -> client.ClientV2:
        verify: bool | str = self.settings.acme_ca_bundle or True
        network = client.ClientNetwork(account_key, user_agent=USER_AGENT, verify_ssl=verify, timeout=30)
        directory = client.ClientV2.get_directory(self.settings.acme_directory, network)
        acme = client.ClientV2(directory, network)
        registration = messages.NewRegistration.from_data(email=self.settings.acme_email or None, terms_of_service_agreed=True)
        try:
            network.account = acme.new_account(registration)
        except errors.ConflictError as exc:  # the key is registered already: go on as that account
            network.account = acme.query_registration(messages.RegistrationResource(uri=exc.location, body=registration))
        return acme

    def _account_key(self) -> jose.JWK:
        """The account's key from etcd, made (and stored sealed) the first time; one key wins a race."""
        value = self.etcd.value(keys.ACME_ACCOUNT)
        if value is None:
            made = rsa.generate_private_key(65537, 2048).private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()).decode()
            try:
                self.etcd.create(keys.ACME_ACCOUNT, json.dumps({"key": {"sealed": self.keyring.seal(made)}}))
            except AlreadyExists:
                pass
            value = self.etcd.value(keys.ACME_ACCOUNT) or ""
        sealed = json.loads(value)["key"]["sealed"]
        return jose.JWKRSA.load(self.keyring.open("the ACME account key", sealed).encode())

    @contextmanager
    def _answering(self, order: messages.OrderResource,
                   account_key: jose.JWK) -> Iterator[list[tuple[messages.ChallengeBody, challenges.ChallengeResponse]]]:
        """Publish the HTTP-01 answers of every authorization still pending, for as long as the order runs."""
        lease = self.etcd.grant(CHALLENGE_TTL)
        answers, published = [], []
        try:
            for authorization in order.authorizations:
                if authorization.body.status == messages.STATUS_VALID:
                    continue  # validated before (a CA may reuse an authorization)
                challenge = _http01(authorization)
                response, validation = challenge.response_and_validation(account_key)
                key = keys.acme_challenge(challenge.chall.encode("token"))
                self.etcd.put(key, validation, lease)
                published.append(key)
                answers.append((challenge, response))
            yield answers
        finally:
            for key in published:
                self.etcd.delete(key)


def _http01(authorization: messages.AuthorizationResource) -> messages.ChallengeBody:
    for challenge in authorization.body.challenges:
        if isinstance(challenge.chall, challenges.HTTP01):
            return challenge
    raise OrderFailed(f"the ACME CA offers no HTTP-01 challenge for {authorization.body.identifier.value}")


def _reason(exc: errors.Error) -> str:
    """What went wrong, in a sentence (a failed validation names the CA's own reason)."""
    if isinstance(exc, errors.ValidationError):
        problems = [c.error.detail for a in exc.failed_authzrs for c in a.body.challenges if c.error]
        return "validation failed: " + ("; ".join(problems) or "no reason given")
    if isinstance(exc, errors.TimeoutError):
        return f"no certificate within {ORDER_SECONDS} s"
    return str(exc) or exc.__class__.__name__
