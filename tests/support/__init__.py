"""Real components for the tests: etcd, the suite's services and a Docker Engine, each started on
127.0.0.1 by the test that needs it and stopped by PID when it is done. Nothing here is a mock."""

from __future__ import annotations

import base64
import contextlib
import copy
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests

from paz import etcd, sse
from paz.processes import command
from paz.secrets import ensure_key_file

ROOT = Path(__file__).resolve().parent.parent.parent
VENV_BIN = Path(sys.executable).parent
TEST_LABEL = "paz.test"
SESSION_ID = uuid.uuid4().hex[:12]
"""Containers of this test session carry ``paz.test=<SESSION_ID>``, so cleanup removes exactly its own."""


def need(binary: str) -> str:
    """The path of ``binary``; a missing one fails the run under CI and skips elsewhere."""
    path = shutil.which(binary) or next((p for p in (f"/usr/sbin/{binary}", f"/usr/bin/{binary}") if os.access(p, os.X_OK)), None)
    if path:
        return path
    message = f"{binary} is not installed: run bin/setup (as root) to install it"
    if os.environ.get("CI") == "true":
        pytest.fail(message)
    pytest.skip(message)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until(check: Callable[[], Any], timeout: float = 10.0, interval: float = 0.05, what: str = "condition") -> Any:
    """Poll ``check`` until it returns something truthy; fail the test with ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    last_error: BaseException | None = None
    while time.monotonic() < deadline:
        try:
            result = check()
            if result:
                return result
        except Exception as exc:  # the thing is not up yet
            last_error = exc
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}" + (f": {last_error!r}" if last_error else ""))


class Process:
    """A child process we started, stopped by its own PID only."""

    def __init__(self, argv: list[str], env: dict[str, str] | None = None, log_path: Path | None = None,
                 own_group: bool = False) -> None:
        self.argv = argv
        self.own_group = own_group
        """Started as the leader of its own process group (and session), so the group can be killed whole."""
        self.env = {**os.environ, **(env or {})}
        self.log_path = log_path or Path(tempfile.mkstemp(prefix="paz-test-", suffix=".log")[1])
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> "Process":
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(self.argv, env=self.env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                     start_new_session=self.own_group)
        log.close()
        return self

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15.0) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        return self.proc.returncode

    def kill_group(self) -> None:
        """SIGKILL every process of the group this process leads (it was started with ``own_group``)."""
        assert self.proc is not None and self.own_group, "only a process started as its group's leader"
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(5)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


ETCD_API = os.environ.get("PAZ_ETCD_API") or etcd.DEFAULT_API
"""The etcd API this test run speaks (``PAZ_ETCD_API``, inherited by every service the tests start)."""


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def _prefix_range(prefix: str) -> dict[str, str]:
    raw = prefix.encode()
    return {"key": _b64(prefix), "range_end": base64.b64encode(raw[:-1] + bytes([raw[-1] + 1])).decode()}


class EtcdServer:
    """A single-member etcd on free loopback ports, in its own data folder: with the v2 API
    (``--enable-v2``) or, when the run sets ``PAZ_ETCD_API=3``, without it. With ``certificates``
    (tests.support.tls), on https, asking clients for a certificate.

    Its methods read and write etcd directly over HTTP (v2 keys, or v3's JSON gateway), as a person
    with ``etcdctl`` would, never through the suite's own client."""

    def __init__(self, workdir: Path, certificates: Any = None, api: str | None = None) -> None:
        self.binary = need("etcd")
        self.workdir = workdir
        self.api = api or ETCD_API
        self.client_port = free_port()
        self.peer_port = free_port()
        self.process: Process | None = None
        self.certificates = certificates
        self.http = requests.Session()
        self.http.trust_env = False  # REQUESTS_CA_BUNDLE would win over verify
        if certificates:
            self.http.verify = str(certificates.ca)
            self.http.cert = (str(certificates.client_cert), str(certificates.client_key))

    @property
    def url(self) -> str:
        return f"{'https' if self.certificates else 'http'}://127.0.0.1:{self.client_port}"

    def _tls_arguments(self) -> list[str]:
        if not self.certificates:
            return []
        return ["--cert-file", str(self.certificates.server_cert), "--key-file", str(self.certificates.server_key),
                "--trusted-ca-file", str(self.certificates.ca), "--client-cert-auth"]

    def start(self, wipe: bool = False) -> "EtcdServer":
        data = self.workdir / "etcd-data"
        if wipe and data.exists():
            shutil.rmtree(data)
        peer = f"http://127.0.0.1:{self.peer_port}"
        self.process = Process(
            [
                self.binary, "--name", "paz-test", "--data-dir", str(data), *(["--enable-v2"] if self.api == "2" else []),
                "--listen-client-urls", self.url, "--advertise-client-urls", self.url,
                "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
                "--initial-cluster", f"paz-test={peer}", "--log-level", "warn", *self._tls_arguments(),
            ],
            env={"ETCD_UNSUPPORTED_ARCH": ""},
            log_path=self.workdir / "etcd.log",
        ).start()
        wait_until(self._answers, 20, what=f"etcd on {self.url}")
        return self

    def _answers(self) -> bool:
        if self.api == "2":
            return self.http.get(f"{self.url}/v2/keys/", timeout=1).ok
        return self.http.post(f"{self.url}/v3/kv/range", json={"key": _b64("/")}, timeout=1).ok

    def stop(self) -> None:
        if self.process:
            self.process.stop()

    def store(self, timeout: float = 2.0) -> etcd.Store:
        """The suite's own client of this etcd, in its API: for tests that use the suite's library, not for checks."""
        return etcd.connect([self.url], timeout, api=self.api)

    def speaking(self, api: str) -> EtcdServer:
        """This etcd, read and written through ``api`` (an etcd with ``--enable-v2`` serves both key spaces)."""
        other = copy.copy(self)
        other.api = api
        return other

    def v3(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        """POST to etcd's v3 JSON gateway (``/v3/<path>``)."""
        answer = self.http.post(f"{self.url}/v3/{path}", json=body, timeout=5)
        answer.raise_for_status()
        return answer.json()

    def get(self, key: str) -> dict[str, Any] | None:
        """The node at ``key`` as v2 describes one (``key``, ``value``, ``ttl`` when it has one), or None."""
        if self.api == "2":
            answer = self.http.get(f"{self.url}/v2/keys{key}", timeout=2)
            return answer.json()["node"] if answer.status_code == 200 else None
        kvs = self.v3("kv/range", {"key": _b64(key)}).get("kvs")
        if not kvs:
            return None
        node = {"key": key, "value": base64.b64decode(kvs[0].get("value", "")).decode(),
                "modifiedIndex": int(kvs[0]["mod_revision"])}
        if int(kvs[0].get("lease", 0) or 0):
            node["ttl"] = int(self.v3("kv/lease/timetolive", {"ID": kvs[0]["lease"]})["TTL"])
        return node

    def values_below(self, folder: str) -> dict[str, str]:
        """``{path below folder: value}`` for every key below ``folder``."""
        if self.api == "2":
            answer = self.http.get(f"{self.url}/v2/keys{folder}", params={"recursive": "true"}, timeout=2)
            if answer.status_code == 404:
                return {}

            def leaves(node: dict[str, Any]) -> Iterator[dict[str, Any]]:
                for child in node.get("nodes", []):
                    yield from leaves(child) if child.get("dir") else [child]

            found = {n["key"]: n["value"] for n in leaves(answer.json()["node"])}
        else:
            kvs = self.v3("kv/range", _prefix_range(folder + "/")).get("kvs") or []
            found = {base64.b64decode(kv["key"]).decode(): base64.b64decode(kv.get("value", "")).decode() for kv in kvs}
        return {key[len(folder) + 1:]: value for key, value in found.items()}

    def listing(self, folder: str) -> list[str] | None:
        """What ``etcdctl ls <folder>`` shows (the keys and folders right below it), or None when there
        is no such folder; on v3, folders are the prefixes of keys, so an empty one cannot exist."""
        if self.api == "2":
            answer = self.http.get(f"{self.url}/v2/keys{folder}", timeout=2)
            return None if answer.status_code == 404 else [node["key"] for node in answer.json()["node"].get("nodes", [])]
        below = self.values_below(folder)
        return sorted({f"{folder}/{path.split('/')[0]}" for path in below}) or None

    def changes(self, key: str, after: int, seconds: float) -> list[str]:
        """Every change of ``key`` after index ``after`` for ``seconds``, in order: v2's action names, or
        v3's event types (``PUT``, ``DELETE``)."""
        deadline = time.monotonic() + seconds
        if self.api == "3":
            watch = {"create_request": {"key": _b64(key), "start_revision": after + 1}}
            found: list[str] = []
            try:
                with self.http.post(f"{self.url}/v3/watch", json=watch, stream=True, timeout=(2, seconds)) as answer:
                    for line in answer.iter_lines():
                        found += [event.get("type", "PUT") for event in json.loads(line)["result"].get("events", [])]
                        if time.monotonic() >= deadline:
                            break
            except (requests.Timeout, requests.ConnectionError):  # no change before the deadline (a read timeout)
                pass
            return found
        actions, index = [], after
        while time.monotonic() < deadline:
            try:
                change = self.http.get(f"{self.url}/v2/keys{key}", timeout=max(0.1, deadline - time.monotonic()),
                                       params={"wait": "true", "waitIndex": index + 1}).json()
            except (requests.Timeout, requests.ConnectionError):
                break
            if change["node"]["key"] == key:  # not the deletion of its emptied folders
                actions.append(change["action"])
            index = change["node"]["modifiedIndex"]
        return actions

    def watchers(self) -> int:
        """How many watches etcd serves now (v2's store watchers, or v3's watchers from ``/metrics``)."""
        if self.api == "2":
            return int(self.http.get(f"{self.url}/v2/stats/store", timeout=2).json()["watchers"])
        metrics = self.http.get(f"{self.url}/metrics", timeout=2).text
        return int(float(re.search(r"^etcd_debugging_mvcc_watcher_total (\S+)$", metrics, re.MULTILINE)[1]))

    def index(self) -> int:
        """etcd's index now (v2's X-Etcd-Index, v3's revision)."""
        if self.api == "2":
            return int(self.http.get(f"{self.url}/v2/keys/", timeout=2).headers["X-Etcd-Index"])
        return int(self.v3("kv/range", {"key": _b64("/")})["header"]["revision"])

    def put(self, key: str, value: str, ttl: int | None = None) -> int:
        """The etcd index of the write."""
        if self.api == "2":
            data = {"value": value, **({"ttl": str(ttl)} if ttl else {})}
            answer = self.http.put(f"{self.url}/v2/keys{requests.utils.quote(key, safe='/')}", data=data, timeout=2)
            answer.raise_for_status()
            return int(answer.json()["node"]["modifiedIndex"])
        lease = {"lease": self.v3("lease/grant", {"TTL": ttl})["ID"]} if ttl else {}
        return int(self.v3("kv/put", {"key": _b64(key), "value": _b64(value), **lease})["header"]["revision"])

    def delete(self, key: str) -> None:
        if self.api == "2":
            self.http.delete(f"{self.url}/v2/keys{key}", timeout=2).raise_for_status()
        else:
            self.v3("kv/deleterange", {"key": _b64(key)})

    def delete_tree(self, key: str) -> None:
        if self.api == "2":
            self.http.delete(f"{self.url}/v2/keys{key}", params={"recursive": "true"}, timeout=2)
        else:
            self.v3("kv/deleterange", {"key": _b64(key)})
            self.v3("kv/deleterange", _prefix_range(key + "/"))

    def forget_events(self) -> None:
        """Make etcd drop the events written so far: v2 keeps the last 1000, v3 compacts its history."""
        count = 1010 if self.api == "2" else 3
        for i in range(count):
            self.put("/paz-test-filler/k", str(i))
        self.delete_tree("/paz-test-filler")
        if self.api == "3":
            self.v3("kv/compaction", {"revision": self.index(), "physical": True})


def secrets_key_of(etcd: EtcdServer) -> Path:
    """The secrets key file of the services that share ``etcd`` (one key per etcd, as one per suite), made once."""
    path = etcd.workdir / "secrets.key"
    ensure_key_file(path)
    return path


class RawWatch:
    """A watch on ``prefix`` over etcd's own HTTP API (v2 long polls, v3's streaming gateway), no paz code
    in between: when each change was delivered, by its etcd index. A benchmark's reference for delivery."""

    def __init__(self, etcd: EtcdServer, prefix: str) -> None:
        self.etcd = etcd
        self.prefix = prefix
        self.delivered: dict[int, tuple[str, float]] = {}
        """etcd index of each put below ``prefix`` -> its key and when it was delivered (monotonic)."""
        self._start = etcd.index() + 1
        self._http = requests.Session()
        self._http.verify, self._http.cert, self._http.trust_env = etcd.http.verify, etcd.http.cert, False
        self._stopped = False
        self._thread = threading.Thread(target=self._follow_v2 if etcd.api == "2" else self._follow_v3, daemon=True)

    def start(self) -> "RawWatch":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopped = True
        self._http.close()
        self._thread.join(10)

    def put_at(self, key: str) -> float | None:
        """When the first put of ``key`` was delivered."""
        return min((at for found, at in self.delivered.values() if found == key), default=None)

    def _follow_v2(self) -> None:
        index = self._start
        while not self._stopped:
            try:
                answer = self._http.get(f"{self.etcd.url}/v2/keys{self.prefix}", timeout=5,
                                        params={"wait": "true", "recursive": "true", "waitIndex": index})
                node = answer.json()["node"]
            except (requests.RequestException, ValueError, KeyError):
                continue
            if answer.json().get("action") in ("set", "create", "update"):
                self.delivered[node["modifiedIndex"]] = (node["key"], time.monotonic())
            index = node["modifiedIndex"] + 1

    def _follow_v3(self) -> None:
        body = {"create_request": {**_prefix_range(self.prefix), "start_revision": self._start}}
        try:
            with self._http.post(f"{self.etcd.url}/v3/watch", json=body, stream=True, timeout=(2, None)) as answer:
                for line in answer.iter_lines():
                    arrived = time.monotonic()
                    for event in json.loads(line).get("result", {}).get("events", []):
                        if event.get("type", "PUT") == "PUT":
                            kv = event["kv"]
                            self.delivered[int(kv["mod_revision"])] = (base64.b64decode(kv["key"]).decode(), arrived)
        except (requests.RequestException, AttributeError, ValueError):
            if not self._stopped:
                raise


class Service:
    """One of the suite's services run as its console script (gunicorn, real HTTP) on a free port."""

    def __init__(self, script: str, etcd: EtcdServer, workdir: Path, env: dict[str, str] | None = None, port: int | None = None,
                 own_group: bool = False) -> None:
        self.script = script
        self.port = port or free_port()
        self.env = {
            "PAZ_ETCD_ENDPOINTS": etcd.url,
            "PAZ_ETCD_API": etcd.api,
            "PAZ_HOST": "127.0.0.1",
            "PAZ_PORT": str(self.port),
            "PAZ_ANNOUNCE_TTL": "3",
            "PAZ_WORKERS": "2",
            "PAZ_AUTH": "off",  # tests of what a route does; tests/test_auth.py turns it on
            "PAZ_SECRETS_KEY_FILE": str(secrets_key_of(etcd)),
            **(env or {}),
        }
        self.process = Process([str(VENV_BIN / script)], env=self.env, log_path=workdir / f"{script}-{self.port}.log",
                               own_group=own_group)
        self.etcd = etcd

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, wait: bool = True) -> "Service":
        self.process.start()
        if wait:
            self.wait_answering()
        return self

    def wait_answering(self, timeout: float = 20.0) -> None:
        def answers() -> bool:
            if not self.process.alive:
                raise AssertionError(f"{self.script} exited:\n{self.process.log()[-3000:]}")
            if requests.get(f"{self.url}/openapi.json", timeout=1).status_code != 200:
                return False
            announced = self.etcd.get(f"/paz/services/{self.script}")
            return announced is not None and announced["value"] == f"127.0.0.1:{self.port}"

        wait_until(answers, timeout, what=f"{self.script} answering on {self.url} and announced")

    def stop(self, sig: int = signal.SIGTERM) -> int | None:
        return self.process.stop(sig)

    def request(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        kwargs.setdefault("timeout", 10)
        return requests.request(method, self.url + path, **kwargs)


class DockerEngine:
    """A dockerd of the tests' own, on a private socket and data folder.

    ``PAZ_TEST_DOCKER_HOST`` (never set in CI) points the tests at a dockerd a developer already
    started the same way, so that several test runs on one machine do not fight over the bridge.
    """

    def __init__(self) -> None:
        self.binary = need("dockerd")
        self.root = Path(tempfile.mkdtemp(prefix="pazd-", dir="/tmp"))
        self.socket = self.root / "docker.sock"
        self.shared_host = os.environ.get("PAZ_TEST_DOCKER_HOST", "")
        self.process: Process | None = None

    @property
    def host(self) -> str:
        return self.shared_host or f"unix://{self.socket}"

    def start(self) -> "DockerEngine":
        if self.shared_host:
            return self
        self.process = Process(
            [
                self.binary, "--host", self.host, "--data-root", str(self.root / "data"),
                "--exec-root", str(self.root / "x"), "--pidfile", str(self.root / "docker.pid"),
                "--iptables=true", "--ip", "127.0.0.1",
            ],
            log_path=self.root / "dockerd.log",
        ).start()
        import docker

        def ready() -> bool:
            if not self.process.alive:
                raise AssertionError(f"dockerd exited:\n{self.process.log()[-3000:]}")
            return docker.DockerClient(base_url=self.host, timeout=5).ping()

        wait_until(ready, 60, interval=0.2, what="dockerd")
        return self

    def client(self):
        import docker

        return docker.DockerClient(base_url=self.host, timeout=30)

    def remove_test_containers(self) -> None:
        client = self.client()
        for container in client.containers.list(all=True, filters={"label": f"{TEST_LABEL}={SESSION_ID}"}):
            with contextlib.suppress(Exception):
                container.remove(force=True)

    def stop(self) -> None:
        with contextlib.suppress(Exception):
            self.remove_test_containers()
        if self.process:
            self.process.stop(timeout=30)
        shutil.rmtree(self.root, ignore_errors=True)


BUSYBOX_HTTPD_SCRIPT = """#!/bin/sh
# A tiny web app: serves MESSAGE at / and /cgi-bin/index (and the env it was given) on $PORT, default 8000.
mkdir -p /www/cgi-bin
cat > /www/cgi-bin/index <<'CGI'
#!/bin/sh
printf 'Content-Type: text/plain\\r\\n\\r\\n'
printf '%s' "$MESSAGE"
CGI
cat > /www/cgi-bin/env <<'CGI'
#!/bin/sh
printf 'Content-Type: text/plain\\r\\n\\r\\n'
env
CGI
cat /www/cgi-bin/index > /www/cgi-bin/index.cgi  # httpd runs it for / (there is no index.html), as paz's demo images answer
chmod +x /www/cgi-bin/index /www/cgi-bin/index.cgi /www/cgi-bin/env
exec /bin/busybox httpd -f -p "${PORT:-8000}" -h /www
"""


def suite_scheduler(etcd: EtcdServer, engine: DockerEngine, folder: Path, own_label: bool = True, **env: str) -> Service:
    """A scheduler for a test's own suite on ``engine``, quick to deploy and drain; its instances labelled
    this session's and, with ``own_label``, this suite's (``folder``), so the cluster it counts is only its own
    whatever else ran on the engine."""
    labels = f"{TEST_LABEL}={SESSION_ID}" + (f",paz.test.suite={folder.name}" if own_label else "")
    return Service("paz-scheduler", etcd, folder, env={
        "DOCKER_HOST": engine.host, "PAZ_INSTANCE_LABELS": labels,
        "PAZ_DEPLOY_TIMEOUT": "20", "PAZ_DRAIN_SECONDS": "0.2", "PAZ_STOP_TIMEOUT": "2", "PAZ_PROBE_INTERVAL": "0.5", **env,
    })


def build_test_image(engine: DockerEngine, tag: str = "paz-test/hello:1", extra_changes: list[str] | None = None) -> str:
    """``docker import`` a busybox-static root filesystem whose default command serves a page.

    No registry is reachable here, so the image is built from the machine's own busybox.
    """
    import io
    import tarfile

    busybox = Path("/bin/busybox")
    if not busybox.exists():
        need("busybox")
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        tar.add(busybox, arcname="bin/busybox")
        for applet in ("sh", "mkdir", "cat", "chmod", "printf", "env", "httpd", "sleep", "echo", "wget", "nc", "nslookup", "timeout"):
            link = tarfile.TarInfo(f"bin/{applet}")
            link.type, link.linkname = tarfile.SYMTYPE, "busybox"
            tar.addfile(link)
        script = BUSYBOX_HTTPD_SCRIPT.encode()
        info = tarfile.TarInfo("serve")
        info.size, info.mode = len(script), 0o755
        tar.addfile(info, io.BytesIO(script))
        for folder in ("tmp", "www"):
            entry = tarfile.TarInfo(folder)
            entry.type, entry.mode = tarfile.DIRTYPE, 0o1777
            tar.addfile(entry)
    client = engine.client()
    repository, _, version = tag.partition(":")
    client.api.import_image_from_data(
        buffer.getvalue(), repository=repository, tag=version or "latest",
        changes=['CMD ["/serve"]', "EXPOSE 8000", *(extra_changes or [])],
    )
    return tag


def etcdctl_get(etcd_url: str, key: str, api: str | None = None) -> str:
    """What a person sees with ``ETCDCTL_API=2 etcdctl --endpoints <url> get <key>``, or on the v3 API
    with plain ``etcdctl --endpoints <url> get --print-value-only <key>`` (etcdctl's default since 3.4)."""
    v2 = (api or ETCD_API) == "2"
    result = subprocess.run(
        [need("etcdctl"), "--endpoints", etcd_url, "get", *([] if v2 else ["--print-value-only"]), key],
        env={**({"ETCDCTL_API": "2"} if v2 else {}), "PATH": "/usr/bin:/bin"}, capture_output=True, text=True, timeout=10,
    )
    return result.stdout.strip()


def paz_command(state: Path, *args: str, env: dict[str, str] | None = None, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    """Run ``paz --state-dir <state> <args>`` as a user would."""
    return subprocess.run([str(VENV_BIN / "paz"), "--state-dir", str(state), *args], capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, **(env or {})})


def suite_pids(state: Path) -> dict[str, int]:
    """The pids ``paz up`` recorded in ``state``, by part."""
    return {path.stem: int(path.read_text()) for path in (state / "run").glob("*.pid") if path.stem != "dockerd.self"}


@contextlib.contextmanager
def running(*things: Any) -> Iterator[None]:
    """Start each of ``things`` and stop them all, in reverse order, whatever happens."""
    started: list[Any] = []
    try:
        for thing in things:
            thing.start()
            started.append(thing)
        yield
    finally:
        for thing in reversed(started):
            thing.stop()


@dataclass
class SuiteParts:
    """The whole suite on one etcd, as a module's fixture makes it (:func:`running` starts it)."""

    etcd: EtcdServer
    directory: Service
    scheduler: Service
    haproxy_sync: HaproxySync
    orchestrator: Service
    web: Service | None = None

    @classmethod
    def make(cls, folder: Path, engine: DockerEngine, orchestrator_env: dict[str, str] | None = None,
             web: bool = False) -> SuiteParts:
        """The parts on an etcd of their own in ``folder``, the scheduler on ``engine``; not started."""
        etcd = EtcdServer(folder)
        return cls(
            etcd,
            Service("paz-service-directory", etcd, folder),
            suite_scheduler(etcd, engine, folder),
            HaproxySync(etcd, folder),
            Service("paz-orchestrator", etcd, folder, env=orchestrator_env),
            Service("paz-web", etcd, folder, env={"PAZ_WEB_SECRET_FILE": str(folder / "web-secret")}) if web else None,
        )

    @property
    def services(self) -> list[Service]:
        """The services, in the order they start (etcd aside)."""
        return [part for part in (self.directory, self.scheduler, self.haproxy_sync, self.orchestrator, self.web) if part]


class EventStream:
    """A Server-Sent Events client, as ``curl -N`` or a browser's EventSource reads a stream."""

    def __init__(self, url: str, last_event_id: int | None = None, read_timeout: float = 10.0) -> None:
        headers = {"Accept": "text/event-stream"}
        if last_event_id is not None:
            headers["Last-Event-ID"] = str(last_event_id)
        self.response = requests.get(url, headers=headers, stream=True, timeout=(5, read_timeout))
        self.response.raise_for_status()
        self.comments: list[str] = []
        self.parser = sse.EventParser(on_comment=self.comments.append)
        self.lines = sse.response_lines(self.response)

    def next(self, timeout: float = 15.0) -> dict[str, Any] | None:
        """The next event as ``{"id", "event", "data"}`` (data parsed as JSON), or None when the stream ends."""
        deadline = time.monotonic() + timeout
        for line in self.lines:
            if time.monotonic() > deadline:
                raise AssertionError(f"no complete event within {timeout}s")
            event = self.parser.feed(line)
            if event is not None:
                return {"id": event.id, "event": event.type, "data": event.json()}
        return None

    def until(self, wanted: Callable[[dict[str, Any]], bool], count: int, timeout: float = 30.0) -> list[dict[str, Any]]:
        """The next ``count`` events for which ``wanted`` is true, in the order they came."""
        deadline = time.monotonic() + timeout
        found: list[dict[str, Any]] = []
        while len(found) < count:
            event = self.next(max(0.1, deadline - time.monotonic()))
            if event is None:
                raise AssertionError(f"the stream ended after {len(found)} of {count} events: {found}")
            if wanted(event):
                found.append(event)
        return found

    def close(self) -> None:
        self.response.close()


class IdServer:
    """A real HTTP server on 127.0.0.1 (threads of the test process) answering its own id.

    ``GET /health`` answers 200, or 503 once ``healthy`` is set to False; every other path answers
    the id. It stands for an app instance behind HAProxy.
    """

    def __init__(self, ident: str, port: int = 0) -> None:
        import http.server
        import threading

        self.ident = ident
        self.healthy = True
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's naming
                status = 503 if self.path == "/health" and not owner.healthy else 200
                body = owner.ident.encode()
                self.send_response(status)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *_: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.server.server_address[1]}"

    def start(self) -> "IdServer":
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class KeepAliveLoad:
    """``clients`` keep-alive clients sending ``GET url`` with ``Host: host`` while the ``with`` block runs.

    Bounded in count (``most`` requests per client) and in time (the block). ``sent`` counts the
    requests; ``failures`` lists every answer other than 200 (or other than ``expect`` when given) and
    every request that failed.
    """

    def __init__(self, url: str, host: str, expect: str | None = None, clients: int = 4, most: int = 20000) -> None:
        import threading

        self.url, self.host, self.expect, self.most = url, host, expect, most
        self.failures: list[str] = []
        self.sent = 0
        self._done = threading.Event()
        self._threads = [threading.Thread(target=self._client) for _ in range(clients)]

    def _client(self) -> None:
        with requests.Session() as session:
            for _ in range(self.most):
                if self._done.is_set():
                    return
                self.sent += 1
                try:
                    answer = session.get(self.url, headers={"Host": self.host}, timeout=5)
                    if answer.status_code != 200 or (self.expect is not None and answer.text != self.expect):
                        self.failures.append(f"{answer.status_code} {answer.text[:80]}")
                except requests.RequestException as exc:
                    self.failures.append(repr(exc))

    def __enter__(self) -> "KeepAliveLoad":
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *_: Any) -> None:
        self._done.set()
        for thread in self._threads:
            thread.join(10)


