"""``paz docs build`` and ``paz docs serve``: the API documents a user reads, built from the services'
own app factories with nothing running (no etcd, no Docker Engine)."""

from __future__ import annotations

import os
import json
import re
import subprocess
from pathlib import Path

import pytest
import requests

from tests.support import ROOT, VENV_BIN, Process, free_port, wait_until

from paz.registry import PACKAGES, declaration
from paz.web import create_app

NOTHING_RUNNING = {
    "PAZ_ETCD_ENDPOINTS": f"http://127.0.0.1:{free_port()}",
    "DOCKER_HOST": "unix:///nonexistent/docker.sock",
}
EXTERNAL = re.compile(r"""(?:src|href)\s*=\s*["']?\s*(?:https?:)?//""", re.IGNORECASE)


def paz(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(VENV_BIN / "paz"), *args], capture_output=True, text=True, timeout=60, env=env)


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("docs")
    result = paz("docs", "build", "--dir", str(out), env={**os.environ, **NOTHING_RUNNING})
    assert result.returncode == 0, result.stderr
    return out


def flask_paths(package: str, pages: bool = False) -> set[str]:
    """Every API route of a service's app (or, with ``pages``, its HTML pages: paz-web's), in OpenAPI's ``{name}`` form."""
    app = create_app(declaration(package))
    return {
        re.sub(r"<(?:[^:>]+:)?([^>]+)>", r"{\1}", rule.rule) for rule in app.url_map.iter_rules()
        if rule.endpoint != "static" and rule.endpoint.startswith("pages.") == pages
    }


@pytest.mark.parametrize("package", PACKAGES)
def test_every_service_has_a_document_with_all_its_routes(built: Path, package: str, monkeypatch: pytest.MonkeyPatch) -> None:
    for var, value in NOTHING_RUNNING.items():
        monkeypatch.setenv(var, value)
    service = declaration(package).name
    document = json.loads((built / f"paz-{service}.openapi.json").read_text())
    assert document["openapi"].startswith("3.")
    assert document["info"]["title"] == f"paz-{service}"
    assert {"/health", "/openapi.json", "/docs"} <= set(document["paths"])
    assert set(document["paths"]) == flask_paths(package)
    assert len(document["paths"]) > 3 or flask_paths(package, pages=True), "a service documents its own routes, not only the common ones"


def test_directory_document_describes_paz_routes(built: Path) -> None:
    paths = json.loads((built / "paz-service-directory.openapi.json").read_text())["paths"]
    assert {"get", "post"} <= set(paths["/services"])
    assert {"get", "patch"} <= set(paths["/services/{name}/config"])


def test_reference_has_a_section_per_service_and_no_external_urls(built: Path) -> None:
    html = (built / "index.html").read_text()
    for package in PACKAGES:
        name = declaration(package).announced_as
        assert f'id="{name}"' in html
        assert f'href="{name}.openapi.json"' in html
        assert (built / f"{name}.openapi.json").exists()
    assert "/services/{name}/config" in html
    assert EXTERNAL.findall(html) == []
    assert "<script" not in html.lower()


def test_serve_answers_the_reference_and_documents_on_loopback(built: Path, tmp_path: Path) -> None:
    port = free_port()
    server = Process([str(VENV_BIN / "paz"), "docs", "serve", "--dir", str(built), "--port", str(port)], log_path=tmp_path / "serve.log").start()
    try:
        page = wait_until(lambda: requests.get(f"http://127.0.0.1:{port}/", timeout=1), 15, what="paz docs serve")
        assert page.status_code == 200 and "paz-service-directory" in page.text
        document = requests.get(f"http://127.0.0.1:{port}/paz-service-directory.openapi.json", timeout=2)
        assert document.json() == json.loads((built / "paz-service-directory.openapi.json").read_text())
    finally:
        server.stop()


def test_serve_without_a_build_says_what_to_run(tmp_path: Path) -> None:
    result = paz("docs", "serve", "--dir", str(tmp_path), "--port", str(free_port()))
    assert result.returncode == 1
    assert "paz docs build" in result.stderr


def test_build_with_a_bad_setting_names_it_without_a_traceback(tmp_path: Path) -> None:
    result = paz("docs", "build", "--dir", str(tmp_path), env={**os.environ, "PAZ_LOG_LEVEL": "LOUD"})
    assert result.returncode == 1
    assert "PAZ_LOG_LEVEL" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "index.html").exists()


def test_committed_documents_are_the_ones_the_code_makes(built: Path) -> None:
    for path in sorted(built.glob("*.openapi.json")):
        committed = ROOT / "docs" / path.name
        assert committed.exists() and json.loads(committed.read_text()) == json.loads(path.read_text()), \
            f"docs/{path.name} is stale: run paz docs build"
