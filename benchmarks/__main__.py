"""Run the benchmarks: ``python -m benchmarks [--only NAME] [--scale 0.01] [--json FILE]``."""

from __future__ import annotations

import argparse
import importlib
import json
import os
import pkgutil
import sys
from pathlib import Path

from rich.console import Console
from rich.table import Table

from ._harness import Comparison, Context


def _modules() -> list[str]:
    here = Path(__file__).parent
    return sorted(m.name for m in pkgutil.iter_modules([str(here)]) if m.name.startswith("bench_"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("--only", action="append", default=[], help="run only these (e.g. publish)")
    parser.add_argument(
        "--scale",
        type=float,
        default=float(os.environ.get("BENCH_SCALE", "1")),
        help="multiply every event count (default 1 = the issue's sizes)",
    )
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    args = parser.parse_args(argv)
    bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if not bootstrap:
        print("error: KAFKA_BOOTSTRAP_SERVERS is not set (run `make services`)", file=sys.stderr)
        return 2
    ctx = Context(
        bootstrap=bootstrap, database_url=os.environ.get("DATABASE_URL"), scale=args.scale
    )
    console = Console(width=max(140, Console().width))
    results: list[Comparison] = []
    for name in _modules():
        short = name.removeprefix("bench_")
        if args.only and short not in args.only:
            continue
        module = importlib.import_module(f"benchmarks.{name}")
        console.rule(
            f"[bold]{short}[/]: {module.__doc__.strip().splitlines()[0] if module.__doc__ else ''}"
        )
        rows = module.run(ctx, console)
        results.extend(rows)
        _print(console, rows)
    if len(results) > 1:
        console.rule("[bold]summary")
        _print(console, results)
    if args.json:
        args.json.write_text(
            json.dumps([r.__dict__ | {"ratio": r.ratio} for r in results], indent=2, default=str)
        )
    return 0


def _print(console: Console, rows: list[Comparison]) -> None:
    table = Table(show_lines=False)
    for col in ("measure", "ours", "peer", "peer value", "ratio", "target", "ok"):
        table.add_column(col, justify="right" if col not in ("measure", "peer") else "left")
    for r in rows:
        ok = {True: "[green]yes", False: "[red]no", None: "-"}[r.meets_target]
        target = (
            "-"
            if r.target is None
            else (f">= {r.target:g}x" if r.better == "higher" else f"<= {r.target:g}x")
        )
        table.add_row(
            r.name,
            f"{r.ours:,.3f} {r.unit}",
            r.peer_name,
            f"{r.peer:,.3f} {r.unit}",
            f"{r.ratio:.2f}x",
            target,
            ok,
        )
    console.print(table)
    for r in rows:
        for key, value in r.notes.items():
            console.print(f"  {r.name}: {key} = {value}")


if __name__ == "__main__":
    sys.exit(main())
