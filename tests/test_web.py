"""paz-web in a real headless Chromium (Debian's ``chromium`` and ``chromium-driver``, driven by
Selenium) against the suite started for real here: etcd, the directory, the scheduler (docker
driver, a real Docker Engine), haproxy-sync with its HAProxy, the orchestrator and paz-web.

The story a person follows: register a service through the form (a validation error first), deploy
it and watch the deploy appear live, see its unit healthy and its traffic after requests through
HAProxy, roll back, delete it. Each step's screenshot is saved under the run's tmp folder; with
``PAZ_SCREENSHOTS=docs/screenshots`` one of each page is written there too (the site shows them: docs/explanation/dashboard.md).
"""

from __future__ import annotations

import os
import re
import shutil
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from paz.auth import TokenStore
from tests.support import (
    ROOT, DockerEngine, EtcdServer, HaproxySync, Service, free_port, need, running, suite_scheduler, wait_until,
)

LIVE_SECONDS = 30.0
CHROMIUM_FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--window-size=1280,1000",
)


@dataclass
class Suite:
    etcd: EtcdServer
    haproxy_sync: HaproxySync
    orchestrator: Service
    web: Service


@pytest.fixture(scope="module")
def suite(tmp_path_factory: pytest.TempPathFactory, docker_engine: DockerEngine) -> Iterator[Suite]:
    folder = tmp_path_factory.mktemp("web")
    etcd = EtcdServer(folder)
    scheduler = suite_scheduler(etcd, docker_engine, folder)
    haproxy_sync = HaproxySync(etcd, folder)
    orchestrator = Service("paz-orchestrator", etcd, folder, env={"PAZ_EVENTS_KEEPALIVE": "1"})
    web = Service("paz-web", etcd, folder, env={"PAZ_WEB_SECRET_FILE": str(folder / "web-secret")})
    with running(etcd, Service("paz-service-directory", etcd, folder), scheduler, haproxy_sync, orchestrator, web):
        yield Suite(etcd, haproxy_sync, orchestrator, web)


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("screenshots")


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory):
    """Headless Chromium with a new, empty profile (this machine's network is closed)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service as DriverService

    options = webdriver.ChromeOptions()
    options.binary_location = need("chromium")
    for flag in (*CHROMIUM_FLAGS, f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=DriverService(executable_path=need("chromedriver")), options=options)
    driver.set_page_load_timeout(30)
    yield driver
    driver.quit()


def snap(browser, shots: Path, step: str, page: str | None = None) -> None:
    """This step's screenshot under the run's tmp folder; a page's also under $PAZ_SCREENSHOTS when set."""
    path = shots / f"{step}.png"
    browser.save_screenshot(str(path))
    target = os.environ.get("PAZ_SCREENSHOTS")
    if page and target:
        shutil.copy(path, ROOT / target / f"{page}.png")


def text_of(browser, css: str) -> str:
    """The visible text of what ``css`` selects, read in one step (live regions are replaced as events come)."""
    return browser.execute_script(
        "return Array.from(document.querySelectorAll(arguments[0])).map(e => e.innerText).join(' ')", css)


