"""Guide path for event validation: envelope and payload checks with readable errors."""

from provider_events.errors import InvalidEventError
from provider_events.events._validation import (
    ValidationResult,
    decode_envelope,
    validate_event,
    validate_payload,
)

__all__ = [
    "InvalidEventError",
    "ValidationResult",
    "decode_envelope",
    "validate_event",
    "validate_payload",
]
