"""``paz registry serve`` (the part ``paz up --registry`` starts) and ``paz registry gc``.

``serve`` makes what Debian's ``docker-registry`` needs and runs it: the certificate of the suite's
token signing key (the key itself stays sealed in etcd), a token of role ``deploy`` for its
notifications to the scheduler, and its config in ``<state>/registry/``; its storage is
``<state>/registry/storage``. While the registry answers, ``/paz/services/paz-registry`` says where.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
from pathlib import Path

import click
import requests

from .. import image_registry, keys
from ..announce import Announcer
from ..auth import TokenStore, ensure_token_file
from ..etcd import Store, StoreUnavailable
from ..logs import configure_logging
from ..secrets import Keyring
from ..settings import DEFAULT_REGISTRY_ADDRESS, SettingsError, parse_host_port
from ..suite import Suite, registry_program
from ..waiting import poll
from .client import etcd_of
from .output import FAILED, USAGE, PazError

SCHEDULER = "paz-scheduler"
FIND_SCHEDULER_SECONDS = 60.0
ANNOUNCE_TTL = 20


def registry_address() -> str:
    try:
        return parse_host_port(os.environ.get("PAZ_REGISTRY_ADDR") or DEFAULT_REGISTRY_ADDRESS)
    except (SettingsError, ValueError) as exc:
        raise PazError(f"PAZ_REGISTRY_ADDR: {exc}", USAGE) from None


def installed_registry() -> str:
    program = registry_program()
    if not os.access(program, os.X_OK):
        raise PazError("docker-registry is not installed: apt-get install docker-registry (bin/setup does).", FAILED)
    return program


@click.group()
def registry() -> None:
    """The suite's image registry (paz up --registry starts it)."""


def written_config(state: Path, store: Store, address: str) -> Path:
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
        file.write(image_registry.config(address, str(folder / "storage"), f"http://{scheduler}/registry/token",
                                         str(certificate), f"http://{scheduler}/hooks/registry",
                                         hook_token.read_text().strip()))
    return config


@registry.command()
@click.pass_context
def serve(ctx: click.Context) -> None:
    """(Started by paz up --registry) run docker-registry, announced while it answers."""
    configure_logging(image_registry.NAME)
    address, program = registry_address(), installed_registry()
    store = etcd_of(os.environ.get("PAZ_ETCD_ENDPOINTS", "http://127.0.0.1:2379"))
    try:
        config = written_config(Path(ctx.obj["state_dir"]).resolve(), store, address)
    except StoreUnavailable:
        raise PazError(f"etcd does not answer at {', '.join(store.endpoints)}.", FAILED) from None
    stopping = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stopping.set())
    child = subprocess.Popen([program, "serve", str(config)], stdin=subprocess.DEVNULL)
    announcer = Announcer(store, ANNOUNCE_TTL).start()
    try:
        if poll(lambda: child.poll() is not None or stopping.is_set() or answers(address), 30.0, 0.1) and child.poll() is None:
            announcer.announce(keys.suite_service(image_registry.NAME), address)
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
