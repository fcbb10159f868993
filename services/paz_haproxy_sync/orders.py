"""Ordering certificates: one router at a time, each name once, again at two thirds of its life.

Any number of haproxy-sync instances may run; the one that leads (``/paz/leaders/paz-haproxy-sync``,
bound to a lease: :class:`paz.leadership.Leadership`) orders, and every router serves what is in
etcd. A pass is level-triggered: for each name that should be served over HTTPS
(:meth:`.model.Table.https_names`), a certificate is ordered when etcd holds none, or one of ours
(not one a user brought) past its renewal time. A failed order is recorded in etcd with its reason
and the time of the next try (back-off from 10 s to an hour), so ``/health`` on every router says
why, a new leader keeps the back-off, and nothing else stops: the name stays on plain HTTP (or on
its previous certificate) meanwhile.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import logging
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from paz import journal, keys
from paz.contracts.times import iso, iso_now
from paz.etcd import Store, StoreUnavailable
from paz.leadership import Leadership
from paz.secrets import Keyring

from .certs import ACME, BROUGHT, BadCertificate, Certificate, OrderFailed, read_pem, stored
from .figures import router_figures
from .settings import SyncSettings

if TYPE_CHECKING:
    from .acme_ca import AcmeCa

log = logging.getLogger(__name__)

PART = "paz-haproxy-sync"
LEADER_TTL = 10
PASS_SECONDS = 5.0
FIRST_RETRY_SECONDS, LAST_RETRY_SECONDS = 10.0, 3600.0


def retry_after(attempts: int) -> float:
    """Seconds before the next try after ``attempts`` failed orders in a row."""
    return min(LAST_RETRY_SECONDS, FIRST_RETRY_SECONDS * 2 ** (attempts - 1))


def now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


class CertificateOrders:
    """The ordering loop of one router: it works only while this router leads."""

    def __init__(self, settings: SyncSettings, etcd: Store, keyring: Keyring,
                 wanted: Callable[[], dict[str, str] | None], held: Callable[[], dict[str, Certificate]],
                 failures: Callable[[], dict[str, dict[str, Any]]]) -> None:
        self.settings, self.etcd, self.keyring = settings, etcd, keyring
        self.wanted, self.held, self.failures = wanted, held, failures
        self.leadership = Leadership(etcd, PART, settings.address, LEADER_TTL)
        self.wake = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="paz-certificate-orders", daemon=True)

    @functools.cached_property
    def ca(self) -> AcmeCa:
        """The ACME client, made for the first order: a router that never orders never imports ``acme``,
        ``josepy`` and pyOpenSSL (about 4 MB of its memory)."""
        from .acme_ca import AcmeCa

        return AcmeCa(self.settings, self.etcd, self.keyring)

    def start(self) -> "CertificateOrders":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self.wake.set()
        self._thread.join(timeout=10)
        self.leadership.resign()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.leadership.beat()
            if self.leadership.leading.is_set():
                try:
                    self.pass_over()
                except StoreUnavailable as exc:
                    log.warning("etcd away: no certificate ordered until it answers", extra={"reason": str(exc)})
                except Exception:  # noqa: BLE001 - the loop goes on; the next pass tries again
                    log.exception("a pass over the certificates failed")
            self.wake.wait(min(PASS_SECONDS, LEADER_TTL / 3))
            self.wake.clear()

    def pass_over(self) -> None:
        """Order what is due, one name at a time (a pass stops early when this router stops)."""
        wanted = self.wanted()
        if wanted is None:
            return  # etcd not read yet
        held, failures = self.held(), self.failures()
        for name, service in sorted(wanted.items()):
            if self._stop.is_set() or not self.leadership.leading.is_set():
                return
            if self._due(held.get(name), failures.get(name)):
                self.order(name, service, failures.get(name))

    def _due(self, certificate: Certificate | None, failure: dict[str, Any] | None) -> bool:
        if failure and failure.get("retryAt", "") > iso(now()):
            return False
        if certificate is None:
            return True
        return certificate.source == ACME and now() >= certificate.renew_at

    def order(self, name: str, service: str, failure: dict[str, Any] | None) -> None:
        """Order ``name``'s certificate (``service`` answers on it); the outcome goes to etcd and the journal."""
        try:
            chain, key = self.ca.order(name)
            certificate = read_pem(name, chain, key, ACME)
        except (OrderFailed, BadCertificate) as exc:
            router_figures().orders.labels("failed").inc()
            self._failed(name, service, str(exc), (failure or {}).get("attempts", 0) + 1)
            return
        router_figures().orders.labels("issued").inc()
        self.etcd.put(keys.certificate(name), stored(certificate, self.keyring))
        self.etcd.delete(keys.acme_failure(name))
        journal.write(self.etcd, "certificate", service,
                      f"certificate for {name} issued by {certificate.issuer}, valid until {iso(certificate.not_after)}")

    def _failed(self, name: str, service: str, reason: str, attempts: int) -> None:
        retry = now() + dt.timedelta(seconds=retry_after(attempts))
        log.warning("certificate not ordered; plain HTTP (or the previous certificate) meanwhile",
                    extra={"host": name, "reason": reason, "attempts": attempts, "retryAt": iso(retry)})
        self.etcd.put(keys.acme_failure(name), json.dumps(
            {"name": name, "reason": reason, "attempts": attempts, "failedAt": iso_now(), "retryAt": iso(retry)}))
        journal.write(self.etcd, "certificate-failed", service,
                      f"certificate for {name} not ordered (attempt {attempts}): {reason}; next try at {iso(retry)}")


def brought(etcd: Store, keyring: Keyring, name: str, chain: str, key: str) -> Certificate:
    """Store a certificate a user brings for ``name`` (checked; BadCertificate says what is wrong)."""
    certificate = read_pem(name, chain, key, BROUGHT)
    etcd.put(keys.certificate(name), stored(certificate, keyring))
    etcd.delete(keys.acme_failure(name))
    return certificate
