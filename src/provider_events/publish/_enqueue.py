"""The lean enqueue: ``publish --background`` and the Claude Code hook in standard library only.

Most events take this path: commit one provider-selection event to the outbox and make sure a
relay runs for its destination. The full builder (msgspec models, ``settings``, the Publisher)
costs tens of milliseconds of imports; this module loads only ``os``, ``sys``, ``time``,
``sqlite3``, ``fcntl`` and ``zlib`` (through :mod:`._spool`).

It never decides anything the full path would decide differently. It accepts only what the full
builder's own shortcut accepts as *certainly valid* (plain strings within their limits, names
printable, plainly valid criteria, a legal topic, a size within ``message.max.bytes``) and
writes the same bytes (``tests/property/test_enqueue_differential.py`` compares them). For
anything else — a ``.env`` file, SASL settings, a value to parse or to reject, criteria with
floats in exponent form — it returns ``None`` and the caller takes the full path, which decides
and words any error. It returns ``None`` too, before writing anything, when the outbox would be
full or cannot be written.
"""

from __future__ import annotations

import os
import sys
import time

from provider_events.publish import _spool

TYPE_CHECKING = False  # typing is not imported on this path
if TYPE_CHECKING:
    from collections.abc import Mapping

__all__ = ["build", "cli_publish", "enqueue_built", "enqueue_selection", "lean_settings"]

EVENT_TYPE = "omninode.agent.provider.selected.v1"
SCHEMA_REF = "registry://omninode/agent/provider_selected/v1"
DEFAULT_TOPIC = EVENT_TYPE
DEFAULT_SERVERS = "localhost:29092"
QUEUED_REASON = "queued for background delivery"
#: The models' limits (``events._models.LIMITS``; a test keeps them equal).
PROVIDER_MAX, MODEL_MAX, ID_MAX, REASON_MAX, TEXT_MAX = 100, 200, 128, 4000, 100
#: Criteria keys with an analytics range (``_models._NUMERIC_RULES``; a test keeps them equal).
NUMERIC_RULES: dict[str, tuple[float, float]] = {
    "cost_per_token": (0.0, 1e100),
    "latency_ms": (0.0, 1e100),
    "quality_score": (0.0, 1.0),
    "input_tokens": (0.0, 1e100),
    "output_tokens": (0.0, 1e100),
    "total_tokens": (0.0, 1e100),
    "cost_usd": (0.0, 1e100),
}
ANALYTICS_TINY = 1e-100
#: ``LIMITS``' criteria bounds and ``FLOAT_MIN_NORMAL`` (a test keeps them equal).
CRITERIA_BYTES, CRITERIA_DEPTH, CRITERIA_KEYS = 16 * 1024, 8, 256
FLOAT_MIN_NORMAL = 2.2250738585072014e-308
_INT64_MIN, _UINT64_END = -(1 << 63), 1 << 64
#: ``envelope.RECORD_OVERHEAD`` and the header bytes that do not vary (a test keeps them equal).
RECORD_OVERHEAD = 128
_TOPIC_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-")

#: Settings variables this module parses exactly as ``settings.py`` does.
LEAN_VARS = frozenset(
    {
        "KAFKA_BOOTSTRAP_SERVERS",
        "KAFKA_SECURITY_PROTOCOL",
        "KAFKA_CLIENT_ID",
        "KAFKA_COMPRESSION_TYPE",
        "KAFKA_MESSAGE_MAX_BYTES",
        "PROVIDER_EVENTS_DELIVERY_TIMEOUT",
        "PROVIDER_EVENTS_TOPIC",
        "PROVIDER_EVENTS_SINK",
        "PROVIDER_EVENTS_NAMESPACE",
        "PROVIDER_EVENTS_SOURCE",
        "PROVIDER_EVENTS_TENANT_ID",
        "PROVIDER_EVENTS_STATE_DIR",
        "PROVIDER_EVENTS_OUTBOX",
        "PROVIDER_EVENTS_OUTBOX_MAX_EVENTS",
        "PROVIDER_EVENTS_OUTBOX_MAX_BYTES",
        "PROVIDER_EVENTS_RELAY_AUTOSTART",
        "PROVIDER_EVENTS_RELAY_GIVE_UP",
    }
)
#: Settings variables whose presence sends the call down the full path.
FULL_PATH_VARS = frozenset(
    {
        "KAFKA_SASL_MECHANISM",
        "KAFKA_SASL_USERNAME",
        "KAFKA_SASL_PASSWORD",
        "KAFKA_SSL_CA_LOCATION",
    }
)
#: Settings that never change what an enqueue writes (read by other commands only).
IGNORED_VARS = frozenset({"PROVIDER_EVENTS_PRICES_FILE"})


