"""Provider definitions for Claude Code: base URL, model per tier, the variable holding the key.

The built-in table below is overridable, field by field, by a user file (TOML or JSON)::

    # ~/.config/provider-events/providers.toml   (or PROVIDER_EVENTS_PROVIDERS_FILE)
    [zai]
    models = { sonnet = "glm-4.6", opus = "glm-4.6" }
    criteria = { cost_per_token = 0.0000006 }

    [my-proxy]                 # a new provider needs base_url, all three models and api_key_env
    display_name = "My proxy"
    base_url = "https://llm.example.com/anthropic"
    models = { haiku = "small", sonnet = "medium", opus = "large" }
    api_key_env = "MY_PROXY_KEY"

A JSON file has the same shape (an object of provider objects, optionally under "providers").
``claude`` is Anthropic itself: switching to it removes the overrides, so it takes no base URL
or key. Import-light on purpose: the Claude Code hook resolves providers on every prompt.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from provider_events.errors import ConfigError
from provider_events.settings import process_environ

__all__ = [
    "BUILTIN_PROVIDERS",
    "ENV_BASE_URL",
    "ENV_KEYS",
    "ENV_MODEL_KEYS",
    "ENV_TOKEN",
    "NATIVE",
    "TIERS",
    "Match",
    "Provider",
    "check_definition",
    "check_name",
    "custom_name",
    "default_providers_file",
    "identify",
    "load_providers",
    "providers_file",
]

NATIVE = "claude"
TIERS = ("haiku", "sonnet", "opus")
ENV_BASE_URL = "ANTHROPIC_BASE_URL"
ENV_TOKEN = "ANTHROPIC_AUTH_TOKEN"
ENV_MODEL_KEYS = {
    "haiku": "ANTHROPIC_DEFAULT_HAIKU_MODEL",
    "sonnet": "ANTHROPIC_DEFAULT_SONNET_MODEL",
    "opus": "ANTHROPIC_DEFAULT_OPUS_MODEL",
}
#: The keys of the settings.json ``env`` block a switch owns, in the order it writes them.
ENV_KEYS = (ENV_BASE_URL, ENV_TOKEN, *ENV_MODEL_KEYS.values())
PROVIDERS_FILE_ENV = "PROVIDER_EVENTS_PROVIDERS_FILE"
#: Names that are sub-commands of ``switch``, never providers.
RESERVED = frozenset({"list", "status", "add"})


@dataclass(frozen=True, slots=True)
class Provider:
    """One provider Claude Code can be pointed at."""

    name: str
    display_name: str
    #: ``None`` only for the native provider (Anthropic, no override).
    base_url: str | None
    #: Model per tier: ``haiku``, ``sonnet`` and ``opus``.
    models: Mapping[str, str]
    #: Environment variable holding the API key (read at switch time, never printed).
    api_key_env: str | None
    #: Optional variable overriding ``base_url`` (e.g. where your Gemini proxy listens).
    base_url_env: str | None = None
    #: ``selection_criteria`` of the event published on a switch.
    criteria: Mapping[str, Any] = field(default_factory=dict)
    description: str = ""

    @property
    def native(self) -> bool:
        return self.base_url is None

    @property
    def sonnet_model(self) -> str:
        return self.models["sonnet"]

    def resolved_base_url(self, environ: Mapping[str, str] | None = None) -> str | None:
        """``base_url``, or the value of ``base_url_env`` when that variable is set."""
        if self.base_url is None:
            return None
        env = process_environ(environ)
        if self.base_url_env and env.get(self.base_url_env, "").strip():
            return env[self.base_url_env].strip()
        return self.base_url


_GEMINI_PROXY = "http://127.0.0.1:4000"  # an Anthropic-compatible proxy (e.g. LiteLLM's default)

BUILTIN_PROVIDERS: dict[str, Provider] = {
    p.name: p
    for p in (
        Provider(
            name="claude",
            display_name="Anthropic Claude",
            base_url=None,
            models={
                "haiku": "claude-haiku-4-5-20251001",
                "sonnet": "claude-sonnet-4-5-20250929",
                "opus": "claude-opus-4-1-20250805",
            },
            api_key_env=None,
            criteria={"quality_score": 0.95, "cost_per_token": 0.000003},
            description="Anthropic directly (your Claude login); removes every override",
        ),
        Provider(
            name="zai",
            display_name="Z.ai GLM",
            base_url="https://api.z.ai/api/anthropic",
            models={"haiku": "glm-4.5-air", "sonnet": "glm-4.6", "opus": "glm-4.6"},
            api_key_env="ZAI_API_KEY",
            criteria={"cost_per_token": 0.0000006, "latency_ms": 400, "quality_score": 0.85},
            description="Z.ai's Anthropic-compatible endpoint with GLM models",
        ),
        Provider(
            name="together",
            display_name="Together AI",
            base_url="https://api.together.xyz",
            models={
                "haiku": "meta-llama/Llama-3.3-70B-Instruct-Turbo",
                "sonnet": "Qwen/Qwen3-Coder-480B-A35B-Instruct-FP8",
                "opus": "deepseek-ai/DeepSeek-V3.1",
            },
            api_key_env="TOGETHER_API_KEY",
            criteria={"cost_per_token": 0.000002, "latency_ms": 300, "quality_score": 0.8},
            description="Together AI's open models",
        ),
        Provider(
            name="openrouter",
            display_name="OpenRouter",
            base_url="https://openrouter.ai/api",
            models={
                "haiku": "anthropic/claude-haiku-4.5",
                "sonnet": "anthropic/claude-sonnet-4.5",
                "opus": "anthropic/claude-opus-4.1",
            },
            api_key_env="OPENROUTER_API_KEY",
            criteria={"cost_per_token": 0.000003, "latency_ms": 250, "quality_score": 0.95},
            description="OpenRouter's Anthropic-compatible API",
        ),
        Provider(
            name="gemini-pro",
            display_name="Gemini Pro",
            base_url=_GEMINI_PROXY,
            models={
                "haiku": "gemini-1.5-flash-002",
                "sonnet": "gemini-1.5-pro-002",
                "opus": "gemini-1.5-pro-002",
            },
            api_key_env="GEMINI_API_KEY",
            base_url_env="GEMINI_ANTHROPIC_BASE_URL",
            criteria={"cost_per_token": 0.00000125, "latency_ms": 200, "quality_score": 0.9},
            description="Google Gemini 1.5 Pro through an Anthropic-compatible proxy",
        ),
        Provider(
            name="gemini-flash",
            display_name="Gemini Flash",
            base_url=_GEMINI_PROXY,
            models={
                "haiku": "gemini-1.5-flash-002",
                "sonnet": "gemini-1.5-flash-002",
                "opus": "gemini-1.5-flash-002",
            },
            api_key_env="GEMINI_API_KEY",
            base_url_env="GEMINI_ANTHROPIC_BASE_URL",
            # the integration guide's figures for gemini-flash
            criteria={"cost_per_token": 0.000001, "latency_ms": 50, "quality_score": 0.85},
            description="Google Gemini 1.5 Flash through an Anthropic-compatible proxy",
        ),
        Provider(
            name="gemini-2.5-flash",
            display_name="Gemini 2.5 Flash",
            base_url=_GEMINI_PROXY,
            models={
                "haiku": "gemini-2.5-flash",
                "sonnet": "gemini-2.5-flash",
                "opus": "gemini-2.5-flash",
            },
            api_key_env="GEMINI_API_KEY",
            base_url_env="GEMINI_ANTHROPIC_BASE_URL",
            criteria={"cost_per_token": 0.0000003, "latency_ms": 80, "quality_score": 0.88},
            description="Google Gemini 2.5 Flash through an Anthropic-compatible proxy",
        ),
    )
}


# -- the user's file -----------------------------------------------------------------------------
def providers_file(environ: Mapping[str, str] | None = None) -> Path | None:
    """The user's provider file: ``$PROVIDER_EVENTS_PROVIDERS_FILE``, else the first existing
    ``providers.toml`` / ``providers.json`` under ``$XDG_CONFIG_HOME/provider-events``."""
    env = process_environ(environ)
    explicit = env.get(PROVIDERS_FILE_ENV, "").strip()
    if explicit:
        return Path(explicit).expanduser()
    base = env.get("XDG_CONFIG_HOME", "").strip() or str(Path(env.get("HOME", "~")) / ".config")
    folder = Path(base).expanduser() / "provider-events"
    for name in ("providers.toml", "providers.json"):
        if (folder / name).is_file():
            return folder / name
    return None


#: The largest providers file read (a FIFO or /dev/zero is refused, never opened).
MAX_PROVIDERS_FILE_BYTES = 1024 * 1024


def _read_file(path: Path) -> dict[str, Any]:
    from provider_events._files import read_bounded
    from provider_events.errors import UnsafePathError

    try:
        data = read_bounded(path, MAX_PROVIDERS_FILE_BYTES)
    except FileNotFoundError:
        raise ConfigError(PROVIDERS_FILE_ENV, f"no such file: {path}") from None
    except UnsafePathError as exc:
        raise ConfigError(PROVIDERS_FILE_ENV, str(exc)) from None
    except OSError as exc:
        raise ConfigError(PROVIDERS_FILE_ENV, f"cannot read {path}: {exc.strerror}") from None
    try:
        if path.suffix.lower() == ".toml":
            import tomllib

            doc: Any = tomllib.loads(data.decode("utf-8"))
        else:
            import json

            doc = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        # tomllib.TOMLDecodeError and json.JSONDecodeError are ValueErrors naming line/column
        raise ConfigError(PROVIDERS_FILE_ENV, f"{path} is malformed: {exc}") from None
    if not isinstance(doc, dict):
        raise ConfigError(PROVIDERS_FILE_ENV, f"{path}: expected an object of providers")
    inner = doc.get("providers")
    return inner if isinstance(inner, dict) else doc


def _text(where: str, value: Any) -> str:
    if not isinstance(value, str) or not value.strip() or any(ord(c) < 32 for c in value):
        raise ConfigError(PROVIDERS_FILE_ENV, f"{where} must be a non-empty one-line string")
    return value.strip()


def _env_name(where: str, value: Any) -> str:
    name = _text(where, value)
    if not name.replace("_", "").isalnum() or name[0].isdigit():
        raise ConfigError(PROVIDERS_FILE_ENV, f"{where} must be an environment variable name")
    return name


def _url(where: str, value: Any) -> str:
    url = _text(where, value).rstrip("/")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ConfigError(PROVIDERS_FILE_ENV, f"{where} must be an http(s) URL")
    return url


def _apply(name: str, spec: Any, base: Provider | None) -> Provider:
    where = f"provider {name!r}"
    if not isinstance(spec, dict):
        raise ConfigError(PROVIDERS_FILE_ENV, f"{where} must be a table/object")
    known = {
        "display_name",
        "base_url",
        "models",
        "api_key_env",
        "base_url_env",
        "criteria",
        "description",
    }
    unknown = sorted(set(spec) - known)
    if unknown:
        raise ConfigError(PROVIDERS_FILE_ENV, f"{where}: unknown field(s) {', '.join(unknown)}")
    models = dict(base.models) if base else {}
    raw_models = spec.get("models", {})
    if not isinstance(raw_models, dict) or set(raw_models) - set(TIERS):
        raise ConfigError(PROVIDERS_FILE_ENV, f"{where}: models takes haiku, sonnet and opus")
    for tier, model in raw_models.items():
        models[tier] = _text(f"{where} models.{tier}", model)
    criteria = spec.get("criteria", base.criteria if base else {})
    if not isinstance(criteria, dict):
        raise ConfigError(PROVIDERS_FILE_ENV, f"{where}: criteria must be a table/object")
    if name == NATIVE:
        if any(k in spec for k in ("base_url", "api_key_env", "base_url_env")):
            raise ConfigError(
                PROVIDERS_FILE_ENV, f"{where} is Anthropic itself: it takes no base_url or key"
            )
        base_url, key_env = None, None
    else:
        base_url = _url(f"{where} base_url", spec["base_url"]) if "base_url" in spec else None
        base_url = base_url or (base.base_url if base else None)
        key_env = spec.get("api_key_env", base.api_key_env if base else None)
        key_env = _env_name(f"{where} api_key_env", key_env) if key_env is not None else None
        if base_url is None or key_env is None:
            raise ConfigError(PROVIDERS_FILE_ENV, f"{where} needs base_url and api_key_env")
    missing = [t for t in TIERS if t not in models]
    if missing:
        raise ConfigError(PROVIDERS_FILE_ENV, f"{where} needs models for {', '.join(missing)}")
    url_env = spec.get("base_url_env", base.base_url_env if base else None)
    display = spec.get("display_name", base.display_name if base else name)
    return Provider(
        name=name,
        display_name=_text(f"{where} display_name", display),
        base_url=base_url,
        models=models,
        api_key_env=key_env,
        base_url_env=_env_name(f"{where} base_url_env", url_env) if url_env else None,
        criteria=dict(criteria),
        description=str(spec.get("description", base.description if base else "")),
    )


def default_providers_file(environ: Mapping[str, str] | None = None) -> Path:
    """Where ``switch add`` writes when there is no providers file yet."""
    env = process_environ(environ)
    base = env.get("XDG_CONFIG_HOME", "").strip() or str(Path(env.get("HOME", "~")) / ".config")
    return Path(base).expanduser() / "provider-events" / "providers.toml"


def check_name(name: Any, where: Path | str) -> str:
    """``name`` if it can name a provider; :class:`ConfigError` otherwise."""
    if (
        not isinstance(name, str)
        or not name
        or name in RESERVED
        or name.startswith("-")
        or len(name) > 100
        or any(c.isspace() or ord(c) < 32 or ord(c) == 127 for c in name)
    ):
        raise ConfigError(PROVIDERS_FILE_ENV, f"{where}: {name!r} cannot be a provider name")
    return name


def check_definition(name: str, spec: Mapping[str, Any]) -> Provider:
    """Validate a new provider's definition as the providers file would be read."""
    return _apply(name, dict(spec), None)


