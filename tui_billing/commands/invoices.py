"""find, show, approve, adjust, reissue, download: the review operations."""

from __future__ import annotations

import csv
import itertools
import json
import shlex
import sys
from pathlib import Path

from .. import statuses as S
from .. import workflow
from ..money import format_amount, format_debt_change, format_money
from ..present import (
    changes_dict,
    changes_text,
    csv_cell,
    days_overdue,
    dumps,
    flags_text,
    invoice_dict,
    iso_time,
    table,
)
from ..risk import compact
from ..store.models import Invoice, tuple_rows
from ..store.settings import load_settings
from ..text import shown
from .common import (
    EXIT_OK,
    Env,
    UsageError,
    add_filters,
    add_global_options,
    add_json,
    ascii_int,
    eprint,
    filters_from,
    report_bulk,
)


def register(sub) -> None:
    p = sub.add_parser(
        "find",
        help="find invoices",
        description=(
            "Find invoices.  One page at a time (--limit, default 50): when more match, stderr says how many "
            "and the cursor of the next page (--after), and --json carries them as total and next.  "
            "--all prints every match, streamed."
        ),
    )
    add_global_options(p)
    add_filters(p)
    p.add_argument("--flagged", action="store_true", help="only invoices with risk flags")
    p.add_argument(
        "--sort",
        default="issue_date",
        choices=["issue_date", "number", "total", "deadline", "risk"],
        help="order: issue_date (newest first, the default), number, total (largest first), "
        "deadline (nearest review deadline first; only invoices that have one), "
        "risk (highest risk score first, then the nearest review deadline)",
    )
    p.add_argument("--asc", action="store_true", help="ascending order (smallest, oldest, lowest risk first)")
    p.add_argument(
        "--limit",
        type=ascii_int("limit"),
        metavar="N",
        help="at most N invoices on this page (default 50, max 5000); stderr says when more match",
    )
    p.add_argument(
        "--all", action="store_true", help="every matching invoice, streamed as it is read (not with --limit)"
    )
    p.add_argument(
        "--after",
        metavar="CURSOR",
        help='the page after CURSOR: the "next" of find --json or the cursor stderr names '
        "(same filters, --sort and --asc), or an invoice number",
    )
    p.add_argument(
        "--format",
        choices=["table", "csv"],
        help="table (default) or csv: a header row, RFC 4180, amounts as plain decimals, "
        "for spreadsheets (not with --json)",
    )
    p.add_argument("--counts", action="store_true", help="also print counts per status")
    add_json(p)
    p.set_defaults(handler=cmd_find, needs="view")

    p = sub.add_parser("show", help="an invoice with all its tables")
    add_global_options(p)
    p.add_argument("number", help="the invoice number")
    p.add_argument("--pdf-text", action="store_true", help="print the text of its current PDF")
    add_json(p)
    p.set_defaults(handler=cmd_show, needs="view")

    p = sub.add_parser("approve", help="approve invoices under review")
    add_global_options(p)
    p.add_argument("numbers", nargs="*", metavar="NUMBER", help="invoice numbers to approve (or --all)")
    p.add_argument(
        "--all", action="store_true", help="every invoice matching the filters (flagged ones are left for a person)"
    )
    p.add_argument(
        "--include-flagged",
        action="store_true",
        help="also approve the flagged invoices named, accepting their flags (recorded in the audit log)",
    )
    p.add_argument(
        "--dry-run",
        action="store_true",
        help="say what would be approved, what needs its flags accepted and what would be "
        "refused; write nothing (exit 0 only if all would be approved)",
    )
    add_filters(p)
    add_json(p)
    p.set_defaults(handler=cmd_approve, check=check_numbers_or_all)

    p = sub.add_parser("adjust", help="one manual credit or charge on an invoice under review")
    add_global_options(p)
    p.add_argument("number", help="the invoice number")
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--credit", metavar="AMOUNT", help="manual credit (lowers the total)")
    g.add_argument("--charge", metavar="AMOUNT", help="manual charge (raises the total)")
    p.add_argument(
        "--description",
        required=True,
        metavar="TEXT",
        help="why: shown on the Corrections table and in the audit log (plain text)",
    )
    p.add_argument(
        "--dry-run",
        action="store_true",
        help="say what the adjustment would do (the total before and after) or why it would be "
        "refused; write nothing (exit status as the real command's)",
    )
    add_json(p)
    p.set_defaults(handler=cmd_adjust)

    p = sub.add_parser("reissue", help="recalculate invoices under review, now or off-peak")
    add_global_options(p, now=False)
    p.add_argument("numbers", nargs="+", metavar="NUMBER", help="invoice numbers to reissue")
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--now", dest="reissue_now", action="store_true", help="reissue at once")
    g.add_argument("--off-peak", action="store_true", help="in the nearest off-peak window")
    p.add_argument(
        "--dry-run",
        action="store_true",
        help="say which would be reissued now, which would wait for the off-peak window (and when "
        "it opens) and which would be refused; write nothing (exit 0 only if all would be reissued)",
    )
    add_json(p)
    p.set_defaults(handler=cmd_reissue)

    p = sub.add_parser("assess", help="recompute risk flags (after an upgrade or a change of the risk settings)")
    add_global_options(p)
    p.add_argument("numbers", nargs="*", metavar="NUMBER", help="invoice numbers to assess (or --all)")
    p.add_argument(
        "--all", action="store_true", help="every invoice matching the filters (default status: under_review,rejected)"
    )
    add_filters(p)
    add_json(p)
    p.set_defaults(handler=cmd_assess, check=check_numbers_or_all, needs="import")

    p = sub.add_parser("download", help="write invoice PDFs to a directory")
    add_global_options(p)
    p.add_argument("numbers", nargs="+", metavar="NUMBER", help="invoice numbers to download")
    p.add_argument(
        "--to", required=True, metavar="DIR", dest="to_dir", help="the folder for the PDFs (created if missing)"
    )
    p.add_argument("--merge", metavar="FILE.pdf", help="also one merged PDF with an outline entry per invoice")
    add_json(p)
    p.set_defaults(handler=cmd_download, needs="view")


