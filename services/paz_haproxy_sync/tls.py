"""The certificates HAProxy serves, changed in the running HAProxy without a reload.

Each certificate is a file ``<PAZ_HAPROXY_DIR>/certs/<name>.pem`` (chain and key, mode 0600) listed
in ``certs.list``, the crt-list of the TLS bind (with the name as its SNI filter), so a HAProxy that
starts or reloads loads them all. A change reaches the running HAProxy through its Runtime API:
``new ssl cert`` / ``set ssl cert`` / ``commit ssl cert`` and ``add ssl crt-list`` for a new name,
``set`` and ``commit`` for a renewal (connections open on the old certificate go on; new handshakes
get the new one), ``del ssl crt-list`` and ``del ssl cert`` for a name that goes. The files are
written after HAProxy took the change, so they always say what HAProxy serves; a file that differs
from the certificate wanted (read at start, then remembered as written) is set again at the next pass.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from .certs import Certificate
from .haproxy import Haproxy, HaproxyError
from .settings import SyncSettings

log = logging.getLogger(__name__)


class CertificateFiles:
    """HAProxy's certificates: the files of the crt-list and the running HAProxy's memory."""

    def __init__(self, settings: SyncSettings, haproxy: Haproxy) -> None:
        self.folder, self.crt_list, self.haproxy = settings.certs_dir, settings.crt_list, haproxy
        self._files: dict[str, str] = {}
        """What each certificate file holds, read once at :meth:`prepare` and kept as it is written."""

    def prepare(self) -> None:
        """The folder and the crt-list the config names, so a HAProxy can start before any certificate exists."""
        self.folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        self._files = {path.name.removesuffix(".pem"): path.read_text() for path in self.folder.glob("*.pem")}
        self._write_list()

    def served(self) -> frozenset[str]:
        """The names with a certificate file (what HAProxy serves once a pass is done)."""
        return frozenset(self._files)

    def sync(self, wanted: dict[str, Certificate], running: bool) -> bool:
        """Make HAProxy serve exactly ``wanted`` (name to certificate); whether anything changed.

        With HAProxy not running only the files change (it loads them when it starts). A command
        HAProxy refuses raises :class:`HaproxyError`; the files then say what it holds.
        """
        changes = {name: cert for name, cert in wanted.items() if self._files.get(name) != cert.pem}
        gone = self.served() - set(wanted)
        if not changes and not gone:
            return False
        loaded = self._loaded() if running else set()
        for name, certificate in sorted(changes.items()):
            if running:
                self._set(self.path(name), certificate.pem, new=str(self.path(name)) not in loaded)
            self._write(self.path(name), certificate.pem)
            self._files[name] = certificate.pem
            log.info("certificate served", extra={"host": name, "notAfter": certificate.summary()["notAfter"]})
        for name in sorted(gone):
            if running and str(self.path(name)) in loaded:
                self._remove(self.path(name))
            self.path(name).unlink(missing_ok=True)
            del self._files[name]
            log.info("certificate withdrawn", extra={"host": name})
        self._write_list()
        return True

    def path(self, name: str) -> Path:
        return self.folder / f"{name}.pem"

    def _loaded(self) -> set[str]:
        """The certificate files the running HAProxy holds (``show ssl cert``)."""
        return {line.strip() for line in self.haproxy.command("show ssl cert").splitlines() if line.startswith("/")}

    def _set(self, path: Path, pem: str, new: bool) -> None:
        if new:
            self._expect(f"new ssl cert {path}", "New empty certificate store")
        self._expect(f"set ssl cert {path} <<\n{pem}\n", "Transaction")
        self._expect(f"commit ssl cert {path}", "Success")
        if new:
            self._expect(f"add ssl crt-list {self.crt_list} <<\n{path} {path.name.removesuffix('.pem')}\n", "Success")

    def _remove(self, path: Path) -> None:
        self._expect(f"del ssl crt-list {self.crt_list} {path}", "deleted")
        self._expect(f"del ssl cert {path}", "deleted")

    def _expect(self, command: str, success: str) -> None:
        answer = self.haproxy.command(command)
        if success.lower() not in answer.lower():
            raise HaproxyError(f"HAProxy refused {command.split(' <<')[0]!r}: {answer.strip()[:300]}")

    def _write(self, path: Path, text: str) -> None:
        temporary = path.with_name(f".{path.name}.tmp")
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as file:
            file.write(text)
        os.replace(temporary, path)

    def _write_list(self) -> None:
        lines = "".join(f"{self.path(name)} {name}\n" for name in sorted(self.served()))
        self._write(self.crt_list, lines)
