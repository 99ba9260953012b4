"""erp export|import and payments import|receipt: after the invoice is issued (issue 17)."""

from __future__ import annotations

import csv
import sys

from .common import EXIT_BAD_INPUT, EXIT_OK, EXIT_SOME_FAILED, Env, UsageError, add_global_options, add_json, eprint
from .import_and_bill import SHOW_ERRORS, period_arg


def register(sub) -> None:
    p = sub.add_parser(
        "erp",
        help="hand postpay invoices to a third-party ERP and read back its totals (erp_integration on)",
        description="With the setting erp_integration on: `erp export` writes the issued postpay invoices "
        "the ERP has not confirmed yet; `erp import` reads what the ERP sends back "
        "(number,external_total,external_currency,erp_reference,erp_date).",
    )
    add_global_options(p)
    actions = p.add_subparsers(dest="erp_action", metavar="ACTION", parser_class=type(p))
    p.set_defaults(handler=_missing("export or import", "erp"))

    e = actions.add_parser("export", help="the issued postpay invoices the ERP has not confirmed, with their lines")
    add_global_options(e)
    e.add_argument("--period", metavar="YYYY-MM", type=period_arg, help="only invoices of this billing month")
    e.add_argument("--to", dest="to_file", metavar="FILE", help="write the CSV to FILE (default: standard output)")
    add_json(e)
    e.set_defaults(handler=cmd_erp_export, needs="erp")

    _import_action(
        actions,
        "the ERP's external totals: number,external_total,external_currency,erp_reference,erp_date",
        "Atomic: one bad line and nothing is imported (exit 2, every bad line named). A line "
        "repeating what is stored changes nothing. An external total further from the invoice's total "
        "than the setting erp_tolerance raises the risk flag erp_mismatch.",
        handler=cmd_erp_import,
        needs="erp",
    )

    p = sub.add_parser("payments", help="payments of issued invoices: a gateway's or bank's file, manual receipts")
    add_global_options(p)
    actions = p.add_subparsers(dest="payments_action", metavar="ACTION", parser_class=type(p))
    p.set_defaults(handler=_missing("import or receipt", "payments"))

    _import_action(
        actions,
        "a gateway's or bank's file: reference,amount,currency,time,outcome",
        "Each line moves one payment (reference: a payment or an invoice number) to its outcome: "
        "processing, waiting_for_payment, completed, receipt_creating or cancelled. Completed money pays "
        "the invoice (Paid when covered; the rest stays outstanding; more goes to the account's balance). "
        "Atomic: one bad line and nothing is imported (exit 2). A line imported before changes nothing.",
        handler=cmd_payments_import,
        needs="payments",
    )

    r = actions.add_parser(
        "receipt",
        help="a manual receipt: completed -> receipt creating -> receipt sent",
        description="Seed 001: a payment whose method needs a manual receipt. --creating marks a completed "
        "payment 'receipt creating'; --sent marks it 'receipt sent'. A payment in Processing accepts no operation.",
    )
    add_global_options(r)
    r.add_argument("payment", metavar="PAYMENT", help="the payment's number (PMT-…) or id")
    step = r.add_mutually_exclusive_group(required=True)
    step.add_argument(
        "--creating",
        dest="step",
        action="store_const",
        const="receipt_creating",
        help="a completed payment: its manual receipt is being made",
    )
    step.add_argument(
        "--sent",
        dest="step",
        action="store_const",
        const="receipt_sent",
        help="a payment whose receipt was being made: the receipt went to the customer",
    )
    add_json(r)
    r.set_defaults(handler=cmd_payments_receipt, needs="payments")


def _import_action(actions, help_text: str, description: str, *, handler, needs: str) -> None:
    """`… import FILE.csv [--json]`: the ERP's and the payments' (the same shape)."""
    p = actions.add_parser("import", help=help_text, description=description)
    add_global_options(p)
    p.add_argument("file", metavar="FILE.csv", help="the CSV file (UTF-8)")
    add_json(p)
    p.set_defaults(handler=handler, needs=needs)


def _missing(choices: str, command: str):
    def missing(env: Env, args) -> int:
        raise UsageError("action", f"say {choices} (tui-billing {command} --help)")

    return missing