# --------------------------------------------------------------------------


def cmd_find(env: Env, args) -> int:
    from ..store import queries

    if env.json and args.format is not None:
        raise UsageError("format", "--json and --format cannot be used together: pick one output")
    if args.all and args.limit is not None:
        raise UsageError("limit", "--all prints every match: leave out --limit")
    if args.counts and args.format == "csv":
        raise UsageError("counts", "--counts is not part of a CSV: leave it out, or use --json")
    f = filters_from(args)
    desc = False if args.asc else None
    limit = 50 if args.limit is None else args.limit
    after = queries.after_key(args.after, sort=args.sort, descending=desc) if args.after else None
    settings = load_settings()  # once: invoice_dict would read the store for every row
    erp = (settings.erp_integration, settings["reporting_currency"])
    fmt = "json" if env.json else args.format or "table"
    if args.all:
        rows = queries.iter_matching(f, sort=args.sort, descending=desc, after=after)
        printed = _FIND_OUTPUTS[fmt](env, rows, erp)
        total = printed if after is None else queries.count_matching(f)
        next_cursor = None
    else:
        rows, more = queries.find_page(f, sort=args.sort, descending=desc, after=after, limit=limit)
        total = len(rows) if not (more or after) else queries.count_matching(f)
        next_cursor = queries.cursor_of(rows[-1], args.sort, desc) if more else None
        if fmt != "json":
            _FIND_OUTPUTS[fmt](env, iter(rows), erp)
        if more:  # never truncate silently; stdout stays the data alone
            eprint(
                f"{len(rows):,} of {total:,} matching invoices shown; --all for every one, "
                f"--after {shlex.quote(next_cursor or '')} for the next page"
            )
    if fmt == "json":
        counts = queries.counts_by_status(f) if args.counts else None
        if args.all:
            tail: dict[str, object] = {"total": total, "next": None}
        else:
            rules = workflow.four_eyes_rules()
            doc = {
                "invoices": [invoice_dict(r, env.clock, erp=erp[0], reporting=erp[1], rules=rules) for r in rows],
                "total": total,
                "next": next_cursor,
            }
            if counts is not None:
                doc["counts"] = counts
            env.print(dumps(doc))
            return EXIT_OK
        if counts is not None:
            tail["counts"] = counts
        env.print(dumps(tail)[1:-1].strip("\n") + "\n}")  # closes the document _find_json opened
        return EXIT_OK
    if args.counts:
        counts = queries.counts_by_status(f)
        env.print("\n" + "  ".join(f"{S.INVOICE_STATUSES[k]}: {v:,}" for k, v in counts.items()))
    return EXIT_OK


