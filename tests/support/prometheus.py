"""Debian's Prometheus for tests, on a free loopback port, configured as ``paz up --prometheus`` configures
it (:mod:`paz.prometheus`) but scraping every second, so a test sees its targets within seconds."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import requests

from paz import prometheus
from tests.support import Process, free_port, need, wait_until


class Prometheus:
    def __init__(self, folder: Path, orchestrator_url: str, port: int | None = None) -> None:
        self.folder, self.orchestrator_url, self.port = folder, orchestrator_url, port or free_port()
        self.process: Process | None = None

    @classmethod
    def at(cls, port: int) -> "Prometheus":
        """One that something else started (paz up), to ask."""
        return cls(Path(), "", port)

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

    def wait_until_up(self, parts: set[str], timeout: float = 90) -> set[str]:
        """Wait until Prometheus has reported a target of each of ``parts`` (the label ``part``) up, at one
        scrape or another (a loaded machine may miss one scrape); the parts it saw up, failing with each
        target's last error otherwise."""
        seen: set[str] = set()

        def every_part_seen_up() -> bool:
            seen.update(t["labels"].get("part", "") for t in self.targets() if t["health"] == "up")
            return parts <= seen

        try:
            wait_until(every_part_seen_up, timeout, interval=0.5, what="Prometheus reporting every part up")
        except AssertionError:
            found = [(t["labels"].get("part"), t["scrapeUrl"], t["health"], t["lastError"]) for t in self.targets()]
            raise AssertionError(f"never up: {sorted(parts - seen)}; the targets: {found}") from None
        return seen & parts

    def query(self, expression: str) -> list[dict[str, Any]]:
        answer = requests.get(f"{self.url}/api/v1/query", params={"query": expression}, timeout=5).json()
        assert answer["status"] == "success", answer
        return answer["data"]["result"]
