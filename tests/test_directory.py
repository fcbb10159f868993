"""paz-service-directory through real HTTP against a real etcd: every route and its errors."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.support import Service


def doc(name: str, **extra):
    return {"name": name, "description": "Test service", "dockerRepository": "lukebond/demo-api", **extra}


def create(directory: Service, body) -> "object":
    return directory.request("POST", "/services", json=body)


def test_create_applies_paz_defaults_and_is_stored_in_etcd(directory, etcd, unique_name):
    answer = create(directory, doc(unique_name))
    assert answer.status_code == 201
    assert answer.headers["Location"] == f"/services/{unique_name}"
    assert answer.json() == {
        "name": unique_name,
        "description": "Test service",
        "dockerRepository": "lukebond/demo-api",
        "config": {
            "publicFacing": False, "loadBalanced": True, "ports": [], "env": {}, "secrets": {}, "volume": {},
            "numInstances": 1, "autoDeploy": "never", "conflictsWith": [], "mustShareWith": [],
        },
    }
    stored = json.loads(etcd.get(f"/paz/directory/services/{unique_name}")["value"])
    assert stored == answer.json()


def test_seed_walkthrough_document_with_top_level_config_and_docker_image_alias(directory, unique_name):
    seed = {
        "name": unique_name, "description": "Test service", "dockerImage": "lukebond/contrived-service-1",
        "ports": [{"container": 9000, "host": 80}], "autoDeploy": "always", "numInstances": 1,
        "conflictsWith": "contrived-service-*",
    }
    answer = create(directory, seed)
    assert answer.status_code == 201, answer.text
    body = answer.json()
    assert body["dockerRepository"] == "lukebond/contrived-service-1"
    assert body["config"]["ports"] == [{"container": 9000, "host": 80}]
    assert body["config"]["autoDeploy"] == "always"
    assert body["config"]["conflictsWith"] == ["contrived-service-*"]


def test_list_get_and_lookup_by_repository(directory, unique_name):
    create(directory, doc(unique_name, dockerRepository=f"acme/{unique_name}:1.2"))
    names = [service["name"] for service in directory.request("GET", "/services").json()]
    assert unique_name in names
    assert directory.request("GET", f"/services/{unique_name}").json()["dockerRepository"] == f"acme/{unique_name}:1.2"
    for query in (f"acme/{unique_name}", f"acme/{unique_name}:1.2", f"acme/{unique_name}:9.9"):
        found = directory.request("GET", "/services", params={"dockerRepository": query})
        assert found.status_code == 200 and found.json()["name"] == unique_name, query
    missing = directory.request("GET", "/services", params={"dockerRepository": "nobody/nothing"})
    assert missing.status_code == 404
    assert "nobody/nothing" in missing.json()["error"]["message"]


def test_second_create_of_a_name_is_a_conflict_and_changes_nothing(directory, unique_name):
    create(directory, doc(unique_name, description="first"))
    again = create(directory, doc(unique_name, description="second"))
    assert again.status_code == 409
    assert "already exists" in again.json()["error"]["message"]
    assert directory.request("GET", f"/services/{unique_name}").json()["description"] == "first"


def test_delete_then_everything_about_it_is_404(directory, unique_name):
    create(directory, doc(unique_name))
    assert directory.request("DELETE", f"/services/{unique_name}").status_code == 204
    for method, path in (("GET", ""), ("DELETE", ""), ("GET", "/config")):
        answer = directory.request(method, f"/services/{unique_name}{path}")
        assert answer.status_code == 404, (method, path)
        assert answer.json()["error"]["message"].startswith(f"No service named '{unique_name}'")
    patch = directory.request("PATCH", f"/services/{unique_name}/config", json={"numInstances": 2})
    assert patch.status_code == 404


def test_a_write_is_read_at_once_whichever_worker_answers(directory, unique_name):
    """Every request on a new connection, so the directory's workers take turns: a plain read (no
    ``X-Paz-Index``) sees the write made a moment before through another worker."""
    create(directory, doc(unique_name))
    for count in range(2, 22):
        patched = directory.request("PATCH", f"/services/{unique_name}/config", json={"numInstances": count})
        assert patched.status_code == 200, patched.text
        assert directory.request("GET", f"/services/{unique_name}").json()["config"]["numInstances"] == count
    assert directory.request("DELETE", f"/services/{unique_name}").status_code == 204
    assert directory.request("GET", f"/services/{unique_name}").status_code == 404


def test_patch_merges_env_and_replaces_other_keys(directory, unique_name):
    create(directory, doc(unique_name, config={"env": {"A": "1", "B": "2"}, "ports": [{"container": 80}]}))
    answer = directory.request("PATCH", f"/services/{unique_name}/config",
                               json={"env": {"MESSAGE": "so platform; many service; wow", "A": None}, "numInstances": 3})
    assert answer.status_code == 200, answer.text
    assert answer.json()["env"] == {"B": "2", "MESSAGE": "so platform; many service; wow"}
    assert answer.json()["numInstances"] == 3
    config = directory.request("GET", f"/services/{unique_name}/config").json()
    assert config == answer.json()
    assert config["ports"] == [{"container": 80}]


@pytest.mark.parametrize(
    "name, reason",
    [
        ("Demo-Api", "capital letters"),
        ("demo/api", "'/'"),
        ("..", "too short"),
        ("demo..api", "'..'"),
        ("demo api", "spaces"),
        ("demo\napi", "line breaks"),
        ("a" * 64, "64 characters long"),
        ("ab", "too short"),
        ("-demo", "not a DNS label"),
        ("demo-", "not a DNS label"),
        ("paz-web", "keeps for its own parts"),  # the dashboard's own name
        ("paz-anything", "keeps for its own parts"),  # all of paz-*, a part added later included
    ],
)
def test_bad_names_are_refused_with_the_reason(directory, name, reason):
    before = directory.request("GET", "/services").json()
    answer = create(directory, doc(name))
    assert answer.status_code == 400
    error = answer.json()["error"]
    assert reason in json.dumps(error["details"]["name"])
    assert error["requestId"] == answer.headers["X-Request-Id"]
    assert directory.request("GET", "/services").json() == before


@pytest.mark.parametrize(
    "body, field",
    [
        ({"description": "no name or image"}, "name"),
        ({"name": "valid-name", "dockerRepository": "Not An Image!"}, "dockerRepository"),
        ({"name": "valid-name", "dockerRepository": "a/b", "numInstances": 0}, "numInstances"),
        ({"name": "valid-name", "dockerRepository": "a/b", "ports": [{"container": 70000}]}, "ports"),
        ({"name": "valid-name", "dockerRepository": "a/b", "env": {"1BAD": "x"}}, "env"),
        ({"name": "valid-name", "dockerRepository": "a/b", "autoDeploy": "sometimes"}, "autoDeploy"),
        ({"name": "valid-name", "dockerRepository": "a/b", "colour": "blue"}, "colour"),
        ({"name": "valid-name", "dockerRepository": "a/b", "dockerImage": "c/d"}, "dockerImage"),
        ({"name": "valid-name", "dockerRepository": "a/b", "healthCheck": {"path": "/x\nInjected: 1"}}, "healthCheck"),
    ],
)
def test_invalid_documents_name_the_field(directory, body, field):
    answer = create(directory, body)
    assert answer.status_code == 400, answer.text
    assert field in json.dumps(answer.json()["error"]["details"])
    assert directory.request("GET", "/services/valid-name").status_code == 404


def test_not_json_and_not_an_object_are_400(directory):
    assert create(directory, None).status_code == 400  # no body
    plain = directory.request("POST", "/services", data="name=x", headers={"Content-Type": "text/plain"})
    assert plain.status_code == 400 and "Content-Type: application/json" in plain.json()["error"]["message"]
    broken = directory.request("POST", "/services", data="{not json", headers={"Content-Type": "application/json"})
    assert broken.status_code == 400 and "not valid JSON" in broken.json()["error"]["message"]
    array = directory.request("POST", "/services", json=[1, 2])
    assert array.status_code == 400 and "JSON object" in array.json()["error"]["message"]


def test_patch_with_unknown_or_invalid_keys_changes_nothing(directory, unique_name):
    create(directory, doc(unique_name))
    before = directory.request("GET", f"/services/{unique_name}/config").json()
    for body in ({"colour": "blue"}, {"numInstances": "many"}, {"env": {"OK": "1"}, "ports": "80"}, {}):
        answer = directory.request("PATCH", f"/services/{unique_name}/config", json=body)
        assert answer.status_code == 400, body
    assert directory.request("GET", f"/services/{unique_name}/config").json() == before


def test_basic_auth_password_is_stored_only_as_a_crypt_hash(directory, etcd, unique_name):
    create(directory, doc(unique_name))
    answer = directory.request("PATCH", f"/services/{unique_name}/config",
                               json={"basicAuth": {"users": [{"username": "ops", "password": "s3cret"}]}})
    assert answer.status_code == 200, answer.text
    user = answer.json()["basicAuth"]["users"][0]
    assert user["username"] == "ops" and user["passwordHash"].startswith("$6$") and "password" not in user
    assert "s3cret" not in etcd.get(f"/paz/directory/services/{unique_name}")["value"]


def test_twenty_concurrent_patches_of_distinct_env_keys_all_survive(directory, unique_name):
    create(directory, doc(unique_name))

    def patch(i: int) -> int:
        return directory.request("PATCH", f"/services/{unique_name}/config", json={"env": {f"KEY_{i}": str(i)}}).status_code

    with ThreadPoolExecutor(20) as pool:
        statuses = list(pool.map(patch, range(20)))
    assert statuses == [200] * 20
    env = directory.request("GET", f"/services/{unique_name}/config").json()["env"]
    assert env == {f"KEY_{i}": str(i) for i in range(20)}


def test_request_id_is_echoed_and_unknown_routes_are_json(directory):
    answer = directory.request("GET", "/nowhere", headers={"X-Request-Id": "trace-42"})
    assert answer.status_code == 404
    assert answer.headers["X-Request-Id"] == "trace-42"
    assert answer.json()["error"] == {"status": 404, "message": "No route GET /nowhere; GET /docs lists them.", "requestId": "trace-42"}
    wrong = directory.request("PUT", "/services")
    assert wrong.status_code == 405 and "GET" in wrong.json()["error"]["message"]


def test_openapi_and_docs_describe_every_route(directory):
    spec = directory.request("GET", "/openapi.json").json()
    assert {"/services", "/services/{name}", "/services/{name}/config", "/health"} <= set(spec["paths"])
    assert set(spec["paths"]["/services/{name}/config"]) >= {"get", "patch"}
    assert {"Service", "Config", "Port"} <= set(spec["components"]["schemas"])
    page = directory.request("GET", "/docs")
    assert page.status_code == 200 and "/services/{name}/config" in page.text
    assert "http://" not in page.text.replace('href="openapi.json"', "") and "https://" not in page.text


def test_with_etcd_stopped_the_directory_answers_503_and_recovers_without_restart(own_etcd, tmp_path, unique_name):
    service = Service("paz-service-directory", own_etcd, tmp_path).start()
    try:
        assert create(service, doc(unique_name)).status_code == 201
        own_etcd.stop()
        for method, path, body in (("GET", f"/services/{unique_name}", None), ("GET", "/services", None),
                                   ("POST", "/services", doc(unique_name + "-b")),
                                   ("PATCH", f"/services/{unique_name}/config", {"numInstances": 2})):
            answer = service.request(method, path, json=body)
            assert answer.status_code == 503, (method, path, answer.text)
            assert "etcd is unreachable" in answer.json()["error"]["message"]
        health = service.request("GET", "/health")
        assert health.status_code == 503 and health.json()["checks"]["etcd"]["ok"] is False
        own_etcd.start()
        assert service.request("GET", f"/services/{unique_name}").status_code == 200
        assert service.request("GET", f"/services/{unique_name}-b").status_code == 404  # the refused create left nothing
        assert service.request("GET", "/health").status_code == 200
    finally:
        service.stop()


def test_a_malformed_document_written_around_the_api_does_not_break_the_directory(directory, etcd, unique_name):
    create(directory, doc(unique_name))
    etcd.put(f"/paz/directory/services/{unique_name}-bad", '{"config": "not a document"}')
    etcd.put(f"/paz/directory/services/{unique_name}-junk", "not json at all")
    try:
        listing = directory.request("GET", "/services")
        assert listing.status_code == 200
        assert unique_name in [s["name"] for s in listing.json()]
        assert directory.request("GET", "/services", params={"dockerRepository": "lukebond/demo-api"}).status_code == 200
        for broken in (f"{unique_name}-bad", f"{unique_name}-junk"):
            for method, path, body in (("GET", "", None), ("PATCH", "/config", {"numInstances": 2})):
                answer = directory.request(method, f"/services/{broken}{path}", json=body)
                assert answer.status_code == 409, (broken, method, answer.text)
                assert "not a service document" in answer.json()["error"]["message"]
            assert directory.request("DELETE", f"/services/{broken}").status_code == 204
    finally:
        etcd.delete_tree(f"/paz/directory/services/{unique_name}-bad")
        etcd.delete_tree(f"/paz/directory/services/{unique_name}-junk")


def test_a_client_reads_its_own_writes_whichever_of_two_workers_answers(directory, etcd, unique_name):
    """The session's directory runs two gunicorn workers, each with its own view of etcd."""
    created = create(directory, doc(unique_name))
    index = int(created.headers["X-Paz-Index"])
    assert index == etcd.get(f"/paz/directory/services/{unique_name}")["modifiedIndex"]
    for i in range(40):  # every request on a new connection, so both workers answer some
        patched = directory.request("PATCH", f"/services/{unique_name}/config", json={"env": {"N": str(i)}})
        written = int(patched.headers["X-Paz-Index"])
        assert written > index
        index = written
        by_header = directory.request("GET", f"/services/{unique_name}", headers={"X-Paz-Index": str(written)})
        assert by_header.json()["config"]["env"] == {"N": str(i)}
        by_query = directory.request("GET", f"/services/{unique_name}/config", params={"index": written})
        assert by_query.json()["env"] == {"N": str(i)}
    deleted = directory.request("DELETE", f"/services/{unique_name}")
    gone = int(deleted.headers["X-Paz-Index"])
    assert directory.request("GET", f"/services/{unique_name}", headers={"X-Paz-Index": str(gone)}).status_code == 404
    assert unique_name not in [s["name"] for s in directory.request("GET", "/services", params={"index": gone}).json()]


