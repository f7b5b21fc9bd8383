"""Observability: every Prometheus metric and its exporter, publisher metrics, and ``doctor``
(the guide's troubleshooting, performed).

May import: ``publish``, ``store``, ``events``, ``errors``, ``settings``.
"""