def load_providers(environ: Mapping[str, str] | None = None) -> dict[str, Provider]:
    """Built-in providers with the user's file applied on top (raises :class:`ConfigError`)."""
    providers = dict(BUILTIN_PROVIDERS)
    path = providers_file(environ)
    if path is None:
        return providers
    for name, spec in _read_file(path).items():
        check_name(name, path)
        providers[name] = _apply(name, spec, providers.get(name))
    return providers


# -- which provider is active --------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Match:
    """What a set of Claude Code environment values points at."""

    #: The provider whose base URL and models all match, if any.
    provider: Provider | None
    #: The provider sharing the base URL (and, best, the sonnet model), for a partial match.
    closest: Provider | None
    base_url: str | None
    models: Mapping[str, str | None]

    @property
    def exact(self) -> bool:
        return self.provider is not None

    @property
    def name(self) -> str:
        """A provider name for events: the match, the closest, else :func:`custom_name`."""
        if self.provider is not None:
            return self.provider.name
        if self.closest is not None:
            return self.closest.name
        return custom_name(self.base_url)


def custom_name(base_url: str | None) -> str:
    """The name of a provider no definition matches: ``custom:`` and the base URL's host, with
    the port when the URL gives one (``custom:127.0.0.1:8080``, ``custom:llm.example.com``).

    Never the user name, password, path or query of the URL (they may hold a secret); at most
    100 characters (the event's limit); ``custom`` alone when the URL has no usable host.
    """
    try:
        parts = urlsplit((base_url or "").strip())
        host = parts.hostname
        port = parts.port
    except ValueError:  # a port out of range, brackets that do not close ...
        return "custom"
    if not host or any(c.isspace() or ord(c) < 32 for c in host):
        return "custom"
    host = f"[{host}]" if ":" in host else host
    name = f"custom:{host}" + (f":{port}" if port is not None else "")
    return name[:100]


