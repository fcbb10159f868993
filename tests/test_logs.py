"""Logs through the API: a deployed service's output read through the orchestrator, as a user does with
curl (``GET /services/<name>/logs``, ``/services/<name>/units/<id>/logs``), against the suite started
for real (etcd, directory, scheduler with the docker driver on a real Docker Engine, orchestrator).

The test image prints a known line on stdout and one on stderr when it starts; a test makes a running
instance print more by writing to its first process's output (``docker exec``), as the app would.
"""

from __future__ import annotations

import contextlib
import json
import queue
import threading
import time
from collections.abc import Iterator

import psutil
import pytest
import requests

from tests.support import DockerEngine, wait_until
from tests.support.docker_suite import KNOWN_STDERR, KNOWN_STDOUT, DockerSuite, build_talking_image, say
from tests.support.swarm import started

IMAGE = "paz-test/talking:1"


@pytest.fixture(scope="module")
def suite(docker_engine: DockerEngine, tmp_path_factory: pytest.TempPathFactory) -> Iterator[DockerSuite]:
    build_talking_image(docker_engine, IMAGE)
    # the scheduler serves as many followers as the test opens; the orchestrator runs 4 threads (DockerSuite)
    with started(DockerSuite(docker_engine, tmp_path_factory.mktemp("logs"), PAZ_LOGS_MAX_FOLLOWERS="16")) as running:
        yield running


@pytest.fixture(scope="module")
def deployed(suite: DockerSuite) -> str:
    """A service of two instances of the talking image, deployed once for the module."""
    name = "logs-two"
    suite.register(name, IMAGE, numInstances=2)
    assert suite.deploy(name)["version"] == 1
    return name


def json_lines(answer: requests.Response) -> list[dict]:
    assert answer.status_code == 200, answer.text
    assert answer.headers["Content-Type"].startswith("application/x-ndjson")
    return [json.loads(line) for line in answer.text.splitlines()]


def test_a_deployed_service_logs_show_its_output_with_each_unit(suite, deployed):
    units = [f"{deployed}-1-1", f"{deployed}-1-2"]
    answer = suite.logs(f"/services/{deployed}/logs")
    assert answer.status_code == 200 and answer.headers["Content-Type"].startswith("text/plain")
    for unit in units:
        assert f"{unit} | {KNOWN_STDOUT}" in answer.text.splitlines()
        assert f"{unit} | {KNOWN_STDERR}" in answer.text.splitlines()

    lines = json_lines(suite.logs(f"/services/{deployed}/logs", format="json"))
    assert {(line["unit"], line["stream"], line["text"]) for line in lines} >= {
        (unit, stream, text) for unit in units for stream, text in (("stdout", KNOWN_STDOUT), ("stderr", KNOWN_STDERR))}
    assert [line["time"] for line in lines] == sorted(line["time"] for line in lines)  # merged in time order

    only_errors = json_lines(suite.logs(f"/services/{deployed}/units/{units[0]}/logs", format="json", stream="stderr"))
    assert [(line["unit"], line["stream"], line["text"]) for line in only_errors] == [(units[0], "stderr", KNOWN_STDERR)]
    one_unit = suite.logs(f"/services/{deployed}/units/{units[1]}/logs", timestamps="true").text.splitlines()
    stamped = next(line for line in one_unit if line.endswith(KNOWN_STDOUT))
    assert stamped == f"{stamped.split(' ')[0]} {KNOWN_STDOUT}" and stamped[:2] == "20"  # "<time> <line>", no unit prefix


def test_follow_delivers_a_line_printed_after_the_request_within_a_second(suite, deployed):
    unit = f"{deployed}-1-2"
    url = f"{suite.orchestrator.url}/services/{deployed}/logs"
    arrived: queue.Queue[tuple[float, str]] = queue.Queue()
    # the reader thread is still reading when the stream is closed, which waits for its read timeout
    with requests.get(url, params={"follow": "true", "tail": "0"}, stream=True, timeout=(5, 7)) as stream:
        assert stream.status_code == 200, stream.text

        def read() -> None:
            with contextlib.suppress(requests.RequestException):  # the stream is closed at the end of the test
                for line in stream.iter_lines(decode_unicode=True):
                    arrived.put((time.time(), line))

        threading.Thread(target=read, daemon=True).start()
        for attempt in range(3):  # the first line may be printed before Docker has attached the follower
            printed = say(suite.container(unit), f"followed line {attempt}")
            try:
                received, line = arrived.get(timeout=2)
                break
            except queue.Empty:
                continue
        else:
            raise AssertionError("no followed line arrived")
    assert line == f"{unit} | followed line {attempt}"
    assert received - printed < 1.0, received - printed


