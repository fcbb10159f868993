"""Fixtures that start the real components once per session (etcd, the directory, a Docker Engine)
or once per test where a test stops or restarts them."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import DockerEngine, EtcdServer, IdServer, Service, build_test_image, netns


def pytest_configure(config: pytest.Config) -> None:
    if os.environ.get("PYTEST_XDIST_WORKER"):
        netns.enter_own()  # workers run side by side on the suite's fixed ports (tests/support/netns.py)


@pytest.fixture(scope="session")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("paz")


@pytest.fixture(scope="session")
def etcd(workdir: Path) -> Iterator[EtcdServer]:
    """One etcd for the session; tests keep apart by using unique service names."""
    folder = workdir / "etcd-session"
    folder.mkdir()
    server = EtcdServer(folder).start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def dual_etcd(workdir: Path) -> Iterator[EtcdServer]:
    """An etcd serving both APIs (etcd 3.4 with ``--enable-v2`` keeps a v2 key space beside v3's), for
    what must work on either whatever API the run speaks: ``dual_etcd.speaking(api)``."""
    folder = workdir / "etcd-dual"
    folder.mkdir()
    server = EtcdServer(folder, api="2").start()
    yield server
    server.stop()


@pytest.fixture
def own_etcd(tmp_path: Path) -> Iterator[EtcdServer]:
    """An etcd for one test, which that test may stop, restart or wipe."""
    server = EtcdServer(tmp_path).start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def directory(etcd: EtcdServer, workdir: Path) -> Iterator[Service]:
    service = Service("paz-service-directory", etcd, workdir).start()
    yield service
    service.stop()


@pytest.fixture(scope="session")
def docker_engine() -> Iterator[DockerEngine]:
    engine = DockerEngine().start()
    yield engine
    engine.stop()


@pytest.fixture(scope="session")
def test_image(docker_engine: DockerEngine) -> str:
    return build_test_image(docker_engine)


@pytest.fixture
def unique_name() -> str:
    """A fresh, valid service name, so tests sharing the session's etcd never collide."""
    return f"t-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def servers() -> Iterator[list[IdServer]]:
    """App instances a test makes with ``tests.support.instance(servers, id)``; all stopped afterwards."""
    made: list[IdServer] = []
    yield made
    for server in made:
        server.stop()