def test_consistent_reads_ask_etcd_and_a_bad_index_is_refused(directory, etcd, unique_name):
    etcd.put(f"/paz/directory/services/{unique_name}", json.dumps(doc(unique_name, config={})))  # around the API
    for _ in range(10):  # a consistent read includes it at once, in either worker
        answer = directory.request("GET", f"/services/{unique_name}", params={"consistent": "true"})
        assert answer.status_code == 200 and answer.json()["name"] == unique_name
    assert unique_name in [s["name"] for s in directory.request("GET", "/services", params={"consistent": "true"}).json()]
    future = int(etcd.get(f"/paz/directory/services/{unique_name}")["modifiedIndex"]) + 10_000
    waited = directory.request("GET", f"/services/{unique_name}", params={"index": future})  # no view reaches it:
    assert waited.status_code == 200  # read from etcd after PAZ_VIEW_WAIT
    for bad in ("-1", "abc", "1e9"):
        refused = directory.request("GET", f"/services/{unique_name}", headers={"X-Paz-Index": bad})
        assert refused.status_code == 400 and "X-Paz-Index" in refused.json()["error"]["message"], bad
    assert directory.request("GET", f"/services/{unique_name}", params={"index": "abc"}).status_code == 400


@pytest.mark.parametrize("domain", ["www.shop.test\nx", 'www".shop.test', "$(reboot).shop.test", "a;b.shop.test", "*.shop.test",
                                    "Www.Shop.test", "shop.paz", "localhost"])
