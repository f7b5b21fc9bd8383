"""``provider-events publish`` and ``scripts/publish_provider_selection.py``: the guide's CLI.

Exit 0 delivered (or queued with ``--background``), 1 not delivered (spooled or failed),
2 bad input. ``--quiet`` prints nothing on success.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from provider_events.cli._common import (
    EXIT_BAD_INPUT,
    EXIT_FAILED,
    EXIT_OK,
    configure_logging,
    fail,
    settings_or_exit,
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--provider", help="provider name, e.g. gemini-flash (required)")
    p.add_argument("--model", help="model name, e.g. gemini-1.5-flash-002 (required)")
    p.add_argument("--reason", help="why this provider/model was selected (required)")
    p.add_argument(
        "--criteria",
        default=None,
        metavar="JSON",
        help="selection criteria as a JSON object, e.g. '{\"cost_per_token\": 0.000001}'",
    )
    p.add_argument(
        "--correlation-id",
        default=None,
        help="request id (partition key); a UUIDv7 is generated if omitted",
    )
    p.add_argument(
        "--causation-id", default=None, help="id of the event or request that caused this one"
    )
    p.add_argument(
        "--tenant-id",
        default=None,
        help="tenant (env PROVIDER_EVENTS_TENANT_ID, default 'default')",
    )
    p.add_argument(
        "--background",
        action="store_true",
        help="commit to the local outbox and return at once; the relay delivers",
    )
    p.add_argument("--json", action="store_true", help="print the result as one JSON object")
    p.add_argument(
        "--batch",
        metavar="FILE",
        help="publish many: JSON lines with provider, model, reason and optional criteria, "
        "correlation_id, causation_id, tenant_id ('-' reads stdin); replaces the single-event flags",
    )
    out = p.add_mutually_exclusive_group()
    out.add_argument("--quiet", "-q", action="store_true", help="print nothing on success")
    out.add_argument(
        "--verbose", "-v", action="store_true", help="print the envelope and client logs"
    )


def _criteria(raw: str | None) -> dict[str, Any] | None:
    if raw is None:
        return None
    import msgspec

    try:  # the argument's bytes, as the OS passed them (non-UTF-8 ones are refused below)
        value = msgspec.json.decode(raw.encode("utf-8", "surrogateescape"))
    except (msgspec.DecodeError, UnicodeError) as exc:  # bad UTF-8; a lone surrogate in argv
        raise SystemExit(fail(f"--criteria is not valid JSON: {exc}", EXIT_BAD_INPUT)) from None
    except RecursionError:
        raise SystemExit(fail("--criteria nests too deeply", EXIT_BAD_INPUT)) from None
    if not isinstance(value, dict):
        raise SystemExit(
            fail(f"--criteria must be a JSON object, got {type(value).__name__}", EXIT_BAD_INPUT)
        )
    return value


def _check_required(args: argparse.Namespace) -> None:
    single = [f"--{n}" for n in ("provider", "model", "reason") if getattr(args, n) is None]
    if args.batch is None and single:
        raise SystemExit(
            fail(f"the following arguments are required: {', '.join(single)}", EXIT_BAD_INPUT)
        )
    if args.batch is not None and len(single) < 3:
        raise SystemExit(
            fail(
                "--batch replaces --provider/--model/--reason; give one or the other",
                EXIT_BAD_INPUT,
            )
        )


def run(args: argparse.Namespace) -> int:
    _check_required(args)
    if args.verbose:
        configure_logging(True)
    settings = settings_or_exit()
    if args.batch is not None:
        from provider_events.cli._publish_batch import run_batch

        return run_batch(args, settings)
    from provider_events.errors import InvalidEventError
    from provider_events.publish._publisher import Publisher

    publisher = Publisher(settings)
    try:
        event = publisher.build(
            provider_name=args.provider,
            model_name=args.model,
            correlation_id=args.correlation_id,
            selection_reason=args.reason,
            selection_criteria=_criteria(args.criteria),
            causation_id=args.causation_id,
            tenant_id=args.tenant_id,
        )
    except InvalidEventError as exc:
        return fail(f"invalid event: {exc}", EXIT_BAD_INPUT)
    if args.verbose:
        print(event.value.decode(), file=sys.stderr)
    result = publisher.send_many_sync([event], "background" if args.background else "sync")[0]
    return _report(args, result, settings)


def _report(args: argparse.Namespace, result: Any, settings: Any) -> int:
    from provider_events.publish._result import DeliveryStatus

    ok = result.delivered or (args.background and result.status is DeliveryStatus.QUEUED)
    if args.json:
        import msgspec

        doc = {
            "status": result.status.value,
            "event_id": result.event_id,
            "topic": result.topic,
            "partition": result.partition,
            "offset": result.offset,
            "error": result.error,
        }
        print(msgspec.json.encode(doc).decode())
    elif ok and not args.quiet:
        where = (
            f"partition={result.partition} offset={result.offset}"
            if result.status is DeliveryStatus.DELIVERED
            else result.status.value
        )
        print(f"{result.status.value}: event_id={result.event_id} topic={result.topic} {where}")
    if ok:
        return EXIT_OK
    if result.status is DeliveryStatus.SPOOLED:
        return fail(
            f"not delivered ({result.error}); event {result.event_id} is safe in the outbox "
            f"{settings.resolved_outbox_path} and will be delivered by the relay",
            EXIT_FAILED,
        )
    return fail(f"not delivered: {result.error}", EXIT_FAILED)


def script_main(argv: list[str] | None = None) -> int:
    """Entry point of ``scripts/publish_provider_selection.py`` (same flags as ``publish``):
    :func:`provider_events.cli.main` with ``script=True``, so the script has the command's lean
    ``--background`` path, redaction and one-line errors."""
    from provider_events.cli import main

    return main(sys.argv[1:] if argv is None else argv, script=True)
