"""Where the hook's (and a switch's) events go when nothing is configured.

With ``PROVIDER_EVENTS_SINK`` and ``KAFKA_BOOTSTRAP_SERVERS`` both unset (neither in the
environment nor in ``.env``), the guide's default address ``localhost:29092`` is used only when
a broker listens there; otherwise the events go to the embedded store (``sink = local``), where
``stats`` and ``report`` read them. Any explicit setting is obeyed as it is: a configured broker
that is down still gets its events through the outbox and relay.

The check is a TCP connect with a short timeout, its answer cached for :data:`PROBE_TTL` seconds
in ``<state dir>/kafka-probe.json``, so a prompt pays for it at most once a minute.
Import-light: standard library only.
"""

from __future__ import annotations

import json
import os
import socket
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

__all__ = ["PROBE_TIMEOUT", "PROBE_TTL", "listening", "zero_config_sink"]

PROBE_TIMEOUT = 0.2
PROBE_TTL = 60.0


def _probe(servers: str, timeout: float) -> bool:
    for server in servers.split(","):
        host, _, port = server.strip().rpartition(":")
        try:
            with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout):
                return True
        except (OSError, ValueError):
            continue
    return False


def listening(servers: str, state_dir: Path, *, ttl: float = PROBE_TTL) -> bool:
    """Whether something accepts TCP connections at ``servers`` (cached for ``ttl`` seconds)."""
    cache = state_dir / "kafka-probe.json"
    now = time.time()
    try:
        doc = json.loads(cache.read_bytes()[:4096])
        if (
            isinstance(doc, dict)
            and doc.get("servers") == servers
            and isinstance(doc.get("at"), (int, float))
            and 0 <= now - doc["at"] < ttl
        ):
            return bool(doc.get("listening"))
    except (OSError, ValueError):
        pass
    found = _probe(servers, PROBE_TIMEOUT)
    try:
        state_dir.mkdir(parents=True, exist_ok=True)
        tmp = cache.with_name(f".kafka-probe.{os.getpid()}.tmp")
        tmp.write_text(json.dumps({"servers": servers, "listening": found, "at": now}))
        os.replace(tmp, cache)
    except OSError:
        pass
    return found


def zero_config_sink(settings: Any) -> Any:
    """``settings``, with ``sink = local`` when nothing is configured and nobody listens at the
    default address (see the module doc); ``settings.sources["sink"]`` says why."""
    sources = getattr(settings, "sources", {}) or {}
    if sources.get("sink", "default") != "default":
        return settings
    if sources.get("kafka_bootstrap_servers", "default") != "default":
        return settings
    if listening(settings.kafka_bootstrap_servers, Path(settings.state_dir)):
        return settings
    why = f"zero-config: nothing configured and nothing listening at {settings.kafka_bootstrap_servers}"
    return replace(settings, sink="local", sources={**sources, "sink": why})