# -- settings ------------------------------------------------------------------------------------
def _text(raw: str) -> str | None:
    value = raw.strip()
    return value or None


def _pos_int(raw: str) -> int | None:
    try:
        value = int(raw.replace("_", ""))
    except ValueError:
        return None
    return value if value > 0 else None


def _seconds(raw: str, low_exclusive: float, high: float, underscores: bool) -> float | None:
    try:
        value = float(raw.replace("_", "") if underscores else raw)
    except ValueError:
        return None
    return value if low_exclusive < value <= high else None


def _path(raw: str) -> str | None:
    value = _text(raw)
    if value is None or (value.startswith("~") and not (value == "~" or value.startswith("~/"))):
        return None
    value = os.path.expanduser(value)
    return value if os.path.normpath(value) == value else None


def _servers(raw: str) -> str | None:
    servers = [s.strip() for s in raw.split(",") if s.strip()]
    if not servers:
        return None
    for server in servers:
        host, sep, port = server.rpartition(":")
        if not (sep and host and port.isascii() and port.isdigit() and 0 < int(port) < 65536):
            return None
    return ",".join(servers)


def lean_settings(env: dict[str, str] | os._Environ[str], cwd: str) -> dict[str, object] | None:
    """What the enqueue needs from the environment, parsed as ``load_settings`` would; ``None``
    when only the full settings can decide (a ``.env`` file, SASL, anything malformed)."""
    if FULL_PATH_VARS.intersection(env) or os.path.isfile(os.path.join(cwd, ".env")):
        return None
    get = env.get
    out: dict[str, object] = {}
    raw = get("KAFKA_BOOTSTRAP_SERVERS")
    servers = DEFAULT_SERVERS if raw is None else _servers(raw)
    protocol = (get("KAFKA_SECURITY_PROTOCOL") or "PLAINTEXT").strip().upper()
    if "KAFKA_SECURITY_PROTOCOL" in env and not get("KAFKA_SECURITY_PROTOCOL", "").strip():
        return None
    if servers is None or protocol not in ("PLAINTEXT", "SSL"):
        return None
    out["servers"], out["protocol"] = servers, protocol
    for var in ("KAFKA_CLIENT_ID",):
        if var in env and _text(env[var]) is None:
            return None
    if "KAFKA_COMPRESSION_TYPE" in env and env["KAFKA_COMPRESSION_TYPE"].strip().lower() not in (
        "none",
        "gzip",
        "lz4",
        "snappy",
        "zstd",
    ):
        return None
    if "PROVIDER_EVENTS_DELIVERY_TIMEOUT" in env and (
        _seconds(env["PROVIDER_EVENTS_DELIVERY_TIMEOUT"], 0.0, 300.0, False) is None
    ):
        return None
    if "PROVIDER_EVENTS_RELAY_GIVE_UP" in env and (
        _seconds(env["PROVIDER_EVENTS_RELAY_GIVE_UP"], 0.0, 86_400.0, True) is None
    ):
        return None
    max_message = 1_000_000
    if "KAFKA_MESSAGE_MAX_BYTES" in env:
        value = _pos_int(env["KAFKA_MESSAGE_MAX_BYTES"])
        if value is None or not 1000 <= value <= 1_000_000_000:
            return None
        max_message = value
    out["max_message"] = max_message
    texts: dict[str, str | None] = {}
    for var, default in (
        ("PROVIDER_EVENTS_TOPIC", None),
        ("PROVIDER_EVENTS_NAMESPACE", "omninode"),
        ("PROVIDER_EVENTS_SOURCE", "omniclaude"),
        ("PROVIDER_EVENTS_TENANT_ID", "default"),
    ):
        if var in env:
            text = _text(env[var])
            if text is None:
                return None
            texts[var] = text
        else:
            texts[var] = default
    topic = texts["PROVIDER_EVENTS_TOPIC"] or DEFAULT_TOPIC
    if not (0 < len(topic) <= 249 and topic not in (".", "..") and set(topic) <= _TOPIC_CHARS):
        return None
    out["topic"] = topic
    out["namespace"] = texts["PROVIDER_EVENTS_NAMESPACE"]
    out["source"] = texts["PROVIDER_EVENTS_SOURCE"]
    out["tenant"] = texts["PROVIDER_EVENTS_TENANT_ID"]
    sink = (get("PROVIDER_EVENTS_SINK") or "kafka").strip().lower()
    if sink != "kafka" or ("PROVIDER_EVENTS_SINK" in env and not env["PROVIDER_EVENTS_SINK"]):
        return None
    if "PROVIDER_EVENTS_STATE_DIR" in env and _path(env["PROVIDER_EVENTS_STATE_DIR"]) is None:
        return None  # load_settings parses it even when the outbox path is given
    if "PROVIDER_EVENTS_STATE_DIR" in env:
        state = _path(env["PROVIDER_EVENTS_STATE_DIR"])
    else:
        base = get("XDG_STATE_HOME") or (get("HOME", "~") + "/.local/state")
        # not stripped there: a value with outer spaces (or an empty HOME) is left to it
        state = _path(base) if base.strip() == base and base[0] != "/" * 2 else None
        if not get("XDG_STATE_HOME") and not get("HOME", "~"):
            state = None
        state = None if state is None else state + "/provider-events"
    if "PROVIDER_EVENTS_OUTBOX" in env:
        outbox = _path(env["PROVIDER_EVENTS_OUTBOX"])
    else:
        outbox = None if state is None else os.path.join(state, "outbox.sqlite3")
    if outbox is None or not os.path.isabs(outbox):
        return None  # a relative path: the full path resolves it the same way, more slowly
    out["outbox"] = outbox
    #: ``None`` when only the full settings can say (the hook then takes the full path).
    out["state_dir"] = state if state is not None and os.path.isabs(state) else None
    limits: list[int] = []
    for var, bound in (
        ("PROVIDER_EVENTS_OUTBOX_MAX_EVENTS", 100_000),
        ("PROVIDER_EVENTS_OUTBOX_MAX_BYTES", 256 * 1024 * 1024),
    ):
        number = bound if var not in env else _pos_int(env[var])
        if number is None:
            return None
        limits.append(number)
    out["max_events"], out["max_bytes"] = limits
    raw = get("PROVIDER_EVENTS_RELAY_AUTOSTART")
    if raw is None or raw.strip().lower() in ("1", "true", "yes", "on"):
        out["autostart"] = True
    elif raw.strip().lower() in ("0", "false", "no", "off"):
        out["autostart"] = False
    else:
        return None
    return out


