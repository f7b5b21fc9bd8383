"""JSON Schema documents generated from the models (the files in ``schemas/`` are their copy)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import msgspec

from provider_events.events._catalog import CATALOG, EventSpec, spec_for_schema_ref
from provider_events.events._models import (
    ANALYTICS_HUGE,
    ANALYTICS_TINY,
    LIMITS,
    NO_CONTROL_FIELDS,
    NO_CONTROL_PATTERN,
    OnexEnvelopeV1,
)

__all__ = ["envelope_schema", "payload_schema", "schema_files", "write_schemas"]

_DRAFT = "https://json-schema.org/draft/2020-12/schema"

#: A number analytics reads: 0, or in [1e-100, 1e100] (float8 squares and products stay finite).
_ANALYTICS = {
    "type": "number",
    "minimum": 0,
    "maximum": ANALYTICS_HUGE,
    "not": {"exclusiveMinimum": 0, "exclusiveMaximum": ANALYTICS_TINY},
}

_CRITERIA = {
    "type": "object",
    "description": (
        "Why this provider/model was chosen. Known keys are checked; any other key is kept. "
        f"At most {LIMITS['criteria_bytes']} bytes, {LIMITS['criteria_depth']} levels deep, "
        "finite numbers only."
    ),
    "properties": {
        "cost_per_token": _ANALYTICS,
        "latency_ms": _ANALYTICS,
        "quality_score": {**_ANALYTICS, "maximum": 1},
        "input_tokens": _ANALYTICS,
        "output_tokens": _ANALYTICS,
        "total_tokens": _ANALYTICS,
        "cost_usd": _ANALYTICS,
    },
    "additionalProperties": True,
}


def _no_control(properties: dict[str, Any]) -> None:
    for name in NO_CONTROL_FIELDS:
        prop = properties.get(name)
        if prop is None:
            continue
        for option in prop.get("anyOf", [prop]):
            if option.get("type") == "string":
                option["pattern"] = NO_CONTROL_PATTERN
    if "selection_reason" in properties:
        properties["selection_reason"]["pattern"] = "^[^\\x00]*$"


def _fix_payload(schema: dict[str, Any]) -> dict[str, Any]:
    if "selection_criteria" in schema["properties"]:
        schema["properties"]["selection_criteria"] = {**_CRITERIA, "default": {}}
    _no_control(schema["properties"])
    return schema


def payload_schema(spec: EventSpec) -> dict[str, Any]:
    """The payload's schema, standalone."""
    (_,), components = msgspec.json.schema_components(
        [spec.payload_type], ref_template="#/$defs/{name}"
    )
    name = spec.payload_type.__name__
    body = _fix_payload(components[name])
    return {"$schema": _DRAFT, "$id": f"{spec.schema_ref}/payload", "title": name, **body}


def envelope_schema(spec: EventSpec) -> dict[str, Any]:
    """The whole envelope of ``spec``'s event type, with the payload under ``$defs``."""
    (ref,), components = msgspec.json.schema_components(
        [OnexEnvelopeV1[spec.payload_type]],  # type: ignore[name-defined]  # runtime generic
        ref_template="#/$defs/{name}",
    )
    env_name = ref["$ref"].split("/")[-1]
    envelope = components.pop(env_name)
    envelope["properties"]["event_type"] = {"const": spec.event_type}
    envelope["properties"]["schema_ref"] = {"const": spec.schema_ref}
    _no_control(envelope["properties"])
    envelope["properties"]["event_id"] = {
        "type": "string",
        "format": "uuid",
        "description": "UUID version 4",
    }
    payload_name = spec.payload_type.__name__
    components[payload_name] = _fix_payload(components[payload_name])
    return {
        "$schema": _DRAFT,
        "$id": spec.schema_ref,
        "title": f"OnexEnvelopeV1 of {spec.event_type}",
        "description": spec.description,
        **envelope,
        "$defs": components,
    }


def schema_for_ref(schema_ref: str, *, payload_only: bool = False) -> dict[str, Any]:
    spec = spec_for_schema_ref(schema_ref)
    return payload_schema(spec) if payload_only else envelope_schema(spec)


def dumps(schema: dict[str, Any]) -> str:
    return json.dumps(schema, indent=2, sort_keys=True) + "\n"


def schema_files() -> dict[str, str]:
    """File name -> content for every catalogued event type."""
    files: dict[str, str] = {}
    for spec in CATALOG.values():
        files[f"{spec.event_type}.envelope.schema.json"] = dumps(envelope_schema(spec))
        files[f"{spec.event_type}.payload.schema.json"] = dumps(payload_schema(spec))
    return files


def write_schemas(directory: Path) -> list[Path]:
    """Write every schema file into ``directory`` (created), each atomically; raises
    :class:`~provider_events.errors.UnsafePathError` when ``directory`` or a file in it is
    not a directory / regular file (a device, a FIFO)."""
    from provider_events._files import write_atomic
    from provider_events.errors import UnsafePathError

    if directory.exists() and not directory.is_dir():
        raise UnsafePathError(f"{directory} is not a directory")
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise UnsafePathError(f"{directory}: a parent is not a directory") from None
    return [write_atomic(directory / name, text) for name, text in schema_files().items()]