def test_a_person_registers_deploys_watches_rolls_back_and_deletes(suite: Suite, browser, shots: Path, test_image: str) -> None:
    from selenium.webdriver.common.by import By

    name = f"w-{uuid.uuid4().hex[:8]}"
    web = suite.web.url

    # The cluster: the Docker Engine and the load balancer, healthy
    browser.get(web + "/")
    wait_until(lambda: "healthy" in text_of(browser, "#hosts-title + .scroll td"), 10, what="a healthy host on the cluster page")
    assert "paz-haproxy-sync" in text_of(browser, "#lb-title + .scroll")
    snap(browser, shots, "01-cluster", "cluster")

    # Register: a bad name first, its error shown beside the field; then a good one
    browser.get(web + "/services")
    fill(browser, {"name": "Not_A_Name", "dockerRepository": test_image, "env": "MESSAGE=hello from v1"})
    browser.find_element(By.CSS_SELECTOR, "#register button[type=submit]").click()
    error = wait_until(lambda: text_of(browser, "#name-error"), 10, what="the name's validation error")
    assert "Not_A_Name" in error and browser.find_element(By.ID, "name").get_attribute("aria-invalid") == "true"
    assert browser.find_element(By.ID, "dockerRepository").get_attribute("value") == test_image  # kept
    snap(browser, shots, "02-register-error")
    # a fixed host port: Docker Engines of other test runs on this machine hand out the same ephemeral ports
    fill(browser, {"name": name, "ports": f"8000:{free_port()}"})
    browser.find_element(By.CSS_SELECTOR, "#register button[type=submit]").click()
    wait_until(lambda: browser.find_elements(By.ID, "running-version"), 10, what="the new service's page")
    assert "Never deployed" in text_of(browser, "#running-version")
    assert "added" in text_of(browser, "#diff")  # the whole next config is new beside nothing running
    snap(browser, shots, "03-registered")

    # The events page, open before the deploy, shows it live (the page is never reloaded)
    browser.switch_to.new_window("window")
    events_window = browser.current_window_handle
    browser.get(f"{web}/events?service={name}")
    wait_until(lambda: text_of(browser, "#live-state") == "live", 10, what="the events page connected to the stream")
    browser.execute_script("window.notReloaded = true")
    service_window = browser.window_handles[0]
    browser.switch_to.window(service_window)

    # Deploy from the service page; the page shows it running without a reload
    browser.find_element(By.ID, "deploy").click()
    wait_until(lambda: "has started" in text_of(browser, ".flash") or "is running" in text_of(browser, ".flash"), 10,
               what="the deploy's notice")
    browser.execute_script("window.notReloaded = true")
    wait_until(lambda: "Version 1" in text_of(browser, "#running-version") and "running" in text_of(browser, "#running-version"),
               LIVE_SECONDS, what="version 1 running on the service page")
    wait_until(lambda: "healthy" in text_of(browser, "#units-title + .scroll tbody"), LIVE_SECONDS, what="its unit healthy")
    assert f"{name}-1-1" in text_of(browser, "#units-title + .scroll tbody")
    snap(browser, shots, "04-deployed")

    browser.switch_to.window(events_window)
    wait_until(lambda: "deploy-finished" in text_of(browser, "#event-list"), LIVE_SECONDS, what="deploy-finished live on the events page")
    events = text_of(browser, "#event-list")
    assert "deploy-started" in events and "instance-up" in events
    assert browser.execute_script("return window.notReloaded === true")
    snap(browser, shots, "05-events-live", "events")
    browser.close()
    browser.switch_to.window(service_window)

    # Traffic through HAProxy appears in the stats and the chart
    wait_until(lambda: routed(suite, name, "hello from v1"), LIVE_SECONDS, what="version 1 routed through HAProxy")
    for _ in range(40):
        answer = suite.haproxy_sync.route(f"{name}.paz", "/cgi-bin/index")
        assert (answer.status_code, answer.text) == (200, "hello from v1")
    wait_until(lambda: int(text_of(browser, "#requests") or "0") >= 40, LIVE_SECONDS, interval=0.5, what="40 requests in the stats")
    wait_until(lambda: int(browser.find_element(By.ID, "chart").get_attribute("data-points") or 0) >= 2, LIVE_SECONDS,
               what="the chart drawn with two points")
    assert re.search(r"\d+ ms", text_of(browser, "#response-time"))
    assert "MiB" in text_of(browser, "#resources")
    assert browser.execute_script("return window.notReloaded === true")
    browser.execute_script("document.getElementById('traffic-title').scrollIntoView()")
    snap(browser, shots, "06-traffic", "service")

    # Edit the next config and see it beside the running one, deploy version 2
    env_box = browser.find_element(By.ID, "env")
    env_box.clear()
    env_box.send_keys("MESSAGE=hello from v2")
    browser.find_element(By.ID, "secretName").send_keys("DB_PASSWORD")
    assert browser.find_element(By.ID, "secretValue").get_attribute("type") == "password"
    browser.find_element(By.ID, "secretValue").send_keys("typed-in-the-dashboard-77")
    browser.find_element(By.CSS_SELECTOR, "#edit-config button[type=submit]").click()
    wait_until(lambda: "changed" in text_of(browser, "#diff .diff-changed"), 10, what="the changed env in the diff")
    assert "hello from v2" in text_of(browser, "#diff .diff-changed")
    assert "remove DB_PASSWORD (set " in text_of(browser, "#edit-config")
    assert "typed-in-the-dashboard-77" not in browser.page_source
    browser.find_element(By.ID, "deploy").click()
    wait_until(lambda: "Version 2" in text_of(browser, "#running-version") and "running" in text_of(browser, "#running-version"),
               LIVE_SECONDS, what="version 2 running")
    wait_until(lambda: routed(suite, name, "hello from v2"), LIVE_SECONDS, what="version 2 routed")

    # Roll back to version 1: a new version 3 runs version 1's config
    browser.find_element(By.CSS_SELECTOR, "#history tr[data-version='1'] button").click()
    wait_until(lambda: "Version 3" in text_of(browser, "#running-version") and "rollback of version 1" in text_of(browser, "#running-version"),
               LIVE_SECONDS, what="version 3, the rollback of version 1, running")
    wait_until(lambda: routed(suite, name, "hello from v1"), LIVE_SECONDS, what="version 1's message routed again")
    wait_until(lambda: "rollback" in text_of(browser, "#journal"), LIVE_SECONDS, what="the rollback in the journal")
    snap(browser, shots, "07-rolled-back")

    # Delete, with a confirmation
    browser.find_element(By.ID, "delete").click()
    fill(browser, {"confirm": name})
    snap(browser, shots, "08-delete-confirm", "delete")
    browser.find_element(By.CSS_SELECTOR, "#delete-form button[type=submit]").click()
    wait_until(lambda: f"Deleted {name}" in text_of(browser, ".flash"), LIVE_SECONDS, what="the deletion notice")
    assert name not in text_of(browser, "#services")
    snap(browser, shots, "09-deleted", "services")
    assert suite.haproxy_sync.route(f"{name}.paz", "/cgi-bin/index").status_code == 503

    # On a phone: one column, nothing wider than the screen (wide tables scroll inside their box);
    # from the keyboard, the first Tab reaches the skip link
    browser.set_window_size(390, 844)
    for page in ("/", "/services"):
        browser.get(web + page)
        assert browser.execute_script("return document.documentElement.scrollWidth <= window.innerWidth"), page
    snap(browser, shots, "10-phone", "phone")
    from selenium.webdriver.common.keys import Keys

    browser.find_element(By.TAG_NAME, "body").send_keys(Keys.TAB)
    assert browser.switch_to.active_element.text == "Skip to the content"


