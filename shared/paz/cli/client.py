"""The orchestrator as the ``paz`` command reaches it: at ``PAZ_URL``, else where etcd says it is
(``/paz/services/paz-orchestrator``, from ``PAZ_ETCD_ENDPOINTS``). Every failure becomes a
:class:`~paz.cli.output.PazError` with the orchestrator's own message and the exit code it means."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import requests

from .. import etcd, keys, sse
from ..etcd import StoreUnavailable
from ..settings import SettingsError, parse_endpoints, parse_url
from .output import UNREACHABLE, USAGE, PazError, exit_code_of

ORCHESTRATOR = "paz-orchestrator"
DEPLOY_SECONDS = 600.0


def etcd_of(endpoints: str, timeout: float = 2.0) -> etcd.Store:
    """etcd at ``endpoints`` (comma-separated URLs), spoken to in the API ``PAZ_ETCD_API`` names (default v3)."""
    api = os.environ.get("PAZ_ETCD_API") or etcd.DEFAULT_API
    try:
        return etcd.connect(parse_endpoints(endpoints), timeout, api=etcd.parse_api(api))
    except (SettingsError, ValueError) as exc:
        raise PazError(f"{exc} (PAZ_ETCD_ENDPOINTS, PAZ_ETCD_API)", USAGE) from None


def orchestrator_url(given: str | None) -> str:
    """``given`` (``--url`` or ``PAZ_URL``), else the orchestrator's address announced in etcd."""
    try:
        if given:
            return parse_url(given).rstrip("/")
    except SettingsError as exc:
        raise PazError(str(exc), USAGE) from None
    store = etcd_of(os.environ.get("PAZ_ETCD_ENDPOINTS", "http://127.0.0.1:2379"))
    try:
        address = store.value(keys.suite_service(ORCHESTRATOR))
    except StoreUnavailable:
        raise PazError(f"etcd does not answer at {', '.join(store.endpoints)}, so the orchestrator cannot be found: start the "
                       "suite (paz up), or set PAZ_URL to the orchestrator's URL.", UNREACHABLE) from None
    if not address:
        raise PazError(f"The orchestrator is not announced in etcd ({keys.suite_service(ORCHESTRATOR)}): start it "
                       "(paz up), or set PAZ_URL to its URL.", UNREACHABLE)
    return f"http://{address}"


class Orchestrator:
    def __init__(self, url: str, token: str | None = None) -> None:
        self.url = url
        self.token = token
        self.session = requests.Session()

    def call(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        """The orchestrator's 2xx answer to ``method path``; a PazError with its message otherwise."""
        kwargs.setdefault("timeout", 30)
        if self.token:
            kwargs.setdefault("headers", {})["Authorization"] = f"Bearer {self.token}"
        try:
            answer = self.session.request(method, self.url + path, **kwargs)
        except requests.ConnectionError:
            raise PazError(f"The orchestrator at {self.url} does not answer: start the suite (paz up) or check PAZ_URL.",
                           UNREACHABLE) from None
        except requests.Timeout:
            raise PazError(f"The orchestrator at {self.url} gave no answer to {method} {path} in time.", UNREACHABLE) from None
        if answer.status_code >= 400:
            raise PazError(error_message(answer), exit_code_of(answer.status_code))
        return answer

    def json(self, method: str, path: str, **kwargs: Any) -> Any:
        return self.call(method, path, **kwargs).json()

    def lines(self, path: str, params: dict[str, Any]) -> Iterator[str]:
        """A streamed text answer, line by line as it comes."""
        with self.call("GET", path, params=params, stream=True, timeout=(10, None)) as answer:
            try:
                yield from answer.iter_lines(decode_unicode=True)
            except requests.RequestException:
                raise PazError(f"The stream from {self.url} was cut.", UNREACHABLE) from None

    def events(self, service: str | None = None, last_id: int | None = None) -> "EventReader":
        params = {"service": service} if service else {}
        headers = {"Last-Event-ID": str(last_id)} if last_id is not None else {}
        answer = self.call("GET", "/events", params=params, headers=headers, stream=True, timeout=(10, None))
        return EventReader(answer)


def error_message(answer: requests.Response) -> str:
    """The orchestrator's error message (with the per-field problems of a 400), or its status."""
    try:
        error = answer.json()["error"]
    except (ValueError, KeyError, TypeError):
        return f"The orchestrator answered {answer.status_code} {answer.reason}."
    message = str(error.get("message") or answer.reason)
    details = error.get("details")
    if answer.status_code == 400 and isinstance(details, dict):
        message += " " + "; ".join(f"{field}: {problem}" for field, problem in flattened(details))
    return message


def flattened(details: dict[str, Any], prefix: str = "") -> Iterator[tuple[str, str]]:
    for field, problem in details.items():
        if isinstance(problem, dict):
            yield from flattened(problem, f"{prefix}{field}.")
        else:
            yield f"{prefix}{field}", " ".join(map(str, problem)) if isinstance(problem, list) else str(problem)


class EventReader:
    """The orchestrator's Server-Sent Events, each as ``(type, data)``; ``close`` ends it from another thread."""

    def __init__(self, answer: requests.Response) -> None:
        self.answer = answer
        self.last_id: int | None = None

    def __iter__(self) -> Iterator[tuple[str, dict[str, Any]]]:
        try:
            for event in sse.events(self.answer):
                self.last_id = int(event.id) if event.id.isdigit() else self.last_id
                yield event.type, event.json()
        except (requests.RequestException, AttributeError, ValueError):
            return

    def close(self) -> None:
        self.answer.close()
