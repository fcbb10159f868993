"""compose/docker-compose.yml and compose/Dockerfile: what `docker compose up` gives a user.

The file is validated by ``docker-compose config`` (Debian's docker-compose) and read back for what
a user depends on. Then the suite is brought up for real against the tests' Docker Engine: a base
image made with debootstrap from Debian's mirror and ``docker import`` (no image registry is
reachable here), the suite image built on it from the project's sources and wheels made by pip,
and ``docker-compose up``; a service is registered and deployed the seed's way and answered
through HAProxy. Every port is a free one, passed through the file's ``${PAZ_..._PORT}`` variables.
"""

from __future__ import annotations

import configparser
import hashlib
import ipaddress
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml

from paz import image_registry, prometheus
from paz.secrets import ensure_key_file

from tests.support import (
    ETCD_API, ROOT, SESSION_ID, VENV_BIN, TEST_LABEL, DockerEngine, EtcdServer, etcdctl_get, free_port, need, netns, wait_until,
)
from tests.support.image_registry import Registry

COMPOSE_FILE = ROOT / "compose" / "docker-compose.yml"
SUITE = {
    "paz-orchestrator": 9000,
    "paz-service-directory": 9001,
    "paz-scheduler": 9002,
    "paz-haproxy-sync": 9003,
    "paz-web": 9004,
}
PORT_VARIABLES = {
    "PAZ_ORCHESTRATOR_PORT": ("paz-orchestrator", 9000),
    "PAZ_DIRECTORY_PORT": ("paz-service-directory", 9001),
    "PAZ_SCHEDULER_PORT": ("paz-scheduler", 9002),
    "PAZ_HAPROXY_SYNC_PORT": ("paz-haproxy-sync", 9003),
    "PAZ_WEB_PORT": ("paz-web", 9004),
    "PAZ_HTTP_PORT": ("paz-haproxy-sync", 80),
    "PAZ_HTTPS_PORT": ("paz-haproxy-sync", 443),
    "PAZ_STATS_PORT": ("paz-haproxy-sync", 1936),
    "PAZ_ETCD_PORT": ("etcd", 2379),
}
BASE_IMAGE = "paz-test/base:bookworm"
BASE_PACKAGES = "python3,python3-venv,haproxy,etcd-server,etcd-client,ca-certificates"
BASE_CACHE = ROOT / ".paz" / "test-cache" / f"base-bookworm-{hashlib.sha256(BASE_PACKAGES.encode()).hexdigest()[:12]}.tar"


