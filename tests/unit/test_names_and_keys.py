"""The suite's vocabulary: which service names and images are refused, in which words, and where keys live."""

from __future__ import annotations

import pytest

from paz import keys
from paz.errors import BadRequest
from paz.names import IMAGE_REFERENCE, checked_name, is_service_name, marathon_name, name_problem

pytestmark = pytest.mark.unit


@pytest.mark.parametrize("name", ["web", "demo-api", "a1b", "x" * 63, "a-b-c-d", "paz-orchestrator"])
def test_a_dns_label_is_a_service_name(name: str) -> None:
    assert is_service_name(name) and name_problem(name) is None and checked_name(name) == name


@pytest.mark.parametrize(("name", "problem"), [
    ("ab", "is too short"),
    ("", "is too short"),
    ("x" * 64, "is 64 characters long"),
    ("Web", "has capital letters"),
    ("web/../etc", "has '/', '..', spaces or line breaks"),
    ("web api", "has '/', '..', spaces or line breaks"),
    ("web\nx", "has '/', '..', spaces or line breaks"),
    ("web\n", "has '/', '..', spaces or line breaks"),
    ("web\r\nHost: evil", "has capital letters"),
    ("web\tx", "has '/', '..', spaces or line breaks"),
    ("web..x", "has '/', '..', spaces or line breaks"),
    ("1web", "is not a DNS label"),
    ("-web", "is not a DNS label"),
    ("web-", "is not a DNS label"),
    ("web_api", "is not a DNS label"),
    ("web.paz", "is not a DNS label"),
    ("web;ls", "is not a DNS label"),
    ("$(reboot)", "is not a DNS label"),
    ('web"x', "is not a DNS label"),
    ("wéb", "is not a DNS label"),
])
def test_a_name_that_cannot_be_a_dns_label_is_refused_saying_why(name: str, problem: str) -> None:
    assert name_problem(name).startswith(problem)
    with pytest.raises(BadRequest) as refused:
        checked_name(name)
    assert refused.value.status == 400 and str(refused.value.message).startswith(f"{name!r} {problem}")
    assert "a service name is 3 to 63 characters" in refused.value.message


@pytest.mark.parametrize("image", [
    "busybox", "busybox:1.36", "lukebond/demo-api", "lukebond/demo-api:0.0.1", "registry.local:5000/team/web:3",
    "ghcr.io/a/b/c:v1.2-rc_3", "web@sha256:" + "a" * 64, "web:3@sha256:" + "0" * 64, "a__b", "a---b",
])
def test_a_docker_image_reference_is_accepted(image: str) -> None:
    assert IMAGE_REFERENCE.match(image)


@pytest.mark.parametrize("image", [
    "", "Busybox", "busybox:", "busybox:-x", "web@sha256:abc", "web:3\n", "web;ls", "web $(reboot)", "-web", "web/", "//web",
    "web:" + "t" * 129, "web\nFROM evil",
])
def test_anything_else_is_not_an_image(image: str) -> None:
    assert not IMAGE_REFERENCE.match(image)


@pytest.mark.parametrize(("app_id", "name"), [("/web", "web"), ("/shop/cart", "cart-shop"), ("/a/b/c", "c-b-a"), ("a/b/", "b-a")])
def test_a_marathon_app_is_named_as_mesos_dns_names_it(app_id: str, name: str) -> None:
    assert marathon_name(app_id) == name


@pytest.mark.parametrize(("key", "value"), [
    (keys.suite_service("paz-scheduler"), "/paz/services/paz-scheduler"),
    (keys.instance("web", 3, 2), "/paz/services/web/3/2"),
    (keys.service_document("web"), "/paz/directory/services/web"),
    (keys.latest_version("web"), "/paz/scheduler/services/web/latest"),
    (keys.version_document("web", 12), "/paz/scheduler/services/web/versions/12"),
    (keys.deploy_lock("web"), "/paz/scheduler/locks/web"),
    (keys.marathon_app("cart-shop"), "/paz/marathon/apps/cart-shop"),
    (keys.token("ab12"), "/paz/auth/tokens/ab12"),
    (keys.DOMAIN, "/paz/config/domain"),
    (keys.MARATHON, "/paz/config/marathon"),
])
def test_keys_are_where_the_design_says_etcdctl_finds_them(key: str, value: str) -> None:
    assert key == value


@pytest.mark.parametrize(("key", "found"), [
    ("/paz/scheduler/services/web/versions/12", ("web", 12)),
    ("/paz/scheduler/services/web/versions/x", None),
    ("/paz/scheduler/services/web/versions/12/extra", None),
    ("/paz/scheduler/services/web/latest", None),
    ("/paz/scheduler/services/web/versions/", None),
])
def test_a_version_document_key_is_read_back(key: str, found: tuple[str, int] | None) -> None:
    assert keys.parse_version_document(key) == found


@pytest.mark.parametrize(("key", "rest"), [
    ("/paz/services/web/3/2", "web/3/2"), ("/paz/services", None), ("/paz/servicesx/web", None), ("/other/web", None),
])
def test_a_key_relative_to_a_prefix(key: str, rest: str | None) -> None:
    assert keys.relative(key, keys.SERVICES) == rest