def test_a_domain_that_is_not_a_domain_name_is_refused_and_nothing_changes(directory, unique_name, domain):
    create(directory, doc(unique_name))
    answer = directory.request("PATCH", f"/services/{unique_name}/config", json={"domains": [domain]})
    assert answer.status_code == 400, answer.text
    assert "domain" in json.dumps(answer.json()["error"])
    assert "domains" not in directory.request("GET", f"/services/{unique_name}/config").json()


def test_a_domain_belongs_to_one_service(directory, unique_name):
    other = f"{unique_name}-b"
    domain = f"www.{unique_name}.test"
    assert create(directory, doc(unique_name, config={"domains": [domain]})).status_code == 201
    assert create(directory, doc(other)).status_code == 201
    claimed = directory.request("PATCH", f"/services/{other}/config", json={"domains": [domain]})
    assert claimed.status_code == 409, claimed.text
    assert claimed.json()["error"]["message"].startswith(f"{domain} is already a domain of service {unique_name!r}")
    assert create(directory, doc(f"{unique_name}-c", config={"domains": [domain]})).status_code == 409
    assert directory.request("PATCH", f"/services/{unique_name}/config", json={"domains": [], "httpsRedirect": False}).status_code == 200
    moved = directory.request("PATCH", f"/services/{other}/config", json={"domains": [domain]})
    assert moved.status_code == 200 and moved.json()["domains"] == [domain] and "httpsRedirect" not in moved.json()