def routed(suite: Suite, name: str, message: str) -> bool:
    """HAProxy answers ``message`` for ``<name>.paz`` (else an AssertionError saying what it answered)."""
    answer = suite.haproxy_sync.route(f"{name}.paz", "/cgi-bin/index")
    assert (answer.status_code, answer.text) == (200, message)
    return True


def fill(browser, values: dict[str, str]) -> None:
    from selenium.webdriver.common.by import By

    for field, value in values.items():
        element = browser.find_element(By.ID, field)
        element.clear()
        element.send_keys(value)


# Made properly: no CDN, forms protected, errors in words (plain HTTP, no browser needed)

PAGES = ("/", "/services", "/events")


@pytest.mark.parametrize("page", PAGES)
def test_pages_load_nothing_from_another_site(suite: Suite, page: str) -> None:
    html = requests.get(suite.web.url + page, timeout=10).text
    assert re.findall(r"""(?:src|href|action|sse-connect|hx-get)=["'](?:https?:)?//""", html) == []
    for asset in re.findall(r"""(?:src|href)="(/assets/[^"]+)""", html):
        assert requests.get(suite.web.url + asset, timeout=5).status_code == 200, asset


def test_a_form_sent_from_another_site_changes_nothing(suite: Suite) -> None:
    name = f"w-{uuid.uuid4().hex[:8]}"
    answer = requests.post(f"{suite.web.url}/services", data={"name": name, "dockerRepository": "a/b"}, timeout=10)
    assert answer.status_code == 403
    assert "not sent from this dashboard" in answer.text and "<html" in answer.text
    assert requests.get(f"{suite.orchestrator.url}/services/{name}", timeout=10).status_code == 404


