"""``paz docs build`` and ``paz docs serve``: the documentation site, built with mkdocs in strict mode, with
its references made from the code (settings, ``paz`` commands, API routes, etcd keys) and nothing
running (no etcd, no Docker Engine)."""

from __future__ import annotations

import html
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import click
import pytest
import requests

from tests.support import ROOT, VENV_BIN, Process, free_port, wait_until

from paz.cli import cli
from paz.docs import settings_page
from paz.registry import PACKAGES, declaration, declarations
from paz.web import create_app

NOTHING_RUNNING = {
    "PAZ_ETCD_ENDPOINTS": f"http://127.0.0.1:{free_port()}",
    "DOCKER_HOST": "unix:///nonexistent/docker.sock",
}
LOADED_FROM_ELSEWHERE = re.compile(r"""(?:\bsrc\s*=|<link\b[^>]*\bhref\s*=)\s*["']?\s*(?:https?:)?//""", re.IGNORECASE)
VARIABLE = re.compile(r"""["'{]\$?\{?(PAZ_[A-Z0-9_]*[A-Z0-9])\b""")


def paz(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(VENV_BIN / "paz"), *args], capture_output=True, text=True, timeout=120, env=env, cwd=ROOT)


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    site = tmp_path_factory.mktemp("docs") / "site"
    result = paz("docs", "build", "--site", str(site), env={**os.environ, **NOTHING_RUNNING})
    assert result.returncode == 0, result.stdout + result.stderr
    return site


@pytest.fixture(scope="module")
def site_text(built: Path) -> str:
    """Every page's text, tags removed and entities decoded, as a reader sees it."""
    pages = sorted(built.rglob("*.html"))
    return "\n".join(html.unescape(re.sub(r"<[^>]+>", " ", page.read_text())) for page in pages)


def flask_paths(package: str, pages: bool = False) -> set[str]:
    """Every API route of a service's app (or, with ``pages``, its HTML pages: paz-web's), in OpenAPI's ``{name}`` form."""
    app = create_app(declaration(package))
    return {
        re.sub(r"<(?:[^:>]+:)?([^>]+)>", r"{\1}", rule.rule) for rule in app.url_map.iter_rules()
        if rule.endpoint != "static" and rule.endpoint.startswith("pages.") == pages
    }


def variables_the_code_reads() -> set[str]:
    """Every ``PAZ_*`` name spelt whole in the services' and the library's code, and in the compose file."""
    sources = [*ROOT.glob("shared/paz/**/*.py"), *ROOT.glob("services/**/*.py"), ROOT / "compose" / "docker-compose.yml"]
    return {name for source in sources for name in VARIABLE.findall(source.read_text())}


def commands(command: click.Command, path: str = "paz") -> list[tuple[str, click.Command]]:
    found = [(path, command)]
    for name, sub in getattr(command, "commands", {}).items():
        found += commands(sub, f"{path} {name}")
    return found


@pytest.mark.parametrize("package", PACKAGES)
def test_every_service_has_a_document_with_all_its_routes(built: Path, package: str, monkeypatch: pytest.MonkeyPatch) -> None:
    for var, value in NOTHING_RUNNING.items():
        monkeypatch.setenv(var, value)
    name = declaration(package).announced_as
    document = json.loads((built / "reference" / "api" / f"{name}.openapi.json").read_text())
    assert document["openapi"].startswith("3.")
    assert document["info"]["title"] == name
    assert {"/health", "/openapi.json", "/docs"} <= set(document["paths"])
    assert set(document["paths"]) == flask_paths(package)
    assert len(document["paths"]) > 3 or flask_paths(package, pages=True), "a service documents its own routes, not only the common ones"
    page = html.unescape((built / "reference" / "api" / f"{name}.html").read_text())
    assert [path for path in document["paths"] if path not in page] == [], f"{name}'s page lacks routes"


