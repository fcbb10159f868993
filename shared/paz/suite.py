"""Starting and stopping the whole suite on one machine (``paz up`` / ``paz down``).

Every part runs in the background with its pid file and log under one state folder
(``PAZ_STATE_DIR``, default ``.paz/``). A part already running (its pid file names a live process
with the expected command) is left alone, so ``paz up`` twice starts nothing twice, and ``paz down``
stops exactly the processes whose pid files it wrote.

Docker is found the Docker way (``DOCKER_HOST``, else the default socket). When no engine answers
and ``dockerd`` is installed and we are root, the suite starts a Docker Engine of its own on a socket
in the state folder; otherwise everything but deploying works and the scheduler answers deploys
with a 503.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import docker
import requests

from . import keys
from .processes import command
from .registry import declarations
from .waiting import poll
from .etcd_client import Etcd, StoreUnavailable

ETCD_URL = "http://127.0.0.1:2379"
HTTP_PORT = 8080
STATS_PORT = 1936
DEFAULT_DOCKER_HOST = "unix:///var/run/docker.sock"


@dataclass
class Part:
    """One process of the suite and how to tell that it is ready."""

    name: str
    argv: list[str]
    address: str
    env: dict[str, str] = field(default_factory=dict)
    announced_as: str | None = None
    ready_urls: list[str] = field(default_factory=list)
    install_hint: str = ""
    docker_host: str | None = None


def _program(name: str, *fallbacks: str) -> str:
    """A console script of this installation (beside the running Python), else from PATH."""
    local = Path(sys.executable).parent / name
    if local.exists():
        return str(local)
    return shutil.which(name) or next((path for path in fallbacks if os.access(path, os.X_OK)), name)


def docker_answers(host: str) -> bool:
    try:
        return bool(docker.DockerClient(base_url=host, timeout=3).ping())
    except Exception:  # any failure to reach the engine means: not this one
        return False


class Suite:
    """The parts ``paz up`` starts, in order, and what it knows of them."""

    def __init__(self, state_dir: Path, environ: dict[str, str] | None = None) -> None:
        self.state_dir = state_dir.resolve()
        self.environ = dict(os.environ if environ is None else environ)
        self.own_docker_host = f"unix://{self.state_dir / 'docker.sock'}"
        self.parts = [self._etcd(), self._dockerd(), *self._services()]

    def _etcd(self) -> Part:
        peer = "http://127.0.0.1:2380"
        return Part(
            "etcd",
            [_program("etcd", "/usr/bin/etcd"), "--name", "paz", "--data-dir", str(self.state_dir / "etcd-data"),
             "--enable-v2", "--listen-client-urls", ETCD_URL, "--advertise-client-urls", ETCD_URL,
             "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer, "--initial-cluster", f"paz={peer}",
             "--log-level", "warn"],
            "127.0.0.1:2379",
            ready_urls=[f"{ETCD_URL}/health"],
            install_hint="apt-get install etcd-server",
        )

    def _dockerd(self) -> Part:
        # dockerd's exec root holds containerd's socket, whose path must stay short: keep it in /tmp.
        exec_root = f"/tmp/paz-docker-{hashlib.sha1(str(self.state_dir).encode()).hexdigest()[:8]}"
        return Part(
            "docker",
            [_program("dockerd", "/usr/sbin/dockerd", "/usr/bin/dockerd"), "--host", self.own_docker_host,
             "--data-root", str(self.state_dir / "docker"), "--exec-root", exec_root,
             "--pidfile", str(self.state_dir / "run" / "dockerd.self.pid"), "--ip", "127.0.0.1"],
            self.own_docker_host,
            install_hint="apt-get install docker.io",
            docker_host=self.own_docker_host,
        )

    def _services(self) -> list[Part]:
        """A part per declared service (:mod:`paz.registry`), with what this machine adds to its settings."""
        common = {"PAZ_ETCD_ENDPOINTS": ETCD_URL, "PAZ_HOST": "127.0.0.1"}
        extra_env = {
            "scheduler": {"DOCKER_HOST": self.docker_host or DEFAULT_DOCKER_HOST},
            "haproxy-sync": {"PAZ_HTTP_PORT": str(HTTP_PORT), "PAZ_STATS_PORT": str(STATS_PORT),
                             "PAZ_HAPROXY_DIR": str(self.state_dir / "haproxy")},
            "web": {"PAZ_WEB_SECRET_FILE": str(self.state_dir / "web-secret")},
        }
        extra_ready = {"haproxy-sync": [f"http://127.0.0.1:{HTTP_PORT}/"]}
        return [
            Part(
                service.name, [_program(service.program)], f"127.0.0.1:{service.port}",
                {**common, "PAZ_PORT": str(service.port), **extra_env.get(service.name, {})},
                announced_as=service.announced_as,
                ready_urls=[f"http://127.0.0.1:{service.port}/health", *extra_ready.get(service.name, [])],
                install_hint="bin/setup",
            )
            for service in declarations()
        ]

    @cached_property
    def docker_host(self) -> str | None:
        """The Docker Engine the scheduler should use, or None when none answers and we cannot start one.

        Asked once per command: finding it may ping the default socket."""
        given = self.environ.get("DOCKER_HOST")
        if given:
            return given
        if docker_answers(DEFAULT_DOCKER_HOST):
            return DEFAULT_DOCKER_HOST
        return self.own_docker_host if self.can_start_docker() else None

    def set_domain(self, domain: str) -> None:
        """Route ``<service>.<domain>`` for public-facing services; an empty ``domain`` stops it."""
        etcd = Etcd([ETCD_URL], 2.0)
        if domain:
            etcd.write(keys.DOMAIN, domain)
        elif etcd.get(keys.DOMAIN) is not None:
            etcd.delete(keys.DOMAIN)

    def can_start_docker(self) -> bool:
        return os.geteuid() == 0 and bool(shutil.which("dockerd") or os.access("/usr/sbin/dockerd", os.X_OK))

    def wanted(self) -> list[Part]:
        """The parts to run: our own dockerd only when no other engine is there to use."""
        own_docker = self.pid_file(self.part("docker")).exists() or self.docker_host == self.own_docker_host
        return [part for part in self.parts if part.name != "docker" or own_docker]

    def part(self, name: str) -> Part:
        for part in self.parts:
            if part.name == name:
                return part
        raise KeyError(f"no part named {name!r}; the parts are {', '.join(p.name for p in self.parts)}")

    def pid_file(self, part: Part) -> Path:
        return self.state_dir / "run" / f"{part.name}.pid"

    def log_file(self, part: Part) -> Path:
        return self.state_dir / "logs" / f"{part.name}.log"

    def pid(self, part: Part) -> int | None:
        """The pid of ``part`` if its pid file names a live process running its program."""
        try:
            pid = int(self.pid_file(part).read_text().strip())
        except (OSError, ValueError):
            return None
        program = os.path.basename(part.argv[0])
        return pid if any(os.path.basename(arg) == program for arg in (command(pid) or [])[:2]) else None

    def missing(self) -> list[str]:
        """One line per required part whose program is not installed, naming how to install it."""
        return [
            f"{part.name}: {part.argv[0]} not found; install it with: {part.install_hint}"
            for part in self.wanted()
            if not os.access(part.argv[0], os.X_OK)
        ]

    def start(self, part: Part) -> subprocess.Popen[bytes]:
        for folder in ("run", "logs"):
            (self.state_dir / folder).mkdir(parents=True, exist_ok=True)
        with open(self.log_file(part), "ab") as log:
            proc = subprocess.Popen(
                part.argv, env={**self.environ, **part.env}, stdout=log, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, start_new_session=True,
            )
        self.pid_file(part).write_text(f"{proc.pid}\n")
        return proc

    def probe(self, part: Part) -> str | None:
        """``healthy``, or ``degraded: <failing checks>`` when its /health says so; None while not ready.

        A service is ready once it answers /health and is announced; a failing dependency it reports
        (the scheduler without a Docker Engine) leaves it degraded but running.
        """
        try:
            failing: list[str] = []
            for url in part.ready_urls:
                answer = requests.get(url, timeout=2)
                if url.endswith("/health") and not answer.ok:
                    checks = answer.json().get("checks") if answer.status_code == 503 else None
                    if not isinstance(checks, dict):
                        return None
                    failing += [name for name, check in checks.items() if not check.get("ok")]
            if part.docker_host and not docker_answers(part.docker_host):
                return None
            if part.announced_as and not Etcd([ETCD_URL], 1.0).get(keys.suite_service(part.announced_as)):
                return None
        except (requests.RequestException, ValueError, StoreUnavailable):
            return None
        return f"degraded: {', '.join(failing)}" if failing else "healthy"

    def wait_ready(self, part: Part, proc: subprocess.Popen[bytes], timeout: float = 60.0) -> str | None:
        """What :meth:`probe` says once ``part`` is ready; None when ``proc`` exits or ``timeout`` passes."""
        state = poll(lambda: proc.poll() is not None or self.probe(part), timeout, 0.2)
        return state if isinstance(state, str) else None

    def stop(self, part: Part, timeout: float = 30.0) -> bool:
        """SIGTERM the process in ``part``'s pid file (only if it is still ours) and wait for it."""
        pid = self.pid(part)
        if pid is not None:
            os.kill(pid, signal.SIGTERM)
            if not poll(lambda: self.pid(part) is None, timeout, 0.1):
                os.kill(pid, signal.SIGKILL)
        self.pid_file(part).unlink(missing_ok=True)
        return pid is not None
