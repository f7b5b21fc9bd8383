"""The HTML shell of the report: one self-contained page, no script, nothing fetched.

The Content-Security-Policy forbids scripts and every network request, so even a selection
reason written to look like markup can neither run nor load anything (it is escaped anyway).
"""

from __future__ import annotations

from collections.abc import Sequence

from provider_events.analytics.report._svg import esc

__all__ = ["card", "kpi", "legend", "page", "table"]

CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; base-uri 'none'; form-action 'none'"

_CSS = """
*{box-sizing:border-box}
body{margin:0;background:#f4f6fa;color:#1f2937;
 font:14px/1.45 system-ui,-apple-system,"Segoe UI","DejaVu Sans","Liberation Sans",sans-serif}
header{background:#111827;color:#f9fafb;padding:22px 36px 18px}
header h1{margin:0 0 4px;font-size:22px;font-weight:650;letter-spacing:.2px}
header p{margin:0;color:#cbd5e1;font-size:13px}
main{max-width:1320px;margin:0 auto;padding:20px 28px 40px}
.kpis{display:grid;grid-template-columns:repeat(6,1fr);gap:12px;margin:4px 0 18px}
.kpi{background:#fff;border-radius:10px;padding:12px 14px;box-shadow:0 1px 2px rgba(16,24,40,.06)}
.kpi b{display:block;font-size:21px;font-weight:650;margin-top:2px}
.kpi span{color:#6b7280;font-size:12px;text-transform:uppercase;letter-spacing:.5px}
.kpi small{color:#6b7280;font-size:12px}
.grid{display:grid;grid-template-columns:1fr 1fr;gap:16px}
.card{background:#fff;border-radius:12px;padding:16px 18px 12px;
 box-shadow:0 1px 3px rgba(16,24,40,.08);min-width:0}
.card.wide{grid-column:1 / -1}
.card h2{margin:0 0 2px;font-size:15.5px;font-weight:650}
.card .sub{margin:0 0 10px;color:#6b7280;font-size:12.5px}
.card svg{width:100%;height:auto;display:block}
.legend{display:flex;flex-wrap:wrap;gap:6px 16px;margin:8px 0 2px;font-size:12.5px;color:#374151}
.legend i{display:inline-block;width:11px;height:11px;border-radius:3px;margin-right:6px;
 vertical-align:-1px}
.legend i.dash{height:0;border-top:2px dashed #6b7280;border-radius:0;vertical-align:3px}
table{border-collapse:collapse;width:100%;font-size:13px}
th{text-align:left;color:#6b7280;font-weight:600;font-size:12px;border-bottom:1px solid #e5e7eb;
 padding:6px 8px}
td{border-bottom:1px solid #f0f2f5;padding:6px 8px;vertical-align:top}
td.n,th.n{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
.sw{display:inline-block;width:10px;height:10px;border-radius:2px;margin-right:7px}
.rec{margin:0 0 12px}
.rec h3{margin:0;font-size:14px}
.rec .now{color:#6b7280;font-size:12.5px;margin:1px 0 4px}
.alt{margin:2px 0 2px 14px}
.alt b{color:#047857}
.muted{color:#6b7280}
h3.rest{margin:16px 0 4px;font-size:14px}
ul.rest{margin:0;padding-left:20px;font-size:13px}
ul.rest li{margin:2px 0}
.pill{display:inline-block;border-radius:9px;padding:0 7px;font-size:11.5px;background:#ecfdf5;
 color:#047857;margin-left:6px}
.pill.low{background:#fef3c7;color:#92400e}
footer{color:#6b7280;font-size:12px;margin-top:22px;line-height:1.6}
"""


def kpi(label: str, value: str, note: str = "") -> str:
    small = f"<small>{esc(note)}</small>" if note else ""
    return f'<div class="kpi"><span>{esc(label)}</span><b>{esc(value)}</b>{small}</div>'


def legend(items: Sequence[tuple[str, str]], dashed_note: str | None = None) -> str:
    spans = "".join(
        f'<span><i style="background:{esc(color)}"></i>{esc(name)}</span>' for name, color in items
    )
    if dashed_note:
        spans += f'<span><i class="dash"></i>{esc(dashed_note)}</span>'
    return f'<div class="legend">{spans}</div>'


def card(title: str, subtitle: str, body: str, wide: bool = False, ident: str = "") -> str:
    cls = "card wide" if wide else "card"
    attr = f' id="{esc(ident)}"' if ident else ""
    sub = f'<p class="sub">{esc(subtitle)}</p>' if subtitle else ""
    return f'<section class="{cls}"{attr}><h2>{esc(title)}</h2>{sub}{body}</section>'


def table(headers: Sequence[tuple[str, bool]], rows: Sequence[Sequence[str]]) -> str:
    """``headers``: (text, numeric); ``rows``: cells already escaped HTML."""
    head = "".join(f'<th class="{"n" if n else ""}">{esc(h)}</th>' for h, n in headers)
    body = "".join(
        "<tr>"
        + "".join(
            f'<td class="{"n" if headers[i][1] else ""}">{cell}</td>' for i, cell in enumerate(r)
        )
        + "</tr>"
        for r in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def page(title: str, subtitle: str, kpis: str, sections: Sequence[str], footer: str) -> str:
    return (
        "<!doctype html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{esc(CSP)}">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f'<meta name="referrer" content="no-referrer"><title>{esc(title)}</title>'
        f"<style>{_CSS}</style></head><body>"
        f"<header><h1>{esc(title)}</h1><p>{esc(subtitle)}</p></header>"
        f'<main><div class="kpis">{kpis}</div><div class="grid">{"".join(sections)}</div>'
        f"<footer>{footer}</footer></main></body></html>\n"
    )
