"""import-xdrs and bill-run: turning usage into invoices."""

from __future__ import annotations

import re

from ..present import dumps
from .common import (
    EXIT_BAD_INPUT,
    EXIT_OK,
    EXIT_SOME_FAILED,
    Env,
    UsageError,
    add_global_options,
    add_json,
    eprint,
)

SHOW_ERRORS = 50  # row errors printed on stderr; --json lists up to xdr_import.KEEP_ERRORS


def register(sub) -> None:
    p = sub.add_parser(
        "import-xdrs",
        help="import usage records (xDRs) from a CSV file",
        description="Import xDRs from a UTF-8 CSV file with the header "
        "xdr_id,account,service,time,quantity,amount. Atomic: the whole file or nothing "
        "(exit 2 if any row is bad). xDR ids already in the store are skipped. Rows that repeat another "
        "record's account, service, time, quantity and amount under a new id are imported and "
        "reported as a warning (possible re-sent usage).",
    )
    add_global_options(p)
    p.add_argument("file", metavar="FILE.csv", help="the CSV file to import (UTF-8)")
    p.add_argument(
        "--skip-bad",
        action="store_true",
        help="import the good rows; write the bad ones (+ a reason column) to FILE.rejects.csv and exit 1",
    )
    add_json(p)
    p.set_defaults(handler=cmd_import_xdrs, needs="import")

    p = sub.add_parser(
        "bill-run",
        help="generate the invoices of a billing period",
        description="One regular invoice per account for the period; accounts that already have one are "
        "skipped, open postpay invoices are recalculated, closed and issued.",
    )
    add_global_options(p)
    p.add_argument(
        "--period", required=True, metavar="YYYY-MM", type=period_arg, help="the month to bill (must have ended)"
    )
    p.add_argument(
        "--include-empty", action="store_true", help="also invoice accounts with nothing to bill (a zero invoice)"
    )
    add_json(p)
    p.set_defaults(handler=cmd_bill_run)


_PERIOD = re.compile(r"[0-9]{4}-[0-9]{2}", re.ASCII)


def period_arg(text: str) -> str:
    """--period: YYYY-MM in the digits 0-9, before the store opens (billrun.parse_period,
    which needs today's date, then checks the month itself)."""
    if not _PERIOD.fullmatch(text.strip()):
        raise UsageError("period", f"{text!r} is not a month like 2026-10 (YYYY-MM, digits 0-9)")
    return text


# --------------------------------------------------------------------------


def cmd_import_xdrs(env: Env, args) -> int:
    from .. import xdr_import

    try:
        result = xdr_import.import_xdrs(
            args.file, skip_bad=args.skip_bad, tz=env.clock.tz, progress=env.progress("import-xdrs (bytes)")
        )
    except xdr_import.ImportFileError as exc:
        raise UsageError(exc.field, exc.reason) from None
    name = args.file
    for err in result.errors[:SHOW_ERRORS]:
        eprint(f"{name}:{err.line}: {err.field}: {err.reason}")
    if result.rejected > SHOW_ERRORS:
        eprint(f"{name}: … and {result.rejected - SHOW_ERRORS:,} more bad rows")
    doc = result.as_dict()
    if not result.committed:
        message = (
            f"{result.rejected:,} bad row(s) in {result.rows:,}; nothing imported "
            "(fix them, or use --skip-bad to import the good rows)"
        )
        eprint(f"tui-billing: error: {name}: {message}")
        if env.json:
            env.print(dumps({"error": {"field": "file", "message": message}, **doc}))
        return EXIT_BAD_INPUT
    if env.json:
        env.print(dumps(doc))
    else:
        line = (
            f"imported {result.imported:,} xDRs from {name}; {result.existing:,} already in the store; "
            f"{result.rejected:,} rejected ({result.seconds:.1f} s)"
        )
        env.print(line)
        if result.rejects_path:
            env.print(f"rejected rows written to {result.rejects_path}")
    if result.duplicates:  # a warning (exit status unchanged), on stderr like the other warnings
        eprint(f"warning: {duplicates_warning(result)}")
    return EXIT_SOME_FAILED if result.rejected else EXIT_OK


def duplicates_warning(result) -> str:
    """One sentence about imported rows that look like re-sent usage (issue 12)."""
    n = result.duplicates
    example = ""
    if result.duplicate_examples:
        example = f" (e.g. {result.duplicate_examples[0]})"  # --json lists up to xdr_import.DUPLICATE_EXAMPLES
    return (
        f"{n:,} imported record{'s' if n != 1 else ''} repeat{'' if n != 1 else 's'} another record's "
        f"account, service, time, quantity and amount under a different id{example}; "
        "check for re-sent usage before reissuing"
    )


def cmd_bill_run(env: Env, args) -> int:
    from .. import billrun
    from ..present import invoice_dict
    from ..store.models import Invoice

    period_from, period_to = billrun.parse_period(args.period, env.clock.today())
    result = billrun.bill_run(
        env.ctx, period_from, period_to, include_empty=args.include_empty, progress=env.progress("bill-run")
    )
    counts = {
        "created": len(result.created),
        "closed": len(result.closed),
        "under_review": result.statuses.get("under_review", 0),
        "approved": result.statuses.get("approved", 0),
        "skipped": result.skipped,
        "already_invoiced": result.skipped_existing,
        "nothing_to_bill": result.skipped_empty,
        "failed": len(result.failed),
    }
    if env.json:
        ids = result.created + result.closed
        invoices: dict[int, Invoice] = {}
        for start in range(0, len(ids), 500):  # a run's thousands of ids: more than one IN (...) list takes
            invoices.update((i.id, i) for i in Invoice.select().where(Invoice.id.in_(ids[start : start + 500])))
        env.print(
            dumps(
                {
                    "period": f"{period_from:%Y-%m}",
                    "period_from": period_from.isoformat(),
                    "period_to": period_to.isoformat(),
                    **counts,
                    "invoices": [invoice_dict(invoices[i], env.clock) for i in ids if i in invoices],
                    "failures": [{"item": item, "reason": reason} for item, reason in result.failed],
                }
            )
        )
    else:
        env.print(
            f"bill run {period_from:%Y-%m}: created {counts['created']:,}, "
            f"closed {counts['closed']:,} open postpay, under review {counts['under_review']:,}, "
            f"approved {counts['approved']:,}, skipped {counts['skipped']:,} "
            f"({counts['already_invoiced']:,} already invoiced, {counts['nothing_to_bill']:,} nothing to bill)"
            + (f", failed {counts['failed']:,}" if result.failed else "")
        )
        for item, reason in result.failed:
            eprint(f"  {item}: {reason}")
    return EXIT_SOME_FAILED if result.failed else EXIT_OK
