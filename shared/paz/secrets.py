"""Secrets: values a service gets in its containers' environment and nowhere else.

A secret is stored sealed (Fernet from ``cryptography``: AES-128-CBC with an HMAC-SHA256, so a
changed or foreign token is refused, never read as garbage) as ``{"sealed": <token>, "setAt": <time>}``
in the service's config (``config.secrets``), and travels sealed into the scheduler's desired records
and version documents, so a rollback has that version's secrets. Answers show each name and when it
was set (:func:`public`); only the scheduler's deploy controller opens them, into the container's
environment.

The key lives in a file (``PAZ_SECRETS_KEY_FILE``, made by ``paz up`` with mode 0600), never in etcd.
The file holds one key per line: the first seals, any opens, so ``paz secrets rotate`` can add a new
key, re-seal everything under it, then drop the old one while the services keep running (each
re-reads the file when it changes).
"""

from __future__ import annotations

import json
import logging
import os
import re
import threading
from pathlib import Path
from typing import Any

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from . import keys
from .errors import ApiError, Unavailable
from .etcd import AlreadyExists, CompareFailed, Store, StoreUnavailable, from_settings
from .settings import SettingsError

log = logging.getLogger(__name__)

NAME_RULE = "a secret's name is an environment variable name: letters, digits and '_', not starting with a digit"
KEY_CHECK_PLAIN = "paz secrets key check"
FERNET_TOKEN = re.compile(r"gAAAAA[A-Za-z0-9_-]+=*")
"""A Fernet token as it stands in a stored value (version byte 0x80 and a 64-bit time: ``gAAAAA``)."""


class SecretUnreadable(ApiError):
    """A sealed value the key file's keys do not open (sealed under another key, or altered)."""

    status = 422


def new_key() -> str:
    return Fernet.generate_key().decode()


