"""A service's or a unit's log stream: the query the scheduler answers and the orchestrator relays, its forms and failures."""

from __future__ import annotations

from marshmallow import Schema, fields, validate

from .times import Since

LOG_FORMATS = {"text": "text/plain; charset=utf-8", "json": "application/x-ndjson"}
LOG_ERRORS = (400, 404, 501, 502)
"""An invalid query or name, an unknown service or unit, a driver that keeps no logs (fleet), an engine that failed."""


class LogsQuery(Schema):
    """Which lines of a service's (or a unit's) output, and in what form."""

    tail = fields.Integer(validate=validate.Range(0, 100_000), metadata={"description": "only the last N lines"})
    since = Since(metadata={"description": "only lines after this: epoch seconds, ISO 8601, or 10s/5m/2h/1d back"})
    follow = fields.Boolean(load_default=False, metadata={"description": "then stream new lines as they come"})
    stream = fields.String(validate=validate.OneOf(("stdout", "stderr")), metadata={"description": "only this stream"})
    format = fields.String(load_default="text", validate=validate.OneOf(("text", "json")),
                           metadata={"description": "text lines, or one JSON object a line (unit, stream, time, text, truncated)"})
    timestamps = fields.Boolean(load_default=False, metadata={"description": "text: start each line with its time"})
