"""Docker Swarm clusters of the tests' own: each node a dockerd in a network namespace that the test
makes, joined over a Linux bridge of the test's (docs/how-to/swarm.md says what runs here and how).

A cluster of one is a single-node swarm; of three, one manager and two workers. Every name starts
with ``paz-t`` and carries a random tag; the subnet is ``10.203.<n>.0/24``. Nothing outside that
subnet is reachable from a node (no default route, and an OUTPUT drop rule on its veth), and
:meth:`SwarmCluster.stop` removes every daemon (by its own PID), namespace, veth, bridge and
iptables rule it made, whatever state the start reached.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
import requests

from tests.support import SESSION_ID, TEST_LABEL, EtcdServer, HaproxySync, Process, Service, free_port, need, wait_until

SUBNET_PREFIX = "10.203"
MANAGER_PORT = 2377


def run(*argv: str, namespace: str | None = None) -> None:
    """Run ``argv`` (in ``namespace`` when given); a failure says what and why."""
    prefix = ["ip", "netns", "exec", namespace] if namespace else []
    result = subprocess.run([*prefix, *argv], capture_output=True, text=True, timeout=30)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed ({result.returncode}): {result.stderr.strip()}")


def quietly(*argv: str) -> None:
    """Clean-up steps: run, and never stop the rest of the clean-up."""
    subprocess.run(list(argv), capture_output=True, timeout=30)


class TestBridge:
    """A bridge in the root namespace (``<subnet>.1``) that the nodes' veths plug into."""

    def __init__(self, tag: str, octet: int) -> None:
        self.name = f"paz-t{tag}br"
        self.prefix = f"{SUBNET_PREFIX}.{octet}"
        self.subnet = f"{self.prefix}.0/24"
        self.gateway = f"{self.prefix}.1"
        self.forward_rule = ["FORWARD", "-i", self.name, "-o", self.name, "-j", "ACCEPT"]
        self.made = False

    def create(self) -> None:
        run("ip", "link", "add", "name", self.name, "type", "bridge")
        self.made = True
        run("ip", "addr", "add", f"{self.gateway}/24", "dev", self.name)
        run("ip", "link", "set", self.name, "up")
        # bridged traffic passes the root FORWARD chain, which a Docker Engine may have set to DROP
        run("iptables", "-I", *self.forward_rule)

    def destroy(self) -> None:
        if self.made:
            quietly("iptables", "-D", *self.forward_rule)
            quietly("ip", "link", "del", self.name)


class NamespacedNode:
    """One swarm node: a network namespace on the bridge and a dockerd started inside it."""

    def __init__(self, bridge: TestBridge, tag: str, index: int) -> None:
        self.bridge = bridge
        self.namespace = f"paz-t{tag}n{index}"
        self.hostname = f"paz-t{tag}-node{index}"
        self.address = f"{bridge.prefix}.{10 + index}"
        self.outer_veth, self.inner_veth = f"paz-t{tag}h{index}", f"paz-t{tag}v{index}"
        self.root = Path(tempfile.mkdtemp(prefix="pazs-", dir="/tmp"))  # short: containerd's socket lives under it
        self.socket = self.root / "docker.sock"
        self.process: Process | None = None
        self.made_namespace = False

    @property
    def host(self) -> str:
        return f"unix://{self.socket}"

    def client(self, timeout: float = 30) -> docker.DockerClient:
        return docker.DockerClient(base_url=self.host, timeout=timeout)

    def create_namespace(self) -> None:
        run("ip", "netns", "add", self.namespace)
        self.made_namespace = True
        run("ip", "link", "add", self.outer_veth, "type", "veth", "peer", "name", self.inner_veth)
        run("ip", "link", "set", self.inner_veth, "netns", self.namespace)
        run("ip", "link", "set", self.outer_veth, "master", self.bridge.name, "up")
        run("ip", "addr", "add", f"{self.address}/24", "dev", self.inner_veth, namespace=self.namespace)
        run("ip", "link", "set", self.inner_veth, "up", namespace=self.namespace)
        run("ip", "link", "set", "lo", "up", namespace=self.namespace)
        # no default route, and nothing leaves through the veth but to the test subnet
        run("iptables", "-A", "OUTPUT", "-o", self.inner_veth, "!", "-d", self.bridge.subnet, "-j", "DROP",
            namespace=self.namespace)

    def start_dockerd(self, insecure_registry: str | None = None) -> None:
        """dockerd in the namespace (``nsenter``, not ``ip netns exec``, which remounts /sys) with its own
        hostname; ``insecure_registry`` is a registry it may reach over plain HTTP (loopback ones always
        may), from which its tasks pull."""
        argv = [
            need("nsenter"), f"--net=/run/netns/{self.namespace}", need("unshare"), "--uts",
            "/bin/sh", "-c", 'hostname "$0" && exec "$@"', self.hostname,
            need("dockerd"), "--host", self.host, "--data-root", str(self.root / "data"),
            "--exec-root", str(self.root / "x"), "--pidfile", str(self.root / "docker.pid"), "--iptables=true",
            *(["--insecure-registry", insecure_registry] if insecure_registry else []),
        ]
        # without a registry of the test's, tasks run the node's own copy of an image without trying a pull
        offline = {} if insecure_registry else {"DOCKER_SERVICE_PREFER_OFFLINE_IMAGE": "1"}
        self.process = Process(argv, env=offline,
                               log_path=self.root / "dockerd.log").start()

    def wait_answering(self) -> None:
        def answers() -> bool:
            if not self.process.alive:
                raise AssertionError(f"dockerd in {self.namespace} exited:\n{self.process.log()[-3000:]}")
            return self.client(5).ping()

        wait_until(answers, 60, interval=0.2, what=f"dockerd in {self.namespace}")

    def stop(self) -> None:
        if self.process is not None and self.process.alive:
            with contextlib.suppress(Exception):
                self.client(10).swarm.leave(force=True)
            self.process.stop(signal.SIGTERM, timeout=40)
        if self.made_namespace:
            quietly("ip", "netns", "del", self.namespace)  # takes the veth pair with it
        quietly("ip", "link", "del", self.outer_veth)
        shutil.rmtree(self.root, ignore_errors=True)


