"""Offline prices: ``genai-prices`` (Pydantic's maintained table, with price history and
long-context tiers) plus a user overrides file for models it lacks or prices differently.

A cost is ``calculated`` with the table's version (``genai-prices 0.2.5``, or
``overrides:<hash>`` for a price from the overrides file), or the model is ``unpriced``
(``cost_usd`` is ``None``, never $0). When the provider is known (the hook saw its base URL),
only that provider's prices are used: a GLM model served by Z.AI under a Claude name is not
priced as Anthropic's.

The rates of each (provider, model, day) are looked up once and cached; the arithmetic is
exact (``Decimal``), the same as ``genai_prices.calc_price`` (a test checks both agree):
uncached input, cache reads, 5-minute and 1-hour cache writes and output each at their rate,
every rate at the tier the request's total input tokens reach (a tier applies to all tokens).

Overrides (``PROVIDER_EVENTS_PRICES_FILE``, default ``~/.config/provider-events/prices.toml``;
``.json`` with the same structure also works), USD per million tokens::

    [[model]]
    match = "glm-4.6"            # the served model name (case-insensitive)
    provider = "zai"             # optional: only for this provider
    input_mtok = 0.6
    output_mtok = 2.2
    cache_read_mtok = 0.11       # optional, default input_mtok
    cache_write_mtok = 0.6       # optional (5-minute writes), default input_mtok
    cache_write_1h_mtok = 0.6    # optional, default cache_write_mtok
    [[model.tier]]               # optional long-context tiers
    start = 200000               # above this many input tokens (all of them) ...
    input_mtok = 1.2             # ... these rates apply; missing ones keep the base rate
"""

from __future__ import annotations

import hashlib
import json
import math
import tomllib
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from provider_events.errors import ConfigError

__all__ = ["PROVIDER_IDS", "PriceTable", "Priced", "Rates"]

#: provider-events provider names (integrations/_providers.py) -> genai-prices provider ids.
PROVIDER_IDS: dict[str, str] = {
    "claude": "anthropic",
    "anthropic": "anthropic",
    "zai": "zai",
    "z.ai": "zai",
    "openrouter": "openrouter",
    "together": "together",
    "gemini-pro": "google",
    "gemini-flash": "google",
    "gemini-2.5-flash": "google",
    "google": "google",
    "openai": "openai",
    "deepseek": "deepseek",
    "moonshotai": "moonshotai",
}
_KEYS = ("input_mtok", "output_mtok", "cache_read_mtok", "cache_write_mtok", "cache_write_1h_mtok")
_MILLION = Decimal(1_000_000)


@dataclass(frozen=True, slots=True)
class Priced:
    """A cost and where it came from; ``cost_usd`` is ``None`` exactly when unpriced."""

    cost_usd: float | None
    source: str  # "calculated" or "unpriced" ("reported" is decided by the caller)
    version: str | None


@dataclass(frozen=True, slots=True)
class Rates:
    """USD per million tokens: base rates and ``(start, rates)`` tiers, ascending."""

    base: tuple[Decimal, Decimal, Decimal, Decimal, Decimal]  # in _KEYS order
    tiers: tuple[tuple[int, tuple[Decimal, Decimal, Decimal, Decimal, Decimal]], ...]
    version: str

    def cost(self, inp: int, out: int, read: int, w5m: int, w1h: int) -> Decimal:
        total_input = inp + read + w5m + w1h
        rates = self.base
        for start, tier in reversed(self.tiers):
            if total_input > start:
                rates = tier
                break
        i, o, r, w, w1 = rates
        return (i * inp + o * out + r * read + w * w5m + w1 * w1h) / _MILLION


def _resolve(
    values: dict[str, Decimal | None],
) -> tuple[Decimal, Decimal, Decimal, Decimal, Decimal]:
    inp = values["input_mtok"] or Decimal(0)
    write = values["cache_write_mtok"] if values["cache_write_mtok"] is not None else inp
    return (
        inp,
        values["output_mtok"] or Decimal(0),
        values["cache_read_mtok"] if values["cache_read_mtok"] is not None else inp,
        write,
        values["cache_write_1h_mtok"] if values["cache_write_1h_mtok"] is not None else write,
    )


def _decimal(value: Any, where: str) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ValueError(f"{where} must be a number")
    try:
        number = Decimal(str(value))
    except ArithmeticError:
        raise ValueError(f"{where} must be a number") from None
    if not number.is_finite() or number < 0 or number > 1_000_000:
        raise ValueError(f"{where} must be a finite number in [0, 1000000]")
    return number


