"""Settings from the environment and a ``.env`` file in the working directory.

Precedence: a process environment variable, then ``.env`` in the current directory (the guide's
troubleshooting relies on it), then the default. :attr:`Settings.sources` records which one won
for each setting so ``provider-events doctor`` can say where a value came from. The consumer's
settings (``provider-events consume``) live here too; its command-line flags override them.
Import-light on purpose: the hook and background CLI paths load this module.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from provider_events._redact import dsn_secrets, redact
from provider_events.errors import ConfigError

__all__ = [
    "Secret",
    "Settings",
    "known_secrets",
    "learn_dsn",
    "load_settings",
    "parse_setting",
    "redact_dsn",
]

DEFAULT_BOOTSTRAP_SERVERS = "localhost:29092"
DEFAULT_CONSUMER_GROUP = "provider-events-consumer"
DEFAULT_METRICS_PORT = 9464
_SECURITY_PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
_SASL_MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", "OAUTHBEARER", "GSSAPI")
_SINKS = ("kafka", "local")
_COMPRESSION = ("none", "gzip", "lz4", "snappy", "zstd")


class Secret:
    """A string that never shows itself in ``repr``, ``str`` or f-strings."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __bool__(self) -> bool:
        return bool(self._value)

    def __repr__(self) -> str:
        return "Secret('********')" if self._value else "Secret('')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


#: Environment variables whose values are secrets wherever they appear (with DATABASE_URL's
#: password pieces); plus any variable named like ``*_API_KEY``, ``*_TOKEN``, ``*_PASSWORD``.
SECRET_ENV_VARS = (
    "KAFKA_SASL_PASSWORD",
    "ANTHROPIC_AUTH_TOKEN",
    "ANTHROPIC_API_KEY",
    "PGPASSWORD",
    "PGSSLPASSWORD",
)
_SECRET_NAME = re.compile(r"(?:_API_KEY|_AUTH_TOKEN|_TOKEN|_PASSWORD|_SECRET)$")
#: Secrets learnt from ``.env`` files and DSNs given as arguments (the newest 64, in order).
_LEARNT: dict[str, None] = {}
_LEARNT_MAX = 64


def _remember(values: set[str]) -> None:
    for value in values:
        _LEARNT.pop(value, None)
        _LEARNT[value] = None
    while len(_LEARNT) > _LEARNT_MAX:
        del _LEARNT[next(iter(_LEARNT))]


def known_secrets(environ: Mapping[str, str] | None = None) -> set[str]:
    """Every secret value this process knows: DATABASE_URL's password (and its pieces), the
    SASL password, API keys and tokens from the environment, and those :func:`load_settings`
    read from ``.env``."""
    env = os.environ if environ is None else environ
    found = set(_LEARNT)
    for name, value in env.items():
        if not value:
            continue
        if name == "DATABASE_URL":
            found |= dsn_secrets(value)
        elif name in SECRET_ENV_VARS or _SECRET_NAME.search(name):
            found.add(value.strip())
    return found


def learn_dsn(dsn: str) -> None:
    """Remember the secrets of a DSN given as an argument (not from the environment), so
    :func:`redact_dsn` masks them in any error its library echoes."""
    _remember(dsn_secrets(dsn))


def redact_dsn(text: str) -> str:
    """``text`` with every secret masked: URL passwords (also unparseable ones: everything
    between ``://`` and the last ``@``), ``password=`` pairs and every known secret value
    (:func:`known_secrets`). The one redaction function: DSNs, broker URLs, exception texts."""
    return redact(text, known_secrets())


def process_environ(environ: Mapping[str, str] | None = None) -> Mapping[str, str]:
    """The environment settings are read from: ``environ`` when given (tests, the hook's
    merged view), else this process's. The one place the package touches ``os.environ``."""
    return os.environ if environ is None else environ


def _default_state_dir(environ: Mapping[str, str]) -> Path:
    base = environ.get("XDG_STATE_HOME") or str(Path(environ.get("HOME", "~")) / ".local/state")
    return Path(base).expanduser() / "provider-events"


def _default_prices_file(environ: Mapping[str, str]) -> Path:
    base = environ.get("XDG_CONFIG_HOME") or str(Path(environ.get("HOME", "~")) / ".config")
    return Path(base).expanduser() / "provider-events" / "prices.toml"


