"""The Prometheus that ``paz up --prometheus`` runs (Debian's ``prometheus``), configured to find its
targets through the orchestrator's ``GET /prometheus/targets``.

One scrape job per kind of target (the label ``part``): ``paz`` (the suite's processes, with the
suite's token when reads need one), ``haproxy`` (each router's exporter) and ``apps`` (instances that
declare ``metrics``), so the suite's token is never sent to an app. The file is JSON, which is YAML
too; nothing in it comes from a user but the orchestrator's address and a token file's path.
"""

from __future__ import annotations

import json
from typing import Any

PORT = 9090
RETENTION = "15d"
"""How long samples are kept (``--storage.tsdb.retention.time``), with :data:`RETENTION_SIZE` as a bound on disk."""
RETENTION_SIZE = "1GB"
JOBS = (("paz", "paz-.+"), ("haproxy", "haproxy"), ("apps", "app"))
"""Scrape job → the ``part`` label values it keeps."""


def config(orchestrator_url: str, token_file: str | None = None, interval: str = "15s", refresh: str = "30s") -> str:
    """prometheus.yml: targets from ``orchestrator_url``, every ``interval``; discovery asked every ``refresh``.

    ``token_file`` (a file holding a token with the role ``read``) is sent to the orchestrator and to
    the suite's processes, for ``PAZ_AUTH_READS=token``.
    """
    authorization = {"authorization": {"credentials_file": token_file}} if token_file else {}
    jobs = []
    for job, parts in JOBS:
        discovery: dict[str, Any] = {"url": f"{orchestrator_url.rstrip('/')}/prometheus/targets", "refresh_interval": refresh,
                                     **authorization}
        jobs.append({
            "job_name": job,
            "http_sd_configs": [discovery],
            "relabel_configs": [{"source_labels": ["part"], "regex": parts, "action": "keep"}],
            **(authorization if job == "paz" else {}),
        })
    return json.dumps({"global": {"scrape_interval": interval, "evaluation_interval": interval}, "scrape_configs": jobs}, indent=2)


def argv(binary: str, config_file: str, data_dir: str, address: str) -> list[str]:
    """The command line of Prometheus on ``address`` (``host:port``), its samples in ``data_dir``, bounded."""
    return [
        binary, f"--config.file={config_file}", f"--storage.tsdb.path={data_dir}", f"--web.listen-address={address}",
        f"--storage.tsdb.retention.time={RETENTION}", f"--storage.tsdb.retention.size={RETENTION_SIZE}",
    ]