_FIND_HEADERS = ["Number", "Account", "Class", "Status", "Total", "Issued", "Deadline", "Risk", "Flags"]
_FIND_RIGHT = {4, 7}
_CSV_COLUMNS = [
    "number",
    "account",
    "account_type",
    "customer_class",
    "kind",
    "payment_model",
    "status",
    "total",
    "outstanding",
    "currency",
    "period_from",
    "period_to",
    "issue_date",
    "due_date",
    "review_deadline",
    "revision",
    "risk_score",
    "flagged",
    "flags",
]


def _find_cells(env: Env, r) -> list[str]:
    """One table row, every cell through text.shown (as table() does): the
    rows streamed past the first 500 are printed without table()."""
    return [
        shown(c)
        for c in (
            r.number,
            r.account.name[:32],
            r.customer_class.name,
            S.label(S.INVOICE_STATUSES, r.status),
            format_money(r.total, r.currency),
            f"closes {r.issue_date}" if r.status == S.OPEN else r.issue_date.isoformat(),
            _deadline_text(env, r),
            str(r.risk_score or ""),
            compact(r.flags, 28),
        )
    ]


def _find_table(env: Env, rows, erp: tuple[bool, str]) -> int:
    """The rows as an aligned table, streamed: the widths come from the first
    500 rows (a later, longer cell sticks out rather than being cut)."""
    first = [_find_cells(env, r) for r in itertools.islice(rows, 500)]
    if not first:
        eprint("no invoice matches")
    env.print(table(first, _FIND_HEADERS, right=_FIND_RIGHT))
    if len(first) < 500:
        return len(first)
    widths = [max(len(h), *(len(cells[i]) for cells in first)) for i, h in enumerate(_FIND_HEADERS)]
    n = len(first)
    for r in rows:
        cells = _find_cells(env, r)
        env.print(
            "  ".join(
                c.rjust(widths[i]) if i in _FIND_RIGHT else c.ljust(widths[i]) for i, c in enumerate(cells)
            ).rstrip()
        )
        n += 1
    return n


def _find_csv(env: Env, rows, erp: tuple[bool, str]) -> int:
    out = csv.writer(sys.stdout)  # RFC 4180: commas, double quotes, CRLF
    columns = _CSV_COLUMNS + (["external_total", "external_currency"] if erp[0] else [])
    out.writerow(columns)
    n = 0
    for r in rows:
        d = invoice_dict(r, env.clock, erp=erp[0], reporting=erp[1])
        d["account"], d["customer_class"] = csv_cell(d["account"]), csv_cell(d["customer_class"])
        d["flagged"] = "true" if d["flagged"] else "false"
        d["flags"] = " ".join(flag["code"] for flag in d["flags"])
        out.writerow(["" if d[c] is None else d[c] for c in columns])
        n += 1
    return n


def _find_json(env: Env, rows, erp: tuple[bool, str]) -> int:
    """Opens {"invoices": [ and streams them, one invoice a line (json's C
    encoder: an indented document costs twice the time); cmd_find writes the rest."""
    env.print('{\n  "invoices": [')
    n, pending = 0, None
    for r in rows:
        if pending is not None:
            env.print(pending + ",")
        d = invoice_dict(r, env.clock, erp=erp[0], reporting=erp[1])
        line = json.dumps(d, ensure_ascii=False, default=str)
        if not line.isprintable():  # a control character in stored text: all of it \u-escaped, as dumps() does
            line = json.dumps(d, ensure_ascii=True, default=str)
        pending = "    " + line
        n += 1
    if pending is not None:
        env.print(pending)
    env.print("  ],")
    return n


_FIND_OUTPUTS = {"table": _find_table, "csv": _find_csv, "json": _find_json}


def _deadline_text(env: Env, inv: Invoice) -> str:
    if inv.status == S.REJECTED:
        return f"reissue {inv.reissue_mode or ''}".strip()
    if inv.review_deadline and inv.status == S.UNDER_REVIEW:
        return env.clock.local(inv.review_deadline).strftime("%Y-%m-%d %H:%M")
    return ""