def write_key_file(path: Path, lines: list[str]) -> None:
    """Replace ``path`` with ``lines`` (keys, first the sealing one) at once, readable by its owner only."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as file:
        file.write("".join(f"{line}\n" for line in lines))
    os.replace(temporary, path)


def ensure_key_file(path: Path) -> bool:
    """Make a key file at ``path`` unless there is one; whether it was made. Two makers at once
    (compose's services sharing a volume) end with one key: the file is linked into place, never replaced."""
    if path.exists():
        return False
    temporary = path.with_name(f".{path.name}.new.{os.getpid()}")
    write_key_file(temporary, [new_key()])
    try:
        os.link(temporary, path)
        return True
    except FileExistsError:
        return False
    finally:
        temporary.unlink()


def _read_keys(path: Path) -> list[str]:
    try:
        lines = [line.strip() for line in path.read_text().splitlines() if line.strip()]
    except FileNotFoundError:
        raise SettingsError(f"The secrets key file {path} does not exist: `paz up` makes it, or set "
                            "PAZ_SECRETS_KEY_FILE to the file this suite's secrets were sealed with.") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SettingsError(f"The secrets key file {path} cannot be read ({exc.__class__.__name__}): "
                            "give this process read access to it.") from None
    try:
        if not lines:
            raise ValueError
        for line in lines:
            Fernet(line)
    except ValueError:
        raise SettingsError(f"The secrets key file {path} does not hold a secrets key (one 44-character "
                            "url-safe base64 Fernet key per line): restore the file, or set PAZ_SECRETS_KEY_FILE "
                            "to the right one.") from None
    return lines


class Keyring:
    """The keys of a key file, read on first use and again whenever the file changes (a rotation while
    the suite runs). A service checks its file at start (:func:`check_settings`); an app made without
    starting (``paz docs build``) never reads it."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._seen: tuple[int, int] | None = None
        self._fernet: MultiFernet | None = None

    def _stamp(self) -> tuple[int, int] | None:
        try:
            stat = self.path.stat()
        except OSError:
            return None
        return stat.st_ino, stat.st_mtime_ns

    def load(self) -> MultiFernet:
        """The file's keys, read now; :class:`SettingsError` with a sentence naming the file when it is unusable."""
        stamp = self._stamp()
        self._fernet = MultiFernet([Fernet(line) for line in _read_keys(self.path)])
        self._seen = stamp
        return self._fernet

    @property
    def fernet(self) -> MultiFernet:
        with self._lock:
            if self._fernet is None:
                try:
                    return self.load()
                except SettingsError as exc:
                    raise Unavailable(str(exc), {"keyFile": str(self.path)}) from None
            if self._stamp() not in (None, self._seen):
                try:
                    self.load()
                except SettingsError as exc:
                    log.warning("secrets key file changed but is unusable; keeping the keys read before",
                                extra={"reason": str(exc)})
            return self._fernet

    def seal(self, value: str) -> str:
        return self.fernet.encrypt(value.encode()).decode()

    def open(self, name: str, sealed: str) -> str:
        try:
            return self.fernet.decrypt(sealed.encode()).decode()
        except (InvalidToken, UnicodeDecodeError):
            raise SecretUnreadable(f"Secret {name} cannot be opened with the keys in {self.path}: it was sealed "
                                   "under another key or altered in etcd; set it again.", {"secret": name}) from None


# -- the stored form ----------------------------------------------------------------------------


def sealed_patch(patch: dict[str, str | None], keyring: Keyring, at: str) -> dict[str, dict[str, str] | None]:
    """A PATCH's ``secrets`` (name to clear value, None removes) with each value sealed, set ``at``."""
    return {name: None if value is None else {"sealed": keyring.seal(value), "setAt": at} for name, value in patch.items()}


def public(stored: Any) -> dict[str, dict[str, Any]]:
    """What anyone may see of stored secrets: each name and when it was set."""
    if not isinstance(stored, dict):
        return {}
    return {name: {"setAt": entry.get("setAt") if isinstance(entry, dict) else None} for name, entry in stored.items()}


def opened(stored: Any, keyring: Keyring) -> dict[str, str]:
    """Stored secrets opened, for a container's environment only."""
    if not isinstance(stored, dict):
        return {}
    return {name: keyring.open(name, entry.get("sealed", "") if isinstance(entry, dict) else "") for name, entry in stored.items()}


def sealed_of(etcd: Store, service: str) -> dict[str, Any]:
    """The sealed secrets of ``service``'s document as the directory stored them (read from etcd's leader):
    no answer of the directory carries them, so the scheduler takes them from here at a deploy."""
    value = etcd.value(keys.service_document(service), consistent=True)
    try:
        secrets = json.loads(value or "{}").get("config", {}).get("secrets")
    except (ValueError, AttributeError):
        return {}
    return secrets if isinstance(secrets, dict) else {}


# -- the key, checked and rotated ----------------------------------------------------------------


def check_key(etcd: Store, keyring: Keyring) -> None:
    """Refuse a key file that is not the one this suite's secrets are sealed with (the first to
    start seals the check value with its key)."""
    value = etcd.value(keys.SECRETS_KEY_CHECK, consistent=True)
    if value is None:
        try:
            etcd.create(keys.SECRETS_KEY_CHECK, keyring.seal(KEY_CHECK_PLAIN))
            return
        except AlreadyExists:
            value = etcd.value(keys.SECRETS_KEY_CHECK, consistent=True) or ""
    try:
        keyring.fernet.decrypt(value.encode())
    except InvalidToken:
        raise SettingsError(f"The secrets key file {keyring.path} does not hold the key this suite's secrets "
                            f"are sealed with ({keys.SECRETS_KEY_CHECK} in etcd does not open with it): give "
                            "the right file with PAZ_SECRETS_KEY_FILE.") from None


def check_settings(settings: Any) -> None:
    """A service's start-up check: its key file is there, holds a key, and is this suite's.

    etcd down at start is no reason to refuse: a secret sealed under another key then fails its
    deploy, naming the secret and the file."""
    keyring = Keyring(settings.secrets_key_file)
    keyring.load()
    try:
        check_key(from_settings(settings), keyring)
    except StoreUnavailable as exc:
        log.warning("etcd away at start: the secrets key was not checked against it", extra={"reason": str(exc)})


def resealed(value: str, fernet: MultiFernet) -> str:
    """``value`` with every token that opens with ``fernet``'s keys sealed again under its first;
    other text, and tokens that do not open (someone else's), stay as they are."""
    def again(match: re.Match[str]) -> str:
        try:
            return fernet.rotate(match.group().encode()).decode()
        except InvalidToken:
            return match.group()

    return FERNET_TOKEN.sub(again, value)


def _reseal_key(etcd: Store, key: str, fernet: MultiFernet) -> bool:
    """Re-seal what ``key`` holds (compare-and-swap); whether it held anything sealed."""
    for _ in range(etcd.CAS_ATTEMPTS):
        node = etcd.get(key, consistent=True)
        text = resealed(node.value, fernet) if node and node.value else None
        if node is None or text is None or text == node.value:
            return False
        try:
            etcd.swap(key, text, node.revision)
            return True
        except CompareFailed:
            continue
    raise StoreUnavailable(etcd.endpoints, RuntimeError(f"{key} kept changing under {etcd.CAS_ATTEMPTS} attempts"))


def _reseal_all(etcd: Store, fernet: MultiFernet) -> set[str]:
    """The etcd keys whose sealed values :func:`_reseal_key` sealed again."""
    return {node.key for node in etcd.list_prefix(keys.ROOT, consistent=True).nodes if _reseal_key(etcd, node.key, fernet)}


def rotate(etcd: Store, path: Path) -> int:
    """Re-seal everything sealed in etcd (services' secrets in their configs, desired records and
    versions; certificates' keys; the key check) under a new key, and keep only it in the key file.

    The new key goes into the file first, so running services open with both meanwhile and seal with
    the new one from their next use. A service that took its keys just before may still seal a value
    under the old key while the first pass runs; so once the old key has left the file, everything is
    read again with every key held here. The number of etcd keys re-sealed."""
    fresh, old = new_key(), _read_keys(path)
    every = MultiFernet([Fernet(key) for key in (fresh, *old)])
    write_key_file(path, [fresh, *old])
    resealed_keys = _reseal_all(etcd, every)
    write_key_file(path, [fresh])
    return len(resealed_keys | _reseal_all(etcd, every))