def compose_env(**values: str) -> dict[str, str]:
    """The environment docker-compose runs in: this process's, without any PAZ_ variable a developer
    may have set (so the file's defaults show), plus ``values``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PAZ_")}
    return {**env, **values}


def compose(*args: str, env: dict[str, str], files: tuple[Path, ...] = (COMPOSE_FILE,), timeout: float = 300) -> subprocess.CompletedProcess[str]:
    argv = [need("docker-compose")]
    for path in files:
        argv += ["-f", str(path)]
    return subprocess.run([*argv, *args], capture_output=True, text=True, timeout=timeout, env=env, cwd=COMPOSE_FILE.parent)


def resolved(env: dict[str, str], profile: str | None = None) -> dict[str, Any]:
    result = compose(*(["--profile", profile] if profile else []), "config", env=env)
    assert result.returncode == 0, result.stderr
    return yaml.safe_load(result.stdout)["services"]


def published(service: dict[str, Any], on: str = "127.0.0.1") -> dict[int, tuple[str, int]]:
    """``{container port: (host ip, host port)}`` of the ports published on address ``on``, from
    docker-compose 1's short or 2's long syntax."""
    ports: dict[int, tuple[str, int]] = {}
    for port in service.get("ports", []):
        if isinstance(port, dict):
            ip, host, container = port.get("host_ip", ""), port["published"], port["target"]
        else:
            ip, host, container = port.split("/")[0].rsplit(":", 2)
        if ip == on:
            ports[int(container)] = (ip, int(host))
    return ports


def mounts_of(service: dict[str, Any]) -> list[str]:
    """``source:target[:mode]`` of each volume, from docker-compose 1's short or 2's long syntax."""
    return [v if isinstance(v, str) else f"{v['source']}:{v['target']}" for v in service["volumes"]]


def environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment", {})
    return dict(item.split("=", 1) for item in env) if isinstance(env, list) else {k: str(v) for k, v in env.items()}


def test_compose_file_is_valid_and_runs_the_suite_on_loopback() -> None:
    services = resolved(compose_env())
    assert {name for name, service in services.items() if not service.get("profiles")} == {"etcd", *SUITE}
    image = services["etcd"]["image"]
    for name, port in SUITE.items():
        service = services[name]
        assert service["command"] == [name], "each service runs its console script"
        assert service["image"] == image, "one image for the whole suite"
        assert service["build"]["dockerfile"] == "compose/Dockerfile"
        env = environment(service)
        assert env["PAZ_HOST"] == "0.0.0.0"
        assert env["PAZ_ANNOUNCE_HOST"] == name, "announced by its name in the compose network"
        assert env["PAZ_ETCD_ENDPOINTS"] == "http://etcd:2379"
        assert published(service)[port] == ("127.0.0.1", port)
    assert "--enable-v2=false" in services["etcd"]["command"] and environment(services["paz-scheduler"])["PAZ_ETCD_API"] == "3"
    assert published(services["etcd"])[2379] == ("127.0.0.1", 2379)
    router = services["paz-haproxy-sync"]
    assert environment(router)["PAZ_HTTP_PORT"] == "80" and environment(router)["PAZ_ROUTER_BIND"] == "0.0.0.0"
    assert published(router)[80] == ("127.0.0.1", 80) and published(router)[1936] == ("127.0.0.1", 1936)
    bridge = environment(router)["PAZ_ROUTER_ADDRESS"]  # where containers reach the router and <service>.paz
    assert bridge == "172.17.0.1" and environment(services["paz-scheduler"])["PAZ_INSTANCE_DNS"] == bridge
    assert published(router, on=bridge) == {80: (bridge, 80), 53: (bridge, 53)}
    scheduler = services["paz-scheduler"]
    assert environment(scheduler)["DOCKER_HOST"] == "unix:///var/run/docker.sock"
    mounts = mounts_of(scheduler)
    assert any(m.startswith("/var/run/docker.sock:/var/run/docker.sock") for m in mounts), mounts
    for name in ("paz-service-directory", "paz-scheduler"):
        mounts = mounts_of(services[name])
        assert any(m.endswith("secrets.key:/run/paz/secrets.key") or ":/run/paz/secrets.key:" in m for m in mounts), mounts
        assert environment(services[name])["PAZ_SECRETS_KEY_FILE"] == "/run/paz/secrets.key"


def test_compose_variables_move_every_published_port_and_the_socket_and_choose_the_etcd_api() -> None:
    ports = {var: str(free_port()) for var in PORT_VARIABLES}
    services = resolved(compose_env(**ports, PAZ_DOCKER_SOCKET="/run/other/docker.sock", PAZ_IMAGE="paz-suite:test",
                                    PAZ_ETCD_API="2", PAZ_ETCD_ENABLE_V2="true"))
    assert "--enable-v2=true" in services["etcd"]["command"]
    assert {environment(services[name])["PAZ_ETCD_API"] for name in SUITE} == {"2"}
    for var, (name, container) in PORT_VARIABLES.items():
        assert published(services[name])[container] == ("127.0.0.1", int(ports[var])), var
    assert services["paz-orchestrator"]["image"] == "paz-suite:test"
    mounts = mounts_of(services["paz-scheduler"])
    assert any(m.startswith("/run/other/docker.sock:/var/run/docker.sock") for m in mounts), mounts


def test_prometheus_is_a_profile_that_finds_its_targets_through_the_orchestrator() -> None:
    port = free_port()
    services = resolved(compose_env(PAZ_PROMETHEUS_PORT=str(port)), profile="prometheus")
    server = services["prometheus"]
    assert server["profiles"] == ["prometheus"]  # `docker-compose up` alone leaves it out
    assert published(server)[9090] == ("127.0.0.1", port)
    assert server["command"] == prometheus.argv("", "/etc/paz/prometheus.yml", "/prometheus", "0.0.0.0:9090")[1:]
    mounts = mounts_of(server)
    assert any(m.endswith("prometheus.yml:/etc/paz/prometheus.yml") or m.endswith("prometheus.yml:/etc/paz/prometheus.yml:ro") for m in mounts), mounts
    config = COMPOSE_FILE.parent / "prometheus.yml"
    assert yaml.safe_load(config.read_text()) == json.loads(prometheus.config("http://paz-orchestrator:9000"))
    checked = subprocess.run([need("promtool"), "check", "config", str(config)], capture_output=True, text=True, timeout=60)
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_registry_is_a_profile_that_paz_registry_serve_configures_for_the_host_engine_and_the_network(own_etcd: EtcdServer, tmp_path: Path) -> None:
    """The profile's service, run as compose runs it (its command and environment from ``docker-compose
    config``, etcd and the secrets key the test's): the config it writes is paz.image_registry's with
    compose's addresses, ``docker login`` is sent to the scheduler's published port, and the registry is
    announced by its compose name, where the scheduler reaches its API."""
    port, scheduler_port = free_port(), free_port()
    services = resolved(compose_env(PAZ_REGISTRY_PORT=str(port), PAZ_SCHEDULER_PORT=str(scheduler_port)), profile="registry")
    server = services["paz-registry"]
    assert server["profiles"] == ["registry"]  # `docker-compose up` alone leaves it out
    assert server["command"] == ["paz", "--state-dir", "/var/lib/paz", "registry", "serve"]
    assert published(server)[port] == ("127.0.0.1", port)
    mounts = mounts_of(server)
    assert any(m.startswith("registry-data:/var/lib/paz/registry") for m in mounts), mounts  # its images survive a down
    assert any(":/run/paz/secrets.key" in m for m in mounts), mounts  # it opens the token signing key
    for name in ("paz-service-directory", "paz-scheduler", "paz-registry"):  # images are named as the host's engine reaches it
        assert environment(services[name])["PAZ_REGISTRY_ADDR"] == f"127.0.0.1:{port}", name
    own_etcd.put("/paz/services/paz-scheduler", "paz-scheduler:9002")  # as compose's scheduler announces itself
    registry = Registry(own_etcd, tmp_path, port=port, env=environment(server), announced=f"paz-registry:{port}").start()
    try:
        assert registry.realm() == f"http://127.0.0.1:{scheduler_port}/registry/token"
        folder = tmp_path / "registry"
        made = image_registry.config(f"0.0.0.0:{port}", str(folder / "storage"), registry.realm(), str(folder / "token-signer.crt"),
                                     "http://paz-scheduler:9002/hooks/registry", (folder / "notifications.token").read_text().strip())
        assert (folder / "config.yml").read_text() == made
    finally:
        registry.stop()


def test_every_python_package_is_listed_for_a_non_editable_install() -> None:
    """The image installs the project with ``pip install .``: a subpackage missing from setup.cfg
    works in the editable .venv and is absent from the image."""
    config = configparser.ConfigParser()
    config.read(ROOT / "setup.cfg")
    listed = set(config["options"]["packages"].split())
    roots = {top: ROOT / path.strip() for top, _, path in (line.partition("=") for line in config["options"]["package_dir"].strip().splitlines())}
    found = {
        ".".join([top.strip(), *init.parent.relative_to(folder).parts])
        for top, folder in roots.items() for init in folder.rglob("__init__.py")
    }
    assert found <= listed, f"add to setup.cfg's packages: {sorted(found - listed)}"


# --- the real bring-up ---------------------------------------------------------------------------


def run_checked(argv: list[str], timeout: float = 900) -> None:
    result = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, f"{argv[0]} failed:\n{(result.stdout + result.stderr)[-3000:]}"


def apt_mirror() -> str:
    """The Debian mirror this machine's apt uses (deb822 ``URIs:`` or a one-line ``deb`` entry)."""
    sources = sorted(Path("/etc/apt/sources.list.d").glob("*.sources")) + [Path("/etc/apt/sources.list")]
    for source in sources:
        text = source.read_text() if source.exists() else ""
        for line in text.splitlines():
            words = line.split()
            if words[:1] == ["URIs:"] and not words[1].rstrip("/").endswith("-security"):
                return words[1]
            if words[:1] == ["deb"] and "bookworm" in words:
                return next(word for word in words[1:] if "://" in word)
    pytest.fail("no Debian mirror in /etc/apt/sources.list{,.d}: debootstrap needs one to make the base image")