def cmd_show(env: Env, args) -> int:
    from ..store.detail import load_detail

    d = load_detail(args.number, history=False)
    inv = d.invoice
    cur = inv.currency
    if args.pdf_text:
        from .. import documents, pdf

        env.print(pdf.pdf_text(documents.current_pdf(inv)))
        return EXIT_OK
    settings = load_settings()
    erp, reporting = settings.erp_integration, settings["reporting_currency"]
    if env.json:
        doc = invoice_dict(inv, env.clock, erp=erp, reporting=reporting, rules=workflow.four_eyes_rules(settings))
        doc["charges"] = [
            {
                "position": c.position,
                "description": c.description,
                "quantity": str(c.quantity),
                "discount": str(c.discount.quantize(_q(cur))),
                "amount": str(c.amount.quantize(_q(cur))),
            }
            for c in d.charges
        ]
        doc["subscriptions"] = [
            {"id": s.id, "name": s.name, "status": s.status, "status_label": S.label(S.SUBSCRIPTION_STATUSES, s.status)}
            for s in d.subscriptions
        ]
        doc["payments"] = (
            [
                {
                    "id": p.id,
                    "number": p.number,
                    "description": p.description,
                    "created_at": iso_time(env.clock, p.created_at),
                    "due_date": p.due_date.isoformat() if p.due_date else None,
                    "status": p.status,
                    "status_label": S.label(S.PAYMENT_STATUSES, p.status),
                    "amount": str(p.amount.quantize(_q(cur))),
                    "paid_at": iso_time(env.clock, p.paid_at),
                }
                for p in d.payments
            ]
            if d.closed
            else None
        )
        doc["corrections"] = [
            {
                "position": c.position,
                "kind": c.kind,
                "description": c.description,
                "amount": str(c.amount.quantize(_q(cur))),
                "current_debt_changed": format_debt_change(c.amount, cur),
                "approved_at": iso_time(env.clock, c.approved_at),
            }
            for c in d.corrections
        ]
        doc["taxes"] = [
            {
                "position": t.position,
                "name": t.name,
                "description": t.description,
                "amount": str(t.amount.quantize(_q(cur))),
            }
            for t in d.taxes
        ]
        doc["audit"] = [
            {
                "at": iso_time(env.clock, a.at),
                "actor": a.actor,
                "role": a.role,
                "action": a.action,
                "before_status": a.before_status,
                "after_status": a.after_status,
            }
            for a in d.audit
        ]
        doc["changes_since_review"] = changes_dict(d.changes, cur)
        env.print(dumps(doc))
        return EXIT_OK
    from ..present import issue_date_words, status_text
    from ..text import shown  # stored text with a line break stays on its line (Env.print escapes the rest)

    lines = [
        f"Invoice number  {shown(inv.number)}",
        f"Account         {shown(inv.account.name)} ({shown(inv.account.account_type)}, "
        f"{shown(inv.customer_class.name)})",
        f"Total           {format_money(inv.total, cur)}   outstanding {format_money(inv.outstanding, cur)}",
        "Expected        "
        + (format_money(inv.expected_total, cur) if inv.expected_total is not None else "— (no history to go by)"),
    ]
    if erp:
        ext = format_money(inv.external_total, inv.external_currency or cur) if inv.external_total is not None else "—"
        if inv.erp_reference:
            ext += f"   ERP {inv.erp_reference}" + (f" of {inv.erp_date}" if inv.erp_date else "")
        lines.append(f"External total  {ext}")
        approval = env.clock.local(inv.approved_at).date().isoformat() if inv.approved_at else "—"
        lines.append(f"Approval date   {approval}")
    lines += [
        f"Payment model   {S.label(S.PAYMENT_MODELS, inv.payment_model)}",
        f"Status          {status_text(inv)}" + (" (closed)" if d.closed and inv.payment_model == "postpay" else ""),
        f"From            {inv.period_from}",
        f"To              {inv.period_to}",
        f"Issue date      {issue_date_words(inv)}",
        f"Due date        {inv.due_date or '—'}"
        + (f"   {overdue} days overdue" if (overdue := days_overdue(inv, env.clock.today())) else ""),
        f"Review deadline {env.clock.local(inv.review_deadline).strftime('%Y-%m-%d %H:%M') if inv.review_deadline else '—'}",
        f"Revision        {inv.revision}",
        "Risk            "
        + " · ".join(
            (["flagged"] if d.flagged else ["not flagged"] + ([] if d.flags else ["no flags"]))
            + (
                [f"{format_money(inv.risk_at_stake, reporting)} at stake if the flags are right"]
                if d.flagged and inv.risk_at_stake is not None
                else []
            )
            + [f"risk score {inv.risk_score or 0}"]
        ),
    ]
    from ..present import approvals_words

    approval_line = approvals_words(inv, env.clock, workflow.four_eyes_rules(settings))
    if approval_line:
        lines.append(f"Approvals       {approval_line}")
    if inv.held_at is not None:
        lines.append(
            f"Held            {env.clock.local(inv.held_at).strftime('%Y-%m-%d %H:%M')}: "
            + (
                "waits for a person (not auto-approved at the end of its hold)"
                if d.held
                else "held for a person at the end of its hold"
            )
        )
    if d.flags:
        lines += ["", "Risk flags", *("  " + text for text in flags_text(d.flags))]
    if d.changes is not None:
        lines += ["", *changes_text(d.changes, cur)]
    from ..present import detail_tables

    for view in detail_tables(d, env.clock):  # the detail screen's tabs, the same cells
        if view.rows or view.note is not None or view.key == "charges":
            lines += ["", view.title, view.text()]
    env.print("\n".join(lines))
    return EXIT_OK


