"""The write mark the workers of one server share, so a read through one worker sees a write made
through another (CI saw ``DELETE`` 204 then ``GET`` 200 when the second worker's view lagged)."""

from __future__ import annotations

import os

import pytest

from paz import written
from paz.written import WriteMark

pytestmark = pytest.mark.unit


@pytest.fixture
def shared(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv(written.ENV, raising=False)
    written.share()
    yield WriteMark.from_env()
    os.close(int(os.environ[written.ENV]))


def test_a_write_recorded_in_one_worker_is_seen_by_the_others(shared: WriteMark) -> None:
    shared.record(7)
    child = os.fork()
    if child == 0:  # a worker forked by the server: it sees 7 and records 12
        mark = WriteMark.from_env()
        os._exit(0 if mark.index == 7 and mark.record(12) is None else 1)
    _, status = os.waitpid(child, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert shared.index == 12


def test_the_mark_only_rises(shared: WriteMark) -> None:
    shared.record(30)
    shared.record(20)
    assert shared.index == 30


def test_a_process_the_server_did_not_fork_keeps_a_mark_of_its_own(monkeypatch: pytest.MonkeyPatch) -> None:
    """The companion gets the variable but not the memory; the number may name another file there."""
    monkeypatch.setenv(written.ENV, str(os.open(os.devnull, os.O_RDONLY)))
    mark = WriteMark.from_env()
    mark.record(3)
    assert mark.index == 3
    assert WriteMark.from_env().index == 0
    os.close(int(os.environ[written.ENV]))