def base_image(engine: DockerEngine, workdir: Path) -> str:
    """A Debian bookworm image with python3, HAProxy and etcd, made with debootstrap and imported;
    made once per Docker Engine (its tag is reused while the engine keeps it). Its root file system
    is kept as a tarball in BASE_CACHE, so a later test run (CI runs the suite once per etcd API)
    imports it instead of running debootstrap again."""
    client = engine.client()
    if client.images.list(name=BASE_IMAGE):
        return BASE_IMAGE
    repository, _, tag = BASE_IMAGE.partition(":")
    if not BASE_CACHE.exists():
        debootstrap_base(workdir)
    client.api.import_image_from_file(str(BASE_CACHE), repository=repository, tag=tag)
    return BASE_IMAGE


def debootstrap_base(workdir: Path) -> None:
    debootstrap = need("debootstrap")
    if os.geteuid() != 0:
        message = "debootstrap needs root to make the base image: run the tests as root"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    rootfs = workdir / "rootfs"
    run_checked(netns.from_outside([debootstrap, "--variant=minbase", f"--include={BASE_PACKAGES}", "bookworm", str(rootfs),
                                    apt_mirror()]))
    for cache in ("var/cache/apt/archives", "var/lib/apt/lists"):
        shutil.rmtree(rootfs / cache, ignore_errors=True)
    BASE_CACHE.parent.mkdir(parents=True, exist_ok=True)
    partial = BASE_CACHE.with_suffix(".partial")
    run_checked(["tar", "-C", str(rootfs), "-cf", str(partial), "."], timeout=300)
    partial.replace(BASE_CACHE)
    shutil.rmtree(rootfs, ignore_errors=True)