def _q(cur: str):
    from ..money import quantum

    return quantum(cur)


def check_numbers_or_all(args) -> None:
    """approve/assess, before the store opens: invoice numbers or --all, not both, not neither."""
    if args.all and args.numbers:
        raise UsageError("NUMBER", "give invoice numbers or --all, not both")
    if not args.all and not args.numbers:
        raise UsageError("NUMBER", "give invoice numbers, or --all with filters")
    if args.all and getattr(args, "include_flagged", False):
        # A person accepts the flags of invoices they checked: named ones, never "all matching".
        raise UsageError(
            "include-flagged",
            "accept flags invoice by invoice: name the flagged invoices "
            "(approve NUMBER... --include-flagged); --all leaves flagged ones for a person",
        )


def _existing_refs(numbers: list[str]) -> list[int]:
    """Ids for the numbers given; an unknown number is bad input (exit 2)."""
    found = (
        dict(tuple_rows(Invoice.select(Invoice.number, Invoice.id).where(Invoice.number.in_(numbers)).tuples()))
        if numbers
        else {}
    )
    missing = [n for n in numbers if n not in found]
    if missing:
        raise UsageError(
            "invoice", f"{missing[0]} does not exist" + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else "")
        )
    return [found[n] for n in dict.fromkeys(numbers)]


def cmd_approve(env: Env, args) -> int:
    from ..store import queries

    check_numbers_or_all(args)  # (checked before the store opened too: kept for direct callers)
    if args.all:
        f = filters_from(args)
        if not f.statuses:
            f = f.with_(statuses=(S.UNDER_REVIEW,))
        ids = [r.id for r in queries.ids_matching(f).order_by(Invoice.id)]
    else:
        ids = _existing_refs(args.numbers)
    if args.dry_run:
        return _approve_dry_run(env, workflow.preview_approve(ids, env.ctx), args.include_flagged)
    result = workflow.approve_many(env.ctx, ids, progress=env.progress("approve"), include_flagged=args.include_flagged)
    extra: dict[str, object] | None = None
    if result.accepted:
        extra = {"accepted_flags": [{"number": n, "flags": workflow.flag_dicts(flags)} for n, flags in result.accepted]}
        if not env.json:
            for number, flags in result.accepted:
                env.print(f"  {number}: approved accepting its flags ({compact(flags)})")
    if result.waiting:  # four-eyes: a first approval given, not a failure
        extra = (extra or {}) | {"waiting_second_approval": result.waiting}
        if not env.json:
            for number in result.waiting:
                env.print(f"  {number}: 1 of 2 approvals (yours); it waits for a second approver")
    return report_bulk(env, "approved", result, extra)


