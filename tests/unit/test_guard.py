"""The unit layer's guard refuses what a unit test must not start."""

from __future__ import annotations

import threading

import pytest

from tests.unit.conftest import Guard

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(("event", "args"), [
    ("subprocess.Popen", ("/usr/bin/etcd", ["etcd", "--data-dir", "x"], None, None)),
    ("subprocess.Popen", (None, ["haproxy", "-f", "haproxy.cfg"], None, None)),
    ("subprocess.Popen", (None, "dockerd --iptables=false", None, None)),
    ("os.posix_spawn", (b"/usr/sbin/dockerd", [b"dockerd"], {})),
    ("os.exec", ("/usr/sbin/haproxy", ["haproxy"], {})),
    ("os.system", ("etcd --listen-client-urls http://127.0.0.1:2379",)),
    ("socket.bind", (None, ("127.0.0.1", 0))),
])
def test_starting_a_component_or_a_server_is_refused(event: str, args: tuple) -> None:
    guard = Guard()
    guard.thread = threading.current_thread()
    with pytest.raises(PermissionError, match="a unit test"):
        guard.audit(event, args)
    assert guard.refused


@pytest.mark.parametrize(("event", "args"), [
    ("subprocess.Popen", ("/usr/bin/git", ["git", "status"], None, None)),
    ("socket.getaddrinfo", ("localhost", 80, 0, 1, 0)),
    ("open", ("/etc/hosts", "r", 0)),
])
def test_other_events_pass(event: str, args: tuple) -> None:
    guard = Guard()
    guard.thread = threading.current_thread()
    guard.audit(event, args)
    assert guard.refused == []


def test_nothing_is_refused_outside_a_unit_test() -> None:
    Guard().audit("subprocess.Popen", ("/usr/bin/etcd", ["etcd"], None, None))
