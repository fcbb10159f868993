"""The suite's image registry for the tests: ``paz registry serve`` (Debian's docker-registry behind it)
on a free loopback port, and the real ``docker`` command talking to a test engine with a config
folder of its own (its logins stay in the test's folder)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

import requests

from tests.support import VENV_BIN, EtcdServer, Process, free_port, need, secrets_key_of, wait_until


class Registry:
    """``paz registry serve`` in its own state folder; the scheduler it sends logins and pushes to must be announced first."""

    def __init__(self, etcd: EtcdServer, state: Path, port: int | None = None, host: str = "127.0.0.1") -> None:
        need("docker-registry")
        self.address = f"{host}:{port or free_port()}"
        self.state = state
        self.process = Process(
            [str(VENV_BIN / "paz"), "--state-dir", str(state), "registry", "serve"],
            env={"PAZ_ETCD_ENDPOINTS": etcd.url, "PAZ_ETCD_API": etcd.api, "PAZ_SECRETS_KEY_FILE": str(secrets_key_of(etcd)),
                 "PAZ_REGISTRY_ADDR": self.address},
            log_path=state / "registry.log",
        )
        self.etcd = etcd

    def start(self) -> "Registry":
        self.process.start()

        def announced() -> bool:
            if not self.process.alive:
                raise AssertionError(f"paz registry serve exited:\n{self.process.log()[-3000:]}")
            found = self.etcd.get("/paz/services/paz-registry")
            return found is not None and found["value"] == self.address

        wait_until(announced, 30, 0.1, what=f"the registry announced at {self.address}")
        return self

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
