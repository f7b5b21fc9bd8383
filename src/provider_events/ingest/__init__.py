"""Ingest: Kafka topic -> decode and validate -> PostgreSQL, offsets committed after each write.

Owns the consumer loop, dead-lettering and batch bookkeeping.

May import: ``events``, ``store``, ``observability``, ``errors``, ``settings``.
"""
