"""The directory's own rules for stored configs (the document's schemas are :mod:`paz.contracts.service_document`)."""

from __future__ import annotations

from typing import Any

from paz.contracts.service_document import ConfigSchema
from paz.contracts.times import iso_now
from paz.secrets import Keyring, sealed_patch

MERGED_KEYS = ("env", "secrets", "volume")
"""Config keys whose PATCH merges key by key (``null`` removes a key) instead of replacing."""


def sealed(config: dict[str, Any], keyring: Keyring) -> dict[str, Any]:
    """``config`` (a create's or a PATCH's) with the clear values of its ``secrets`` sealed."""
    if not config.get("secrets"):
        return config
    return {**config, "secrets": sealed_patch(config["secrets"], keyring, iso_now())}


def merge_config(current: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    """``current`` with ``patch`` applied: mappings in :data:`MERGED_KEYS` merge, other keys replace;
    a key ``current`` lacks (a document stored before it existed) starts from the schema's default."""
    merged = {**ConfigSchema().load({}), **current}
    for key, value in patch.items():
        if key in MERGED_KEYS:
            combined = {**merged.get(key, {}), **value}
            merged[key] = {k: v for k, v in combined.items() if v is not None}
        elif value is None:
            merged.pop(key, None)
        else:
            merged[key] = value
    return merged
