"""Debian's Prometheus for tests, on a free loopback port, configured as ``paz up --prometheus`` configures
it (:mod:`paz.prometheus`) but scraping every second, so a test sees its targets within seconds."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import requests

from paz import prometheus
from tests.support import Process, free_port, need, wait_until


class Prometheus:
    def __init__(self, folder: Path, orchestrator_url: str) -> None:
        self.folder, self.orchestrator_url, self.port = folder, orchestrator_url, free_port()
        self.process: Process | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> "Prometheus":
        self.folder.mkdir(parents=True, exist_ok=True)
        config = self.folder / "prometheus.yml"
        config.write_text(prometheus.config(self.orchestrator_url, interval="1s", refresh="1s"))
        argv = prometheus.argv(need("prometheus"), str(config), str(self.folder / "data"), f"127.0.0.1:{self.port}")
        self.process = Process(argv, log_path=self.folder / "prometheus.log").start()
        wait_until(self._ready, 30, what="Prometheus ready")
        return self

    def _ready(self) -> bool:
        if self.process is not None and not self.process.alive:
            raise AssertionError(f"prometheus exited:\n{self.process.log()[-3000:]}")
        try:
            return requests.get(f"{self.url}/-/ready", timeout=1).ok
        except requests.ConnectionError:
            return False

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()

    def targets(self) -> list[dict[str, Any]]:
        """The active targets as Prometheus sees them: labels, health (up, down, unknown) and last error."""
        return requests.get(f"{self.url}/api/v1/targets", params={"state": "active"}, timeout=5).json()["data"]["activeTargets"]

    def query(self, expression: str) -> list[dict[str, Any]]:
        answer = requests.get(f"{self.url}/api/v1/query", params={"query": expression}, timeout=5).json()
        assert answer["status"] == "success", answer
        return answer["data"]["result"]
