"""Finding a suite service by name through etcd.

Addresses are read from ``/paz/services/paz-<name>`` in the process's :class:`~paz.view.EtcdView`,
which follows etcd with one watch, so a lookup costs no round trip and sees a move as soon as etcd
has it. ``PAZ_<NAME>_ADDR`` pins an address instead (see :meth:`paz.settings.Settings.override`).
"""

from __future__ import annotations

from . import keys
from .errors import ApiError
from .etcd import StoreUnavailable
from .settings import Settings
from .view import EtcdView


class ServiceNotAnnounced(ApiError):
    """A suite service has no address in etcd (it is not running, or etcd lost its key)."""

    status = 503

    def __init__(self, name: str) -> None:
        super().__init__(
            f"{name} is not announced at {keys.suite_service(name)} in etcd: start it (paz up) or check its logs",
            details={"service": name},
        )


class Discovery:
    """Looks up ``host:port`` of suite services in the process's view of etcd."""

    def __init__(self, view: EtcdView, settings: Settings | None = None) -> None:
        self.view = view
        self.settings = settings

    def address(self, name: str) -> str:
        """``host:port`` of suite service ``name`` (e.g. ``paz-scheduler``).

        Raises :class:`ServiceNotAnnounced` when it has no key, and
        :class:`~paz.etcd.StoreUnavailable` when etcd has not been read once yet.
        """
        pinned = self.settings.override(name) if self.settings else None
        if pinned:
            return pinned
        value = self.view.get(keys.suite_service(name))
        if not value:
            raise ServiceNotAnnounced(name)
        return value

    def close(self) -> None:
        """Stop following etcd (the view is no longer kept current)."""
        self.view.stop()


__all__ = ["Discovery", "ServiceNotAnnounced", "StoreUnavailable"]
