"""The fleet units in compose/fleet/: what `fleetctl start` would hand to systemd on each machine.

fleet itself cannot run here, so the units are checked the way systemd would load them
(``systemd-analyze verify``, on a machine prepared by bin/setup, which installs the binaries the
units run: /usr/bin/docker from docker.io, /usr/bin/etcdctl from etcd-client, and docker.service),
and the announce sidekick's own shell loop is run for real against a real etcd and a real service.
"""

from __future__ import annotations

import configparser
import os
import re
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.support import ROOT, EtcdServer, Process, free_port, need, wait_until
from tests.support.image_registry import Registry
from paz.registry import declaration

FLEET = ROOT / "compose" / "fleet"
SERVICES = {
    "paz-orchestrator": "paz_orchestrator",
    "paz-service-directory": "paz_directory",
    "paz-scheduler": "paz_scheduler",
    "paz-haproxy-sync": "paz_haproxy_sync",
    "paz-web": "paz_web",
}
MACHINE_IP = "192.0.2.10"


def unit(path: Path) -> dict[str, dict[str, list[str]]]:
    """A unit file as ``{section: {key: [values]}}`` (systemd keys may repeat; ``\\`` continues a line)."""
    sections: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] = {}
    text = re.sub(r"\\\n", " ", path.read_text())
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            current = sections.setdefault(line.strip("[]"), {})
            continue
        key, _, value = line.partition("=")
        current.setdefault(key, []).append(value)
    return sections


def verify(*paths: Path) -> subprocess.CompletedProcess[str]:
    analyze = need("systemd-analyze")
    for binary in ("/usr/bin/docker", "/usr/bin/etcdctl"):  # the paths the units run, as on CoreOS
        need(binary)
    return subprocess.run([analyze, "verify", *map(str, paths)], capture_output=True, text=True, timeout=60, cwd=paths[0].parent)


def test_every_unit_passes_systemd_analyze_verify() -> None:
    units = sorted(FLEET.glob("*.service"))
    expected = [f"{name}{kind}.service" for name in SERVICES for kind in ("", "-announce")]
    assert [p.name for p in units] == sorted([*expected, "paz-registry.service"])  # the registry announces itself
    result = verify(*units)
    assert result.returncode == 0 and result.stdout + result.stderr == "", result.stdout + result.stderr


def test_verify_catches_a_broken_unit(tmp_path: Path) -> None:
    """The check above can fail: a unit running a missing binary, or with a misspelt key, is reported."""
    for name in ("paz-orchestrator.service", "paz-orchestrator-announce.service"):
        shutil.copy(FLEET / name, tmp_path / name)
    broken = tmp_path / "paz-orchestrator.service"
    broken.write_text(broken.read_text().replace("/usr/bin/docker run", "/usr/bin/no-such-docker run").replace("Restart=", "Restartt="))
    result = verify(tmp_path / "paz-orchestrator.service", tmp_path / "paz-orchestrator-announce.service")
    assert result.returncode != 0
    assert "no-such-docker" in result.stderr and "Restartt" in result.stderr


@pytest.mark.parametrize("name", SERVICES)
def test_service_unit_runs_the_suite_image_and_announces_the_machine_address(name: str) -> None:
    service = unit(FLEET / f"{name}.service")["Service"]
    start = service["ExecStart"][0].split()
    assert start[:3] == ["/usr/bin/docker", "run", "--rm"]
    assert start[-2:] == ["${PAZ_IMAGE}", name], "the container runs the service's console script"
    assert "PAZ_ANNOUNCE_HOST=${COREOS_PRIVATE_IPV4}" in start
    assert "PAZ_ETCD_API=${PAZ_ETCD_API}" in start, "every service speaks the etcd API /etc/paz.env names"
    assert "PAZ_ETCD_API=3" in service["Environment"][0].split(), "v3 unless /etc/paz.env says otherwise"
    assert "/etc/environment" in service["EnvironmentFile"]
    scripts = configparser.ConfigParser()
    scripts.read(ROOT / "setup.cfg")
    assert f"{name} = " in scripts["options.entry_points"]["console_scripts"]


@pytest.mark.parametrize("name", SERVICES)
def test_announce_unit_is_a_sidekick_writing_what_the_service_announces(name: str) -> None:
    port = declaration(SERVICES[name]).port
    announce = unit(FLEET / f"{name}-announce.service")
    assert announce["X-Fleet"]["MachineOf"] == [f"{name}.service"]
    assert announce["Unit"]["BindsTo"] == [f"{name}.service"]
    start = announce["Service"]["ExecStart"][0]
    assert f'/paz/services/{name} "${{COREOS_PRIVATE_IPV4}}:{port}"' in start
    assert f"http://127.0.0.1:{port}/health" in start
    (stop,) = announce["Service"]["ExecStop"]
    assert f"ETCDCTL_API=3 /usr/bin/etcdctl del /paz/services/{name};" in stop
    assert f"ETCDCTL_API=2 /usr/bin/etcdctl rm /paz/services/{name};" in stop