def suite_image(engine: DockerEngine, base: str, workdir: Path) -> str:
    """compose/Dockerfile built on ``base`` from a copy of the sources, with wheels made here by pip
    (so the build itself needs no package index)."""
    context = workdir / "context"
    wheels = context / "compose" / "wheels"
    wheels.mkdir(parents=True)
    for part in ("setup.cfg", "pyproject.toml", "README.md", ".dockerignore", "compose/Dockerfile"):
        shutil.copy(ROOT / part, context / part)
    for folder in ("shared", "services"):
        shutil.copytree(ROOT / folder, context / folder, ignore=shutil.ignore_patterns("__pycache__"))
    run_checked(netns.from_outside([sys.executable, "-m", "pip", "wheel", "-q", "-w", str(wheels), str(context),
                                    "setuptools>=68", "wheel"]))
    for own in wheels.glob("paz-*.whl"):
        own.unlink()
    tag = f"paz-test/suite:{SESSION_ID}"
    engine.client().images.build(
        path=str(context), dockerfile="compose/Dockerfile", tag=tag, buildargs={"BASE_IMAGE": base},
        rm=True, forcerm=True, labels={TEST_LABEL: SESSION_ID}, timeout=900,
    )
    return tag


class ComposedSuite:
    """The suite brought up with docker-compose on free loopback ports, as project paz-test-<session>."""

    def __init__(self, engine: DockerEngine, image: str, workdir: Path) -> None:
        self.engine = engine
        self.ports = {var: free_port() for var in PORT_VARIABLES}
        ipam = engine.client().networks.get("bridge").attrs["IPAM"]["Config"][0]
        gateway = ipam.get("Gateway") or str(ipaddress.ip_network(ipam["Subnet"])[1])  # the host on docker0
        socket = engine.host.removeprefix("unix://")
        key_file = workdir / "secrets.key"
        ensure_key_file(key_file)  # as `paz secrets init --key-file` makes it
        self.env = compose_env(
            PAZ_SECRETS_KEY_FILE=str(key_file),
            DOCKER_HOST=engine.host, COMPOSE_PROJECT_NAME=f"paz-test-{SESSION_ID}", PAZ_IMAGE=image,
            PAZ_DOCKER_SOCKET=socket, PAZ_INSTANCE_HOST=gateway, PAZ_INSTANCE_LABELS=f"{TEST_LABEL}={SESSION_ID}",
            PAZ_ETCD_API=ETCD_API, PAZ_ETCD_ENABLE_V2=str(ETCD_API == "2").lower(),  # the test run's API, as its etcds
            **{var: str(port) for var, port in self.ports.items()},
        )
        # Every container the test causes carries the session's label, so cleanup finds exactly these.
        self.override = workdir / "labels.yml"
        self.override.write_text(yaml.safe_dump(
            {"services": {name: {"labels": {TEST_LABEL: SESSION_ID}} for name in ("etcd", *SUITE)}}
        ))
        self.files = (COMPOSE_FILE, self.override)
        self.deployed: list[str] = []

    def url(self, var: str) -> str:
        return f"http://127.0.0.1:{self.ports[var]}"

    def run(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        return compose(*args, env=self.env, files=self.files, timeout=timeout)

    def up(self) -> None:
        result = self.run("up", "-d", "--no-build")
        assert result.returncode == 0, result.stderr

    def logs(self) -> str:
        return self.run("logs", "--no-color", "--tail", "40", timeout=60).stdout[-6000:]

    def down(self) -> None:
        """Stop the suite and remove the instances it ran (other tests' containers are left alone)."""
        self.run("down", "--volumes", "--remove-orphans", "--timeout", "10", timeout=180)
        client = self.engine.client()
        for name in self.deployed:
            for container in client.containers.list(all=True, filters={"label": [f"{TEST_LABEL}={SESSION_ID}", f"paz.service={name}"]}):
                container.remove(force=True)


@pytest.fixture(scope="module")
def composed(docker_engine: DockerEngine, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ComposedSuite]:
    workdir = tmp_path_factory.mktemp("compose")
    started = time.monotonic()
    base = base_image(docker_engine, workdir)
    made_base = time.monotonic()
    image = suite_image(docker_engine, base, workdir)
    built = time.monotonic()
    try:
        suite = ComposedSuite(docker_engine, image, workdir)
        try:
            suite.up()
            print(f"\ncompose bring-up: base image {made_base - started:.0f}s, suite image {built - made_base:.0f}s, up {time.monotonic() - built:.0f}s")
            yield suite
        finally:
            suite.down()
    finally:
        docker_engine.client().images.remove(image, force=True)


def test_compose_up_announces_every_service_by_its_compose_name(composed: ComposedSuite) -> None:
    etcd = composed.url("PAZ_ETCD_PORT")
    try:
        for name, port in SUITE.items():
            wait_until(lambda: etcdctl_get(etcd, f"/paz/services/{name}") == f"{name}:{port}", 90, interval=1, what=f"{name} announced")
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{composed.logs()}") from None
    for var in ("PAZ_ORCHESTRATOR_PORT", "PAZ_DIRECTORY_PORT", "PAZ_SCHEDULER_PORT", "PAZ_HAPROXY_SYNC_PORT"):
        assert requests.get(composed.url(var) + "/health", timeout=5).json()["status"] == "ok"


def test_compose_suite_deploys_the_seed_way_and_haproxy_routes_to_it(composed: ComposedSuite, test_image: str, unique_name: str) -> None:
    orchestrator, scheduler = composed.url("PAZ_ORCHESTRATOR_PORT"), composed.url("PAZ_SCHEDULER_PORT")
    wait_until(lambda: requests.get(orchestrator + "/health", timeout=2).ok, 90, interval=1, what="the orchestrator")
    made = subprocess.run([str(VENV_BIN / "paz"), "token", "create", "--role", "admin", "--etcd", composed.url("PAZ_ETCD_PORT")],
                          capture_output=True, text=True, timeout=30)
    assert made.returncode == 0, made.stderr
    admin = {"Authorization": f"Bearer {made.stdout.strip()}"}
    document = {"name": unique_name, "description": "compose test", "dockerRepository": test_image.split(":")[0],
                "loadBalanced": True, "publicFacing": False, "ports": [{"container": 8000}]}
    created = requests.post(orchestrator + "/services", headers=admin, json=document, timeout=10)
    assert created.status_code == 201, created.text
    patched = requests.patch(f"{orchestrator}/services/{unique_name}/config/next", headers=admin, json={"env": {"MESSAGE": "so platform; many service; wow"}}, timeout=10)
    assert patched.ok, patched.text
    deploy = {"serviceName": unique_name, "dockerRepository": test_image, "pushedAt": int(time.time())}
    composed.deployed.append(unique_name)
    deployed = requests.post(scheduler + "/hooks/deploy", headers=admin, json=deploy, timeout=120)
    assert deployed.ok, deployed.text

    def routed() -> bool:
        answer = requests.get(composed.url("PAZ_HTTP_PORT") + "/cgi-bin/index", headers={"Host": f"{unique_name}.paz"}, timeout=3)
        return answer.status_code == 200 and answer.text == "so platform; many service; wow"

    try:
        wait_until(routed, 60, interval=1, what=f"HAProxy routing {unique_name}.paz")
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{composed.logs()}") from None