def _approve_dry_run(env: Env, preview: workflow.ApprovePreview, include_flagged: bool) -> int:
    """What approve would do now; nothing written.  Exit 0 if all would be approved."""
    from .common import EXIT_SOME_FAILED

    accepting = preview.flagged if include_flagged else []
    waiting = [] if include_flagged else preview.flagged
    if env.json:
        env.print(
            dumps(
                {
                    "dry_run": True,
                    "would_approve": preview.ready + [f.number for f in accepting],
                    "accepting_flags": [{"number": f.number, "flags": workflow.flag_dicts(f.flags)} for f in accepting],
                    "needs_acceptance": [
                        {"number": f.number, "flags": workflow.flag_dicts(f.flags), "reason": f.reason} for f in waiting
                    ],
                    "refused": [{"number": n, "reason": r} for n, r in preview.refused],
                    "second_approval_needed": preview.second_needed,
                }
            )
        )
    else:
        n_ready = len(preview.ready) + len(accepting)
        env.print(
            f"dry run: {n_ready} would be approved, {len(waiting)} need their flags accepted, "
            f"{len(preview.refused)} would be refused; nothing was changed"
        )
        second = set(preview.second_needed)
        for number in preview.ready:
            env.print(
                f"  approve  {number}"
                + ("  (1 of 2 approvals: a second approver is needed)" if number in second else "")
            )
        for f in accepting:
            env.print(f"  approve  {f.number}  accepting its flags:")
            for flag in f.flags:
                env.print(f"             {flag.code}: {flag.reason}")
        for f in waiting:
            eprint(f"  {f.number}: {f.reason}")
            for flag in f.flags:
                eprint(f"      {flag.code}: {flag.reason}")
        for number, reason in preview.refused:
            eprint(f"  {number}: {reason}")
    return EXIT_OK if preview.all_ready(include_flagged) else EXIT_SOME_FAILED


def cmd_adjust(env: Env, args) -> int:
    flag, raw, kind = (
        ("credit", args.credit, "credit") if args.credit is not None else ("charge", args.charge, "charge")
    )
    # The console's own reading and rules: money.parse_amount in the invoice's
    # currency, then the domain's checks, so one input means one thing everywhere.
    preview = workflow.preview_adjust(args.number, kind, raw, description=args.description, ctx=env.ctx)
    if preview.field:
        raise UsageError(flag if preview.field == "amount" else preview.field, preview.reason or "")
    if args.dry_run:
        return _adjust_dry_run(env, preview)
    assert preview.amount is not None  # read: no bad input
    try:
        inv = workflow.adjust(env.ctx, preview.invoice_id, kind, preview.amount, args.description)
    except workflow.BadInput as exc:
        raise UsageError(flag if exc.field == "amount" else exc.field, exc.reason) from None
    except workflow.NotFound:
        raise
    except workflow.Refused as exc:
        return _refused(env, exc)
    if env.json:
        env.print(dumps(invoice_dict(Invoice.get_by_id(inv.id), env.clock)))
    else:
        env.print(
            f"{inv.number}: {kind} of {format_money(preview.amount, inv.currency)} applied; "
            f"total now {format_money(inv.total, inv.currency)} (revision {inv.revision})"
        )
    return EXIT_OK


def _adjust_dry_run(env: Env, p: workflow.AdjustPreview) -> int:
    """What adjust would do now; nothing written.  Exit 0 if it would apply, 1 if refused."""
    from ..present import amount_str
    from .common import EXIT_SOME_FAILED

    cur = p.currency
    if env.json:
        env.print(
            dumps(
                {
                    "dry_run": True,
                    "number": p.number,
                    "kind": p.kind,
                    "amount": amount_str(p.amount, cur),
                    "currency": cur,
                    "total_before": amount_str(p.before, cur),
                    "correction": amount_str(p.correction, cur),
                    "tax": amount_str(p.tax, cur),
                    "total_after": amount_str(p.after, cur),
                    "would_apply": p.applies,
                    "refused": [] if p.applies else [{"number": p.number, "reason": p.reason}],
                }
            )
        )
    elif p.applies:
        assert p.amount is not None and p.after is not None and p.correction is not None and p.tax is not None
        env.print(
            f"dry run: {p.number}: {p.kind} of {format_money(p.amount, cur)} would take the total "
            f"{format_money(p.before, cur)} → {format_money(p.after, cur)} "
            f"({format_debt_change(p.correction, cur)} net, tax {format_amount(p.tax, cur)}); "
            "nothing was changed"
        )
    else:
        env.print(f"dry run: {p.number}: the {p.kind} would be refused; nothing was changed")
        eprint(f"  {p.number}: {p.reason}")
    return EXIT_OK if p.applies else EXIT_SOME_FAILED


