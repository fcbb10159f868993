"""Each running service keeps the promises of its own OpenAPI document.

The four services run for real (gunicorn, a real etcd of this module's own, a real Docker Engine and
HAProxy), with tokens required as paz up runs them; schemathesis, given an admin token,, a property-based API fuzzer, calls every documented operation with
generated valid and invalid input: no answer may be a 5xx, carry a status its document does not
list, or a body its document's schema does not allow. The streaming ``/events`` is left out: a
fuzzer cannot bound a stream that never ends (its own tests cover it); so is the orchestrator's
``POST /services/{name}/deploy``: a fuzzer must not deploy (it would pull made-up images from a
registry this machine cannot reach: a 502 by design), and the scheduler's hooks are fuzzed already.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from paz.auth import TokenStore
from paz.registry import declarations
from tests.support import SESSION_ID, TEST_LABEL, VENV_BIN, EtcdServer, HaproxySync, Service
from tests.test_scheduler import scheduler_env

CHECKS = "not_a_server_error,status_code_conformance,response_schema_conformance"
MAX_EXAMPLES = os.environ.get("PAZ_FUZZ_EXAMPLES", "25")


@pytest.fixture(scope="module")
def suite(tmp_path_factory: pytest.TempPathFactory, docker_engine: Any) -> Iterator[dict[str, Service]]:
    """The whole suite on free ports and an etcd of its own, so what the fuzzer registers stays here;
    the services by name, and an admin token under "admin"."""
    folder = tmp_path_factory.mktemp("fuzz")
    etcd = EtcdServer(folder).start()
    services: dict[str, Service] = {}
    # tokens required, as paz up runs them; an index from the fuzzer that the view never reaches is
    # read from etcd after PAZ_VIEW_WAIT (2 s by default, spent on every such made-up index)
    required = {"PAZ_AUTH": "required", "PAZ_VIEW_WAIT": "0.2"}
    try:
        services["service-directory"] = Service("paz-service-directory", etcd, folder, env=required).start()
        # its own containers only: other tests' running units would each cost the fuzzer Docker's 2 s stats sample
        own = {"PAZ_INSTANCE_LABELS": f"{TEST_LABEL}={SESSION_ID},paz.test.suite=fuzz"}
        services["scheduler"] = Service("paz-scheduler", etcd, folder, env={**scheduler_env(docker_engine, **own), **required}).start()
        services["haproxy-sync"] = HaproxySync(etcd, folder, env=required).start()
        services["orchestrator"] = Service("paz-orchestrator", etcd, folder, env={"PAZ_UPSTREAM_TIMEOUT": "30", **required}).start()
        services["web"] = Service("paz-web", etcd, folder, env={"PAZ_WEB_SECRET_FILE": str(folder / "web-secret"), **required}).start()
        yield services
    finally:
        for service in reversed(services.values()):
            service.stop()
        etcd.stop()


def unresolved_refs(node: Any, document: dict[str, Any]) -> list[str]:
    """Every ``$ref`` in ``node`` that does not point at something in ``document``."""
    if isinstance(node, list):
        return [ref for item in node for ref in unresolved_refs(item, document)]
    if not isinstance(node, dict):
        return []
    missing = []
    ref = node.get("$ref")
    if isinstance(ref, str):
        target: Any = document
        for part in ref.removeprefix("#/").split("/"):
            target = target.get(part) if isinstance(target, dict) else None
        if target is None:
            missing.append(ref)
    return missing + [ref for value in node.values() for ref in unresolved_refs(value, document)]


@pytest.mark.parametrize("name", [service.name for service in declarations()])
def test_every_reference_in_the_document_resolves(suite: dict[str, Service], name: str) -> None:
    document = requests.get(f"{suite[name].url}/openapi.json", timeout=5).json()
    assert document["paths"], f"paz-{name} documents no route"
    assert unresolved_refs(document, document) == []


@pytest.mark.slow
@pytest.mark.parametrize("name", [service.name for service in declarations()])
def test_the_service_keeps_its_documented_contract_under_fuzzing(suite: dict[str, Service], name: str, tmp_path: Path) -> None:
    admin_token, _ = TokenStore(suite[name].etcd.store()).create("admin", f"schemathesis {name}")
    result = subprocess.run(
        [str(VENV_BIN / "schemathesis"), "run", f"{suite[name].url}/openapi.json", "--checks", CHECKS,
         "--max-examples", MAX_EXAMPLES, "--exclude-path", "/events", "--seed", "1",
         "--header", f"Authorization: Bearer {admin_token}",
         # a deploy or rollback of a fuzzed service pulls its fuzzed image from a registry this machine
         # cannot reach: the documented 502 (tests/test_web.py deploys and rolls back for real)
         "--exclude-path-regex", "^/services/[^/]+/(deploy|rollback)$",
         # an item's health answers 503 when it is unhealthy, by design (a monitor reads the status
         # alone), which the fuzzer counts as a server error whenever it finds an unhealthy unit
         "--exclude-path-regex", "^/(cluster|services)/.+/health$",
         "--request-timeout", "60", "--no-color", "--generation-database", "none",
         "--report", "junit", "--report-dir", str(tmp_path)],
        capture_output=True, text=True, timeout=900, cwd=tmp_path,
    )
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
