"""Times as clients give them: a deploy's ``pushedAt`` and a log query's ``since``."""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

from marshmallow import ValidationError, fields

DURATION = re.compile(r"^(\d+(?:\.\d+)?)(s|m|h|d)$")
DURATION_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def iso(moment: dt.datetime) -> str:
    """``moment`` as the suite writes times: ISO 8601 in UTC to the second, ``Z`` for its zone."""
    return moment.astimezone(dt.timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


def iso_now() -> str:
    return iso(dt.datetime.now(dt.timezone.utc))


class Timestamp(fields.Field):
    """``pushedAt``: seconds since the epoch (paz's walkthrough sends ``date +%s``) or ISO 8601; kept as ISO 8601 UTC."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> str:
        if isinstance(value, bool):
            raise ValidationError("must be seconds since the epoch or an ISO 8601 date")
        try:
            if isinstance(value, (int, float)):
                moment = dt.datetime.fromtimestamp(value, dt.timezone.utc)
            elif isinstance(value, str):
                moment = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
                moment = moment if moment.tzinfo else moment.replace(tzinfo=dt.timezone.utc)
            else:
                raise ValueError
        except (ValueError, OverflowError, OSError):
            raise ValidationError("must be seconds since the epoch or an ISO 8601 date") from None
        return iso(moment)


class Since(fields.Field):
    """``since``: seconds since the epoch, an ISO 8601 time, or a duration back from now (``90s``, ``10m``, ``2h``, ``1d``)."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> float:
        text = str(value).strip()
        duration = DURATION.fullmatch(text)
        if duration:
            return dt.datetime.now(dt.timezone.utc).timestamp() - float(duration[1]) * DURATION_SECONDS[duration[2]]
        try:
            return float(text) if re.fullmatch(r"\d+(\.\d+)?", text) else dt.datetime.fromisoformat(
                Timestamp().deserialize(text).replace("Z", "+00:00")).timestamp()
        except (ValidationError, ValueError):
            raise ValidationError("must be seconds since the epoch, an ISO 8601 time, or a duration such as 10m") from None
