"""paz-orchestrator: the one front door: services, cluster, health, stats and live events."""

from paz.launch import entry

# gevent: an open event stream holds a greenlet, not a thread (see EventStreams)
main = entry(__name__)
