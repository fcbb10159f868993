"""``paz registry serve`` (the part ``paz up --registry`` starts) and ``paz registry gc``.

``serve`` makes what Debian's ``docker-registry`` needs and runs it: the certificate of the suite's
token signing key (the key itself stays sealed in etcd), a token of role ``deploy`` for its
notifications to the scheduler, and its config in ``<state>/registry/``; its storage is
``<state>/registry/storage``. While the registry answers, ``/paz/services/paz-registry`` says where.

Its addresses may differ where it runs in a container (compose) or for other machines (fleet):
``PAZ_REGISTRY_ADDR`` is the one images are named with, as the Docker Engines reach it;
``PAZ_REGISTRY_BIND`` the address it listens on (its port is ``PAZ_REGISTRY_ADDR``'s);
``PAZ_ANNOUNCE_HOST`` the host announced with that port, where the suite's services reach it; and
``PAZ_REGISTRY_REALM`` the URL ``docker login`` is sent to (default: the scheduler as announced).
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import click
import requests

from .. import image_registry, keys
from ..announce import Announcer
from ..auth import TokenStore, ensure_token_file
from ..etcd import Store, StoreUnavailable
from ..logs import configure_logging
from ..secrets import Keyring
from ..settings import DEFAULT_REGISTRY_ADDRESS, SettingsError, parse_host, parse_host_port, parse_url
from ..suite import Suite, registry_program
from ..waiting import poll
from .client import etcd_of
from .output import FAILED, USAGE, PazError

SCHEDULER = "paz-scheduler"
FIND_SCHEDULER_SECONDS = 60.0
ANNOUNCE_TTL = 20


def setting(var: str, parse: Callable[[str], str], default: str) -> str:
    """``var`` from the environment, parsed (``default`` when unset or empty); a bad value exits 2 naming it."""
    raw = os.environ.get(var)
    if not raw:
        return default
    try:
        return parse(raw)
    except (SettingsError, ValueError) as exc:
        raise PazError(f"{var}: {exc}", USAGE) from None


def registry_address() -> str:
    return setting("PAZ_REGISTRY_ADDR", parse_host_port, DEFAULT_REGISTRY_ADDRESS)


@dataclass(frozen=True)
class Addresses:
    """Where the registry listens, where it is announced, where ``docker login`` is sent (see the module's docstring)."""

    listen: str
    announced: str
    realm: str
    """Empty: the scheduler's ``/registry/token`` at the address it is announced at."""

    @classmethod
    def from_environment(cls) -> "Addresses":
        host, _, port = registry_address().rpartition(":")
        bind, announce = setting("PAZ_REGISTRY_BIND", parse_host, host), setting("PAZ_ANNOUNCE_HOST", parse_host, host)
        return cls(f"{bind}:{port}", f"{announce}:{port}", setting("PAZ_REGISTRY_REALM", parse_url, ""))

    @property
    def local(self) -> str:
        """Where this machine asks whether it answers (loopback when it listens on every address)."""
        host, _, port = self.listen.rpartition(":")
        return f"127.0.0.1:{port}" if host == "0.0.0.0" else self.listen


def installed_registry() -> str:
    program = registry_program()
    if not os.access(program, os.X_OK):
        raise PazError("docker-registry is not installed: apt-get install docker-registry (bin/setup does).", FAILED)
    return program


@click.group()
def registry() -> None:
    """The suite's image registry (paz up --registry starts it)."""


def written_config(state: Path, store: Store, addresses: Addresses) -> Path:
    """The registry's folder made ready (certificate, notification token, config); the config file."""
    folder = state / "registry"
    folder.mkdir(parents=True, exist_ok=True)
    keyring = Keyring(os.environ.get("PAZ_SECRETS_KEY_FILE") or state / "secrets.key")
    certificate = folder / "token-signer.crt"
    certificate.write_bytes(image_registry.certificate_of(image_registry.ensure_signing_key(store, keyring)))
    hook_token = folder / "notifications.token"
    ensure_token_file(TokenStore(store), hook_token, "deploy", "paz registry: push notifications")
    scheduler = poll(lambda: store.value(keys.suite_service(SCHEDULER)), FIND_SCHEDULER_SECONDS, 0.5)
    if not scheduler:
        raise PazError(f"the scheduler is not announced ({keys.suite_service(SCHEDULER)}) after {FIND_SCHEDULER_SECONDS:g}s: "
                       "the registry's logins and push notifications go to it; start it first.", FAILED)
    config = folder / "config.yml"
    fd = os.open(config, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)  # it holds the notification token
    with os.fdopen(fd, "w") as file:
        file.write(image_registry.config(addresses.listen, str(folder / "storage"),
                                         addresses.realm or f"http://{scheduler}/registry/token", str(certificate),
                                         f"http://{scheduler}/hooks/registry", hook_token.read_text().strip()))
    return config


@registry.command()
@click.pass_context
def serve(ctx: click.Context) -> None:
    """(Started by paz up --registry) run docker-registry, announced while it answers."""
    configure_logging(image_registry.NAME)
    addresses, program = Addresses.from_environment(), installed_registry()
    store = etcd_of(os.environ.get("PAZ_ETCD_ENDPOINTS", "http://127.0.0.1:2379"))
    try:
        config = written_config(Path(ctx.obj["state_dir"]).resolve(), store, addresses)
    except StoreUnavailable:
        raise PazError(f"etcd does not answer at {', '.join(store.endpoints)}.", FAILED) from None
    stopping = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stopping.set())
    child = subprocess.Popen([program, "serve", str(config)], stdin=subprocess.DEVNULL)
    announcer = Announcer(store, ANNOUNCE_TTL).start()
    try:
        if poll(lambda: child.poll() is not None or stopping.is_set() or answers(addresses.local), 30.0, 0.1) and child.poll() is None:
            announcer.announce(keys.suite_service(image_registry.NAME), addresses.announced)
        while not stopping.wait(0.5) and child.poll() is None:
            pass
    finally:
        announcer.stop()
        if child.poll() is None:
            child.terminate()
            child.wait(30)
    ctx.exit(0 if stopping.is_set() else FAILED)


def answers(address: str) -> bool:
    try:
        requests.get(f"http://{address}/v2/", timeout=1)
        return True
    except requests.RequestException:
        return False


@registry.command()
@click.pass_context
def gc(ctx: click.Context) -> None:
    """Free the space of deleted images: stop the registry, run its garbage collection, start it again."""
    suite = Suite(Path(ctx.obj["state_dir"]))
    if not suite.registry:
        raise PazError("this suite runs no registry (paz up --registry starts one).", USAGE)
    part = suite.part("registry")
    was_running = suite.stop(part)
    config = suite.state_dir / "registry" / "config.yml"
    result = subprocess.run([installed_registry(), "garbage-collect", "--delete-untagged", str(config)],
                            capture_output=True, text=True, timeout=600)
    click.echo((result.stdout + result.stderr).strip()[-4000:])
    if was_running and suite.wait_ready(part, suite.start(part)) is None:
        raise PazError(f"the registry did not answer again; see {suite.log_file(part)}.", FAILED)
    if result.returncode != 0:
        raise PazError("docker-registry garbage-collect failed (its output is above).", FAILED)