# -- the event -----------------------------------------------------------------------------------
_ESCAPES = {i: f"\\u{i:04x}" for i in range(32)}
_ESCAPES.update({8: "\\b", 9: "\\t", 10: "\\n", 12: "\\f", 13: "\\r", 34: '\\"', 92: "\\\\"})


def _json_str(text: str) -> str:
    return '"' + text.translate(_ESCAPES) + '"'


def _json_float(value: float) -> str | None:
    """``value`` as msgspec writes it (shortest round trip, like ``repr``, but exponents
    without ``+`` or leading zeros, and ``1e-05``'s decade in positional form); ``None`` for
    NaN and infinities."""
    if value - value != 0.0:
        return None
    text = repr(value)
    if "e" not in text:
        return text
    mantissa, _, exp = text.partition("e")
    exponent = int(exp)
    if exponent == -5:
        sign = "-" if mantissa.startswith("-") else ""
        return f"{sign}0.0000{mantissa.lstrip('-').replace('.', '')}"
    return f"{mantissa}e{exponent}"


def _json_value(value: object) -> str | None:
    kind = type(value)
    if kind is str:
        return _json_str(value)  # type: ignore[arg-type]
    if value is None:
        return "null"
    if kind is bool:
        return "true" if value else "false"
    if kind is int:
        return str(value)
    if kind is float:
        return _json_float(value)  # type: ignore[arg-type]
    return None


