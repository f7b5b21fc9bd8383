"""``provider-events schema REF``: print the JSON Schema of an event (``--write DIR`` saves all)."""

from __future__ import annotations

import argparse
from pathlib import Path

from provider_events.cli._common import EXIT_BAD_INPUT, EXIT_OK, fail


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "schema_ref", nargs="?", help="e.g. registry://omninode/agent/provider_selected/v1"
    )
    p.add_argument("--payload", action="store_true", help="only the payload's schema")
    p.add_argument("--list", action="store_true", help="list the catalogued event types")
    p.add_argument("--write", metavar="DIR", type=Path, help="write every schema file into DIR")


def run(args: argparse.Namespace) -> int:
    from provider_events.events._catalog import CATALOG
    from provider_events.events._schema import dumps, schema_for_ref, write_schemas

    if args.list:
        for spec in CATALOG.values():
            print(
                f"{spec.schema_ref}\t{spec.event_type}\t{spec.family.name}\tkey={spec.key_field}\ttopic={spec.topic}"
            )
        return EXIT_OK
    if args.write:
        from provider_events.errors import UnsafePathError

        try:
            written = write_schemas(args.write)
        except UnsafePathError as exc:
            return fail(f"--write {exc}", EXIT_BAD_INPUT)
        except OSError as exc:
            return fail(f"cannot write {args.write}: {exc.strerror or exc}")
        for path in written:
            print(path)
        return EXIT_OK
    if not args.schema_ref:
        return fail("give a schema_ref (see --list) or --write DIR", EXIT_BAD_INPUT)
    try:
        print(dumps(schema_for_ref(args.schema_ref, payload_only=args.payload)), end="")
    except KeyError as exc:
        return fail(
            f"{exc.args[0]}; known: {', '.join(s.schema_ref for s in CATALOG.values())}",
            EXIT_BAD_INPUT,
        )
    return EXIT_OK