def _norm(url: str | None) -> str | None:
    return url.strip().rstrip("/").lower() if url and url.strip() else None


def identify(
    env: Mapping[str, str],
    providers: Mapping[str, Provider] | None = None,
    environ: Mapping[str, str] | None = None,
) -> Match:
    """Match Claude Code's ``env`` values (base URL and tier models) to a provider.

    No base URL and no model override is the native provider. A provider whose base URL is
    configurable (``base_url_env``) also matches on its models alone, since the variable may
    not be set in the process asking.
    """
    table = BUILTIN_PROVIDERS if providers is None else providers
    base_url = _norm(env.get(ENV_BASE_URL))
    models = {tier: (env.get(key) or None) for tier, key in ENV_MODEL_KEYS.items()}
    if base_url is None:
        native = table.get(NATIVE)
        if all(m is None for m in models.values()) or (
            native is not None and all(models[t] in (None, native.models[t]) for t in TIERS)
        ):
            return Match(native, None, None, models)
        return Match(None, native, None, models)
    same_url = [
        p
        for p in table.values()
        if not p.native
        and (_norm(p.resolved_base_url(environ)) == base_url or _norm(p.base_url) == base_url)
    ]
    for p in same_url:
        if all(models[t] == p.models[t] for t in TIERS):
            return Match(p, None, base_url, models)
    for p in table.values():
        if p.base_url_env and all(models[t] == p.models[t] for t in TIERS):
            return Match(p, None, base_url, models)
    closest = next((p for p in same_url if models["sonnet"] == p.models["sonnet"]), None)
    if closest is None:
        closest = next(iter(same_url), None)
    return Match(None, closest, base_url, models)
