"""Structured logs: one JSON object a line on stderr, carrying the service and the request id.

The same configuration serves the app and gunicorn itself (``logconfig_dict``), so gunicorn's own
lines (workers booting, signals) are JSON too.
"""

from __future__ import annotations

import logging
import logging.config
import sys
from typing import Any


class RequestContext(logging.Filter):
    """Adds ``service`` and, inside a request, ``request_id`` to every record."""

    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def filter(self, record: logging.LogRecord) -> bool:
        record.service = self.service
        flask = sys.modules.get("flask")  # none in a process that serves nothing (the supervisor): no request then
        if flask is not None and flask.has_request_context() and not hasattr(record, "request_id"):
            record.request_id = flask.g.get("request_id")
        return True


def logging_config(service: str, level: str = "INFO") -> dict[str, Any]:
    """A ``logging.config.dictConfig`` mapping that sends every record to stderr as JSON."""
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"context": {"()": RequestContext, "service": service}},
        "formatters": {
            "json": {
                "()": "pythonjsonlogger.json.JsonFormatter",
                "fmt": "%(asctime)s %(levelname)s %(name)s %(message)s",
                "rename_fields": {"levelname": "level"},
            }
        },
        "handlers": {
            "stderr": {"class": "logging.StreamHandler", "stream": "ext://sys.stderr", "formatter": "json", "filters": ["context"]}
        },
        "root": {"level": level, "handlers": ["stderr"]},
        "loggers": {
            "gunicorn.error": {"level": level, "handlers": [], "propagate": True},
            "gunicorn.access": {"handlers": [], "propagate": False},
            # python-etcd logs every failed request at ERROR in its own words; ours say what it means.
            "etcd.client": {"level": "CRITICAL"},
            "urllib3": {"level": "WARNING"},
            "httpx": {"level": "WARNING"},  # a line at INFO for every call; the request log says it already
            "httpcore": {"level": "WARNING"},
        },
    }


def configure_logging(service: str, level: str = "INFO") -> None:
    """Send every log record of this process to stderr as JSON."""
    logging.config.dictConfig(logging_config(service, level))
