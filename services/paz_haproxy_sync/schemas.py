"""What only haproxy-sync accepts and answers: Marathon's events.

Its backends, which the orchestrator's load balancer views embed, are :class:`paz.contracts.cluster.BackendOut`.
"""

from __future__ import annotations

from marshmallow import INCLUDE, Schema, fields


class MarathonEventIn(Schema):
    """An event Marathon POSTs to a callback URL (``POST /v2/eventSubscriptions?callbackUrl=``)."""

    class Meta:
        unknown = INCLUDE

    eventType = fields.String(required=True, metadata={"description": "e.g. status_update_event"})


class MarathonEventOut(Schema):
    eventType = fields.String(required=True)
    accepted = fields.Boolean(required=True, metadata={"description": "true when it makes haproxy-sync read Marathon's apps again"})
