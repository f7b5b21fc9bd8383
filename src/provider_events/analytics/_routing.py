"""Routing answers for selections a router recorded (the LiteLLM callback): per provider, how
often the served model differed from the requested one, how often a fallback served the call,
and how often a deployment failed; and the requested -> served pairs behind those figures.

Reads ``provider_selection_events`` rows whose ``source`` is ``litellm`` in the window, on either
store: PostgreSQL through a partial index (migration 0006, so the cost follows the router's
rows, not the whole table), the embedded store directly. The store object is the usage
answers' (``dialect``, ``fetch``).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Protocol

__all__ = ["ROUTER_SOURCE", "routing_answer"]

#: the ``source`` the LiteLLM callback writes
ROUTER_SOURCE = "litellm"


class _Store(Protocol):
    dialect: str

    def fetch(self, sql: str, params: list[Any]) -> list[tuple[Any, ...]]: ...


_PG = {
    "requested": "selection_criteria->>'requested_model'",
    "fallback": "jsonb_typeof(selection_criteria->'fallbacks_attempted') = 'number' "
    "AND (selection_criteria->>'fallbacks_attempted')::numeric > 0",
    "error": "selection_criteria->>'status' = 'error'",
}
_SQLITE = {
    "requested": "json_extract(selection_criteria, '$.requested_model')",
    "fallback": "json_type(selection_criteria, '$.fallbacks_attempted') IN ('integer', 'real') "
    "AND json_extract(selection_criteria, '$.fallbacks_attempted') > 0",
    "error": "json_extract(selection_criteria, '$.status') = 'error'",
}


def _when(store: _Store, moment: datetime) -> Any:
    if store.dialect == "sqlite":  # the embedded store keeps RFC 3339 text (sortable)
        # isoformat, not strftime("%Y") (year 999 would be "999", sorting after "2025")
        return moment.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")
    return moment


def routing_answer(
    store: _Store, since: datetime, until: datetime, tenant: str | None, top: int = 20
) -> dict[str, Any]:
    """``{"providers": [...], "pairs": [...]}``: empty lists when no router recorded calls."""
    x = _SQLITE if store.dialect == "sqlite" else _PG
    where = "source = %s AND selected_at >= %s AND selected_at < %s"
    params: list[Any] = [ROUTER_SOURCE, _when(store, since), _when(store, until)]
    if tenant:
        where += " AND tenant_id = %s"
        params.append(tenant)

    def count_if(condition: str) -> str:
        return f"sum(CASE WHEN {condition} THEN 1 ELSE 0 END)"

    differs = f"{x['requested']} IS NOT NULL AND {x['requested']} <> model_name"
    providers = store.fetch(
        f"SELECT provider_name, count(*), {count_if(differs)}, {count_if(x['fallback'])}, "
        f"{count_if(x['error'])} FROM provider_selection_events WHERE {where} "
        "GROUP BY 1 ORDER BY 2 DESC, 1",
        params,
    )
    pairs = store.fetch(
        f"SELECT provider_name, coalesce({x['requested']}, ''), model_name, count(*), "
        f"{count_if(x['fallback'])}, {count_if(x['error'])} "
        f"FROM provider_selection_events WHERE {where} "
        "GROUP BY 1, 2, 3 ORDER BY 4 DESC, 1, 2, 3 LIMIT %s",
        [*params, top],
    )

    def share(part: Any, whole: Any) -> float:
        return round(int(part or 0) / int(whole), 4) if whole else 0.0

    return {
        "providers": [
            {
                "provider_name": p,
                "calls": int(n),
                "served_differs": int(d or 0),
                "served_differs_share": share(d, n),
                "fallbacks": int(f or 0),
                "fallback_share": share(f, n),
                "errors": int(e or 0),
                "error_share": share(e, n),
            }
            for p, n, d, f, e in providers
        ],
        "pairs": [
            {
                "provider_name": p,
                "requested_model": r,
                "served_model": m,
                "calls": int(n),
                "fallbacks": int(f or 0),
                "errors": int(e or 0),
            }
            for p, r, m, n, f, e in pairs
        ],
    }