def _criteria_json(criteria: dict[str, object] | None) -> str | None:
    """The criteria's JSON if they are plainly valid (a subset of ``plainly_valid_criteria``)."""
    if not criteria:
        return "{}" if criteria is None or type(criteria) is dict else None
    if type(criteria) is not dict or len(criteria) > 32:
        return None
    items = []
    counter = [len(criteria)]
    for key, value in criteria.items():
        kind = type(value)
        rule = NUMERIC_RULES.get(key) if type(key) is str else None
        if rule is not None:
            if not (
                (kind is float or (kind is int and value < _UINT64_END))  # type: ignore[operator]
                and rule[0] <= value <= rule[1]  # type: ignore[operator]
                and not 0 < value < ANALYTICS_TINY  # type: ignore[operator]
            ):
                return None
        elif type(key) is not str or len(key) > 32 or "\x00" in key:
            return None
        if (
            (kind is str and (len(value) > 32 or "\x00" in value))  # type: ignore[arg-type, operator]
            or (kind is int and not _INT64_MIN <= value < _UINT64_END)  # type: ignore[operator]
            or (kind is float and 0.0 < abs(value) < FLOAT_MIN_NORMAL)  # type: ignore[arg-type]
        ):
            return None
        if kind is dict or kind is list:  # e.g. the hook's ``claude_code`` details
            text = _nested_json(value, 1, counter)
        else:
            text = _json_value(value)
        if text is None:
            return None
        items.append(_json_str(key) + ":" + text)
    out = "{" + ",".join(items) + "}"
    if counter[0] > len(criteria) and len(out.encode("utf-8", "surrogatepass")) > CRITERIA_BYTES:
        return None
    return out


def _nested_json(value: object, depth: int, counter: list[int]) -> str | None:
    """A nested criteria value's JSON when it certainly passes the models' walk
    (``_models._check_value``): depth, value count, no NUL, 64-bit integers, normal floats."""
    if depth > CRITERIA_DEPTH:
        return None
    kind = type(value)
    if kind is dict:
        parts = []
        for key, item in value.items():  # type: ignore[attr-defined]
            counter[0] += 1
            if type(key) is not str or "\x00" in key or counter[0] > CRITERIA_KEYS:
                return None
            text = _nested_json(item, depth + 1, counter)
            if text is None:
                return None
            parts.append(_json_str(key) + ":" + text)
        return "{" + ",".join(parts) + "}"
    if kind is list:
        items = []
        for item in value:  # type: ignore[attr-defined]
            counter[0] += 1
            if counter[0] > CRITERIA_KEYS:
                return None
            text = _nested_json(item, depth + 1, counter)
            if text is None:
                return None
            items.append(text)
        return "[" + ",".join(items) + "]"
    if kind is str and "\x00" in value:  # type: ignore[operator]
        return None
    if kind is int and not _INT64_MIN <= value < _UINT64_END:  # type: ignore[operator]
        return None
    if kind is float and 0.0 < abs(value) < FLOAT_MIN_NORMAL:  # type: ignore[arg-type]
        return None
    return _json_value(value)


def _printable(text: object, low: int, high: int) -> bool:
    return type(text) is str and low <= len(text) <= high and text.isprintable()


def _uuid_text(raw: bytes) -> str:
    h = raw.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:32]}"


def _event_id() -> str:
    raw = bytearray(os.urandom(16))
    raw[6] = (raw[6] & 0x0F) | 0x40
    raw[8] = (raw[8] & 0x3F) | 0x80
    return _uuid_text(bytes(raw))


def _uuid7(unix_ms: int) -> str:
    rand = int.from_bytes(os.urandom(10), "big")
    value = (
        (unix_ms & ((1 << 48) - 1)) << 80
        | 0x7 << 76
        | (rand >> 68) << 64
        | 0b10 << 62
        | (rand & ((1 << 62) - 1))
    )
    return _uuid_text(value.to_bytes(16, "big"))


