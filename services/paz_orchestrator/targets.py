"""What Prometheus scrapes, in its HTTP service-discovery format (``GET /prometheus/targets``).

Three kinds of target, told apart by the label ``part``:

* every suite process announced in etcd (``part`` = ``paz-orchestrator``, ``paz-scheduler``, ...): its ``/metrics``;
* each router's HAProxy exporter (``part`` = ``haproxy``, ``load_balancer`` = the haproxy-sync it belongs to);
* each running instance of a service whose config declares ``metrics: {path, port}`` (``part`` = ``app``,
  with ``service``, ``version`` and ``unit``), at the path it declared.

Every target carries ``host``, the machine it runs on. Prometheus' own ``instance`` label stays the
address. A scrape config keeps one kind per job (``paz up --prometheus`` writes it so), so a token
that the suite's services need is never sent to an app.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from typing import Any

from paz import keys
from paz.contracts.service_document import ANNOUNCED_PORT, metrics_host_port
from paz.etcd import Node

Target = dict[str, Any]
ConfigOf = Callable[[str, int], dict[str, Any] | None]
"""The config a service's version runs with, or None when its version document is not there (or not JSON)."""

ROUTER = "haproxy"
APP = "app"


def targets(announced: Iterable[Node], config_of: ConfigOf, exporters: dict[str, str]) -> list[Target]:
    """Targets from the keys below ``/paz/services`` (``announced``), each version's config and each
    router's exporter address (load balancer → ``host:port``), in a stable order."""
    found: list[Target] = []
    for node in announced:
        parts = (keys.relative(node.key, keys.SERVICES) or "").split("/")
        if not node.value:
            continue
        if len(parts) == 1 and parts[0].startswith("paz-"):
            found.append(_target(node.value, part=parts[0]))
        elif len(parts) == 3 and parts[1].isdigit() and parts[2].isdigit():
            found.extend(_app(parts[0], int(parts[1]), int(parts[2]), node.value, config_of))
    found += [_target(address, part=ROUTER, load_balancer=name) for name, address in sorted(exporters.items())]
    return sorted(found, key=lambda t: (t["labels"]["part"], t["targets"][0]))


def _app(service: str, version: int, number: int, address: str, config_of: ConfigOf) -> list[Target]:
    config = config_of(service, version) or {}
    declared = config.get("metrics")
    if not isinstance(declared, dict) or not isinstance(declared.get("path"), str):
        return []
    host_port = metrics_host_port(config)
    if host_port is None:
        return []  # refused by the directory; a version document written otherwise is not guessed at
    host, _, announced_port = address.rpartition(":")
    port = announced_port if host_port == ANNOUNCED_PORT else str(host_port)
    return [_target(f"{host}:{port}", part=APP, service=service, version=str(version),
                    unit=f"{service}-{version}-{number}", __metrics_path__=declared["path"])]


def _target(address: str, **labels: str) -> Target:
    return {"targets": [address], "labels": {"host": address.rpartition(":")[0], **labels}}


def version_config(read: Callable[[str], str | None]) -> ConfigOf:
    """:data:`ConfigOf` over ``read`` (a key's value, e.g. from the process's view)."""

    def config_of(service: str, version: int) -> dict[str, Any] | None:
        try:
            document = json.loads(read(keys.version_document(service, version)) or "")
        except ValueError:
            return None
        config = document.get("config") if isinstance(document, dict) else None
        return config if isinstance(config, dict) else None

    return config_of
