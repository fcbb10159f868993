"""Benchmark: paz-web's pages with 50 services and 150 units, beside the orchestrator answers they are made from.

The suite runs for real (etcd, the directory, the scheduler on a Docker Engine of its own, haproxy-sync,
the orchestrator, paz-web); 50 services of 3 instances each are registered and deployed through the
orchestrator, so 150 containers run. Then each page is read REQUESTS times, one request at a time, and
so is the orchestrator's answer the page cannot do without (the reference, measured in the same run):
a page costs its template plus its slowest orchestrator call, asked in parallel. A second paz-web
with ``PAZ_WEB_CACHE_SECONDS=0`` shows what the pages cost without keeping the unit and host lists.

    .venv/bin/python -m bench.web_pages [--services 50] [--instances 3] [--requests 200]
"""

from __future__ import annotations

import argparse
import time
from concurrent.futures import ThreadPoolExecutor

import requests

from bench.haproxy_sync import percentile
from bench import scratch
from tests.support import SESSION_ID, TEST_LABEL, DockerEngine, EtcdServer, HaproxySync, Service, build_test_image, running

DEPLOY_ATTEMPTS = 3


def timings(url: str, count: int) -> list[float]:
    """``count`` sequential GETs of ``url`` (a keep-alive session, like a browser's), in ms; each must answer 200."""
    session = requests.Session()
    found = []
    for _ in range(count):
        started = time.perf_counter()
        answer = session.get(url, timeout=30)
        found.append((time.perf_counter() - started) * 1000)
        if answer.status_code != 200:
            raise SystemExit(f"{url} answered {answer.status_code}: {answer.text[:300]}")
    return found


def populate(orchestrator: Service, image: str, services: int, instances: int) -> list[str]:
    names = [f"bench-web-{i:03d}" for i in range(services)]

    def deploy(name: str) -> None:
        doc = {"name": name, "dockerRepository": image, "config": {"numInstances": instances}}
        requests.post(f"{orchestrator.url}/services", json=doc, timeout=30).raise_for_status()
        for _ in range(DEPLOY_ATTEMPTS):  # a deploy that did not serve (422) on this busy, shared machine is tried again
            answer = requests.post(f"{orchestrator.url}/services/{name}/deploy", json={}, timeout=300)
            if answer.ok:
                return
        raise SystemExit(f"{name} was not deployed: {answer.status_code} {answer.text[:300]}")

    with ThreadPoolExecutor(4) as pool:
        list(pool.map(deploy, names))
    return names


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--services", type=int, default=50)
    parser.add_argument("--instances", type=int, default=3)
    parser.add_argument("--requests", type=int, default=200)
    args = parser.parse_args()
    folder = scratch("paz-bench-web-")
    engine = DockerEngine().start()
    try:
        image = build_test_image(engine)
        etcd = EtcdServer(folder)
        orchestrator = Service("paz-orchestrator", etcd, folder)
        web = Service("paz-web", etcd, folder, env={"PAZ_WEB_SECRET_FILE": str(folder / "web-secret")})
        uncached = Service("paz-web", etcd, folder, env={"PAZ_WEB_SECRET_FILE": str(folder / "web-secret"), "PAZ_WEB_CACHE_SECONDS": "0"})
        scheduler = Service("paz-scheduler", etcd, folder, env={
            "DOCKER_HOST": engine.host, "PAZ_INSTANCE_LABELS": f"{TEST_LABEL}={SESSION_ID}", "PAZ_DRAIN_SECONDS": "0"})
        with running(etcd, Service("paz-service-directory", etcd, folder), scheduler, HaproxySync(etcd, folder), orchestrator, uncached, web):
            started = time.monotonic()
            names = populate(orchestrator, image, args.services, args.instances)
            units = requests.get(f"{orchestrator.url}/cluster/units", timeout=30).json()
            print(f"{len(names)} services, {len(units)} units deployed in {time.monotonic() - started:.0f} s")
            one = names[len(names) // 2]
            rows = [
                ("/", "/cluster"),
                ("/services", "/cluster/units"),
                (f"/services/{one}", f"/services/{one}/units"),
                ("/events", "/journal?limit=50"),
            ]
            print(f"{'page':<28} {'paz-web p50 / p95':>19}   {'no cache p50 / p95':>19}   {'orchestrator (reference)':<28} {'p50 / p95':>17}")
            for page, reference in rows:
                figures = [timings(url, args.requests) for url in (web.url + page, uncached.url + page, orchestrator.url + reference)]
                cells = [f"{percentile(f, .5):6.1f} / {percentile(f, .95):5.1f} ms" for f in figures]
                print(f"{page:<28} {cells[0]:>19}   {cells[1]:>19}   {reference:<28} {cells[2]:>17}")
    finally:
        engine.stop()


if __name__ == "__main__":
    main()
