"""paz-orchestrator: the one front door: services, cluster, health, stats and live events."""

from paz.launch import entry

# granian's embedded ASGI server: reads answered in Rust and the event loop, an open event stream a coroutine (paz.front)
main = entry(__name__, server="asgi")
