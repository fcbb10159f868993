"""Runtime drivers: ``docker`` (one Docker Engine, the default), ``swarm`` (Docker Swarm mode, on a
manager) and ``fleet`` (systemd units through fleet's API)."""

from __future__ import annotations

from typing import Any

from .base import Driver


def make_driver(settings: Any) -> Driver:
    if settings.driver == "fleet":
        from .fleet import FleetDriver

        return FleetDriver(settings)
    if settings.driver == "swarm":
        from .swarm import SwarmDriver

        return SwarmDriver(settings)
    from .docker import DockerDriver

    return DockerDriver(settings)