def state_dir_from(environ: Mapping[str, str]) -> Path:
    """``PROVIDER_EVENTS_STATE_DIR``, else ``$XDG_STATE_HOME/provider-events`` (or
    ``~/.local/state/provider-events``), without loading (and validating) the other settings:
    the hook needs somewhere to log a configuration problem."""
    explicit = environ.get("PROVIDER_EVENTS_STATE_DIR", "").strip()
    return Path(explicit).expanduser() if explicit else _default_state_dir(environ)


#: The Claude Code hook's watchdog, in seconds within (0, 60].
HOOK_TIMEOUT_ENV = "PROVIDER_EVENTS_HOOK_TIMEOUT"
DEFAULT_HOOK_TIMEOUT = 3.0


def hook_timeout(environ: Mapping[str, str]) -> float:
    """``PROVIDER_EVENTS_HOOK_TIMEOUT``, read leniently: a value that is not a number within
    (0, 60] gives the default, because a hook must never fail on its configuration."""
    try:
        value = float(environ.get(HOOK_TIMEOUT_ENV, DEFAULT_HOOK_TIMEOUT))
    except ValueError:
        return DEFAULT_HOOK_TIMEOUT
    return value if 0 < value <= 60 else DEFAULT_HOOK_TIMEOUT


def read_dotenv(path: Path) -> dict[str, str]:
    """Parse a ``.env`` file: ``KEY=VALUE`` lines, optional ``export``, quotes and comments."""
    values: dict[str, str] = {}
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return values
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("export "):
            line = line[7:].lstrip()
        key, sep, value = line.partition("=")
        key = key.strip()
        if not sep or not key.replace("_", "").isalnum():
            continue
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        else:
            value = value.split(" #", 1)[0].rstrip()
        values[key] = value
    return values


@dataclass(frozen=True, slots=True)
class Settings:
    """Every knob of provider-events. Build one with :func:`load_settings` or directly."""

    kafka_bootstrap_servers: str = DEFAULT_BOOTSTRAP_SERVERS
    kafka_security_protocol: str = "PLAINTEXT"
    kafka_sasl_mechanism: str | None = None
    kafka_sasl_username: str | None = None
    kafka_sasl_password: Secret = field(default_factory=lambda: Secret(""))
    kafka_ssl_ca_location: str | None = None
    kafka_client_id: str = "provider-events"
    #: ``none`` by default so any consumer reads the topic without codec packages (the guide's
    #: aiokafka example cannot decode lz4, snappy or zstd unless extra packages are installed).
    kafka_compression_type: str = "none"
    #: Upper bound, in seconds, on every wait for the broker in a publish call.
    delivery_timeout: float = 5.0
    #: Overrides the catalog's topic for provider-selection events (tests, staging).
    topic: str | None = None
    sink: str = "kafka"
    namespace: str = "omninode"
    source: str = "omniclaude"
    tenant_id: str = "default"
    state_dir: Path = field(default_factory=lambda: _default_state_dir(os.environ))
    outbox_path: Path | None = None
    #: Price overrides (TOML or JSON) for models the price table lacks or prices differently.
    prices_file: Path = field(default_factory=lambda: _default_prices_file(os.environ))
    outbox_max_events: int = 100_000
    outbox_max_bytes: int = 256 * 1024 * 1024
    relay_autostart: bool = True
    #: Seconds a relay keeps retrying a failing destination before it exits (the next publish
    #: starts a new one); a detached relay also waits this long at most for another relay.
    relay_give_up: float = 300.0
    #: The producer's ``message.max.bytes``: a bigger event is refused at publish time.
    kafka_message_max_bytes: int = 1_000_000
    database_url: Secret = field(default_factory=lambda: Secret(""))
    # -- the consumer (``provider-events consume``; each has a flag that overrides it) --------
    consumer_group: str = DEFAULT_CONSUMER_GROUP
    #: ``group.instance.id`` (static membership); ``None``: dynamic membership.
    consumer_instance_id: str | None = None
    #: Most messages per PostgreSQL transaction.
    consumer_batch_size: int = 5000
    #: Longest wait, in seconds, to fill a batch.
    consumer_batch_timeout: float = 1.0
    #: Dead-letter topic; ``None``: ``<topic>.dlq``.
    dlq_topic: str | None = None
    #: Port of the consumer's ``/metrics``; 0 picks a free one, ``None`` serves none.
    metrics_port: int | None = DEFAULT_METRICS_PORT
    metrics_addr: str = "127.0.0.1"
    sources: Mapping[str, str] = field(default_factory=dict, compare=False)
    #: Malformed consumer-only settings (their default stands in), raised by :meth:`require`
    #: where they are used: a bad ``PROVIDER_EVENTS_BATCH_SIZE`` must not stop a publish.
    problems: Mapping[str, ConfigError] = field(default_factory=dict, compare=False)

    @property
    def resolved_outbox_path(self) -> Path:
        return self.outbox_path or (self.state_dir / "outbox.sqlite3")

    def with_overrides(self, **changes: Any) -> Settings:
        if self.problems and set(changes) & set(self.problems):  # a flag replaces a bad value
            problems = {k: v for k, v in self.problems.items() if k not in changes}
            changes.setdefault("problems", problems)
        return replace(self, **changes)

    def require(self, *names: str) -> None:
        """Raise the :class:`ConfigError` of the first of ``names`` that was malformed."""
        for name in names or tuple(self.problems):
            if name in self.problems:
                raise self.problems[name]


