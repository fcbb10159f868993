"""Secrets as pure code: the key file, sealing and opening, the merge of a PATCH, and what reads show."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from types import SimpleNamespace

import pytest
from cryptography.fernet import Fernet
from marshmallow import ValidationError

from paz.contracts.deploys import VersionOut
from paz.contracts.service_document import ConfigSchema, ServiceOut
from paz.secrets import (
    Keyring, SecretUnreadable, ensure_key_file, new_key, opened, public, resealed, sealed_patch, write_key_file,
)
from paz.errors import Unavailable
from paz.settings import SettingsError
from paz_directory.schemas import merge_config, sealed
from paz_scheduler.drivers.base import DeployFailed, InstanceSpec
from paz_scheduler.drivers.fleet import FleetDriver

pytestmark = pytest.mark.unit

HOSTILE = "p4ss\nword 'quoted' \"double\" $(id) `id`; rm -rf / \\ é ☃"


@pytest.fixture
def keyring(tmp_path: Path) -> Keyring:
    ensure_key_file(tmp_path / "secrets.key")
    return Keyring(tmp_path / "secrets.key")


def test_the_key_file_is_made_for_its_owner_only_and_once(tmp_path: Path) -> None:
    path = tmp_path / "state" / "secrets.key"
    assert ensure_key_file(path) is True
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    first = path.read_text()
    assert ensure_key_file(path) is False and path.read_text() == first


@pytest.mark.parametrize(("content", "words"), [
    (None, "does not exist"),
    ("", "does not hold a secrets key"),
    ("not a key\n", "does not hold a secrets key"),
])
def test_a_missing_or_broken_key_file_is_a_sentence_naming_it(tmp_path: Path, content: str | None, words: str) -> None:
    path = tmp_path / "secrets.key"
    if content is not None:
        path.write_text(content)
    with pytest.raises(SettingsError) as raised:
        Keyring(path).load()
    assert str(path) in str(raised.value) and words in str(raised.value)
    with pytest.raises(Unavailable) as unavailable:
        Keyring(path).seal("value")
    assert str(path) in unavailable.value.message and "value" not in unavailable.value.message.replace(str(path), "")


def test_a_value_sealed_opens_byte_for_byte_and_never_shows(keyring: Keyring) -> None:
    stored = sealed_patch({"DB_PASSWORD": HOSTILE}, keyring, "2026-01-01T00:00:00Z")
    assert HOSTILE not in repr(stored) and "p4ss" not in repr(stored)
    assert opened(stored, keyring) == {"DB_PASSWORD": HOSTILE}
    assert public(stored) == {"DB_PASSWORD": {"setAt": "2026-01-01T00:00:00Z"}}


def test_a_value_sealed_under_another_key_is_refused_naming_the_secret_not_the_value(keyring: Keyring, tmp_path: Path) -> None:
    other_path = tmp_path / "other.key"
    write_key_file(other_path, [new_key()])
    stored = sealed_patch({"API_KEY": "hunter2"}, Keyring(other_path), "t")
    with pytest.raises(SecretUnreadable) as raised:
        opened(stored, keyring)
    assert "API_KEY" in raised.value.message and str(keyring.path) in raised.value.message
    assert "hunter2" not in raised.value.message


def test_the_keyring_reads_its_file_again_when_it_changes_and_a_rotation_reseals(keyring: Keyring) -> None:
    old = keyring.seal("value")
    keys = keyring.path.read_text().split()
    write_key_file(keyring.path, [new_key(), *keys])
    os.utime(keyring.path, ns=(1, 1))  # a new inode anyway; the time too, in case
    foreign = Fernet(Fernet.generate_key()).encrypt(b"someone else's").decode()
    document = json.dumps({"name": "web", "config": {"env": {"X": foreign}, "secrets": {"A": {"sealed": old, "setAt": "t"}}}})
    rotated = json.loads(resealed(document, keyring.fernet))
    write_key_file(keyring.path, keyring.path.read_text().split()[:1])
    assert rotated["config"]["secrets"]["A"]["setAt"] == "t" and rotated["config"]["env"]["X"] == foreign
    assert rotated["config"]["secrets"]["A"]["sealed"] != old
    assert opened(rotated["config"]["secrets"], keyring) == {"A": "value"}
    with pytest.raises(SecretUnreadable):
        keyring.open("A", old)


def test_a_patch_merges_secrets_key_by_key_and_null_removes_one(keyring: Keyring) -> None:
    current = merge_config({}, sealed({"secrets": {"A": "1", "B": "2"}}, keyring))
    after = merge_config(current, sealed({"secrets": {"B": None, "C": "3"}}, keyring))
    assert sorted(after["secrets"]) == ["A", "C"]
    assert after["secrets"]["A"] == current["secrets"]["A"]
    assert opened(after["secrets"], keyring) == {"A": "1", "C": "3"}


def test_answers_show_names_and_times_never_values(keyring: Keyring) -> None:
    config = merge_config({}, sealed({"secrets": {"TOKEN": "s3cr3t-value"}}, keyring))
    for answer in (ConfigSchema().dump(config),
                   ServiceOut().dump({"name": "web", "description": "", "dockerRepository": "a/b", "config": config}),
                   VersionOut().dump({"service": "web", "version": 1, "config": config})):
        text = repr(answer)
        assert "TOKEN" in text and "setAt" in text
        assert "s3cr3t-value" not in text and "sealed" not in text and config["secrets"]["TOKEN"]["sealed"] not in text


@pytest.mark.parametrize("name", ["1ABC", "A-B", "A B", "A\nB", "$(id)", "A;B", "", "A=B", "A'B"])
def test_a_secret_name_that_is_no_env_name_is_refused_with_a_sentence(name: str) -> None:
    with pytest.raises(ValidationError) as raised:
        ConfigSchema(partial=True).load({"secrets": {name: "v"}})
    assert "environment variable name" in repr(raised.value.messages)


def test_hostile_values_are_accepted_as_they_are_but_not_a_nul() -> None:
    assert ConfigSchema(partial=True).load({"secrets": {"X": HOSTILE, "Y": None}}) == {"secrets": {"X": HOSTILE, "Y": None}}
    with pytest.raises(ValidationError) as raised:
        ConfigSchema(partial=True).load({"secrets": {"X": "a\x00b"}})
    assert "a\x00b" not in repr(raised.value.messages)


def test_secrets_join_the_env_in_the_container_environment_but_not_in_the_spec_repr() -> None:
    spec = InstanceSpec("web", 1, 1, "a/b:1", {"env": {"A": "env", "B": "env"}}, {"B": "secret-value"})
    assert spec.environment == {"A": "env", "B": "secret-value"}
    assert "secret-value" not in repr(spec)


def test_the_fleet_driver_refuses_secrets_before_anything_reaches_fleet() -> None:
    driver = FleetDriver(SimpleNamespace(fleet_url="http://127.0.0.1:9", instance_labels=()))
    with pytest.raises(DeployFailed) as raised:
        driver.start(InstanceSpec("web", 1, 1, "a/b:1", {}, {"DB_PASSWORD": "hunter2"}))
    assert "DB_PASSWORD" in raised.value.message and "hunter2" not in raised.value.message