def systemd_command(line: str, port: int, real_port: int, env: dict[str, str]) -> list[str]:
    """An Exec line as systemd would run it on a machine at MACHINE_IP with ``env``, aimed at ``real_port``:
    ``${NAME}`` replaced, then ``$$`` made ``$``, then split into words."""
    env = {**env, "COREOS_PRIVATE_IPV4": MACHINE_IP}
    line = re.sub(r"(?<!\$)\$\{(\w+)\}", lambda m: env[m[1]], line.lstrip("-")).replace("$$", "$")
    return shlex.split(line.replace(f"127.0.0.1:{port}/", f"127.0.0.1:{real_port}/"))


@pytest.mark.parametrize("api", ["2", "3"])
def test_sidekick_loop_creates_the_key_while_the_service_answers_and_removes_it_on_stop(directory, dual_etcd, tmp_path: Path, api: str) -> None:
    """The directory's sidekick, run as fleet would run it with ``PAZ_ETCD_API=<api>`` from
    /etc/paz.env, against a real directory (on a free port instead of 9001) and an etcd serving both APIs: it
    writes the machine's address with a TTL (a lease on v3), and its ExecStop deletes the key at once."""
    need("etcdctl")
    need("curl")
    announce = unit(FLEET / "paz-service-directory-announce.service")["Service"]
    env = {**dict(pair.split("=", 1) for pair in announce["Environment"][0].split()), "PAZ_ETCD_API": api}
    env["ETCDCTL_ENDPOINTS"] = dual_etcd.url
    key = "/paz/services/paz-service-directory"
    view = dual_etcd.speaking(api)
    loop = Process(systemd_command(announce["ExecStart"][0], 9001, directory.port, env), env=env, log_path=tmp_path / "sidekick.log").start()
    try:
        node = wait_until(lambda: view.get(key), 15, what=f"the sidekick to write {key}")
    finally:
        loop.stop()
    assert node["value"] == f"{MACHINE_IP}:9001"
    assert 0 < node["ttl"] <= 60
    stop = subprocess.run(systemd_command(announce["ExecStop"][0], 9001, directory.port, env), env={**os.environ, **env},
                          capture_output=True, text=True, timeout=20)
    assert stop.returncode == 0, stop.stderr
    assert view.get(key) is None


def test_registry_unit_runs_paz_registry_serve_announcing_the_machine_where_every_engine_reaches_it(own_etcd: EtcdServer, tmp_path: Path) -> None:
    """paz-registry.service's command and ``-e`` settings, as systemd would expand them on a machine at
    MACHINE_IP with ``PAZ_REGISTRY_ADDR`` from /etc/paz.env, run for real (the image's ``paz``, here the
    project's): it listens on every address, is announced at the machine's address, and sends ``docker
    login`` to the scheduler as announced. The scheduler and the directory name images with the same address."""
    service = unit(FLEET / "paz-registry.service")["Service"]
    defaults = dict(pair.split("=", 1) for line in service["Environment"] for pair in line.split())
    port = free_port()
    words = systemd_command(service["ExecStart"][0], port, port, {**defaults, "PAZ_REGISTRY_ADDR": f"127.0.0.1:{port}"})
    image = words.index(defaults["PAZ_REGISTRY_IMAGE"])
    assert words[image + 1:] == ["paz", "--state-dir", "/var/lib/paz", "registry", "serve"]
    assert "/var/lib/paz/registry:/var/lib/paz/registry" in words[:image], "its images stay on the machine"
    env = dict(words[i + 1].split("=", 1) for i in range(image) if words[i] == "-e")
    assert env["PAZ_REGISTRY_BIND"] == "0.0.0.0" and env["PAZ_ANNOUNCE_HOST"] == MACHINE_IP
    for name in ("paz-scheduler", "paz-service-directory"):
        other = unit(FLEET / f"{name}.service")["Service"]
        assert "PAZ_REGISTRY_ADDR=${PAZ_REGISTRY_ADDR}" in other["ExecStart"][0].split(), name
        assert f"PAZ_REGISTRY_ADDR={defaults['PAZ_REGISTRY_ADDR']}" in " ".join(other["Environment"]).split(), name
    own_etcd.put("/paz/services/paz-scheduler", f"{MACHINE_IP}:9002")  # as the scheduler's unit announces it
    registry = Registry(own_etcd, tmp_path, port=port, env=env, announced=f"{MACHINE_IP}:{port}").start()
    try:
        assert registry.realm() == f"http://{MACHINE_IP}:9002/registry/token"
    finally:
        registry.stop()