def test_directory_document_describes_paz_routes(built: Path) -> None:
    paths = json.loads((built / "reference" / "api" / "paz-service-directory.openapi.json").read_text())["paths"]
    assert {"get", "post"} <= set(paths["/services"])
    assert {"get", "patch"} <= set(paths["/services/{name}/config"])


def test_every_variable_the_code_reads_is_in_the_site(site_text: str) -> None:
    variables = variables_the_code_reads()
    assert {"PAZ_ETCD_ENDPOINTS", "PAZ_DRIVER", "PAZ_WEB_SECRET", "PAZ_URL", "PAZ_IMAGE"} <= variables  # the scan finds them
    assert sorted(var for var in variables if var not in site_text) == []


def test_every_paz_command_and_option_is_in_the_site(built: Path) -> None:
    page = html.unescape((built / "reference" / "cli.html").read_text())
    for path, command in commands(cli):
        assert path in page, path
        for param in command.params:
            names = param.opts if isinstance(param, click.Option) else [param.human_readable_name]
            assert all(name in page for name in names), (path, param.name)


def test_every_setting_says_what_it_means_and_every_key_is_listed(built: Path) -> None:
    rows = [line for line in settings_page(declarations()).splitlines() if line.startswith("| `")]
    assert len(rows) > 40
    assert [row for row in rows if not row.rstrip(" |").rsplit("|", 1)[-1].strip()] == [], "a setting without a docstring"
    etcd_page = html.unescape((built / "reference" / "etcd.html").read_text())
    assert "/paz/scheduler/desired/<name>" in etcd_page and "/paz/services/<service>/<version>/<number>" in etcd_page


def test_the_site_loads_nothing_from_elsewhere(built: Path) -> None:
    loading = {str(page.relative_to(built)) for page in built.rglob("*.html") if LOADED_FROM_ELSEWHERE.search(page.read_text())}
    assert loading == set()
    assert (built / "screenshots" / "cluster.png").exists() and (built / "tutorial.html").exists()


def test_a_broken_link_fails_the_build(tmp_path: Path) -> None:
    shutil.copytree(ROOT / "docs", tmp_path / "docs")
    shutil.copy(ROOT / "mkdocs.yml", tmp_path / "mkdocs.yml")
    with (tmp_path / "docs" / "tutorial.md").open("a") as page:
        page.write("\nSee [a page that is not there](nowhere.md).\n")
    result = paz("docs", "build", "--config", str(tmp_path / "mkdocs.yml"), "--site", str(tmp_path / "site"),
                 env={**os.environ, **NOTHING_RUNNING})
    assert result.returncode == 1
    assert "nowhere.md" in result.stderr and "strict" in result.stderr


def test_serve_answers_the_site_on_loopback(built: Path, tmp_path: Path) -> None:
    port = free_port()
    server = Process([str(VENV_BIN / "paz"), "docs", "serve", "--site", str(built), "--port", str(port)], log_path=tmp_path / "serve.log").start()
    try:
        page = wait_until(lambda: requests.get(f"http://127.0.0.1:{port}/", timeout=1), 15, what="paz docs serve")
        assert page.status_code == 200 and "Tutorial" in page.text
        document = requests.get(f"http://127.0.0.1:{port}/reference/api/paz-service-directory.openapi.json", timeout=2)
        assert document.json()["info"]["title"] == "paz-service-directory"
    finally:
        server.stop()


def test_serve_without_a_build_says_what_to_run(tmp_path: Path) -> None:
    result = paz("docs", "serve", "--site", str(tmp_path), "--port", str(free_port()))
    assert result.returncode == 1
    assert "paz docs build" in result.stderr


def test_build_with_a_bad_setting_names_it_without_a_traceback(tmp_path: Path) -> None:
    result = paz("docs", "build", "--site", str(tmp_path / "site"), env={**os.environ, "PAZ_LOG_LEVEL": "LOUD"})
    assert result.returncode == 1
    assert "PAZ_LOG_LEVEL" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "site" / "index.html").exists()
