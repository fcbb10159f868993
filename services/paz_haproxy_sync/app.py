"""haproxy-sync's app factory and settings."""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flask import Flask

from paz.settings import Settings, env, parse_host, parse_port
from paz.web import create_app as create_paz_app

from .haproxy import Haproxy
from .routes import bp

NAME = "haproxy-sync"
PORT = 9003
_SOCKET_PATH_MAX = 100  # a Unix socket path is at most 107 bytes


def parse_dir(raw: str) -> str:
    path = Path(raw).resolve()
    if len(str(path / "master.sock")) > _SOCKET_PATH_MAX:
        raise ValueError(f"{path} is too long for HAProxy's Unix sockets inside it; use a shorter folder")
    return str(path)


def parse_bool(raw: str) -> bool:
    if raw.lower() not in ("1", "true", "yes", "0", "false", "no"):
        raise ValueError("expected true or false")
    return raw.lower() in ("1", "true", "yes")


def default_haproxy() -> str:
    return shutil.which("haproxy") or "/usr/sbin/haproxy"


@dataclass(frozen=True)
class SyncSettings(Settings):
    http_port: int = env("PAZ_HTTP_PORT", parse_port, 8080)
    stats_port: int = env("PAZ_STATS_PORT", parse_port, 1936)
    haproxy_dir: str = env("PAZ_HAPROXY_DIR", parse_dir, ".paz/haproxy")
    haproxy_bin: str = env("PAZ_HAPROXY_BIN", str, default_haproxy())
    router_bind: str = env("PAZ_ROUTER_BIND", parse_host, "127.0.0.1")
    keep_haproxy: bool = env("PAZ_HAPROXY_KEEP", parse_bool, False)

    @property
    def state_dir(self) -> Path:
        return Path(self.haproxy_dir).resolve()

    @property
    def config_path(self) -> Path:
        return self.state_dir / "haproxy.cfg"

    @property
    def stats_socket(self) -> Path:
        return self.state_dir / "stats.sock"

    @property
    def master_socket(self) -> Path:
        return self.state_dir / "master.sock"

    @property
    def pid_file(self) -> Path:
        return self.state_dir / "haproxy.pid"

    @property
    def status_path(self) -> Path:
        return self.state_dir / "status.json"


def settings_from_env() -> SyncSettings:
    return SyncSettings.from_env(name=NAME, port=PORT)


def read_status(settings: SyncSettings) -> dict[str, Any]:
    """What the engine (the service's background task) last wrote about its applies."""
    try:
        return json.loads(settings.status_path.read_text())
    except (OSError, ValueError):
        return {}


def haproxy_health(settings: SyncSettings) -> dict[str, Any]:
    """HAProxy's part of /health: raises (so /health answers 503) when HAProxy is not serving."""
    haproxy = Haproxy(settings)
    status = read_status(settings)
    pid = haproxy.master_pid()
    if pid is None or not haproxy.answers():
        raise RuntimeError(f"HAProxy is not running (state folder {settings.state_dir}); last error: {status.get('lastError')}")
    return {
        "pid": pid,
        "router": f"{settings.router_bind}:{settings.http_port}",
        "lastAppliedAt": status.get("lastAppliedAt"),
        "lastApply": status.get("lastApply"),
        "lastError": status.get("lastError"),
    }


def create_app(settings: SyncSettings | None = None) -> Flask:
    settings = settings or settings_from_env()
    app = create_paz_app(
        settings,
        [bp],
        description="Keeps HAProxy routing <service>.paz to the live instances announced in etcd.",
    )
    app.extensions["paz"].health_checks["haproxy"] = lambda: haproxy_health(settings)
    app.extensions["paz.haproxy"] = Haproxy(settings)
    return app
