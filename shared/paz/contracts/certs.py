"""Certificates as haproxy-sync answers them and the orchestrator relays them: never a private key."""

from __future__ import annotations

from marshmallow import Schema, fields, validate

PEM_LIMIT = 64 * 1024


class CertificateOut(Schema):
    name = fields.String(required=True, metadata={"description": "the host name it serves"})
    source = fields.String(required=True, validate=validate.OneOf(("acme", "brought")),
                           metadata={"description": "acme: ordered and renewed by the routers; brought: given by a user"})
    issuer = fields.String(required=True)
    notBefore = fields.String(required=True)
    notAfter = fields.String(required=True)
    renewAt = fields.String(required=True, metadata={"description": "two thirds of its life (renewed then when source is acme)"})


class OrderFailureOut(Schema):
    name = fields.String(required=True)
    reason = fields.String(required=True)
    attempts = fields.Integer(required=True)
    failedAt = fields.String(required=True)
    retryAt = fields.String(required=True)


class CertificatesOut(Schema):
    certificates = fields.List(fields.Nested(CertificateOut), required=True)
    failures = fields.List(fields.Nested(OrderFailureOut), required=True,
                           metadata={"description": "names whose last order failed: plain HTTP (or their previous certificate) until a retry works"})


class CertificateIn(Schema):
    """A certificate a user brings: the PEM chain (leaf first) and its unencrypted private key."""

    certificate = fields.String(required=True, validate=validate.Length(1, PEM_LIMIT))
    privateKey = fields.String(required=True, load_only=True, validate=validate.Length(1, PEM_LIMIT))


CERTIFICATE_NAME = {"in": "path", "name": "name", "required": True,
                    "schema": {"type": "string", "maxLength": 253, "pattern": r"^[a-z0-9.-]+$"},
                    "description": "the host name, e.g. www.example.com"}
