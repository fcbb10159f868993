"""The orchestrator's settings: how long it waits for the services it asks, and its event streams.

Its own module, so the declaration (:mod:`.app`) and the event streams (:mod:`.events`) both read it
without importing each other.
"""

from __future__ import annotations

from dataclasses import dataclass

from paz.settings import Settings, env, parse_base_urls, parse_positive_float, parse_positive_int


@dataclass(frozen=True)
class OrchestratorSettings(Settings):
    upstream_timeout: float = env("PAZ_UPSTREAM_TIMEOUT", parse_positive_float, 10.0)
    """Seconds a call to another service may take."""
    events_keepalive: float = env("PAZ_EVENTS_KEEPALIVE", parse_positive_float, 15.0)
    """Seconds of quiet after which an event stream sends a keep-alive comment."""
    events_max_seconds: float = env("PAZ_EVENTS_MAX_SECONDS", parse_positive_float, 600.0)
    """An event stream ends after this long (with ``retry:``; an EventSource reconnects and misses nothing)."""
    events_max_clients: int = env("PAZ_EVENTS_MAX_CLIENTS", parse_positive_int, 0)
    """Event streams one worker serves at once; empty: its connections minus 64."""
    marathon_urls: tuple[str, ...] = env("PAZ_MARATHON_URLS", parse_base_urls, ())
    """Marathon's base URLs, comma-separated; wins over ``/paz/config/marathon`` in etcd and the settings file."""
    events_buffer: int = env("PAZ_EVENTS_BUFFER", parse_positive_int, 1000)
    """Events the hub keeps; a client that falls this far behind is cut off (it reconnects with its last id)."""

    @property
    def stream_limit(self) -> int:
        """Event streams one worker serves at once: by default all its connections but 64, kept for requests."""
        return self.events_max_clients or max(1, self.connections - 64)