def test_of_two_services_claiming_a_domain_at_the_same_instant_one_gets_it(directory, etcd, unique_name):
    """Each side reads that no document lists the domain before either writes: only the create-only
    claim in etcd can tell them apart (both got 200 before it, and both routed the domain)."""
    names = [f"{unique_name}-a", f"{unique_name}-b"]
    for name in names:
        assert create(directory, doc(name)).status_code == 201
    with ThreadPoolExecutor(2) as pool:
        for round_ in range(15):
            domain = f"r{round_}.{unique_name}.test"
            answers = list(pool.map(lambda name: directory.request("PATCH", f"/services/{name}/config", json={"domains": [domain]}), names))
            assert sorted(answer.status_code for answer in answers) == [200, 409], [answer.text for answer in answers]
            winner = names[[answer.status_code for answer in answers].index(200)]
            listing = {name: directory.request("GET", f"/services/{name}/config").json().get("domains") for name in names}
            assert [name for name, domains in listing.items() if domains == [domain]] == [winner]
            assert json.loads(etcd.get(f"/paz/directory/domains/{domain}")["value"]) == {"service": winner, "pending": False}
    assert directory.request("DELETE", f"/services/{winner}").status_code == 204
    assert etcd.get(f"/paz/directory/domains/{domain}") is None  # deleted, the service gives its domains back


