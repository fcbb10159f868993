"""The directory's documents as the hot reads answer them (the directory's and the orchestrator's):
rendered from the stored value as the routes' schemas render them, secrets never in clear."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from paz.contracts.service_document import MalformedDocument, config_json, document_json
from paz.secrets import Keyring, ensure_key_file
from paz_directory.schemas import merge_config, sealed

pytestmark = pytest.mark.unit

KEY = "/paz/directory/services/demo-api"


def stored(tmp_path: Path) -> str:
    ensure_key_file(tmp_path / "secrets.key")
    config = merge_config({}, sealed({"env": {"MESSAGE": "hi"}, "secrets": {"DB_PASSWORD": "p4ss word"}},
                                     Keyring(tmp_path / "secrets.key")))
    return json.dumps({"name": "demo-api", "description": "", "dockerRepository": "lukebond/demo-api", "config": config})


def test_a_document_and_its_config_answer_what_is_stored_and_never_a_secret(tmp_path: Path) -> None:
    value = stored(tmp_path)
    document, config = json.loads(document_json(KEY, value)), json.loads(config_json(KEY, value))
    assert document["name"] == "demo-api" and document["config"] == config
    assert config["env"] == {"MESSAGE": "hi"} and config["numInstances"] == 1
    assert list(config["secrets"]) == ["DB_PASSWORD"] and "setAt" in config["secrets"]["DB_PASSWORD"]
    assert "p4ss" not in value and "p4ss" not in document_json(KEY, value).decode()


@pytest.mark.parametrize("value", ["not json", "[]", '{"name": "demo-api"}', '{"name": 1, "dockerRepository": "x", "config": {}}'])
def test_a_value_that_is_not_a_document_is_a_409_naming_its_key(value: str) -> None:
    for render in (document_json, config_json):
        with pytest.raises(MalformedDocument) as refused:
            render(KEY, value)
        assert refused.value.status == 409 and KEY in refused.value.message