class SwarmCluster:
    """``size`` nodes: node 1 inits the swarm (manager), the others join it as workers."""

    def __init__(self, size: int, octet: int, registry_port: int | None = None) -> None:
        for binary in ("ip", "iptables", "nsenter", "unshare", "dockerd"):
            need(binary)
        if os.geteuid() != 0:
            raise AssertionError("a test swarm needs root (network namespaces, bridges, iptables)")
        tag = uuid.uuid4().hex[:4]
        self.bridge = TestBridge(tag, octet)
        self.nodes = [NamespacedNode(self.bridge, tag, index) for index in range(1, size + 1)]
        self.registry = f"{self.bridge.gateway}:{registry_port}" if registry_port else None
        """Where a registry on the test bridge listens, which every node may reach over plain HTTP."""

    @property
    def manager(self) -> NamespacedNode:
        return self.nodes[0]

    def start(self, init: bool = True) -> "SwarmCluster":
        """Make the bridge, the nodes and their daemons; with ``init``, make them one swarm."""
        self.bridge.create()
        for node in self.nodes:
            node.create_namespace()
            node.start_dockerd(self.registry)
        for node in self.nodes:
            node.wait_answering()
        if init:
            self.form_swarm()
        return self

    def form_swarm(self) -> None:
        manager = self.manager
        manager.client().swarm.init(advertise_addr=manager.address, listen_addr=f"{manager.address}:{MANAGER_PORT}")
        token = manager.client().swarm.attrs["JoinTokens"]["Worker"]
        for worker in self.nodes[1:]:
            worker.client().swarm.join([f"{manager.address}:{MANAGER_PORT}"], token,
                                       listen_addr=f"{worker.address}:{MANAGER_PORT}", advertise_addr=worker.address)
        wait_until(lambda: self.ready_nodes() == len(self.nodes), 30, what="every node ready in the swarm")

    def ready_nodes(self) -> int:
        return sum(1 for node in self.manager.client().nodes.list() if node.attrs["Status"]["State"] == "ready")

    def node_id(self, node: NamespacedNode) -> str:
        return node.client().info()["Swarm"]["NodeID"]

    def stop(self) -> None:
        with contextlib.suppress(Exception):
            for service in self.manager.client().services.list():
                service.remove()
        for node in reversed(self.nodes):
            node.stop()
        self.bridge.destroy()



