"""Events: what goes on the wire, and nothing else.

Owns the msgspec wire models (envelope and payloads), the event catalog (type -> model, family,
key, topic, schema), envelope building, validation, JSON Schema generation, event ids and times,
and the partition-key policy.

May import: ``provider_events.errors``, ``provider_events.settings`` and the standard library.
Must stay import-light: the hook and ``--background`` paths import it.
"""
