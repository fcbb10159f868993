"""Runtime drivers: ``docker`` (one Docker Engine, the default) and ``fleet`` (systemd units through fleet's API)."""

from __future__ import annotations

from typing import Any

from .base import Driver


def make_driver(settings: Any) -> Driver:
    if settings.driver == "fleet":
        from .fleet import FleetDriver

        return FleetDriver(settings)
    from .docker import DockerDriver

    return DockerDriver(settings)
