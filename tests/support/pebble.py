"""Debian's pebble, a real ACME CA (RFC 8555) for tests, with pebble-challtestsrv as its DNS so every
name resolves to 127.0.0.1: pebble then validates HTTP-01 against the router's plain HTTP port.

Both run on free loopback ports with their own TLS certificate (``tests.support.tls``); the CA file
that trusts pebble's API is ``ca_bundle`` (``PAZ_ACME_CA_BUNDLE``), and the roots pebble issues
under come from its management API (:meth:`Pebble.issuing_roots`), for a client checking what the
router serves.
"""

from __future__ import annotations

import json
from pathlib import Path

import requests

from tests.support import Process, free_port, need, wait_until
from tests.support.tls import make_certificates


class Pebble:
    def __init__(self, folder: Path, http_port: int, validity_seconds: int = 7 * 86400) -> None:
        self.folder, self.http_port, self.validity_seconds = folder, http_port, validity_seconds
        self.port, self.management_port, self.dns_port = free_port(), free_port(), free_port()
        self.ca_bundle = folder / "tls" / "ca.crt"
        self.processes: list[Process] = []

    @property
    def directory(self) -> str:
        return f"https://127.0.0.1:{self.port}/dir"

    def start(self) -> "Pebble":
        self.folder.mkdir(parents=True, exist_ok=True)
        certificates = make_certificates(self.ca_bundle.parent)
        config = {"pebble": {
            "listenAddress": f"127.0.0.1:{self.port}", "managementListenAddress": f"127.0.0.1:{self.management_port}",
            "certificate": str(certificates.server_cert), "privateKey": str(certificates.server_key),
            "httpPort": self.http_port, "tlsPort": free_port(), "ocspResponderURL": "",
            "externalAccountBindingRequired": False, "certificateValidityPeriod": self.validity_seconds,
        }}
        (self.folder / "pebble.json").write_text(json.dumps(config))
        dns = Process([need("pebble-challtestsrv"), "-defaultIPv4", "127.0.0.1", "-defaultIPv6", "",
                       "-dns01", f"127.0.0.1:{self.dns_port}", "-http01", "", "-https01", "", "-tlsalpn01", "",
                       "-management", f"127.0.0.1:{free_port()}"], log_path=self.folder / "challtestsrv.log")
        # no random waits before validating, and no nonce refused for fun: the tests are about the router
        ca = Process([need("pebble"), "-config", str(self.folder / "pebble.json"), "-dnsserver", f"127.0.0.1:{self.dns_port}"],
                     env={"PEBBLE_VA_NOSLEEP": "1", "PEBBLE_WFE_NONCEREJECT": "0", "PEBBLE_AUTHZREUSE": "0"},
                     log_path=self.folder / "pebble.log")
        self.processes = [dns.start(), ca.start()]
        wait_until(lambda: requests.get(self.directory, verify=str(self.ca_bundle), timeout=1).ok, 15, what="pebble's directory")
        return self

    def ordering_env(self, directory: str | None = None) -> dict[str, str]:
        """What a haproxy-sync needs to order from this CA (or from ``directory``, trusting this CA's API certificate)."""
        return {"PAZ_ACME_DIRECTORY": directory or self.directory, "PAZ_ACME_CA_BUNDLE": str(self.ca_bundle),
                "PAZ_ACME_EMAIL": "ops@example.test"}

    def stop(self) -> None:
        for process in reversed(self.processes):
            process.stop()

    def issuing_roots(self) -> Path:
        """A CA file of the root pebble issues under (it makes a new one each start)."""
        path = self.folder / "issuing-roots.pem"
        answer = requests.get(f"https://127.0.0.1:{self.management_port}/roots/0", verify=str(self.ca_bundle), timeout=5)
        answer.raise_for_status()
        path.write_text(answer.text)
        return path

    def log(self) -> str:
        return "\n".join(process.log()[-3000:] for process in self.processes)
