"""Certificates a test makes for itself (a CA, etcd's server certificate for 127.0.0.1 and a client
certificate), with Debian's openssl; valid for a day, in the test's own folder."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

from tests.support import need


@dataclass(frozen=True)
class Certificates:
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run([need("openssl"), *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def _signed(name: str, subject: str, extensions: str, folder: Path) -> tuple[Path, Path]:
    (folder / f"{name}.ext").write_text(extensions)
    _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", subject, cwd=folder)
    _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial", "-days", "1",
             "-out", f"{name}.crt", "-extfile", f"{name}.ext", cwd=folder)
    return folder / f"{name}.crt", folder / f"{name}.key"


def make_certificates(folder: Path) -> Certificates:
    folder.mkdir(parents=True, exist_ok=True)
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.crt", "-days", "1",
             "-subj", "/CN=paz test CA", cwd=folder)
    server = _signed("server", "/CN=127.0.0.1", "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth,clientAuth\n", folder)
    client = _signed("client", "/CN=paz-client", "extendedKeyUsage=clientAuth\n", folder)
    return Certificates(folder / "ca.crt", *server, *client)
