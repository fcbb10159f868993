"""The suite's image registry for the tests and benchmarks: ``paz registry serve`` (Debian's docker-registry behind it)
on a free loopback port, and the real ``docker`` command talking to a test engine with a config
folder of its own (its logins stay in the test's folder)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

import requests

from paz.auth import TokenStore
from tests.support import (
    VENV_BIN, DockerEngine, EtcdServer, Process, Service, free_port, need, secrets_key_of, suite_scheduler, wait_until,
)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


class Registry:
    """``paz registry serve`` in its own state folder; the scheduler it sends logins and pushes to must be announced first.

    ``env`` adds to its environment what compose or a fleet unit gives it; then it is announced at
    ``announced`` (default: its address)."""

    def __init__(self, etcd: EtcdServer, state: Path, port: int | None = None, host: str = "127.0.0.1",
                 env: dict[str, str] | None = None, announced: str | None = None) -> None:
        need("docker-registry")
        self.address = f"{host}:{port or free_port()}"
        self.announced = announced or self.address
        self.state = state
        self.process = Process(
            [str(VENV_BIN / "paz"), "--state-dir", str(state), "registry", "serve"],
            env={"PAZ_REGISTRY_ADDR": self.address, **(env or {}), "PAZ_ETCD_ENDPOINTS": etcd.url, "PAZ_ETCD_API": etcd.api,
                 "PAZ_SECRETS_KEY_FILE": str(secrets_key_of(etcd))},
            log_path=state / "registry.log",
        )
        self.etcd = etcd

    def start(self) -> "Registry":
        self.process.start()

        def announced() -> bool:
            if not self.process.alive:
                raise AssertionError(f"paz registry serve exited:\n{self.process.log()[-3000:]}")
            found = self.etcd.get("/paz/services/paz-registry")
            return found is not None and found["value"] == self.announced

        wait_until(announced, 30, 0.1, what=f"the registry announced at {self.announced}")
        return self

    def realm(self) -> str:
        """Where the registry sends ``docker login`` (its 401's ``WWW-Authenticate`` realm)."""
        answer = requests.get(f"http://{self.address}/v2/", timeout=5)
        assert answer.status_code == 401, answer.text
        return answer.headers["WWW-Authenticate"].split('realm="', 1)[1].split('"', 1)[0]

    def stop(self) -> None:
        self.process.stop()

    def tags(self, repository: str, token: str) -> Any:
        return requests.get(f"http://{self.address}/v2/{repository}/tags/list", timeout=5,
                            headers={"Authorization": f"Bearer {token}"})


class DockerCommand:
    """The ``docker`` command against ``host``, its logins kept in ``config`` (never the user's own)."""

    def __init__(self, host: str, config: Path) -> None:
        self.binary = need("docker")
        self.env = {**os.environ, "DOCKER_HOST": host, "DOCKER_CONFIG": str(config)}
        config.mkdir(parents=True, exist_ok=True)

    def __call__(self, *args: str, stdin: str | None = None, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run([self.binary, *args], input=stdin, capture_output=True, text=True, timeout=timeout, env=self.env)

    def login(self, address: str, token: str) -> subprocess.CompletedProcess[str]:
        return self("login", address, "-u", "paz", "--password-stdin", stdin=token)


class RegistrySuite:
    """etcd, the directory, the scheduler and the orchestrator with tokens required, and the registry."""

    def __init__(self, engine: DockerEngine, workdir: Path, **scheduler_env: str) -> None:
        self.engine, self.workdir, self.scheduler_env = engine, workdir, scheduler_env
        self.etcd = EtcdServer(workdir)
        self.tokens: dict[str, str] = {}
        self.started: list[Any] = []

    def start(self) -> "RegistrySuite":
        self.started.append(self.etcd.start())
        store = TokenStore(self.etcd.store())
        self.tokens = {role: store.create(role, f"test {role}")[0] for role in ("read", "deploy", "admin")}
        self.registry = Registry(self.etcd, self.workdir)
        auth = {"PAZ_AUTH": "required", "PAZ_TOKEN": self.tokens["read"], "PAZ_REGISTRY_ADDR": self.registry.address}
        self.directory = Service("paz-service-directory", self.etcd, self.workdir, env=auth)
        self.scheduler = suite_scheduler(self.etcd, self.engine, self.workdir, own_label=False,
                                         **{**auth, "PAZ_PULL_TIMEOUT": "30", **self.scheduler_env})
        self.orchestrator = Service("paz-orchestrator", self.etcd, self.workdir, env=auth)
        for part in (self.directory, self.scheduler, self.orchestrator, self.registry):
            self.started.append(part.start())
        return self

    def stop(self) -> None:
        for part in reversed(self.started):
            part.stop()

    def register(self, name: str, **config: Any) -> None:
        document = {"name": name, "dockerRepository": f"{self.registry.address}/{name}", "config": config}
        answer = self.orchestrator.request("POST", "/services", json=document, headers=bearer(self.tokens["admin"]))
        assert answer.status_code == 201, answer.text

    def history(self, name: str) -> list[dict[str, Any]]:
        return self.orchestrator.request("GET", f"/services/{name}/config/history").json()

    def served(self, name: str) -> str:
        """What the service's running unit answers at /."""
        def healthy() -> dict[str, Any] | None:
            units = self.orchestrator.request("GET", f"/services/{name}/units").json()
            return next((u for u in units if u.get("healthy")), None)

        unit = wait_until(healthy, 10, 0.2, what=f"a healthy unit of {name}")
        return requests.get(f"http://{unit['host']}:{unit['port']}/", timeout=5).text


    def paz(self, *args: str) -> subprocess.CompletedProcess[str]:
        """The ``paz`` command as a person with the admin token runs it against this suite and engine."""
        env = {**os.environ, "PAZ_URL": self.orchestrator.url, "PAZ_TOKEN": self.tokens["admin"], "DOCKER_HOST": self.engine.host,
               "PAZ_REGISTRY_ADDR": self.registry.address}
        return subprocess.run([str(VENV_BIN / "paz"), "--state-dir", str(self.workdir / "cli"), *args],
                              capture_output=True, text=True, timeout=240, env=env)