def test_more_followed_logs_than_the_orchestrator_has_threads_leave_it_answering(suite, deployed):
    """Each followed log is relayed from the orchestrator's event loop: twice as many as its threads
    (PAZ_THREADS=4 here) all open, each gets a line printed after, and other requests are answered meanwhile."""
    unit, url = f"{deployed}-1-1", f"{suite.orchestrator.url}/services/{deployed}/units/{deployed}-1-1/logs"
    with contextlib.ExitStack() as streams:
        opened = [streams.enter_context(requests.get(url, params={"follow": "true", "tail": "0"}, stream=True, timeout=(5, 20)))
                  for _ in range(8)]
        assert [stream.status_code for stream in opened] == [200] * 8
        started = time.monotonic()
        plain = suite.logs(f"/services/{deployed}/logs", tail="1")
        assert plain.status_code == 200 and time.monotonic() - started < 2.0
        lines = [stream.iter_lines(decode_unicode=True) for stream in opened]
        say(suite.container(unit), "to every follower")
        assert [next(line for line in got if line) for got in lines] == ["to every follower"] * 8


def test_followers_who_left_a_quiet_unit_give_their_places_and_connections_back(suite, deployed):
    """A follower who leaves is noticed within a second or two, even when the unit writes nothing: its
    place among PAZ_LOGS_MAX_FOLLOWERS (16 here) and its connection to the Docker Engine are given back,
    so as many can follow again at once; one more is a 503 naming the setting."""
    unit = f"{deployed}-1-2"
    url = f"{suite.orchestrator.url}/services/{deployed}/units/{unit}/logs"
    scheduler = psutil.Process(suite.scheduler.process.proc.pid)
    held = wait_until(lambda: len(scheduler.net_connections(kind="unix")) if _steady(scheduler) else None, 10,
                      what="the scheduler's connections settled (followers earlier tests left, gone)")
    for turn in range(2):
        with contextlib.ExitStack() as streams:
            opened = [streams.enter_context(requests.get(url, params={"follow": "true", "tail": "0"}, stream=True, timeout=(5, 7)))
                      for _ in range(16)]
            assert [stream.status_code for stream in opened] == [200] * 16, (turn, opened[-1].text)
            beyond = requests.get(url, params={"follow": "true", "tail": "0"}, timeout=(5, 7))
            assert beyond.status_code == 503 and "PAZ_LOGS_MAX_FOLLOWERS" in beyond.text, beyond.text
        wait_until(lambda: len(scheduler.net_connections(kind="unix")) <= held, 10,
                   what="the scheduler's connections to the engine given back with no line written")


def _steady(process: psutil.Process) -> bool:
    """Whether ``process``'s count of Unix connections stayed the same for 1.5 s."""
    before = len(process.net_connections(kind="unix"))
    time.sleep(1.5)
    return len(process.net_connections(kind="unix")) == before


def test_tail_and_since_bound_the_answer(suite, deployed):
    unit = f"{deployed}-1-1"
    path = f"/services/{deployed}/units/{unit}/logs"
    say(suite.container(unit), "before the mark")
    wait_until(lambda: "before the mark" in suite.logs(path).text, 5, what="the first line")
    time.sleep(1.1)  # Docker's since is in whole seconds on the CLI, but the API takes fractions: keep a clear gap
    mark = time.time()
    time.sleep(0.1)
    say(suite.container(unit), "after the mark")
    wait_until(lambda: "after the mark" in suite.logs(path).text, 5, what="the second line")

    assert suite.logs(path, tail=1).text == "after the mark\n"
    assert suite.logs(path, tail=2).text == "before the mark\nafter the mark\n"
    assert suite.logs(path, since=f"{mark:.3f}").text == "after the mark\n"
    assert KNOWN_STDOUT in suite.logs(path, since="1h").text.splitlines()  # a duration back from now
    whole_service = suite.logs(f"/services/{deployed}/logs", tail=1).text.splitlines()
    assert whole_service == [f"{unit} | after the mark"]  # the last line of the service, not of each unit
    refused = suite.logs(path, since="yesterday-ish")
    assert refused.status_code == 400 and "since" in refused.text


def test_binary_and_very_long_lines_do_not_break_the_stream(suite, deployed):
    unit = f"{deployed}-1-1"
    path = f"/services/{deployed}/units/{unit}/logs"
    say(suite.container(unit), "bytes \\377\\376 not utf-8", stream=2)
    say(suite.container(unit), "x" * 100_000)
    say(suite.container(unit), "after the long one")
    lines = wait_until(lambda: (found := json_lines(suite.logs(path, format="json")))
                       and found[-1]["text"] == "after the long one" and found, 5, what="the three lines")
    binary, long, last = lines[-3:]
    assert (binary["stream"], binary["text"]) == ("stderr", "bytes \ufffd\ufffd not utf-8")
    assert long["truncated"] is True and long["text"] == "x" * 65536  # joined from Docker's 16 KiB parts, then cut
    assert last == {**last, "truncated": False, "stream": "stdout"}
    assert suite.logs(path).text.splitlines()[-2].endswith("x [truncated]")


def test_a_unit_that_is_gone_is_a_404_naming_it(suite, deployed):
    gone = f"{deployed}-9-1"
    answer = suite.logs(f"/services/{deployed}/units/{gone}/logs")
    assert answer.status_code == 404 and gone in answer.json()["error"]["message"]
    unknown = suite.logs("/services/no-such-service/logs")
    assert unknown.status_code == 404 and "no-such-service" in unknown.json()["error"]["message"]
