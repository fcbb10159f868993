"""paz-web's settings: how long it waits for the orchestrator, and the key that signs its session cookie."""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from paz.settings import Settings, env, parse_path, parse_positive_float, parse_seconds, parse_secret, parse_url

SECRET_BYTES = 32


@dataclass(frozen=True)
class WebSettings(Settings):
    upstream_timeout: float = env("PAZ_UPSTREAM_TIMEOUT", parse_positive_float, 10.0)
    """Seconds a call to another service may take."""
    secret: str = env("PAZ_WEB_SECRET", parse_secret, "")
    """Signs the session cookie (16 characters or more); every instance behind one name needs the same."""
    secret_file: str = env("PAZ_WEB_SECRET_FILE", parse_path, ".paz/web-secret")
    """Where the secret is made once when ``PAZ_WEB_SECRET`` is not set."""
    events_read_timeout: float = env("PAZ_WEB_EVENTS_READ_TIMEOUT", parse_positive_float, 60.0)
    """Seconds the event relays wait for the orchestrator's next line (it sends keep-alives every 15 s)."""
    cache_seconds: float = env("PAZ_WEB_CACHE_SECONDS", parse_seconds, 2.0)
    """At most how long the lists of every unit and host are kept between events (0: never kept)."""
    prometheus_url: str = env("PAZ_PROMETHEUS_URL", parse_url, "")
    """A Prometheus that scrapes the suite (``paz up --prometheus`` sets it): the traffic chart then shows
    the last hour from it; empty, or while it does not answer: the chart draws live figures from now on."""

    def session_secret(self) -> str:
        """``PAZ_WEB_SECRET``, else the secret in ``PAZ_WEB_SECRET_FILE``, made there once (every worker reads the same one)."""
        if self.secret:
            return self.secret
        path = Path(self.secret_file)
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            return path.read_text().strip()
        with os.fdopen(descriptor, "w") as file:
            file.write(secrets.token_urlsafe(SECRET_BYTES))
        return path.read_text().strip()
