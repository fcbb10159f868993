"""The fleet driver's unit files: every user value reaches ``docker run`` as one unchanged argument, and
fleet's unit listing reads back as units."""

from __future__ import annotations

import codecs
import re

import pytest

from paz_scheduler.drivers.base import InstanceSpec, Unit
from paz_scheduler.drivers.fleet import announce_unit, command, fleet_unit, service_unit, systemd_quote, unit_text

pytestmark = pytest.mark.unit

HOSTILE = ['say "hi"', "it's", "line one\nline two", "$(touch /tmp/pwned)", "`id`", "${HOME}", "$HOME", "%n %i %%",
           "a;b && rm -rf / | cat", "back\\slash", "tab\there", "bell\x07", "\r\nExecStartPost=/bin/evil", "", " lead and trail "]
_WORD = re.compile(r'"((?:[^"\\]|\\.)*)"|(\S+)')


def systemd_words(line: str) -> list[str]:
    """The arguments systemd hands the program of an ``Exec*=`` line: quoted words with C escapes,
    ``$$`` and ``%%`` as one ``$`` and ``%``."""
    words = []
    for quoted, bare in _WORD.findall(line):
        word = codecs.decode(quoted, "unicode_escape") if quoted or not bare else bare
        words.append(word.replace("$$", "$").replace("%%", "%"))
    return words


@pytest.mark.parametrize("value", HOSTILE)
def test_a_quoted_value_is_one_argument_that_systemd_hands_on_unchanged(value: str) -> None:
    quoted = systemd_quote(value)
    assert "\n" not in quoted and "\r" not in quoted
    assert systemd_words(command("/usr/bin/docker", "run", value)) == ["/usr/bin/docker", "run", value]


SPEC = InstanceSpec("web", 3, 2, "registry.local:5000/web:3", {
    "ports": [{"container": 8080}, {"container": 9090, "host": 80}],
    "env": {f"V{i}": value for i, value in enumerate(HOSTILE)},
    "volume": {"/srv/data": "/data"}, "conflictsWith": ["db", "cache-*"],
})


def options(rendered: list[dict[str, str]], section: str, name: str) -> list[str]:
    return [o["value"] for o in rendered if (o["section"], o["name"]) == (section, name)]


def test_the_service_unit_runs_the_container_with_every_env_value_intact() -> None:
    unit = service_unit(SPEC, ["db-1-1.service"], {"team": "shop"})
    [start] = options(unit, "Service", "ExecStart")
    words = systemd_words(start)
    assert words[:6] == ["/usr/bin/docker", "run", "--rm", "--name", "web-3-2", "--label"]
    assert words[-1] == "registry.local:5000/web:3"
    assert [words[i + 1] for i, w in enumerate(words) if w == "-e"] == [f"{k}={v}" for k, v in sorted(SPEC.config["env"].items())]
    assert [words[i + 1] for i, w in enumerate(words) if w == "-p"] == ["8080", "80:9090"]
    assert [words[i + 1] for i, w in enumerate(words) if w == "-v"] == ["/srv/data:/data"]
    assert [words[i + 1] for i, w in enumerate(words) if w == "--label"] == [
        "team=shop", "paz.service=web", "paz.version=3", "paz.instance=2"]


def test_the_unit_file_has_one_line_per_option_whatever_the_values() -> None:
    unit = service_unit(SPEC, ["db-1-1.service"])
    text = unit_text(unit)
    assert text.count("\n") == len(unit) + 2 * len({o["section"] for o in unit}) - 1
    assert [line for line in text.splitlines() if line.startswith("[")] == ["[Unit]", "[Service]", "[X-Fleet]"]
    assert options(unit, "X-Fleet", "Conflicts") == ["db-*.service", "cache-*-*.service"]
    assert options(unit, "X-Fleet", "MachineOf") == ["db-1-1.service"]


@pytest.mark.parametrize(("api", "writes", "removes"), [
    ("2", "/usr/bin/etcdctl set --ttl 60 /paz/services/web/3/2", "/usr/bin/etcdctl rm /paz/services/web/3/2"),
    ("3", '/usr/bin/etcdctl put --lease="$(/usr/bin/etcdctl lease grant 60', "/usr/bin/etcdctl del /paz/services/web/3/2"),
])
def test_the_sidekick_announces_the_first_port_with_the_suite_etcd_api(api: str, writes: str, removes: str) -> None:
    unit = announce_unit(SPEC, api)
    [start] = options(unit, "Service", "ExecStart")
    program, flag, script = systemd_words(start)
    assert (program, flag) == ("/bin/sh", "-c")
    assert "/usr/bin/docker port web-3-2 8080/tcp" in script and writes in script
    assert systemd_words(options(unit, "Service", "ExecStop")[0].removeprefix("-")) == removes.split()
    assert options(unit, "Unit", "BindsTo") == ["web-3-2.service"] and options(unit, "Service", "Environment") == [f"ETCDCTL_API={api}"]


def listed(name: str, machine: str | None = "m1", current: str = "launched") -> dict:
    """An entry of fleet's ``GET /fleet/v1/units``."""
    start = {"section": "Service", "name": "ExecStart", "value": command("/usr/bin/docker", "run", "--rm", "web:3")}
    return {"name": name, "options": [start], "desiredState": "launched", "currentState": current,
            **({"machineID": machine} if machine else {})}


@pytest.mark.parametrize(("unit", "state", "expected"), [
    (listed("web-3-2.service"), {"systemdSubState": "running"},
     Unit("web-3-2", "web", 3, 2, "10.0.0.3", None, "web:3", None, "running")),
    (listed("web-3-2.service", machine=None), {"machineID": "m1", "systemdSubState": "dead"},
     Unit("web-3-2", "web", 3, 2, "10.0.0.3", None, "web:3", None, "dead")),
    (listed("web-3-2.service", machine="gone", current="inactive"), {},
     Unit("web-3-2", "web", 3, 2, None, None, "web:3", None, "inactive")),
    (listed("web-3-2-announce.service"), {}, None),
    (listed("paz-web.service"), {}, None),
    (listed("web-3-2.timer"), {}, None),
])
def test_a_fleet_unit_reads_back_as_the_instance_it_runs(unit: dict, state: dict, expected: Unit | None) -> None:
    assert fleet_unit(unit, state, {"m1": "10.0.0.3"}) == expected