def _timestamps(now_ns: int) -> tuple[str, str]:
    """(the JSON timestamp as msgspec writes it, the ``ce_time`` header: 6 digits always)."""
    seconds, micros = divmod(now_ns // 1000, 1_000_000)
    t = time.gmtime(seconds)
    base = (
        f"{t.tm_year:04d}-{t.tm_mon:02d}-{t.tm_mday:02d}T{t.tm_hour:02d}:{t.tm_min:02d}:"
        f"{t.tm_sec:02d}"
    )
    header = f"{base}.{micros:06d}Z"
    return (f"{base}Z" if micros == 0 else header), header


_DAYS = (31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)
#: ``events._models.EARLIEST_TIMESTAMP`` (a test keeps them equal); the window ends a day ahead.
EARLIEST_SELECTED_AT = "2000-01-01T00:00:00.000000Z"
_FUTURE_NS = 86_400 * 1_000_000_000


def _selected_at(text: object, now_ns: int) -> str | None:
    """``text`` (``YYYY-MM-DDTHH:MM:SS.ffffffZ``, a real moment in the accepted window) as
    msgspec writes that datetime; ``None`` for anything else (the full builder decides)."""
    if type(text) is not str or len(text) != 27:
        return None
    if text[4] + text[7] + text[10] + text[13] + text[16] + text[19] + text[26] != "--T::.Z":
        return None
    digits = text[:4] + text[5:7] + text[8:10] + text[11:13] + text[14:16] + text[17:19]
    micros = text[20:26]
    if not (digits.isascii() and digits.isdigit() and micros.isascii() and micros.isdigit()):
        return None
    year, month, day = int(text[:4]), int(text[5:7]), int(text[8:10])
    if not 1 <= month <= 12 or int(text[11:13]) > 23 or int(text[14:16]) > 59:
        return None
    leap = month == 2 and year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)
    if not 1 <= day <= _DAYS[month - 1] + leap or int(text[17:19]) > 59:
        return None
    if not EARLIEST_SELECTED_AT <= text <= _timestamps(now_ns + _FUTURE_NS)[1]:
        return None
    return text[:19] + "Z" if micros == "000000" else text


