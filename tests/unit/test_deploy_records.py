"""What a deploy, a rollback and a stop write as wanted, and which record wins: pure functions of the
scheduler's controller and store, and the names the directory keeps for the suite."""

from __future__ import annotations

import pytest

from paz import keys
from paz.names import reserved_problem
from paz_scheduler.controller import service_of, version_document
from paz_scheduler.store import rank

pytestmark = pytest.mark.unit

DEPLOY = {"id": "a", "service": "web", "kind": "deploy", "version": 3, "image": "me/web:3", "config": {"numInstances": 2},
          "pushedAt": None, "rollbackOf": None}


def test_a_newer_version_wins_and_a_stop_wins_over_the_deploy_of_the_version_it_saw() -> None:
    stop = {"id": "b", "stopped": True, "version": 3}
    assert rank(DEPLOY) < rank({**DEPLOY, "version": 4})
    assert rank(DEPLOY) < rank(stop) < rank({**DEPLOY, "version": 4})
    assert rank({}) < rank({**DEPLOY, "version": 1})  # no record yet: anything wins


def test_a_wanted_version_starts_deploying_with_its_image_and_config() -> None:
    assert version_document(DEPLOY) == {"service": "web", "version": 3, "dockerRepository": "me/web:3",
                                        "config": {"numInstances": 2}, "pushedAt": None, "deployedAt": None,
                                        "status": "deploying"}
    assert version_document({**DEPLOY, "rollbackOf": 1})["rollbackOf"] == 1


@pytest.mark.parametrize(("key", "service"), [
    (keys.desired("web"), "web"),
    (keys.version_document("web", 2), "web"),
    (keys.latest_version("web"), "web"),
    (keys.deploy_lock("web"), None),
    ("/paz/scheduler/journal/00000000000000000012", None),
    (keys.DESIRED, None),
])
def test_the_service_a_scheduler_key_concerns(key: str, service: str | None) -> None:
    assert service_of(key) == service


def test_where_desired_records_and_leaders_live() -> None:
    assert keys.desired("web") == "/paz/scheduler/desired/web"
    assert keys.leader("paz-scheduler") == "/paz/leaders/paz-scheduler"


@pytest.mark.parametrize("name", ["paz-web", "paz-scheduler", "paz-anything"])
def test_every_paz_name_is_the_suites_own(name: str) -> None:
    assert "keeps for its own parts" in reserved_problem(name)


@pytest.mark.parametrize("name", ["web", "pazzle", "my-paz-web", "paz"])
def test_other_names_are_free(name: str) -> None:
    assert reserved_problem(name) is None
