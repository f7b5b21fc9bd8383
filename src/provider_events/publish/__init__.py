"""Publishing: from a caller's fields to an acknowledged Kafka record, or a durable outbox row.

Owns the Kafka producer (one per configuration), the async/sync :class:`Publisher` and the
guide's functions, the typed :class:`PublishResult`, the local outbox (SQLite WAL) and the relay
that drains it.

May import: ``events``, ``errors``, ``settings`` (and ``store`` only for the embedded sink).
confluent-kafka is imported only when a producer is created.
"""
