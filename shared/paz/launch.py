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
            from gevent import monkey

            monkey.patch_all()
        from .registry import declaration
        from .server import serve

        serve(declaration(package))

    return main
