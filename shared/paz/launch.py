"""A service's console script (``paz-<service>``): gevent's patching first, then its server.

gevent must patch the standard library before anything imports ``ssl``: patched later, urllib3 keeps
the unpatched ``SSLContext``, and the first HTTPS request recurses until Python gives up (seen as
haproxy-sync's ACME orders failing once its tasks ran in its gevent process). So a service package
imports nothing at import but this module, and its ``main`` patches, when its server is gevent's,
before it imports the service and serves it (:func:`paz.server.serve`).
"""

from __future__ import annotations

import os
from collections.abc import Callable


def entry(package: str, server: str = "gevent") -> Callable[[], None]:
    """The ``main`` of ``package``, served by ``server`` (``PAZ_WORKER_CLASS`` chooses another)."""

    def main() -> None:
        chosen = os.environ.setdefault("PAZ_WORKER_CLASS", server)
        if chosen == "gevent":
            # gevent's default resolver sends every getaddrinfo, even of an IP literal, through a thread
            # pool: relayed requests ran at a third of their rate. Addresses here come from etcd as IPs.
            os.environ.setdefault("GEVENT_RESOLVER", "block")
            patch_all()
        from .registry import declaration
        from .server import serve

        serve(declaration(package))

    return main


def patch_all() -> None:
    """gevent's ``monkey.patch_all``, with the installed packages' entry points read once.

    gevent looks up its plugins' entry points at each of the 25 steps of a patch_all, each a scan of
    every installed distribution's metadata: 0.09 s of CPU, a fifth of what a service spends starting,
    and ``paz up`` starts five at once on two cores. The lookups are made while nothing else runs (no
    thread has started), so the one scan is put in the function's place for that time only.
    """
    from importlib import metadata

    from gevent import monkey

    scanned = metadata.entry_points()
    scan = metadata.entry_points
    metadata.entry_points = lambda **selection: scanned.select(**selection)  # type: ignore[assignment]
    try:
        monkey.patch_all()
    finally:
        metadata.entry_points = scan
