"""The directory's reads answered from the orchestrator's own view of etcd, where its documents are anyway.

``GET /services``, ``GET /services/<name>`` and ``GET /services/<name>/config/next`` with nothing
else to them (:mod:`paz.fast` says what that is) are the directory's documents as its view holds
them, rendered the way the directory renders them, without a hop (a value that is not a service
document is left out of the list with a warning, as the directory does). What the view does not hold
(a missing service: the directory's 404), a malformed document read by name (the directory's 409),
a read with a query or an index, and every write go to the directory as before (:mod:`.routes`);
the index a relayed write answers is recorded (:mod:`paz.written`), so the next read waits for the
view to hold it and a client reads its own write through the orchestrator too.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

from paz import keys
from paz.contracts.service_document import MalformedDocument, config_json, document_json
from paz.fast import Answer
from paz.names import is_service_name
from paz.etcd import Node
from paz.view import EtcdView

log = logging.getLogger(__name__)

SERVICES = "/services"
READS = {"": document_json, "/config/next": config_json}
"""What follows ``/services/<name>`` in a read answered here, and how it is rendered."""


def _documents(nodes: list[Node]) -> Iterator[bytes]:
    for node in nodes:
        try:
            yield document_json(node.key, node.value)
        except MalformedDocument:
            log.warning("skipping a malformed service document", extra={"key": node.key})


def hot_reads(view: EtcdView) -> Answer:
    """The answer of a plain read of a directory path from ``view``, or None to relay it."""
    listed: tuple[int, bytes] = (-1, b"")

    def service_list() -> bytes:
        nonlocal listed
        index = view.index
        if listed[0] != index:  # rendered once per change the view sees: it holds everything under /paz
            listed = (index, b"[" + b",".join(_documents(view.children(keys.DIRECTORY))) + b"]")
        return listed[1]

    def answer(path: str) -> tuple[str, bytes] | None:
        if path == SERVICES:
            return SERVICES, service_list()
        name, slash, rest = path.removeprefix(SERVICES + "/").partition("/")
        render = READS.get(slash + rest)
        if render is None or not is_service_name(name):
            return None
        value = view.get(keys.service_document(name))
        return None if value is None else (f"{SERVICES}/<name>{slash}{rest}", render(keys.service_document(name), value))

    return answer
