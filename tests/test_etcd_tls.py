"""etcd over TLS with client certificates, as people run it: a service given PAZ_ETCD_CA,
PAZ_ETCD_CERT and PAZ_ETCD_KEY works against an etcd that asks for a client certificate, with
certificates this test makes; without its certificate it says so, as a 503 naming etcd."""

from __future__ import annotations

import subprocess

import pytest

from paz.settings import Settings, SettingsError
from tests.support import VENV_BIN, EtcdServer, Service, wait_until
from tests.support.tls import make_certificates


@pytest.fixture(scope="module")
def tls_etcd(tmp_path_factory: pytest.TempPathFactory):
    folder = tmp_path_factory.mktemp("etcd-tls")
    server = EtcdServer(folder, make_certificates(folder / "certs")).start()
    yield server
    server.stop()


def tls_env(etcd: EtcdServer, with_client_certificate: bool = True) -> dict[str, str]:
    certificates = etcd.certificates
    env = {"PAZ_ETCD_CA": str(certificates.ca)}
    if with_client_certificate:
        env |= {"PAZ_ETCD_CERT": str(certificates.client_cert), "PAZ_ETCD_KEY": str(certificates.client_key)}
    return env


def test_a_service_announces_and_stores_through_tls(tls_etcd: EtcdServer, tmp_path, unique_name: str) -> None:
    directory = Service("paz-service-directory", tls_etcd, tmp_path, env=tls_env(tls_etcd)).start()  # waits for its announce key
    try:
        created = directory.request("POST", "/services", json={"name": unique_name, "dockerRepository": "a/b"})
        assert created.status_code == 201, created.text
        assert tls_etcd.get(f"/paz/directory/services/{unique_name}") is not None
        assert directory.request("GET", "/health").json()["checks"]["etcd"]["ok"] is True
    finally:
        directory.stop()


def test_without_a_client_certificate_the_answer_names_etcd(tls_etcd: EtcdServer, tmp_path) -> None:
    directory = Service("paz-service-directory", tls_etcd, tmp_path, env=tls_env(tls_etcd, with_client_certificate=False))
    directory.start(wait=False)
    try:
        answer, = wait_until(lambda: [directory.request("GET", "/services")], 30, what="the directory answering")
        assert f"etcd is unreachable at {tls_etcd.url}" in answer.json()["error"]["message"]
    finally:
        directory.stop()


def test_a_certificate_without_its_key_is_refused_before_anything_starts(tls_etcd: EtcdServer) -> None:
    with pytest.raises(SettingsError, match="PAZ_ETCD_CERT and PAZ_ETCD_KEY go together"):
        Settings.from_env({"PAZ_ETCD_CERT": str(tls_etcd.certificates.client_cert)}, name="x", port=1)
    result = subprocess.run([str(VENV_BIN / "paz-service-directory")], capture_output=True, text=True, timeout=30,
                            env={"PAZ_ETCD_KEY": str(tls_etcd.certificates.client_key), "PATH": "/usr/bin:/bin"})
    assert result.returncode == 2 and "PAZ_ETCD_KEY go together" in result.stderr