def _refused(env: Env, exc: workflow.Refused) -> int:
    from .common import EXIT_SOME_FAILED

    if env.json:
        env.print(dumps({"done": [], "failed": [{"number": exc.number, "reason": exc.reason}]}))
    else:
        eprint(f"tui-billing: refused: {exc}")
    return EXIT_SOME_FAILED


def cmd_reissue(env: Env, args) -> int:
    ids = _existing_refs(args.numbers)
    mode = "now" if args.reissue_now else "off_peak"
    if args.dry_run:
        return _reissue_dry_run(env, workflow.preview_reissue(ids, mode, clock=env.clock, ctx=env.ctx))
    result = workflow.reissue_many(env.ctx, ids, mode, progress=env.progress("reissue"))
    extra = {}
    if mode == "off_peak" and result.done:
        from ..offpeak import next_window_start

        start, end = load_settings().offpeak
        extra["window_opens"] = iso_time(env.clock, next_window_start(env.clock, start, end))
        if not env.json:
            env.print(f"reissue runs in the off-peak window opening {extra['window_opens']}")
    return report_bulk(env, "reissue " + ("done" if mode == "now" else "requested"), result, extra)


def _reissue_dry_run(env: Env, p: workflow.ReissuePreview) -> int:
    """What reissue would do now; nothing written.  Exit 0 if all would be reissued."""
    from .common import EXIT_SOME_FAILED

    opens = iso_time(env.clock, p.window_opens)
    if env.json:
        env.print(
            dumps(
                {
                    "dry_run": True,
                    "mode": p.mode,
                    "would_reissue_now": p.now,
                    "would_queue": p.queued,
                    "window_opens": opens,
                    "refused": [{"number": n, "reason": r} for n, r in p.refused],
                }
            )
        )
    else:
        env.print(
            f"dry run: {len(p.now)} would be reissued now, {len(p.queued)} would wait for the off-peak "
            f"window{f' opening {opens}' if opens else ''}, {len(p.refused)} would be refused; "
            "nothing was changed"
        )
        for number in p.now:
            env.print(f"  reissue now  {number}")
        for number in p.queued:
            env.print(f"  queue        {number}")
        for number, reason in p.refused:
            eprint(f"  {number}: {reason}")
    return EXIT_OK if p.all_apply else EXIT_SOME_FAILED


def cmd_assess(env: Env, args) -> int:
    from ..store import queries, risk_store

    check_numbers_or_all(args)
    if args.all:
        f = filters_from(args)
        if not f.statuses:
            f = f.with_(statuses=(S.UNDER_REVIEW, S.REJECTED))
        ids = [r.id for r in queries.ids_matching(f).order_by(Invoice.id)]
    else:
        ids = _existing_refs(args.numbers)
    counts = risk_store.assess_many(ids, progress=env.progress("assess"))
    if env.json:
        env.print(dumps(counts))
    else:
        env.print(f"assessed: {counts['assessed']:,} invoices, {counts['flagged']:,} flagged")
    return EXIT_OK


def cmd_download(env: Env, args) -> int:
    from .. import documents

    ids = _existing_refs(args.numbers)
    target = Path(args.to_dir)
    merge = Path(args.merge) if args.merge else None
    try:
        documents.check_download_target(target, merge)
    except documents.DownloadTargetError as exc:
        raise UsageError(exc.field, exc.reason) from exc
    result, paths, merged = documents.download_many(ids, target, merge, progress=env.progress("download"))
    extra: dict[str, object] = {"files": [str(p) for p in paths]}
    if merge:
        extra["merged"] = str(merged) if merged else None
    if not env.json:
        for p in paths:
            env.print(p)
        if merged:
            env.print(merged)
    return report_bulk(env, "downloaded", result, extra)