def _override_rates(entry: dict[str, Any], where: str, version: str) -> Rates:
    if "input_mtok" not in entry or "output_mtok" not in entry:
        raise ValueError(f"{where} needs input_mtok and output_mtok")
    base = {k: (_decimal(entry[k], f"{where}.{k}") if k in entry else None) for k in _KEYS}
    tiers = []
    raw_tiers = entry.get("tier", [])
    if not isinstance(raw_tiers, list):
        raise ValueError(f"{where}.tier must be a list")
    for n, tier in enumerate(raw_tiers):
        if not isinstance(tier, dict) or type(tier.get("start")) is not int or tier["start"] < 0:
            raise ValueError(f"{where}.tier[{n}] needs an integer start >= 0")
        merged = dict(base)
        for k in _KEYS:
            if k in tier:
                merged[k] = _decimal(tier[k], f"{where}.tier[{n}].{k}")
        tiers.append((int(tier["start"]), _resolve(merged)))
    return Rates(_resolve(base), tuple(sorted(tiers, key=lambda t: t[0])), version)


def load_overrides(path: Path) -> dict[tuple[str | None, str], Rates]:
    """``{(provider or None, model lower-case): rates}`` from ``path``; ``{}`` if absent.

    Raises :class:`ConfigError` naming the file for anything malformed.
    """
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise ConfigError("PROVIDER_EVENTS_PRICES_FILE", f"cannot read {path}: {exc}") from None
    version = "overrides:" + hashlib.sha256(raw).hexdigest()[:12]
    try:
        text = raw.decode("utf-8")
        doc = json.loads(text) if path.suffix.lower() == ".json" else tomllib.loads(text)
        entries = doc.get("model", []) if isinstance(doc, dict) else None
        if not isinstance(entries, list):
            raise ValueError("expected a list of [[model]] tables")
        table: dict[tuple[str | None, str], Rates] = {}
        for n, entry in enumerate(entries):
            where = f"model[{n}]"
            if not isinstance(entry, dict) or not isinstance(entry.get("match"), str):
                raise ValueError(f"{where} needs a 'match' model name")
            provider = entry.get("provider")
            if provider is not None and not isinstance(provider, str):
                raise ValueError(f"{where}.provider must be a string")
            table[(provider, entry["match"].strip().lower())] = _override_rates(
                entry, where, version
            )
        return table
    except (ValueError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError("PROVIDER_EVENTS_PRICES_FILE", f"{path}: {exc}") from None


_MISS = object()


def _rates_doc(rates: Rates | None) -> Any:
    if rates is None:
        return None
    return {
        "base": [str(v) for v in rates.base],
        "tiers": [[start, [str(v) for v in tier]] for start, tier in rates.tiers],
        "version": rates.version,
    }


def _rates_of(doc: Any) -> Rates | None:
    if doc is None:
        return None

    def five(values: Any) -> tuple[Decimal, Decimal, Decimal, Decimal, Decimal]:
        a, b, c, d, e = (Decimal(v) for v in values)
        return a, b, c, d, e

    return Rates(
        five(doc["base"]),
        tuple((int(start), five(tier)) for start, tier in doc["tiers"]),
        str(doc["version"]),
    )


class _DiskCache:
    """``{key: rates or null}`` in ``<dir>/price-cache-<genai-prices version>.json``; a
    damaged or unreadable file is a miss, never an error (it is only a cache)."""

    MAX_ENTRIES = 2000

    def __init__(self, directory: Path) -> None:
        from importlib.metadata import PackageNotFoundError, version

        try:
            tag = version("genai-prices")
        except PackageNotFoundError:
            tag = "none"
        self.path = directory / f"price-cache-{tag}.json"
        self._doc: dict[str, Any] | None = None

    def _load(self) -> dict[str, Any]:
        if self._doc is None:
            try:
                doc = json.loads(self.path.read_text(encoding="utf-8"))
                self._doc = doc if isinstance(doc, dict) else {}
            except (OSError, ValueError):
                self._doc = {}
        return self._doc

    def get(self, key: str) -> Any:
        doc = self._load()
        if key not in doc:
            return _MISS
        try:
            return _rates_of(doc[key])
        except (KeyError, TypeError, ValueError, ArithmeticError):
            return _MISS

    def put(self, key: str, rates: Rates | None) -> None:
        import os
        import tempfile

        doc = self._load()
        if len(doc) >= self.MAX_ENTRIES:
            doc.clear()
        doc[key] = _rates_doc(rates)
        tmp = None
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".price-cache-")
            with os.fdopen(fd, "w", encoding="utf-8") as out:
                json.dump(doc, out)
            os.replace(tmp, self.path)
            tmp = None
        except OSError:
            pass  # a cache that cannot be written only costs the next process a lookup
        finally:
            if tmp is not None:
                Path(tmp).unlink(missing_ok=True)