def test_a_claim_left_behind_is_taken_over_and_one_under_way_is_not(directory, etcd, unique_name):
    """A directory that died between a document and its claim leaves one of two things in etcd."""
    assert create(directory, doc(unique_name)).status_code == 201
    left, pending = f"left.{unique_name}.test", f"pending.{unique_name}.test"
    etcd.put(f"/paz/directory/domains/{left}", json.dumps({"service": f"{unique_name}-gone", "pending": False}))
    etcd.put(f"/paz/directory/domains/{pending}", json.dumps({"service": f"{unique_name}-new", "pending": True}), ttl=30)
    taken = directory.request("PATCH", f"/services/{unique_name}/config", json={"domains": [left]})
    assert taken.status_code == 200 and taken.json()["domains"] == [left], taken.text
    refused = directory.request("PATCH", f"/services/{unique_name}/config", json={"domains": [left, pending]})
    assert refused.status_code == 409 and refused.json()["error"]["message"].startswith(f"{pending} is being claimed by service {unique_name + '-new'!r} at this moment")
    assert directory.request("GET", f"/services/{unique_name}/config").json()["domains"] == [left]  # nothing changed
    assert json.loads(etcd.get(f"/paz/directory/domains/{left}")["value"]) == {"service": unique_name, "pending": False}