# setting name -> (environment variable, parser)
def _parse_float_pos(name: str, raw: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(name, f"expected a number of seconds, got {raw!r}") from None
    if not (0 < value <= 300):
        raise ConfigError(name, f"must be > 0 and <= 300 seconds, got {raw!r}")
    return value


def _parse_int_pos(name: str, raw: str) -> int:
    try:
        value = int(raw.replace("_", ""))
    except ValueError:
        raise ConfigError(name, f"expected a whole number, got {raw!r}") from None
    if value <= 0:
        raise ConfigError(name, f"must be positive, got {raw!r}")
    if value > 2**63 - 1:
        raise ConfigError(name, f"must be at most 2**63-1, got {raw!r}")
    return value


def _parse_batch_size(name: str, raw: str) -> int:
    """1 to 1,000,000: the most messages one Kafka ``consume()`` call takes."""
    value = _parse_int_pos(name, raw)
    if value > 1_000_000:
        raise ConfigError(name, f"must be at most 1000000, got {raw!r}")
    return value


def _parse_batch_timeout(name: str, raw: str) -> float:
    try:
        value = float(raw.replace("_", ""))
    except ValueError:
        raise ConfigError(name, f"expected a number of seconds, got {raw!r}") from None
    if not (0.01 <= value <= 3600):
        raise ConfigError(name, f"must be >= 0.01 and <= 3600 seconds, got {raw!r}")
    return value


def _parse_metrics_port(name: str, raw: str) -> int | None:
    """A port, ``0`` for any free port, or ``off`` (also ``none``, ``-1``, empty) for none."""
    text = raw.strip().lower()
    if text in ("off", "none", "-1", ""):
        return None
    try:
        value = int(text.replace("_", ""))
    except ValueError:
        raise ConfigError(name, f"expected a port number, 0 or off, got {raw!r}") from None
    if not (0 <= value <= 65535):
        raise ConfigError(name, f"must be 0..65535 or off, got {raw!r}")
    return value


def _parse_give_up(name: str, raw: str) -> float:
    try:
        value = float(raw.replace("_", ""))
    except ValueError:
        raise ConfigError(name, f"expected a number of seconds, got {raw!r}") from None
    if not (0 < value <= 86_400):
        raise ConfigError(name, f"must be > 0 and <= 86400 seconds, got {raw!r}")
    return value


def _parse_message_max(name: str, raw: str) -> int:
    value = _parse_int_pos(name, raw)
    if not (1000 <= value <= 1_000_000_000):  # librdkafka's own bounds
        raise ConfigError(name, f"must be 1000..1000000000 bytes, got {raw!r}")
    return value


def _parse_bool(name: str, raw: str) -> bool:
    low = raw.strip().lower()
    if low in ("1", "true", "yes", "on"):
        return True
    if low in ("0", "false", "no", "off"):
        return False
    raise ConfigError(name, f"expected true or false, got {raw!r}")


def _choice(choices: tuple[str, ...], upper: bool = True) -> Callable[[str, str], str]:
    def parse(name: str, raw: str) -> str:
        value = raw.strip().upper() if upper else raw.strip().lower()
        if value not in choices:
            raise ConfigError(name, f"expected one of {', '.join(choices)}, got {raw!r}")
        return value

    return parse


def _bootstrap(name: str, raw: str) -> str:
    servers = [s.strip() for s in raw.split(",") if s.strip()]
    if not servers:
        raise ConfigError(name, "is empty; expected host:port[,host:port...]")
    for server in servers:
        host, sep, port = server.rpartition(":")
        if not sep or not host or not port.isdigit() or not (0 < int(port) < 65536):
            raise ConfigError(name, f"expected host:port, got {server!r}")
    return ",".join(servers)


def _text(name: str, raw: str) -> str:
    value = raw.strip()
    if not value:
        raise ConfigError(name, "is set but empty")
    return value


_ENV: dict[str, tuple[str, Any]] = {
    "kafka_bootstrap_servers": ("KAFKA_BOOTSTRAP_SERVERS", _bootstrap),
    "kafka_security_protocol": ("KAFKA_SECURITY_PROTOCOL", _choice(_SECURITY_PROTOCOLS)),
    "kafka_sasl_mechanism": ("KAFKA_SASL_MECHANISM", _choice(_SASL_MECHANISMS)),
    "kafka_sasl_username": ("KAFKA_SASL_USERNAME", _text),
    "kafka_sasl_password": ("KAFKA_SASL_PASSWORD", lambda n, r: Secret(r)),
    "kafka_ssl_ca_location": ("KAFKA_SSL_CA_LOCATION", _text),
    "kafka_client_id": ("KAFKA_CLIENT_ID", _text),
    "kafka_compression_type": ("KAFKA_COMPRESSION_TYPE", _choice(_COMPRESSION, upper=False)),
    "delivery_timeout": ("PROVIDER_EVENTS_DELIVERY_TIMEOUT", _parse_float_pos),
    "topic": ("PROVIDER_EVENTS_TOPIC", _text),
    "sink": ("PROVIDER_EVENTS_SINK", _choice(_SINKS, upper=False)),
    "namespace": ("PROVIDER_EVENTS_NAMESPACE", _text),
    "source": ("PROVIDER_EVENTS_SOURCE", _text),
    "tenant_id": ("PROVIDER_EVENTS_TENANT_ID", _text),
    "state_dir": ("PROVIDER_EVENTS_STATE_DIR", lambda n, r: Path(_text(n, r)).expanduser()),
    "outbox_path": ("PROVIDER_EVENTS_OUTBOX", lambda n, r: Path(_text(n, r)).expanduser()),
    "prices_file": ("PROVIDER_EVENTS_PRICES_FILE", lambda n, r: Path(_text(n, r)).expanduser()),
    "outbox_max_events": ("PROVIDER_EVENTS_OUTBOX_MAX_EVENTS", _parse_int_pos),
    "outbox_max_bytes": ("PROVIDER_EVENTS_OUTBOX_MAX_BYTES", _parse_int_pos),
    "relay_autostart": ("PROVIDER_EVENTS_RELAY_AUTOSTART", _parse_bool),
    "relay_give_up": ("PROVIDER_EVENTS_RELAY_GIVE_UP", _parse_give_up),
    "kafka_message_max_bytes": ("KAFKA_MESSAGE_MAX_BYTES", _parse_message_max),
    "database_url": ("DATABASE_URL", lambda n, r: Secret(r.strip())),
    "consumer_group": ("PROVIDER_EVENTS_CONSUMER_GROUP", _text),
    "consumer_instance_id": ("PROVIDER_EVENTS_CONSUMER_INSTANCE_ID", _text),
    "consumer_batch_size": ("PROVIDER_EVENTS_BATCH_SIZE", _parse_batch_size),
    "consumer_batch_timeout": ("PROVIDER_EVENTS_BATCH_TIMEOUT", _parse_batch_timeout),
    "dlq_topic": ("PROVIDER_EVENTS_DLQ_TOPIC", _text),
    "metrics_port": ("PROVIDER_EVENTS_METRICS_PORT", _parse_metrics_port),
    "metrics_addr": ("PROVIDER_EVENTS_METRICS_ADDR", _text),
}

#: Settings only ``provider-events consume`` uses: malformed, they are reported where they are
#: used (consume, doctor) instead of failing every command.
CONSUMER_SETTINGS = (
    "consumer_group",
    "consumer_instance_id",
    "consumer_batch_size",
    "consumer_batch_timeout",
    "dlq_topic",
    "metrics_port",
    "metrics_addr",
)

#: Settings whose variable, when set but blank, counts as not set (the next source, then the
#: default, applies): DATABASE_URL, and the consumer's, which always read blank that way.
_BLANK_IS_UNSET = frozenset({"database_url", *CONSUMER_SETTINGS})

#: Environment variable of each setting, for ``--help`` texts and ``doctor``.
ENV_VARS: dict[str, str] = {name: env for name, (env, _) in _ENV.items()}


def parse_setting(name: str, raw: str, label: str | None = None) -> Any:
    """Parse ``raw`` as the setting ``name`` would be from the environment (a flag's value).

    A malformed value raises :class:`ConfigError` naming ``label`` (e.g. ``--batch-size``), or
    the setting's environment variable.
    """
    var, parse = _ENV[name]
    return parse(label or var, raw)


def load_settings(
    environ: Mapping[str, str] | None = None,
    dotenv: Path | None = None,
    **overrides: Any,
) -> Settings:
    """Build :class:`Settings` from ``environ`` (default ``os.environ``) and ``.env``.

    Raises :class:`ConfigError` naming the first malformed setting.
    """
    env = process_environ(environ)
    dotenv_path = Path.cwd() / ".env" if dotenv is None else dotenv
    file_values = read_dotenv(dotenv_path) if dotenv_path.is_file() else {}
    values: dict[str, Any] = {
        "state_dir": _default_state_dir(env),
        "prices_file": _default_prices_file(env),
    }
    sources: dict[str, str] = {}
    problems: dict[str, ConfigError] = {}
    for name, (var, parse) in _ENV.items():
        blank_is_unset = name in _BLANK_IS_UNSET
        if var in env and (not blank_is_unset or env[var].strip()):
            raw, origin = env[var], f"environment ({var})"
        elif var in file_values and (not blank_is_unset or file_values[var].strip()):
            raw, origin = file_values[var], f".env ({dotenv_path})"
        else:
            sources[name] = "default"
            continue
        try:
            values[name] = parse(var, raw)
        except ConfigError as exc:
            if name not in CONSUMER_SETTINGS:
                raise
            problems[name] = exc
            sources[name] = f"default: {origin} is malformed"
            continue
        sources[name] = origin
    for name, value in overrides.items():
        if value is not None:
            values[name] = value
            sources[name] = "argument"
            problems.pop(name, None)
    _check_security(values)
    _learn(values)
    valid = {f.name for f in fields(Settings)}
    return Settings(
        **{k: v for k, v in values.items() if k in valid}, sources=sources, problems=problems
    )


def _learn(values: Mapping[str, Any]) -> None:
    """Remember the secrets of these settings (from .env or arguments) for :func:`redact_dsn`."""
    for name in ("database_url", "kafka_sasl_password"):
        secret = values.get(name)
        if isinstance(secret, Secret) and secret:
            raw = secret.reveal()
            _remember(dsn_secrets(raw) if name == "database_url" else {raw})


def _check_security(values: Mapping[str, Any]) -> None:
    protocol = values.get("kafka_security_protocol", "PLAINTEXT")
    if protocol.startswith("SASL"):
        if not values.get("kafka_sasl_mechanism"):
            raise ConfigError(
                "KAFKA_SASL_MECHANISM", f"required when KAFKA_SECURITY_PROTOCOL={protocol}"
            )
        if values["kafka_sasl_mechanism"] in ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"):
            if not values.get("kafka_sasl_username"):
                raise ConfigError(
                    "KAFKA_SASL_USERNAME", f"required for {values['kafka_sasl_mechanism']}"
                )
            if not values.get("kafka_sasl_password"):
                raise ConfigError(
                    "KAFKA_SASL_PASSWORD", f"required for {values['kafka_sasl_mechanism']}"
                )
    ca = values.get("kafka_ssl_ca_location")
    if ca and not Path(ca).is_file():
        raise ConfigError("KAFKA_SSL_CA_LOCATION", f"no such file: {ca}")