class SwarmSuite:
    """The suite's services on free loopback ports around a swarm: an etcd of its own, the directory,
    the scheduler with ``PAZ_DRIVER=swarm`` on the swarm's manager, haproxy-sync (HAProxy) and the
    orchestrator.

    As ``paz up`` does on the Docker bridge, the router (port 80) and the suite's name server listen
    where the tasks reach the host, here the test bridge's address, and tasks use that name server.
    Names outside ``.paz`` are forwarded to a loopback port where nothing listens (SERVFAIL): the
    tests send no traffic elsewhere."""

    def __init__(self, cluster: SwarmCluster, workdir: Path, **scheduler_env: str) -> None:
        self.router_address = cluster.bridge.gateway
        self.etcd = EtcdServer(workdir)
        self.directory = Service("paz-service-directory", self.etcd, workdir)
        self.scheduler = Service("paz-scheduler", self.etcd, workdir, env=swarm_scheduler_env(
            cluster.manager, PAZ_INSTANCE_DNS=self.router_address, **scheduler_env))
        self.router = HaproxySync(self.etcd, workdir, env={
            "PAZ_ROUTER_ADDRESS": self.router_address, "PAZ_DNS_UPSTREAM": f"127.0.0.1:{free_port()}"})
        self.orchestrator = Service("paz-orchestrator", self.etcd, workdir)
        self.parts = [self.etcd, self.directory, self.scheduler, self.router, self.orchestrator]

    def start(self) -> "SwarmSuite":
        self._started: list[Any] = []
        for part in self.parts:
            part.start()
            self._started.append(part)
        return self

    def stop(self) -> None:
        for part in reversed(getattr(self, "_started", [])):
            with contextlib.suppress(Exception):
                part.stop()

    def register(self, name: str, image: str, **config: Any) -> None:
        answer = self.directory.request("POST", "/services", json={"name": name, "dockerRepository": image, "config": config})
        assert answer.status_code == 201, answer.text

    def configure(self, name: str, **config: Any) -> None:
        self.directory.request("PATCH", f"/services/{name}/config", json=config).raise_for_status()

    def deploy(self, name: str, image: str | None = None) -> requests.Response:
        body = {"serviceName": name, "pushedAt": int(time.time()), **({"dockerRepository": image} if image else {})}
        return self.scheduler.request("POST", "/hooks/deploy", json=body, timeout=90)

    def announced(self, name: str) -> dict[str, str]:
        return announced(self.etcd, name)

    def redeploy_under_load(self, name: str, before: str, after: str) -> None:
        """Deploy ``name`` again with ``MESSAGE`` changed from ``before`` to ``after`` while a bounded load
        asks for it through HAProxy; no request may fail, and the last ones see ``after``."""
        wait_until(lambda: self.through(name) == before, 10, what=f"{before!r} through HAProxy")
        self.configure(name, env={"MESSAGE": after})
        with RouterLoad(self.router, name) as load:
            load.flowing()
            answer = self.deploy(name)
            load.flowing()
        assert answer.status_code == 201, answer.text
        assert load.failures == [], load.failures[:5]
        assert set(load.bodies) == {before, after} and load.bodies[-1] == after

    def through(self, name: str) -> str | None:
        """The page ``<name>.paz`` serves through HAProxy, or None when it does not answer 200."""
        answer = self.router.route(f"{name}.paz", "/cgi-bin/index")
        return answer.text if answer.status_code == 200 else None


def page(address: str) -> str:
    """The test image's page, asked of one instance directly."""
    answer = requests.get(f"http://{address}/cgi-bin/index", timeout=3)
    answer.raise_for_status()
    return answer.text


@contextlib.contextmanager
def started(thing: Any) -> Iterator[Any]:
    """``thing`` started, and stopped whatever happens, also when its start fails half-way (its stop
    undoes whatever the start made)."""
    try:
        yield thing.start()
    finally:
        thing.stop()


class RouterLoad:
    """Requests ``<service>.paz`` through HAProxy in a thread, bounded in count and time; records
    every failure (a status other than 200, or no answer)."""

    def __init__(self, router: Any, service: str, limit: int = 4000, seconds: float = 90.0) -> None:
        self.router, self.service, self.limit, self.seconds = router, service, limit, seconds
        self.bodies: list[str] = []
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> "RouterLoad":
        self._thread.start()
        return self

    def __exit__(self, *_: Any) -> None:
        self._stop.set()
        self._thread.join(10)

    def flowing(self, more: int = 20) -> None:
        """Wait until ``more`` further requests have been answered."""
        served = len(self.bodies)
        wait_until(lambda: len(self.bodies) >= served + more, 15, what=f"{more} more requests through HAProxy")

    def _run(self) -> None:
        deadline = time.monotonic() + self.seconds
        for _ in range(self.limit):
            if self._stop.is_set() or time.monotonic() > deadline:
                return
            try:
                answer = self.router.route(f"{self.service}.paz", "/cgi-bin/index", timeout=5)
                if answer.status_code == 200:
                    self.bodies.append(answer.text)
                else:
                    self.failures.append(f"{answer.status_code}: {answer.text[:100]}")
            except requests.RequestException as exc:
                self.failures.append(repr(exc))
            time.sleep(0.01)


def swarm_scheduler_env(manager: NamespacedNode, **extra: str) -> dict[str, str]:
    return {
        "PAZ_DRIVER": "swarm",
        "DOCKER_HOST": manager.host,
        "PAZ_INSTANCE_LABELS": f"{TEST_LABEL}={SESSION_ID}",
        "PAZ_DEPLOY_TIMEOUT": "30",
        "PAZ_DRAIN_SECONDS": "0.5",
        "PAZ_STOP_TIMEOUT": "2",
        "PAZ_PROBE_INTERVAL": "0.5",
        **extra,
    }


def announced(etcd: Any, name: str) -> dict[str, str]:
    """``{"<version>/<instance>": "host:port"}`` as announced in etcd."""
    return etcd.values_below(f"/paz/services/{name}")
