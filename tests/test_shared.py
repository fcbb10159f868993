"""The shared library as the services use it: announcing, discovery, settings, one announcer per service."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path

import psutil
import pytest

from paz.processes import running
from tests.support import EtcdServer, Service, VENV_BIN, etcdctl_get, wait_until
from paz import keys
from paz.view import EtcdView, Listener
from paz.discovery import Discovery, ServiceNotAnnounced
from paz.etcd import StoreUnavailable, connect
from paz.settings import Settings, SettingsError

KEY = "/paz/services/paz-service-directory"


def test_announce_key_has_a_ttl_and_is_deleted_on_a_clean_stop(own_etcd, tmp_path):
    service = Service("paz-service-directory", own_etcd, tmp_path, env={"PAZ_ANNOUNCE_TTL": "6"}).start()
    node = wait_until(lambda: own_etcd.get(KEY), 5, what="announce key")
    assert node["value"] == f"127.0.0.1:{service.port}"
    assert 0 < node["ttl"] <= 6
    assert etcdctl_get(own_etcd.url, KEY) == f"127.0.0.1:{service.port}"
    time.sleep(3)  # past one refresh (every ttl/3): the key is still there with its TTL renewed
    assert own_etcd.get(KEY)["ttl"] > 3
    assert service.stop() == 0
    assert own_etcd.get(KEY) is None


def test_announce_comes_back_by_itself_after_etcd_restarts_empty(own_etcd, tmp_path):
    service = Service("paz-service-directory", own_etcd, tmp_path, env={"PAZ_ANNOUNCE_TTL": "30"}).start()
    try:
        wait_until(lambda: own_etcd.get(KEY), 5, what="announce key")
        own_etcd.stop()
        time.sleep(1.5)
        own_etcd.start(wipe=True)  # a new etcd that lost every key
        node = wait_until(lambda: own_etcd.get(KEY), 10, what="announce key after etcd came back")
        assert node["value"] == f"127.0.0.1:{service.port}"
        assert service.request("GET", "/health").status_code == 200
    finally:
        service.stop()


def test_one_announcer_per_service_however_many_workers(own_etcd, tmp_path):
    service = Service("paz-service-directory", own_etcd, tmp_path, env={"PAZ_WORKERS": "4"}).start()
    service.stop()
    lines = [json.loads(line) for line in service.process.log().splitlines() if line.startswith("{")]
    assert [line["key"] for line in lines if line["message"] == "announced"] == [KEY]
    assert len([line for line in lines if line["message"] == "stopped"]) == 1


def test_discovery_finds_the_directory_and_follows_a_move(own_etcd, tmp_path):
    discovery = Discovery(EtcdView(own_etcd.store(), (keys.SERVICES,)))
    with pytest.raises(ServiceNotAnnounced, match="paz-service-directory is not announced"):
        discovery.address("paz-service-directory")
    first = Service("paz-service-directory", own_etcd, tmp_path).start()
    try:
        assert discovery.address("paz-service-directory") == f"127.0.0.1:{first.port}"
        assert discovery.address("paz-service-directory") == f"127.0.0.1:{first.port}"  # from the cache
    finally:
        first.stop()
    second = Service("paz-service-directory", own_etcd, tmp_path).start()
    try:
        moved = wait_until(lambda: discovery.address("paz-service-directory") == f"127.0.0.1:{second.port}", 5,
                           what="discovery to see the new address")
        assert moved
    finally:
        second.stop()
        discovery.close()


def test_discovery_address_can_be_pinned_by_environment(own_etcd):
    settings = Settings(name="orchestrator", port=9000)
    discovery = Discovery(EtcdView(own_etcd.store(), (keys.SERVICES,)), settings)
    assert settings.override("paz-scheduler", {"PAZ_SCHEDULER_ADDR": "127.0.0.1:1234"}) == "127.0.0.1:1234"
    assert settings.override("paz-service-directory", {"PAZ_SERVICE_DIRECTORY_ADDR": "127.0.0.2:9"}) == "127.0.0.2:9"
    try:
        with pytest.raises(ServiceNotAnnounced):
            discovery.address("paz-scheduler")
    finally:
        discovery.close()


def test_etcd_client_fails_over_to_the_endpoint_that_answers(own_etcd):
    dead = "http://127.0.0.1:1"
    store = connect([dead, own_etcd.url], timeout=1, api=own_etcd.api)
    store.put("/paz/test/failover", "ok")
    assert store.value("/paz/test/failover") == "ok"
    with pytest.raises(StoreUnavailable, match="etcd is unreachable at http://127.0.0.1:1"):
        connect([dead], timeout=1, api=own_etcd.api).get("/paz/test/failover")


@pytest.mark.parametrize(
    "variable, value, expected",
    [
        ("PAZ_PORT", "http", "PAZ_PORT='http' is not usable"),
        ("PAZ_PORT", "70000", "1 to 65535"),
        ("PAZ_ETCD_ENDPOINTS", "127.0.0.1:2379", "http://host:port"),
        ("PAZ_ANNOUNCE_TTL", "0", "at least 1"),
        ("PAZ_HOST", "bad host;rm", "IP address or a host name"),
        ("PAZ_LOG_LEVEL", "LOUD", "DEBUG, INFO"),
    ],
)
def test_a_bad_setting_stops_the_service_with_its_reason(variable, value, expected):
    with pytest.raises(SettingsError, match=expected):
        Settings.from_env({variable: value}, name="service-directory", port=9001)
    result = subprocess.run([str(VENV_BIN / "paz-service-directory")], env={variable: value, "PATH": "/usr/bin:/bin"},
                            capture_output=True, text=True, timeout=20)
    assert result.returncode == 2
    assert variable in result.stderr and "Traceback" not in result.stderr


def test_settings_defaults_follow_the_design():
    settings = Settings.from_env({}, name="service-directory", port=9001)
    assert settings.etcd_endpoints == ("http://127.0.0.1:2379",)
    assert (settings.host, settings.port, settings.announce_ttl) == ("127.0.0.1", 9001, 60)
    assert settings.address == "127.0.0.1:9001"
    many = Settings.from_env({"PAZ_ETCD_ENDPOINTS": "http://a:1, http://b:2"}, name="x", port=1)
    assert many.etcd_endpoints == ("http://a:1", "http://b:2")


def test_a_killed_service_withdraws_its_key_at_once_through_its_withdrawer(own_etcd, tmp_path):
    service = Service("paz-service-directory", own_etcd, tmp_path, env={"PAZ_ANNOUNCE_TTL": "60"}).start()
    ready = [line for line in service.process.log().splitlines() if '"message": "ready"' in line]
    withdrawer = json.loads(ready[0])["withdrawer"]
    workers = [child.pid for child in psutil.Process(service.process.proc.pid).children(recursive=True)]
    figures = Path(psutil.Process(withdrawer).environ()["PROMETHEUS_MULTIPROC_DIR"])
    assert figures.is_dir()
    service.stop(signal.SIGKILL)  # the main process dies without running its exit hook
    wait_until(lambda: own_etcd.get(KEY) is None, 5, what="the key to go with the killed service")
    wait_until(lambda: not figures.exists(), 5, what="the folder of its workers' figures to go, not pile up in /tmp")
    wait_until(lambda: not running(withdrawer), 5, what="the withdrawer process to exit")
    wait_until(lambda: not any(running(pid) for pid in workers), 5, what="its workers to exit, not go on serving its port")


def _following(server: EtcdServer, prefix: str = "/paz/view-test") -> tuple[EtcdView, list[tuple[bool, int]]]:
    """A view of ``prefix`` and the list of its reloads ``(lost, index)``."""
    view = EtcdView(server.store(timeout=1), (prefix,))
    view.POLL_SECONDS = 1.0  # re-asks etcd every second, so a cleared index is met quickly
    reloads: list[tuple[bool, int]] = []
    view.listen(Listener(changed=lambda change: None, reloaded=lambda lost, index: reloads.append((lost, index))))
    return view, reloads


def test_view_goes_on_from_its_index_when_etcd_restarts_and_reads_again_when_etcd_is_new(own_etcd):
    own_etcd.put("/paz/view-test/a", "1")
    view, reloads = _following(own_etcd)
    try:
        assert view.get("/paz/view-test/a") == "1"
        own_etcd.stop()
        wait_until(lambda: view.away, 10, what="the view to notice etcd is away")
        assert view.get("/paz/view-test/a") == "1"  # still answered from memory
        own_etcd.start()
        own_etcd.put("/paz/view-test/b", "2")
        wait_until(lambda: view.get("/paz/view-test/b") == "2", 10, what="the view to follow etcd again")
        assert len(reloads) == 1  # resumed from its index: not read again

        own_etcd.stop()
        own_etcd.start(wipe=True)  # a new etcd: its index went back
        own_etcd.put("/paz/view-test/c", "3")
        wait_until(lambda: view.get("/paz/view-test/c") == "3", 10, what="the view to read the new etcd")
        assert view.get("/paz/view-test/a") is None and view.get("/paz/view-test/b") is None
        assert reloads[-1][0] is True  # what it held changed unseen
        assert view.index == own_etcd.index()
    finally:
        view.stop()


def test_view_reads_again_when_etcd_cleared_its_index_and_says_whether_anything_was_lost(own_etcd):
    own_etcd.put("/paz/view-test/a", "1")
    view, reloads = _following(own_etcd)
    try:
        assert view.get("/paz/view-test/a") == "1"
        before = own_etcd.index()
        own_etcd.forget_events()  # changes outside the view, then v2 keeps only the last 1000, v3 compacts
        if own_etcd.api == "3":  # a v3 watch already open outlives a compaction: the view has to watch anew
            own_etcd.stop()
            own_etcd.start()
        wait_until(lambda: len(reloads) == 2, 10, what="the view to read again after etcd cleared its index")
        lost, index = reloads[-1]
        assert lost is False and index > before  # nothing below the view changed
        own_etcd.put("/paz/view-test/a", "2")
        wait_until(lambda: view.get("/paz/view-test/a") == "2", 5, what="the view to follow from its new index")
    finally:
        view.stop()