class PriceTable:
    """Prices outcomes; construct once per run (the rates are cached per model and day)."""

    def __init__(
        self,
        overrides: Path | None = None,
        *,
        use_library: bool = True,
        cache_dir: Path | None = None,
    ) -> None:
        self._overrides = load_overrides(overrides) if overrides is not None else {}
        self._use_library = use_library
        self._cache: dict[tuple[str | None, str, int], Rates | None] = {}
        self._library_version: str | None = None
        #: ``cache_dir``: the library's rates kept on disk per (provider, model, day) and
        #: library version, so a short-lived process (the hook at Stop) prices a known model
        #: without importing genai-prices and pydantic (~1 s).
        self._disk = _DiskCache(cache_dir) if cache_dir is not None and use_library else None

    @property
    def library_version(self) -> str:
        if self._library_version is None:
            import genai_prices

            self._library_version = f"genai-prices {genai_prices.__version__}"
        return self._library_version

    def rates(self, provider: str | None, model: str, when: datetime) -> Rates | None:
        """The rates of ``model`` served by ``provider`` at ``when``; ``None``: unpriced."""
        pid = PROVIDER_IDS.get(provider.lower()) if provider else None
        key = (provider, model, when.toordinal())
        if key in self._cache:
            return self._cache[key]
        lower = model.lower()
        found = self._overrides.get((provider, lower)) or self._overrides.get((None, lower))
        if found is None and self._use_library:
            disk_key = f"{provider}|{model}|{key[2]}"
            cached = self._disk.get(disk_key) if self._disk is not None else _MISS
            if cached is _MISS:
                found = self._library_rates(pid, provider, model, when)
                if self._disk is not None:
                    self._disk.put(disk_key, found)
            else:
                found = cached  # type: ignore[assignment]
        if len(self._cache) > 4096:
            self._cache.clear()
        self._cache[key] = found
        return found

    def _library_rates(
        self, pid: str | None, provider: str | None, model: str, when: datetime
    ) -> Rates | None:
        from genai_prices.data_snapshot import get_snapshot
        from genai_prices.types import TieredPrices

        if provider and pid is None and provider.lower() not in ("unknown", "custom"):
            return None  # a provider the table does not know: its prices are not Anthropic's
        try:
            _, info = get_snapshot().find_provider_model(model, None, pid, None)
        except LookupError:
            return None
        prices = info.get_prices(when)
        starts: set[int] = set()
        values: dict[str, Any] = {}
        for k in _KEYS:
            v = getattr(prices, k, None)
            values[k] = v
            if isinstance(v, TieredPrices):
                starts.update(t.start for t in v.tiers)
        if values["input_mtok"] is None and values["output_mtok"] is None:
            return None

        def at(limit: int | None) -> tuple[Decimal, Decimal, Decimal, Decimal, Decimal]:
            chosen: dict[str, Decimal | None] = {}
            for k, v in values.items():
                if isinstance(v, TieredPrices):
                    price = v.base
                    for t in v.tiers:
                        if limit is not None and limit >= t.start:
                            price = t.price
                    chosen[k] = price
                else:
                    chosen[k] = v
            return _resolve(chosen)

        tiers = tuple((s, at(s)) for s in sorted(starts))
        return Rates(at(None), tiers, self.library_version)

    def price(
        self,
        provider: str | None,
        model: str,
        when: datetime,
        input_tokens: int,
        output_tokens: int,
        cache_read_tokens: int,
        cache_write_5m_tokens: int,
        cache_write_1h_tokens: int,
    ) -> Priced:
        rates = self.rates(provider, model, when)
        if rates is None:
            return Priced(None, "unpriced", None)
        cost = float(
            rates.cost(
                input_tokens,
                output_tokens,
                cache_read_tokens,
                cache_write_5m_tokens,
                cache_write_1h_tokens,
            )
        )
        if not math.isfinite(cost):
            return Priced(None, "unpriced", None)
        return Priced(cost, "calculated", rates.version)