def build(
    s: dict[str, object],
    *,
    provider_name: object,
    model_name: object,
    selection_reason: object,
    correlation_id: object = None,
    causation_id: object = None,
    tenant_id: object = None,
    selection_criteria: dict[str, object] | None = None,
    now_ns: int | None = None,
    event_id: str | None = None,
    selected_at: object = None,
) -> tuple[str, bytes, bytes, list[tuple[str, bytes]]] | None:
    """(event_id, key, value, headers) of a certainly valid event, else ``None``.

    ``selected_at``: ``None`` (now), or UTC as ``YYYY-MM-DDTHH:MM:SS.ffffffZ`` (what the hook
    records); any other form, or a moment outside the accepted window, returns ``None``."""
    now_ns = time.time_ns() if now_ns is None else now_ns
    chosen = None if selected_at is None else _selected_at(selected_at, now_ns)
    if selected_at is not None and chosen is None:
        return None
    cid = _uuid7(now_ns // 1_000_000) if correlation_id is None else correlation_id
    tenant = s["tenant"] if tenant_id is None else tenant_id
    namespace, source = s["namespace"], s["source"]
    if not (
        _printable(provider_name, 1, PROVIDER_MAX)
        and _printable(model_name, 1, MODEL_MAX)
        and _printable(cid, 0, ID_MAX)
        and cid.strip()  # type: ignore[attr-defined]
        and (causation_id is None or _printable(causation_id, 1, ID_MAX))
        and type(selection_reason) is str
        and len(selection_reason) <= REASON_MAX
        and "\x00" not in selection_reason
        and _printable(tenant, 1, TEXT_MAX)
        and _printable(namespace, 1, TEXT_MAX)
        and _printable(source, 1, TEXT_MAX)
    ):
        return None
    criteria = _criteria_json(selection_criteria)
    if criteria is None:
        return None
    event_id = event_id or _event_id()
    stamp, ce_time = _timestamps(now_ns)
    cid_json = _json_str(cid)  # type: ignore[arg-type]
    text = (
        f'{{"event_type":"{EVENT_TYPE}","event_id":"{event_id}","timestamp":"{stamp}",'
        f'"correlation_id":{cid_json},"causation_id":'
        f"{'null' if causation_id is None else _json_str(causation_id)},"  # type: ignore[arg-type]
        f'"namespace":{_json_str(namespace)},"source":{_json_str(source)},'  # type: ignore[arg-type]
        f'"tenant_id":{_json_str(tenant)},"schema_ref":"{SCHEMA_REF}","payload":'  # type: ignore[arg-type]
        f'{{"provider_name":{_json_str(provider_name)},"model_name":{_json_str(model_name)},'  # type: ignore[arg-type]
        f'"correlation_id":{cid_json},"selection_reason":{_json_str(selection_reason)},'
        f'"selection_criteria":{criteria},"selected_at":"{chosen or stamp}"}}}}'
    )
    try:
        value = text.encode()
        key = cid.encode()  # type: ignore[attr-defined]
        tenant_b = tenant.encode()  # type: ignore[attr-defined]
        origin = f"{namespace}/{source}".encode()
    except UnicodeEncodeError:
        return None
    eid = event_id.encode()
    headers = [
        ("content-type", b"application/json"),
        ("event_type", EVENT_TYPE.encode()),
        ("event_id", eid),
        ("schema_ref", SCHEMA_REF.encode()),
        ("tenant_id", tenant_b),
        ("ce_specversion", b"1.0"),
        ("ce_type", EVENT_TYPE.encode()),
        ("ce_id", eid),
        ("ce_source", origin),
        ("ce_time", ce_time.encode()),
    ]
    size = len(key) + len(value) + sum(len(n) + len(v) for n, v in headers) + RECORD_OVERHEAD
    if size > s["max_message"]:  # type: ignore[operator]
        return None
    return event_id, key, value, headers


def _encode_headers(headers: list[tuple[str, bytes]]) -> bytes:
    out = bytearray()
    for name, value in headers:
        out += name.encode() + b"\0" + str(len(value)).encode() + b"\0" + value
    return bytes(out)


# -- the outbox ----------------------------------------------------------------------------------
def _commit(s: dict[str, object], event: tuple[str, bytes, bytes, list[tuple[str, bytes]]]) -> str:
    """Commit the event for its destination; returns the destination key. Raises
    ``sqlite3.Error``/``OSError``, or ``LookupError`` when the outbox is full (nothing written:
    the full path then counts and reports the refusal)."""
    # The C module itself: the ``sqlite3`` package adds only adapters this path does not use,
    # and its imports (datetime, collections.abc) cost more than the rest of the module.
    # Imported here: the hook's calls that publish nothing never load it.
    import _sqlite3 as sqlite3

    path = str(s["outbox"])
    key = _spool.destination_key(str(s["servers"]), str(s["protocol"]), "")
    event_id, pkey, value, headers = event
    blob = _encode_headers(headers)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    conn = sqlite3.connect(path, timeout=30.0, isolation_level=None)
    try:
        conn.execute("PRAGMA busy_timeout = 30000")
        if (
            conn.execute("PRAGMA journal_mode").fetchone()[0] != "wal"
            and conn.execute("PRAGMA journal_mode = WAL").fetchone()[0] != "wal"
        ):
            raise LookupError("not in WAL mode: the full path switches it")
        conn.execute("PRAGMA synchronous = FULL")
        _spool.ensure_schema(conn)
        _spool.claim_legacy(conn, key)
        new_bytes = len(value) + len(pkey) + len(blob)
        conn.execute("BEGIN IMMEDIATE")
        try:
            (count,) = conn.execute("SELECT count(*) FROM outbox").fetchone()
            (pages,) = conn.execute("PRAGMA page_count").fetchone()
            (page_size,) = conn.execute("PRAGMA page_size").fetchone()
            max_events, max_bytes = int(s["max_events"]), int(s["max_bytes"])  # type: ignore[call-overload]
            full = count + 1 > max_events
            if not full and pages * page_size + new_bytes > max_bytes:
                (used,) = conn.execute(
                    "SELECT coalesce(sum(length(value) + length(key) + length(headers)), 0)"
                    " FROM outbox"
                ).fetchone()
                full = used + new_bytes > max_bytes
            if full:
                raise LookupError("outbox full")
            conn.execute(
                "INSERT OR IGNORE INTO outbox"
                " (event_id, topic, key, value, headers, enqueued_at, destination)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                (event_id, s["topic"], pkey, value, blob, time.time(), key),
            )
            _spool.register_destination(
                conn, key, str(s["servers"]), str(s["protocol"]), "", str(s["topic"])
            )
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
    finally:
        conn.close()
    return key


def process_environ() -> os._Environ[str]:
    """This process's environment (``settings.process_environ`` for the lean paths)."""
    return os.environ


def enqueue_selection(
    env: dict[str, str] | os._Environ[str] | None = None, cwd: str | None = None, **fields: object
) -> tuple[str, str] | None:
    """Commit one provider-selection event to the outbox and see that a relay runs for its
    destination. Returns ``(event_id, topic)`` once committed, ``None`` when the full path
    must decide (nothing was written then). ``fields``: the builder's keywords."""
    env = os.environ if env is None else env
    s = lean_settings(env, os.getcwd() if cwd is None else cwd)
    if s is None:
        return None
    return enqueue_built(s, env, build(s, **fields))  # type: ignore[arg-type]


def enqueue_built(
    s: dict[str, object],
    env: Mapping[str, str],
    event: tuple[str, bytes, bytes, list[tuple[str, bytes]]] | None,
) -> tuple[str, str] | None:
    """:func:`enqueue_selection` of an event :func:`build` made with the settings ``s``."""
    if event is None:
        return None
    import _sqlite3

    try:
        key = _commit(s, event)
    except (_sqlite3.Error, OSError, LookupError):
        return None
    if s["autostart"]:
        try:
            here = os.path.dirname(os.path.abspath(__file__))
            src = os.path.dirname(os.path.dirname(here))
            _spool.spawn_relay(str(s["outbox"]), key, dict(env), sys.executable, src)
        except OSError:
            pass  # committed: `provider-events relay` (or the next publish) delivers it
    return event[0], str(s["topic"])


# -- ``provider-events publish --background`` ----------------------------------------------------
_VALUE_FLAGS = {
    "--provider": "provider_name",
    "--model": "model_name",
    "--reason": "selection_reason",
    "--correlation-id": "correlation_id",
    "--causation-id": "causation_id",
    "--tenant-id": "tenant_id",
}


def cli_publish(argv: list[str]) -> int | None:
    """``publish ARGS`` when they are plainly ``--background`` with the single-event flags;
    ``None`` (nothing done) for anything argparse or the full builder should see."""
    fields: dict[str, str] = {}
    background = as_json = quiet = False
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg == "--background":
            background = True
        elif arg == "--json":
            as_json = True
        elif arg in ("--quiet", "-q"):
            quiet = True
        else:
            name, eq, value = arg.partition("=")
            if name not in _VALUE_FLAGS:
                return None
            if not eq:
                i += 1
                if i >= len(argv):
                    return None
                value = argv[i]
            if value.startswith("-"):
                return None  # argparse's rules for values like these: let it decide
            fields[_VALUE_FLAGS[name]] = value
        i += 1
    if not background or not {"provider_name", "model_name", "selection_reason"} <= set(fields):
        return None
    done = enqueue_selection(None, None, **fields)
    if done is None:
        return None
    event_id, topic = done
    if as_json:
        sys.stdout.write(
            f'{{"status":"queued","event_id":"{event_id}","topic":"{topic}","partition":null,'
            f'"offset":null,"error":"{QUEUED_REASON}"}}\n'
        )
    elif not quiet:
        sys.stdout.write(f"queued: event_id={event_id} topic={topic} queued\n")
    sys.stdout.flush()
    return 0
