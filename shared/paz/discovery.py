"""Finding a suite service by name through etcd.

Addresses are read from ``/paz/services/paz-<name>`` and cached; a :class:`~paz.watch.Watcher`
on ``/paz/services`` drops or replaces a cached address as soon as it changes in etcd, so a lookup
costs no round trip once warm. ``PAZ_<NAME>_ADDR`` pins an address instead (see
:meth:`paz.settings.Settings.override`).
"""

from __future__ import annotations

import threading

from . import keys
from .errors import ApiError
from .etcd_client import Etcd, Result, StoreUnavailable
from .settings import Settings
from .watch import Watcher


class ServiceNotAnnounced(ApiError):
    """A suite service has no address in etcd (it is not running, or etcd lost its key)."""

    status = 503

    def __init__(self, name: str) -> None:
        super().__init__(
            f"{name} is not announced at {keys.suite_service(name)} in etcd: start it (paz up) or check its logs",
            details={"service": name},
        )


class Discovery:
    """Looks up ``host:port`` of suite services, cached and kept current by an etcd watch."""

    def __init__(self, etcd: Etcd, settings: Settings | None = None) -> None:
        self.etcd = etcd
        self.settings = settings
        self._cache: dict[str, str] = {}
        self._lock = threading.Lock()
        self._watcher: Watcher | None = None

    def address(self, name: str) -> str:
        """``host:port`` of suite service ``name`` (e.g. ``paz-scheduler``).

        Raises :class:`ServiceNotAnnounced` when it has no key, and
        :class:`~paz.etcd_client.StoreUnavailable` when etcd cannot be asked and nothing is cached.
        """
        pinned = self.settings.override(name) if self.settings else None
        if pinned:
            return pinned
        self._ensure_watching()
        with self._lock:
            cached = self._cache.get(name)
        if cached:
            return cached
        value = self.etcd.get(keys.suite_service(name))
        if not value:
            raise ServiceNotAnnounced(name)
        with self._lock:
            self._cache[name] = value
        return value

    def close(self) -> None:
        """Stop following etcd (the cache is no longer kept current)."""
        with self._lock:
            if self._watcher is not None:
                self._watcher.stop()

    def _ensure_watching(self) -> None:
        with self._lock:
            if self._watcher is None or not self._watcher.running:
                self._watcher = Watcher(self.etcd, keys.SERVICES, self._on_change, self._on_reset).start()

    def _on_reset(self, _tree: Result | None) -> None:
        with self._lock:
            self._cache.clear()

    def _on_change(self, event: Result) -> None:
        name = event.key.removeprefix(keys.SERVICES + "/")
        if "/" in name:
            return  # an app instance key, not a suite service
        with self._lock:
            if event.action in ("set", "create", "update", "compareAndSwap") and event.value:
                self._cache[name] = event.value
            else:
                self._cache.pop(name, None)


__all__ = ["Discovery", "ServiceNotAnnounced", "StoreUnavailable"]
