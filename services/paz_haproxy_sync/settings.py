"""haproxy-sync's settings: where HAProxy's files live and where it serves.

Its own module, so the declaration (:mod:`.app`), the engine and the HAProxy driver all read it
without importing each other.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from paz.settings import (
    Settings, env, parse_base_urls, parse_bool, parse_host, parse_ip, parse_ip_ports, parse_port, parse_port_or_off,
    parse_positive_float, parse_readable_file, parse_seconds_up_to, parse_socket_dir, parse_url,
)

LETS_ENCRYPT = "https://acme-v02.api.letsencrypt.org/directory"


def parse_acme_directory(raw: str) -> str:
    """An ACME directory URL, or ``off`` (no certificate is ordered; brought ones are still served)."""
    return "off" if raw.strip().lower() == "off" else parse_url(raw)


def default_haproxy() -> str:
    return shutil.which("haproxy") or "/usr/sbin/haproxy"


@dataclass(frozen=True)
class SyncSettings(Settings):
    http_port: int = env("PAZ_HTTP_PORT", parse_port, 8080)
    """HAProxy's router port on ``PAZ_ROUTER_BIND`` (``<service>.paz`` by its Host header)."""
    stats_port: int = env("PAZ_STATS_PORT", parse_port, 1936)
    """HAProxy's stats page port."""
    haproxy_dir: str = env("PAZ_HAPROXY_DIR", parse_socket_dir, ".paz/haproxy")
    """HAProxy's files: ``haproxy.cfg`` in force, the last rejected one, its pid, master and stats sockets, ``status.json``."""
    haproxy_bin: str = env("PAZ_HAPROXY_BIN", str, default_haproxy())
    """The HAProxy binary (``haproxy`` on PATH, else ``/usr/sbin/haproxy``)."""
    router_bind: str = env("PAZ_ROUTER_BIND", parse_host, "127.0.0.1")
    """Where the router and stats listeners bind."""
    router_address: str = env("PAZ_ROUTER_ADDRESS", parse_ip, "")
    """Where containers reach the router (port 80) and the name server (port 53), and what
    ``<service>.paz`` resolves to; empty: no name server, and the router on ``PAZ_ROUTER_BIND`` only."""
    dns_bind: str = env("PAZ_DNS_BIND", parse_ip, "")
    """Where the name server and the router's port 80 listen, when not on ``PAZ_ROUTER_ADDRESS``
    itself (compose: 0.0.0.0 inside the container, published on the router address)."""
    dns_port: int = env("PAZ_DNS_PORT", parse_port, 53)
    """The name server's port on the router address."""
    dns_upstream: tuple[tuple[str, int], ...] = env("PAZ_DNS_UPSTREAM", parse_ip_ports, ())
    """Where names outside .paz are asked; by default the nameservers of /etc/resolv.conf."""
    keep_haproxy: bool = env("PAZ_HAPROXY_KEEP", parse_bool, False)
    """false: a clean stop stops HAProxy; true: HAProxy keeps serving and the next haproxy-sync adopts it."""
    marathon_urls: tuple[str, ...] = env("PAZ_MARATHON_URLS", parse_base_urls, ())
    """Marathon's base URLs, comma-separated; wins over ``/paz/config/marathon`` in etcd and the settings file."""
    marathon_settings: str = env("PAZ_MARATHON_SETTINGS", str, "")
    """The seed's per-app settings file for Marathon (JSON: ``marathon_hosts``, apps, ``auth_confs``)."""
    marathon_silence: float = env("PAZ_MARATHON_SILENCE_SECONDS", parse_positive_float, 30.0)
    """Marathon's event stream is dropped and opened again after this long without a word."""
    marathon_resync: float = env("PAZ_MARATHON_RESYNC_SECONDS", parse_seconds_up_to(60.0), 60.0)  # at least every minute
    """Every app is read again at least this often (at most 60)."""
    marathon_callback_url: str = env("PAZ_MARATHON_CALLBACK_URL", parse_url, "")
    """Subscribe this URL to Marathon's events (callbacks, Marathon before 1.5) instead of its stream."""
    https_port: int = env("PAZ_HTTPS_PORT", parse_port_or_off, 8443)
    """Where the router terminates TLS (on ``PAZ_ROUTER_BIND``); 0: no HTTPS."""
    acme_directory: str = env("PAZ_ACME_DIRECTORY", parse_acme_directory, LETS_ENCRYPT)
    """The ACME CA certificates are ordered from (Let's Encrypt's production directory; its staging one is
    https://acme-staging-v02.api.letsencrypt.org/directory); ``off``: none is ordered, brought ones are served."""
    acme_email: str = env("PAZ_ACME_EMAIL", str, "")
    """The contact the ACME account is registered with (the CA writes about expiring certificates)."""
    acme_ca_bundle: str = env("PAZ_ACME_CA_BUNDLE", parse_readable_file, "")
    """A CA file to trust for the ACME server itself (a private CA); by default the system's."""

    @property
    def router_listen(self) -> str:
        """The address the name server and the router's port 80 bind, or empty when there is no router address."""
        return (self.dns_bind or self.router_address) if self.router_address else ""

    @property
    def state_dir(self) -> Path:
        return Path(self.haproxy_dir).resolve()

    @property
    def config_path(self) -> Path:
        return self.state_dir / "haproxy.cfg"

    @property
    def exporter_address(self) -> str:
        """``host:port`` of HAProxy's Prometheus exporter (``/metrics`` on the stats port), as Prometheus reaches it:
        on ``PAZ_ROUTER_BIND``, or at this service's own address when that binds every interface."""
        unspecified = self.router_bind in ("0.0.0.0", "::")
        return f"{(self.announce_host or self.host) if unspecified else self.router_bind}:{self.stats_port}"

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
    def certs_dir(self) -> Path:
        """Where HAProxy reads the certificates it serves (cert and key, mode 0600), one file per name."""
        return self.state_dir / "certs"

    @property
    def crt_list(self) -> Path:
        return self.state_dir / "certs.list"

    @property
    def ordering(self) -> bool:
        """Whether this router orders certificates (it serves HTTPS and an ACME CA is configured)."""
        return bool(self.https_port) and self.acme_directory != "off"

    @property
    def status_path(self) -> Path:
        return self.state_dir / "status.json"