def test_an_orchestrator_that_does_not_answer_is_named_on_the_page(own_etcd: EtcdServer, workdir: Path) -> None:
    lonely = Service("paz-web", own_etcd, workdir, env={"PAZ_ORCHESTRATOR_ADDR": f"127.0.0.1:{free_port()}",
                                                           "PAZ_WEB_SECRET_FILE": str(workdir / "lonely-secret")})
    with running(lonely):
        cluster = requests.get(lonely.url + "/", timeout=10)
        assert cluster.status_code == 200 and "paz-orchestrator is unreachable" in cluster.text
        page = requests.get(lonely.url + "/services/demo-api", timeout=10)
        assert page.status_code == 503 and "paz-orchestrator is unreachable" in page.text and "Traceback" not in page.text


def test_the_dashboard_is_routed_as_paz_web_paz(suite: Suite) -> None:
    """Announced at /paz/services/paz-web, so HAProxy routes paz-web.paz to it like every suite service."""
    assert suite.etcd.get("/paz/services/paz-web")["value"] == f"127.0.0.1:{suite.web.port}"
    page = wait_until(lambda: suite.haproxy_sync.route("paz-web.paz", "/services"), 15, what="paz-web.paz routed")
    assert page.status_code == 200 and "Register a service" in page.text


def test_a_refused_config_edit_is_explained_beside_its_field_and_changes_nothing(suite: Suite) -> None:
    name = f"w-{uuid.uuid4().hex[:8]}"
    session = requests.Session()
    token = re.search(r'name="csrf_token" value="([^"]+)"', session.get(f"{suite.web.url}/services", timeout=10).text)[1]
    created = session.post(f"{suite.web.url}/services", data={"csrf_token": token, "name": name, "dockerRepository": "a/b:1",
                                                              "numInstances": "2"}, timeout=10)
    assert created.status_code == 200 and f"<h1>{name}</h1>" in created.text  # after the redirect
    refused = session.post(f"{suite.web.url}/services/{name}/config", data={"csrf_token": token, "numInstances": "0"}, timeout=10)
    assert refused.status_code == 400
    assert re.search(r'id="numInstances-error">[^<]*\S', refused.text), "the directory's message beside the field"
    assert requests.get(f"{suite.orchestrator.url}/services/{name}/config/next", timeout=10).json()["numInstances"] == 2


def test_changes_are_made_with_the_logged_in_persons_token(own_etcd: EtcdServer, workdir: Path) -> None:
    """Against an orchestrator that requires tokens (as paz up runs it): without logging in a change is
    refused in words; logged in with a deploy token, registering is refused (it needs admin); with an
    admin token it is made."""
    required = {"PAZ_AUTH": "required"}
    directory = Service("paz-service-directory", own_etcd, workdir, env=required)
    orchestrator = Service("paz-orchestrator", own_etcd, workdir, env=required)
    web = Service("paz-web", own_etcd, workdir, env={"PAZ_WEB_SECRET_FILE": str(workdir / "web-secret-auth"), **required})
    tokens = TokenStore(own_etcd.store())
    deploy_token, _ = tokens.create("deploy", "web test")
    admin_token, _ = tokens.create("admin", "web test")
    name = f"w-{uuid.uuid4().hex[:8]}"
    with running(directory, orchestrator, web):
        session = requests.Session()
        csrf = re.search(r'name="csrf_token" value="([^"]+)"', session.get(f"{web.url}/services", timeout=10).text)[1]
        register = {"csrf_token": csrf, "name": name, "dockerRepository": "a/b:1"}
        anonymous = session.post(f"{web.url}/services", data=register, timeout=10)
        assert anonymous.status_code == 401 and "needs a token" in anonymous.text
        for token, status, shown in ((deploy_token, 403, "role admin"), (admin_token, 200, f"<h1>{name}</h1>")):
            assert session.post(f"{web.url}/login", data={"csrf_token": csrf, "token": token}, timeout=10).ok
            answer = session.post(f"{web.url}/services", data=register, timeout=10)
            assert answer.status_code == status and shown in answer.text, answer.text[-2000:]
        assert session.post(f"{web.url}/logout", data={"csrf_token": csrf}, timeout=10).ok
        assert session.post(f"{web.url}/services/{name}/delete", data={"csrf_token": csrf, "confirm": name}, timeout=10).status_code == 401
