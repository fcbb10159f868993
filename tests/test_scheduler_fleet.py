"""The fleet driver: rendered units as golden files checked by systemd-analyze, and deploys through
fleet's HTTP API.

fleet cannot run here (it needs systemd as PID 1 on CoreOS machines), so the API side talks to
``FleetStandIn`` below: a STAND-IN for fleet's HTTP API (``/fleet/v1/units``, ``/state``,
``/machines``, as fleet documents them in Documentation/api-v1.md), which records what it is sent
and reports launched units as running. Everything else (etcd, directory, scheduler) is real.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest
import requests

from tests.support import SESSION_ID, TEST_LABEL, Process, Service, need, wait_until
from paz_scheduler.drivers.base import InstanceSpec
from paz_scheduler.drivers.fleet import announce_unit, service_unit, unit_text
from tests.test_scheduler import deploy, register

GOLDEN = Path(__file__).parent / "golden" / "scheduler_fleet"
HOSTILE_ENV = {
    "MESSAGE": 'say "hi" \'there\'\nline two; $(touch /tmp/pwned) `id` ${HOME} %n \\ end',
    "SEMI": "a;b && rm -rf / | cat",
}
SPEC = InstanceSpec(
    service="demo-api", version=3, instance=2, image="lukebond/demo-api:0.0.1",
    config={"ports": [{"container": 9000}, {"container": 9001, "host": 8080}], "env": HOSTILE_ENV,
            "volume": {"/srv/data": "/data"}, "conflictsWith": ["contrived-service-*"], "numInstances": 2},
)


def rendered() -> dict[str, str]:
    return {
        "demo-api-3-2.service": unit_text(service_unit(SPEC, ["db-1-2.service"])),
        "demo-api-3-2-announce.service": unit_text(announce_unit(SPEC, "2")),
        "demo-api-3-2-announce-v3.service": unit_text(announce_unit(SPEC, "3")),
    }


def test_rendered_units_match_the_golden_files_and_pass_systemd_analyze(tmp_path):
    for name, text in rendered().items():
        golden = GOLDEN / name
        if os.environ.get("PAZ_UPDATE_GOLDEN") == "1":
            golden.write_text(text)
        assert text == golden.read_text(), f"{name} differs from {golden}; PAZ_UPDATE_GOLDEN=1 rewrites it"
        (tmp_path / name).write_text(text)
    analyze = need("systemd-analyze")
    result = subprocess.run([analyze, "verify", "--man=no", *sorted(str(p) for p in tmp_path.iterdir())],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and result.stdout + result.stderr == "", result.stdout + result.stderr


def systemd_argv(line: str) -> list[str]:
    """An Exec line's argv as systemd hands it to the program (systemd.service(5), systemd.syntax(7)),
    for what the renderer writes: specifiers (``%%``) at load, then words split with their quotes
    removed and C escapes decoded, then ``$$`` at exec. The leading ``-`` (ignore failure) is dropped."""
    line = line.removeprefix("-").replace("%%", "%")
    words = re.findall(r'"((?:[^"\\]|\\.)*)"|(\S+)', line)
    escapes = {"n": "\n", "t": "\t", "\\": "\\", '"': '"', "'": "'"}

    def unescape(word: str) -> str:
        return re.sub(r"\\(x[0-9a-f]{2}|.)", lambda m: chr(int(m[1][1:], 16)) if m[1][0] == "x" and len(m[1]) == 3 else escapes[m[1]], word)

    return [bare or unescape(quoted).replace("$$", "$") for quoted, bare in words]


@pytest.mark.parametrize("api", ["2", "3"])
def test_units_run_for_real_keep_hostile_env_values_and_announce(dual_etcd, api, docker_engine, test_image, unique_name, tmp_path):
    """The rendered commands run as systemd would run them: docker's own CLI starts the instance
    (on the tests' Docker Engine), the sidekick's loop announces it in a real etcd, its ExecStop
    removes the key. Env values with quotes, newlines, ``$()`` and ``;`` arrive byte for byte."""
    need("etcdctl")
    spec = InstanceSpec(unique_name, 1, 1, test_image, {"ports": [{"container": 8000}], "env": HOSTILE_ENV})
    service = {o["name"]: o["value"] for o in service_unit(spec, [], {TEST_LABEL: SESSION_ID})}
    sidekick = {o["name"]: o["value"] for o in announce_unit(spec, api)}
    etcd = dual_etcd.speaking(api)
    env = {"DOCKER_HOST": docker_engine.host, "COREOS_PRIVATE_IPV4": "127.0.0.1", "ETCDCTL_ENDPOINTS": etcd.url,
           **dict([sidekick["Environment"].split("=", 1)])}
    instance = Process(systemd_argv(service["ExecStart"]), env=env, log_path=tmp_path / "instance.log").start()
    announcer = None
    try:
        def started():
            container = docker_engine.client().containers.get(spec.id)
            return container if container.status == "running" else None

        container = wait_until(started, 20, what="docker run to start the instance")
        printed = container.exec_run(["/bin/sh", "-c", 'printf %s "$MESSAGE"; printf "\\0"; printf %s "$SEMI"']).output.decode()
        assert printed.split("\0") == [HOSTILE_ENV["MESSAGE"], HOSTILE_ENV["SEMI"]]
        announcer = Process(systemd_argv(sidekick["ExecStart"]), env=env, log_path=tmp_path / "sidekick.log").start()
        key = f"/paz/services/{unique_name}/1/1"
        node = wait_until(lambda: etcd.get(key), 15, what=f"the sidekick to write {key}")
        assert node["value"].startswith("127.0.0.1:") and 0 < node["ttl"] <= 60
        assert requests.get(f"http://{node['value']}/cgi-bin/index", timeout=5).text == HOSTILE_ENV["MESSAGE"]
        announcer.stop()
        stop = subprocess.run(systemd_argv(sidekick["ExecStop"]), env={**os.environ, **env}, capture_output=True, text=True, timeout=20)
        assert stop.returncode == 0, stop.stderr
        assert etcd.get(key) is None
    finally:
        if announcer:
            announcer.stop()
        with contextlib.suppress(Exception):
            docker_engine.client().containers.get(spec.id).remove(force=True)  # ExecStop's docker stop waits 10 s here
        instance.stop()


def test_hostile_env_values_stay_single_arguments():
    (line,) = [line for line in rendered()["demo-api-3-2.service"].splitlines() if line.startswith("ExecStart=")]
    assert "\n" not in line and "$(" not in line.replace("$$(", "")  # no raw newline, every $ doubled
    assert '"-e" "MESSAGE=say \\"hi\\" \'there\'\\nline two; ' in line
    assert r'line two; $$(touch /tmp/pwned) `id` $${HOME} %%n \\ end"' in line
    assert '"-e" "SEMI=a;b && rm -rf / | cat"' in line
    assert '"-p" "9000" "-p" "8080:9001" ' in line and '"-v" "/srv/data:/data"' in line


class FleetStandIn:
    """A STAND-IN for fleet's HTTP API v1 (fleet itself cannot run here): units, state, machines."""

    MACHINE = {"id": "2b1c0f2e9a", "primaryIP": "10.0.0.7", "metadata": {"hostname": "core-01"}}

    def __init__(self) -> None:
        self.units: dict[str, dict] = {}
        self.calls: list[tuple[str, str]] = []
        stand_in = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *_args) -> None:
                return None

            def _send(self, status: int, body: dict | None = None) -> None:
                data = json.dumps(body).encode() if body is not None else b""
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                path = urlsplit(self.path).path
                if path == "/fleet/v1/units":
                    return self._send(200, {"units": list(stand_in.units.values())})
                if path == "/fleet/v1/state":
                    return self._send(200, {"states": [
                        {"name": n, "machineID": stand_in.MACHINE["id"], "hash": "x", "systemdLoadState": "loaded",
                         "systemdActiveState": "active", "systemdSubState": "running"} for n in stand_in.units]})
                if path == "/fleet/v1/machines":
                    return self._send(200, {"machines": [stand_in.MACHINE]})
                return self._send(404, {"error": {"code": 404, "message": "not found"}})

            def do_PUT(self) -> None:
                name = unquote(urlsplit(self.path).path.removeprefix("/fleet/v1/units/"))
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                stand_in.calls.append(("PUT", name))
                assert body["desiredState"] == "launched" and body["options"]
                stand_in.units[name] = {**body, "name": name, "currentState": "launched", "machineID": stand_in.MACHINE["id"]}
                self._send(201)

            def do_DELETE(self) -> None:
                name = unquote(urlsplit(self.path).path.removeprefix("/fleet/v1/units/"))
                stand_in.calls.append(("DELETE", name))
                self._send(204 if stand_in.units.pop(name, None) else 404)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def start(self) -> "FleetStandIn":
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def fleet():
    stand_in = FleetStandIn().start()
    yield stand_in
    stand_in.stop()