def instance(made: list[IdServer], ident: str) -> IdServer:
    """A started :class:`IdServer` answering ``ident``, kept in ``made`` (the ``servers`` fixture stops them)."""
    server = IdServer(ident).start()
    made.append(server)
    return server


class HaproxySync(Service):
    """paz-haproxy-sync on free ports with its HAProxy state in ``folder``; stopping it also stops
    (by the pid in its pid file) any HAProxy it left running."""

    def __init__(self, etcd: EtcdServer, folder: Path, env: dict[str, str] | None = None, port: int | None = None) -> None:
        need("haproxy")
        self.http_port, self.stats_port, self.https_port, self.folder = free_port(), free_port(), free_port(), folder
        super().__init__("paz-haproxy-sync", etcd, folder, env={
            "PAZ_HTTP_PORT": str(self.http_port), "PAZ_STATS_PORT": str(self.stats_port),
            "PAZ_HTTPS_PORT": str(self.https_port), "PAZ_HAPROXY_DIR": str(folder / "haproxy"),
            "PAZ_ACME_DIRECTORY": "off",  # never Let's Encrypt from a test: tests/test_https.py gives its own CA
            **(env or {}),
        }, port=port)

    def haproxy_pid(self) -> int | None:
        try:
            pid = int((self.folder / "haproxy" / "haproxy.pid").read_text().split()[0])
            return pid if "haproxy" in " ".join(command(pid) or []) else None
        except (OSError, ValueError, IndexError):
            return None

    def worker_pid(self) -> int:
        """The pid of HAProxy's current worker, the one answering its stats socket (a reload replaces it)."""
        from paz_haproxy_sync.haproxy import Haproxy
        from paz_haproxy_sync.settings import SyncSettings

        haproxy = Haproxy(SyncSettings(haproxy_dir=str(self.folder / "haproxy")))
        return wait_until(haproxy.worker_pid, 5, what="HAProxy's stats socket")

    def route(self, host: str, path: str = "/", **kwargs: Any) -> requests.Response:
        """A request through HAProxy's router with ``Host: <host>``."""
        kwargs.setdefault("timeout", 5)
        return requests.get(f"http://127.0.0.1:{self.http_port}{path}", headers={"Host": host, **kwargs.pop("headers", {})}, **kwargs)

    def stop_haproxy(self) -> None:
        pid = self.haproxy_pid()
        if pid:
            os.kill(pid, signal.SIGTERM)
            wait_until(lambda: self.haproxy_pid() is None, 10, what=f"HAProxy {pid} to stop")

    def stop(self, sig: int = signal.SIGTERM) -> int | None:
        code = super().stop(sig)
        self.stop_haproxy()
        return code
