"""Analytics: usage, cost, latency and quality answers, recommendations, the synthetic week,
terminal rendering and the HTML report.

Reads either store (PostgreSQL rollups or the embedded SQLite store) through one SQL vocabulary.

May import: ``store``, ``events``, ``errors``, ``settings``.
"""