def test_deploys_submit_and_remove_units_through_fleets_api(etcd, directory, fleet, tmp_path, unique_name):
    name = unique_name
    register(directory, name, "lukebond/demo-api", numInstances=2, ports=[{"container": 9000}],
             env={"MESSAGE": "a; $(b)"}, conflictsWith="contrived-*")
    scheduler = Service("paz-scheduler", etcd, tmp_path, env={"PAZ_DRIVER": "fleet", "PAZ_FLEET_URL": fleet.url,
                                                               "PAZ_DRAIN_SECONDS": "0"}).start()
    try:
        answer = deploy(scheduler, name, "lukebond/demo-api:0.0.1")
        assert answer.status_code == 201, answer.text
        v1 = [f"{name}-1-1.service", f"{name}-1-1-announce.service", f"{name}-1-2.service", f"{name}-1-2-announce.service"]
        assert sorted(fleet.units) == sorted(v1)
        options = fleet.units[f"{name}-1-1.service"]["options"]
        assert {"section": "X-Fleet", "name": "Conflicts", "value": "contrived-*-*.service"} in options
        assert any(o["name"] == "ExecStart" and '"-e" "MESSAGE=a; $$(b)"' in o["value"] for o in options)

        fleet.calls.clear()
        assert deploy(scheduler, name, "lukebond/demo-api:0.0.2").status_code == 201
        assert sorted(fleet.units) == sorted(u.replace("-1-", "-2-") for u in v1)
        puts = [i for i, call in enumerate(fleet.calls) if call[0] == "PUT"]
        sidekick_gone = fleet.calls.index(("DELETE", f"{name}-1-1-announce.service"))
        unit_gone = fleet.calls.index(("DELETE", f"{name}-1-1.service"))
        assert max(puts) < sidekick_gone < unit_gone  # new ones first; keys withdrawn before containers stop

        units = scheduler.request("GET", "/units", params={"service": name}).json()
        assert [(u["id"], u["state"], u["host"]) for u in units] == [
            (f"{name}-2-1", "running", "10.0.0.7"), (f"{name}-2-2", "running", "10.0.0.7")]
        assert scheduler.request("GET", "/hosts").json()[0]["address"] == "10.0.0.7"
        logs = scheduler.request("GET", f"/services/{name}/units/{name}-2-1/logs", params={"follow": "true"})
        assert logs.status_code == 501 and f"fleetctl journal -f {name}-2-1.service" in logs.json()["error"]["message"]

        directory.request("PATCH", f"/services/{name}/config", json={"mustShareWith": "nothing-here"}).raise_for_status()
        answer = deploy(scheduler, name)
        assert answer.status_code == 422 and "mustShareWith" in answer.json()["error"]["message"]

        answer = scheduler.request("POST", f"/services/{name}/stop", timeout=30)
        assert answer.json() == {"stopped": [f"{name}-2-1", f"{name}-2-2"]} and fleet.units == {}
    finally:
        scheduler.stop()