def _report_errors(env: Env, name: str, result, what: str) -> int:
    """A refused file: its bad lines on stderr (the first SHOW_ERRORS), exit 2, nothing written."""
    from ..present import dumps

    for err in result.errors[:SHOW_ERRORS]:
        eprint(f"{name}:{err.line}: {err.field}: {err.reason}")
    if len(result.errors) > SHOW_ERRORS:
        eprint(f"{name}: … and {len(result.errors) - SHOW_ERRORS:,} more bad lines")
    message = f"{len(result.errors):,} bad line(s) in {result.rows:,}; nothing {what}"
    eprint(f"tui-billing: error: {name}: {message}")
    if env.json:
        env.print(dumps({"error": {"field": "file", "message": message}, **result.as_dict()}))
    return EXIT_BAD_INPUT


def _read_file(run):
    from ..csv_input import ImportFileError

    try:
        return run()
    except ImportFileError as exc:
        raise UsageError(exc.field, exc.reason) from None


# --------------------------------------------------------------------------


def cmd_erp_export(env: Env, args) -> int:
    from .. import erp
    from ..billrun import parse_period
    from ..present import csv_cell, dumps
    from ..store.settings import load_settings

    erp.require_on(load_settings())
    period = parse_period(args.period, env.clock.today()) if args.period else None
    docs = erp.export_documents(env.ctx, period)
    if env.json:
        items = list(docs)
        env.print(dumps({"count": len(items), "invoices": items}))
        return EXIT_OK

    def write(out) -> int:
        writer = csv.writer(out)  # RFC 4180
        writer.writerow(erp.EXPORT_COLUMNS)
        n = 0
        for doc in docs:
            doc["account"] = csv_cell(doc["account"])
            for line in doc["lines"]:
                line["description"] = csv_cell(line["description"])
            writer.writerows(erp.csv_rows(doc))
            n += 1
        return n

    if args.to_file:
        from ..safefile import AtomicFile

        with AtomicFile(args.to_file, text=True, newline="") as fh:
            n = write(fh)
        eprint(f"{n:,} invoice(s) written to {args.to_file}")
    else:
        n = write(sys.stdout)
        eprint(f"{n:,} invoice(s) the ERP has not confirmed")
    return EXIT_OK


def cmd_erp_import(env: Env, args) -> int:
    from .. import erp
    from ..present import dumps
    from ..store.settings import load_settings

    erp.require_on(load_settings())
    result = _read_file(lambda: erp.import_confirmations(env.ctx, args.file))
    if not result.committed:
        return _report_errors(env, args.file, result, "imported")
    if env.json:
        env.print(dumps(result.as_dict()))
    else:
        env.print(
            f"{args.file}: {result.count('confirmed'):,} confirmed, {result.count('updated'):,} updated, "
            f"{result.count('unchanged'):,} unchanged"
        )
    for o in result.mismatches:  # a warning (the import is done): the flag is on the invoice
        eprint(f"warning: {o.number}: {o.mismatch}")
    return EXIT_OK


def cmd_payments_import(env: Env, args) -> int:
    from .. import payments_file
    from ..present import dumps

    result = _read_file(lambda: payments_file.import_payments(env.ctx, args.file))
    if not result.committed:
        return _report_errors(env, args.file, result, "imported")
    s = result.summary
    if env.json:
        env.print(dumps(result.as_dict()))
        return EXIT_OK
    env.print(
        f"{args.file}: {len(s.applied):,} line(s) applied, {s.already:,} already imported; "
        f"{len(s.paid):,} invoice(s) now paid"
    )
    numbers = sorted({o.invoice for o in s.applied})
    for words in s.money_words(payments_file.currencies(numbers)):
        env.print(f"  {words}")
    return EXIT_OK


def cmd_payments_receipt(env: Env, args) -> int:
    from .. import payments
    from ..errors import NotAllowed, NotFound, Refused
    from ..present import dumps

    try:
        pay = payments.mark_receipt(env.ctx, args.payment, args.step)
    except NotFound as exc:
        raise UsageError("payment", str(exc)) from None
    except NotAllowed:
        raise
    except Refused as exc:  # the payment's state refuses it: exit 1, the reason named
        if env.json:
            env.print(dumps({"error": {"field": "payment", "message": str(exc)}}))
        eprint(f"tui-billing: refused: {exc}")
        return EXIT_SOME_FAILED
    if env.json:
        env.print(dumps({"payment": payments.name_of(pay), "status": pay.status}))
    else:
        env.print(f"{payments.name_of(pay)}: {payments.label(pay.status).lower()}")
    return EXIT_OK
