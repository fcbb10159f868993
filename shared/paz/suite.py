"""Starting and stopping the whole suite on one machine (``paz up`` / ``paz down``).

Every part runs in the background with its pid file and log under one state folder
(``PAZ_STATE_DIR``, default ``.paz/``). A part already running (its pid file names a live process
with the expected command) is left alone, so ``paz up`` twice starts nothing twice, and ``paz down``
stops exactly the processes whose pid files it wrote.

Docker is found the Docker way (``DOCKER_HOST``, else the default socket). When no engine answers
and ``dockerd`` is installed and we are root, the suite starts a Docker Engine of its own on a socket
in the state folder; otherwise everything but deploying works and the scheduler answers deploys
with a 503. With the swarm driver (``paz up --driver swarm`` or ``PAZ_DRIVER=swarm``) that engine is
made a single-node swarm manager when it is in no swarm (:func:`make_swarm_manager`).
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from . import keys, prometheus
from .processes import command, running
from .registry import declarations
from .settings import DEFAULT_REGISTRY_ADDRESS
from .waiting import poll
from . import etcd
from .etcd import Store, StoreUnavailable

ETCD_URL = "http://127.0.0.1:2379"
ETCD_PORTS = ((2379, 2380), (22379, 22380), (32379, 32380), (42379, 42380), (52379, 52380))
"""Client and peer ports of etcd members 1, 2, ... on loopback."""
HTTP_PORT = 8080
HTTPS_PORT = 8443
STATS_PORT = 1936
DEFAULT_DOCKER_HOST = "unix:///var/run/docker.sock"


ETCD_HISTORY = ("--auto-compaction-mode", "periodic", "--auto-compaction-retention", "1h")
"""etcd's v3 history is kept for an hour, then compacted (v2 keeps its last 1000 changes by itself):
without it, every revision is kept until etcd's space quota is full and it refuses writes. A watch or
an ``/events`` resume from a revision older than that gets ``events-lost``."""


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
    leaves_running: list[tuple[Path, str]] = field(default_factory=list)
    """``(pid file, program)`` of processes this part starts and leaves running when it stops
    (haproxy-sync's HAProxy, kept serving while haproxy-sync restarts); paz down stops them after it."""
    prepare: Callable[[], None] | None = None
    """Run before each start (Prometheus: its config file, which names the suite's token file)."""


def installed_program(name: str, *fallbacks: str) -> str:
    """A console script of this installation (beside the running Python), else from PATH."""
    local = Path(sys.executable).parent / name
    if local.exists():
        return str(local)
    return shutil.which(name) or next((path for path in fallbacks if os.access(path, os.X_OK)), name)


def docker_client(host: str, timeout: float) -> Any:
    """A Docker SDK client of the engine at ``host``; the SDK is imported only here, when an engine is asked
    (the supervisor, which runs all along, seldom asks one)."""
    import docker

    return docker.DockerClient(base_url=host, timeout=timeout)


def registry_program() -> str:
    """Debian's ``docker-registry`` (the distribution project's registry)."""
    return installed_program("docker-registry", "/usr/bin/docker-registry")


def bridge_gateway(host: str) -> str | None:
    """The address of the host on the engine's default bridge: where its containers reach the host."""
    try:
        configs = docker_client(host, 3).networks.get("bridge").attrs["IPAM"]["Config"]
    except Exception:  # any failure to ask the engine means: no address known
        return None
    for config in configs:
        if config.get("Gateway"):
            return config["Gateway"]
        if config.get("Subnet"):  # an engine that made its bridge itself lists no gateway: its first address
            return str(next(ipaddress.ip_network(config["Subnet"]).hosts()))
    return None


def docker_answers(host: str) -> bool:
    try:
        return bool(docker_client(host, 3).ping())
    except Exception:  # any failure to reach the engine means: not this one
        return False


class Suite:
    """The parts ``paz up`` starts, in order, and what it knows of them."""

    def __init__(self, state_dir: Path, environ: dict[str, str] | None = None, driver: str | None = None,
                 etcd_members: int | None = None, etcd_api: str | None = None, prometheus: bool | None = None,
                 registry: bool | None = None) -> None:
        self.state_dir = state_dir.resolve()
        self.environ = dict(os.environ if environ is None else environ)
        saved = self._saved_choices()
        self.driver = driver or saved.get("driver") or self.environ.get("PAZ_DRIVER") or "docker"
        self.etcd_members = etcd_members or saved.get("etcdMembers") or 1
        self.etcd_api, self.etcd_api_reason = self._choose_etcd_api(etcd_api, saved.get("etcdApi"))
        self.prometheus = bool(saved.get("prometheus")) if prometheus is None else prometheus
        self.registry = bool(saved.get("registry")) if registry is None else registry
        self.registry_address = self.environ.get("PAZ_REGISTRY_ADDR") or DEFAULT_REGISTRY_ADDRESS
        self.own_docker_host = f"unix://{self.state_dir / 'docker.sock'}"
        self.etcd_parts = self._etcd_members()

    @cached_property
    def parts(self) -> list[Part]:
        """Every part, in the order ``paz up`` starts them. Made when first asked: the services' parts
        read every service's declaration (flask, their schemas), which ``paz up`` does while etcd boots."""
        return [*self.etcd_parts, self._dockerd(), *self._services(), self._prometheus(),
                *([self._registry()] if self.registry else []), self._supervisor()]

    @property
    def choices_file(self) -> Path:
        return self.state_dir / "suite.json"

    def _saved_choices(self) -> dict[str, Any]:
        """What ``paz up`` was asked for last (driver, etcd members, registry), so down and status see the same parts."""
        try:
            return json.loads(self.choices_file.read_text())
        except (OSError, ValueError):
            return {}

    def save_choices(self) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        choices = {"driver": self.driver, "etcdMembers": self.etcd_members, "etcdApi": self.etcd_api,
                   "prometheus": self.prometheus, "registry": self.registry}
        self.choices_file.write_text(json.dumps(choices) + "\n")

    def _choose_etcd_api(self, asked: str | None, saved: str | None) -> tuple[str, str]:
        """``--etcd-api``, else ``PAZ_ETCD_API``, else what paz up chose last, else v3."""
        if asked in etcd.API_VERSIONS:
            return asked, "asked with --etcd-api"
        if self.environ.get("PAZ_ETCD_API") in etcd.API_VERSIONS:
            return self.environ["PAZ_ETCD_API"], "asked with PAZ_ETCD_API"
        if saved in etcd.API_VERSIONS:
            return saved, f"chosen by an earlier paz up ({self.choices_file})"
        return etcd.DEFAULT_API, "the default (--etcd-api 2 keeps an install on the v2 API)"

    @property
    def etcd_endpoints(self) -> list[str]:
        return [f"http://127.0.0.1:{client}" for client, _ in ETCD_PORTS[: self.etcd_members]]

    def etcd(self, timeout: float = 2.0) -> Store:
        return etcd.connect(self.etcd_endpoints, timeout, api=self.etcd_api)

    def _etcd_members(self) -> list[Part]:
        """One etcd, or a cluster of ``etcd_members`` on loopback (etcd-1, etcd-2, ...), with the v2 API
        enabled when the suite speaks v2.

        A member of a cluster answers nothing until a quorum of members runs, so the first members
        count as ready once started, and the last one when its /health answers.
        """
        single = self.etcd_members == 1
        names = ["paz"] if single else [f"paz-{i}" for i in range(1, self.etcd_members + 1)]
        peers = {name: f"http://127.0.0.1:{peer}" for name, (_, peer) in zip(names, ETCD_PORTS)}
        cluster = ",".join(f"{name}={url}" for name, url in peers.items())
        parts = []
        for index, (name, url) in enumerate(zip(names, self.etcd_endpoints)):
            part_name = "etcd" if single else f"etcd-{index + 1}"
            data = self.state_dir / ("etcd-data" if single else f"{part_name}-data")
            parts.append(Part(
                part_name,
                [installed_program("etcd", "/usr/bin/etcd"), "--name", name, "--data-dir", str(data),
                 *(["--enable-v2"] if self.etcd_api == "2" else []),
                 "--listen-client-urls", url, "--advertise-client-urls", url, "--listen-peer-urls", peers[name],
                 "--initial-advertise-peer-urls", peers[name], "--initial-cluster", cluster,
                 "--heartbeat-interval", "50", "--election-timeout", "500", "--log-level", "warn", *ETCD_HISTORY],
                url.removeprefix("http://"),
                ready_urls=[f"{url}/health"] if index == self.etcd_members - 1 else [],
                install_hint="apt-get install etcd-server",
            ))
        return parts

    def _supervisor(self) -> Part:
        """Restarts, with backoff, any part that exits without paz down (see :mod:`paz.supervisor`)."""
        return Part(
            "supervisor",
            [installed_program("paz"), "--state-dir", str(self.state_dir), "supervise"],
            "-",
            install_hint="bin/setup",
        )

    def _registry(self) -> Part:
        """``paz registry serve``: Debian's docker-registry on :attr:`registry_address`, announced (see :mod:`paz.image_registry`)."""
        from . import image_registry  # cryptography and flask, which the supervisor does not hold

        return Part(
            "registry",
            [installed_program("paz"), "--state-dir", str(self.state_dir), "registry", "serve"],
            self.registry_address,
            self._common_env(),
            announced_as=image_registry.NAME,
            ready_urls=[f"http://{self.registry_address}/v2/"],
            install_hint="apt-get install docker-registry",
        )

    def _common_env(self) -> dict[str, str]:
        return {"PAZ_ETCD_ENDPOINTS": ",".join(self.etcd_endpoints), "PAZ_ETCD_API": self.etcd_api, "PAZ_HOST": "127.0.0.1",
                "PAZ_SECRETS_KEY_FILE": str(self.secrets_key_file), "PAZ_REGISTRY_ADDR": self.registry_address}

    def _prometheus(self) -> Part:
        """Debian's Prometheus on 127.0.0.1:9090 (``paz up --prometheus``), its targets from the orchestrator."""
        config = self.state_dir / "prometheus.yml"

        def write_config() -> None:
            orchestrator = next(service for service in declarations() if service.name == "orchestrator")
            config.write_text(prometheus.config(f"http://127.0.0.1:{orchestrator.port}", str(self.service_token_file)))

        address = f"127.0.0.1:{prometheus.PORT}"
        return Part(
            "prometheus",
            prometheus.argv(installed_program("prometheus", "/usr/bin/prometheus"), str(config), str(self.state_dir / "prometheus"), address),
            address, ready_urls=[f"http://{address}/-/ready"], install_hint="apt-get install prometheus", prepare=write_config,
        )

    def _dockerd(self) -> Part:
        # dockerd's exec root holds containerd's socket, whose path must stay short: keep it in /tmp.
        exec_root = f"/tmp/paz-docker-{hashlib.sha1(str(self.state_dir).encode()).hexdigest()[:8]}"
        return Part(
            "docker",
            [installed_program("dockerd", "/usr/sbin/dockerd", "/usr/bin/dockerd"), "--host", self.own_docker_host,
             "--data-root", str(self.state_dir / "docker"), "--exec-root", exec_root,
             "--pidfile", str(self.state_dir / "run" / "dockerd.self.pid"), "--ip", "127.0.0.1"],
            self.own_docker_host,
            install_hint="apt-get install docker.io",
            docker_host=self.own_docker_host,
        )

    def _services(self) -> list[Part]:
        """A part per declared service (:mod:`paz.registry`), with what this machine adds to its settings."""
        common = self._common_env()
        extra_env = {
            "scheduler": {"DOCKER_HOST": self.docker_host or DEFAULT_DOCKER_HOST, "PAZ_DRIVER": self.driver},
            # PAZ_ACME_DIRECTORY, PAZ_ACME_EMAIL and PAZ_ACME_CA_BUNDLE pass on from paz up's environment
            "haproxy-sync": {"PAZ_HTTP_PORT": str(HTTP_PORT), "PAZ_HTTPS_PORT": str(HTTPS_PORT), "PAZ_STATS_PORT": str(STATS_PORT),
                             "PAZ_HAPROXY_DIR": str(self.state_dir / "haproxy"), "PAZ_HAPROXY_KEEP": "true"},
            "web": {"PAZ_WEB_SECRET_FILE": str(self.state_dir / "web-secret"),
                    "PAZ_PROMETHEUS_URL": f"http://127.0.0.1:{prometheus.PORT}" if self.prometheus else ""},
        }
        extra_ready = {"haproxy-sync": [f"http://127.0.0.1:{HTTP_PORT}/"]}
        leaves_running = {"haproxy-sync": [(self.state_dir / "haproxy" / "haproxy.pid", "haproxy")]}
        return [
            Part(
                service.name, [installed_program(service.program)], f"127.0.0.1:{service.port}",
                {**common, "PAZ_PORT": str(service.port), **extra_env.get(service.name, {})},
                announced_as=service.announced_as,
                ready_urls=[f"http://127.0.0.1:{service.port}/health", *extra_ready.get(service.name, [])],
                install_hint="bin/setup", leaves_running=leaves_running.get(service.name, []),
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

    @cached_property
    def router_address(self) -> str | None:
        """Where containers reach the router and the suite's name server: ``PAZ_ROUTER_ADDRESS``, else the
        host's address on the Docker Engine's default bridge; None when neither is known."""
        given = self.environ.get("PAZ_ROUTER_ADDRESS")
        if given is not None:
            return given or None
        return bridge_gateway(self.docker_host) if self.docker_host else None

    @staticmethod
    def asks_docker(part: Part) -> bool:
        """Whether ``part`` is given what the Docker Engine answers when it starts (:meth:`dns_env`), so
        it starts once the engine answers; the other services start beside the engine."""
        return part.name in ("haproxy-sync", "scheduler")

    def dns_env(self, part: Part) -> dict[str, str]:
        """What haproxy-sync (the name server and router) and the scheduler (its instances' name server) add,
        asked when the part starts: the engine paz up starts itself answers only then."""
        if not self.asks_docker(part) or not self.router_address:
            return {}
        return {"PAZ_ROUTER_ADDRESS" if part.name == "haproxy-sync" else "PAZ_INSTANCE_DNS": self.router_address}

    @property
    def admin_token_file(self) -> Path:
        return self.state_dir / "admin.token"

    @property
    def service_token_file(self) -> Path:
        """The services' own token (role read), for the calls they make on their own."""
        return self.state_dir / "service.token"

    @property
    def secrets_key_file(self) -> Path:
        """The key that seals services' secrets: ``PAZ_SECRETS_KEY_FILE``, else ``secrets.key`` in the state folder."""
        given = self.environ.get("PAZ_SECRETS_KEY_FILE")
        return Path(given).expanduser().resolve() if given else self.state_dir / "secrets.key"

    def ensure_tokens(self) -> list[Path]:
        """Make the admin token and the services' token unless their files hold tokens etcd knows;
        the files made now. A file is readable by its owner only."""
        from .auth import TokenStore, ensure_token_file  # flask's, which the supervisor does not need

        store = TokenStore(self.etcd())
        wanted = ((self.service_token_file, "read", "paz up: the suite's services"), (self.admin_token_file, "admin", "paz up: admin"))
        return [path for path, role, name in wanted if ensure_token_file(store, path, role, name)]

    def set_domain(self, domain: str) -> None:
        """Route ``<service>.<domain>`` for public-facing services; an empty ``domain`` stops it."""
        if domain:
            self.etcd().put(keys.DOMAIN, domain)
        else:
            self.etcd().delete(keys.DOMAIN)

    def can_start_docker(self) -> bool:
        return os.geteuid() == 0 and bool(shutil.which("dockerd") or os.access("/usr/sbin/dockerd", os.X_OK))

    def wanted(self) -> list[Part]:
        """The parts to run: our own dockerd only when no other engine is there to use."""
        own_docker = self.pid_file(self.part("docker")).exists() or self.docker_host == self.own_docker_host
        return [part for part in self.parts
                if (part.name != "docker" or own_docker) and (part.name != "prometheus" or self.prometheus)]

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
        return running_program(self.pid_file(part), os.path.basename(part.argv[0]))

    def missing(self, parts: list[Part] | None = None) -> list[str]:
        """One line per required part (of ``parts``, else of every part wanted, the registry's program
        included) whose program is not installed, naming how to install it."""
        programs = [(part.name, part.argv[0], part.install_hint) for part in (self.wanted() if parts is None else parts)]
        if self.registry and parts is None:
            programs.append(("registry", registry_program(), "apt-get install docker-registry"))
        return [f"{name}: {program} not found; install it with: {hint}" for name, program, hint in programs
                if not os.access(program, os.X_OK)]

    def start(self, part: Part) -> subprocess.Popen[bytes]:
        for folder in ("run", "logs"):
            (self.state_dir / folder).mkdir(parents=True, exist_ok=True)
        if part.prepare:
            part.prepare()
        env = {**self.environ, **part.env, **self.dns_env(part)}
        if part.announced_as and self.service_token_file.exists():
            env["PAZ_TOKEN"] = self.service_token_file.read_text().strip()
        with open(self.log_file(part), "ab") as log:
            proc = subprocess.Popen(
                part.argv, env=env, stdout=log, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, start_new_session=True,
            )
        self.pid_file(part).write_text(f"{proc.pid}\n")
        return proc

    def probe(self, part: Part) -> str | None:
        """``healthy``, or ``degraded: <failing checks>`` when its /health says so; None while not ready.

        A service is ready once it answers /health and is announced; a failing dependency it reports
        (the scheduler without a Docker Engine) leaves it degraded but running.
        """
        import requests

        try:
            failing: list[str] = []
            token = self.service_token_file.read_text().strip() if self.service_token_file.exists() else ""
            headers = {"Authorization": f"Bearer {token}"} if token else {}
            for url in part.ready_urls:
                answer = requests.get(url, timeout=2, headers=headers)
                if url.endswith("/health") and not answer.ok:
                    checks = answer.json().get("checks") if answer.status_code == 503 else None
                    if not isinstance(checks, dict):
                        return None
                    failing += [name for name, check in checks.items() if not check.get("ok")]
            if part.docker_host and not docker_answers(part.docker_host):
                return None
            if part.announced_as and not self.etcd(1.0).get(keys.suite_service(part.announced_as)):
                return None
        except (requests.RequestException, ValueError, StoreUnavailable):
            return None
        return f"degraded: {', '.join(failing)}" if failing else "healthy"

    def unrouted(self) -> list[str]:
        """The names ``<service>.paz`` of the suite's services for which HAProxy does not yet hand a request
        to the service itself (its /health answers with its name, 200 or a degraded 503; HAProxy's own 503 does not)."""
        import requests

        missing = []
        for name in (f"{service.announced_as}.paz" for service in declarations()):
            try:
                answer = requests.get(f"http://127.0.0.1:{HTTP_PORT}/health", headers={"Host": name}, timeout=2)
                routed = answer.json().get("service") == name.removesuffix(".paz")
            except (requests.RequestException, ValueError, AttributeError):
                routed = False
            if not routed:
                missing.append(name)
        return missing

    def leadership(self, part: Part) -> str:
        """``leads``, or ``standby (leader: <address>)``, for a part whose instances elect a leader in
        ``/paz/leaders`` (the scheduler); empty for the others, or when etcd does not answer."""
        if not part.announced_as:
            return ""
        try:
            value = self.etcd(1.0).value(keys.leader(part.announced_as))
        except StoreUnavailable:
            return ""
        if value is None:
            return ""
        address = json.loads(value).get("address")
        return "leads" if address == part.address else f"standby (leader: {address})"

    def wait_ready(self, part: Part, proc: subprocess.Popen[bytes], timeout: float = 60.0) -> str | None:
        """What :meth:`probe` says once ``part`` is ready; None when ``proc`` exits or ``timeout`` passes."""
        state = poll(lambda: proc.poll() is not None or self.probe(part), timeout, 0.05)
        return state if isinstance(state, str) else None

    def stop(self, part: Part, timeout: float = 30.0) -> bool:
        """SIGTERM the process in ``part``'s pid file (only if it is still ours), wait for it, then
        stop what it left running.

        The pid file goes first: the supervisor restarts a part whose pid file names a dead process,
        and saw one while ``paz registry gc`` stopped the registry (two registries then fought for its port)."""
        pid = self.pid(part)
        self.pid_file(part).unlink(missing_ok=True)
        if pid is not None:
            _terminate(pid, lambda: not running(pid), timeout)
        for pid_file, program in part.leaves_running:
            left = running_program(pid_file, program)
            if left is not None:
                _terminate(left, lambda: not running(left), timeout)
        return pid is not None


def running_program(pid_file: Path, program: str) -> int | None:
    """The pid in ``pid_file`` if it names a live process running ``program`` (as the interpreter's
    script or the binary itself), so a pid reused by another program is never signalled."""
    try:
        pid = int(pid_file.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    return pid if any(os.path.basename(arg) == program for arg in (command(pid) or [])[:2]) else None


def _terminate(pid: int, gone: Callable[[], bool], timeout: float) -> None:
    """SIGTERM ``pid``, and SIGKILL it if it is not gone within ``timeout`` seconds."""
    os.kill(pid, signal.SIGTERM)
    if not poll(gone, timeout, 0.1):
        os.kill(pid, signal.SIGKILL)


def make_swarm_manager(docker_host: str, advertise_addr: str = "127.0.0.1") -> str:
    """Make the engine at ``docker_host`` a single-node swarm manager, unless it is in a swarm already;
    what was found or done, in a sentence for the person running ``paz up``.

    The swarm advertises (and listens on) ``advertise_addr``, 127.0.0.1 by default like the rest of
    ``paz up``'s suite: instances are then announced as ``127.0.0.1:<port>``. To add nodes later,
    make the swarm yourself (``docker swarm init --advertise-addr <a routable address>``) first.
    """
    client = docker_client(docker_host, 30)
    swarm = client.info().get("Swarm") or {}
    if swarm.get("ControlAvailable"):
        return f"the Docker Engine at {docker_host} is a swarm manager already (node {swarm.get('NodeID')})"
    if swarm.get("LocalNodeState") not in ("inactive", None):
        return (f"the Docker Engine at {docker_host} is a swarm {swarm.get('LocalNodeState')} node but not a manager: "
                "deploys answer 503 until DOCKER_HOST points at a manager")
    client.swarm.init(advertise_addr=advertise_addr, listen_addr=f"{advertise_addr}:2377")
    node = (client.info().get("Swarm") or {}).get("NodeID")
    return f"made the Docker Engine at {docker_host} a single-node swarm manager (node {node}, address {advertise_addr})"
