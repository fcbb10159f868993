"""Errors a service answers with: each carries its HTTP status and a message a person can act on."""

from __future__ import annotations

from typing import Any


class ApiError(Exception):
    """An answer other than success, rendered as ``{error: {status, message, details?, requestId}}``."""

    status = 500

    def __init__(self, message: str, details: Any = None, status: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details
        if status is not None:
            self.status = status


class BadRequest(ApiError):
    status = 400


class Unauthorized(ApiError):
    status = 401


class Forbidden(ApiError):
    status = 403


class NotFound(ApiError):
    status = 404


class Conflict(ApiError):
    status = 409


class BadGateway(ApiError):
    status = 502


class Unsupported(ApiError):
    """The request is understood but this configuration cannot answer it (e.g. a driver without logs)."""

    status = 501


class Unavailable(ApiError):
    status = 503


class PayloadTooDeep(BadRequest):
    """A JSON body nested deeper than the parser can follow (thousands of brackets)."""

    def __init__(self) -> None:
        super().__init__("The JSON body is nested too deeply to read; send a flatter document.")
