"""find, show, approve, adjust, reissue, download: the review operations."""
from __future__ import annotations

import sys
from pathlib import Path

from .. import statuses as S
from .. import workflow
from ..money import format_debt_change, format_money
from ..present import changes_dict, changes_text, dumps, flags_text, invoice_dict, iso_time, table
from ..risk import compact
from ..store.models import Invoice
from ..store.settings import load_settings
from .common import (
    EXIT_OK, Env, UsageError, add_filters, add_global_options, add_json, filters_from, report_bulk,
)


def register(sub) -> None:
    p = sub.add_parser("find", help="find invoices")
    add_global_options(p)
    add_filters(p)
    p.add_argument("--flagged", action="store_true", help="only invoices with risk flags")
    p.add_argument("--sort", default="issue_date", choices=["issue_date", "number", "total", "deadline", "risk"],
                   help="risk: highest risk score first, then the nearest review deadline")
    p.add_argument("--asc", action="store_true", help="ascending order")
    p.add_argument("--limit", type=int, default=50, help="at most N invoices (default 50, max 5000)")
    p.add_argument("--counts", action="store_true", help="also print counts per status")
    add_json(p)
    p.set_defaults(handler=cmd_find)

    p = sub.add_parser("show", help="an invoice with all its tables")
    add_global_options(p)
    p.add_argument("number")
    p.add_argument("--pdf-text", action="store_true", help="print the text of its current PDF")
    add_json(p)
    p.set_defaults(handler=cmd_show)

    p = sub.add_parser("approve", help="approve invoices under review")
    add_global_options(p)
    p.add_argument("numbers", nargs="*", metavar="NUMBER")
    p.add_argument("--all", action="store_true",
                   help="every invoice matching the filters (flagged ones are left for a person)")
    p.add_argument("--include-flagged", action="store_true",
                   help="also approve the flagged invoices named, accepting their flags (recorded in the audit log)")
    p.add_argument("--dry-run", action="store_true",
                   help="say what would be approved, what needs its flags accepted and what would be "
                        "refused; write nothing (exit 0 only if all would be approved)")
    add_filters(p)
    add_json(p)
    p.set_defaults(handler=cmd_approve)

    p = sub.add_parser("adjust", help="one manual credit or charge on an invoice under review")
    add_global_options(p)
    p.add_argument("number")
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--credit", metavar="AMOUNT", help="manual credit (lowers the total)")
    g.add_argument("--charge", metavar="AMOUNT", help="manual charge (raises the total)")
    p.add_argument("--description", required=True)
    p.add_argument("--dry-run", action="store_true",
                   help="say what the adjustment would do (the total before and after) or why it would be "
                        "refused; write nothing (exit status as the real command's)")
    add_json(p)
    p.set_defaults(handler=cmd_adjust)

    p = sub.add_parser("reissue", help="recalculate invoices under review, now or off-peak")
    add_global_options(p, now=False)
    p.add_argument("numbers", nargs="+", metavar="NUMBER")
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--now", dest="reissue_now", action="store_true", help="reissue at once")
    g.add_argument("--off-peak", action="store_true", help="in the nearest off-peak window")
    p.add_argument("--dry-run", action="store_true",
                   help="say which would be reissued now, which would wait for the off-peak window (and when "
                        "it opens) and which would be refused; write nothing (exit 0 only if all would be reissued)")
    add_json(p)
    p.set_defaults(handler=cmd_reissue)

    p = sub.add_parser("assess", help="recompute risk flags (after an upgrade or a change of the risk settings)")
    add_global_options(p)
    p.add_argument("numbers", nargs="*", metavar="NUMBER")
    p.add_argument("--all", action="store_true",
                   help="every invoice matching the filters (default status: under_review,rejected)")
    add_filters(p)
    add_json(p)
    p.set_defaults(handler=cmd_assess)

    p = sub.add_parser("download", help="write invoice PDFs to a directory")
    add_global_options(p)
    p.add_argument("numbers", nargs="+", metavar="NUMBER")
    p.add_argument("--to", required=True, metavar="DIR", dest="to_dir")
    p.add_argument("--merge", metavar="FILE.pdf", help="also one merged PDF with an outline entry per invoice")
    add_json(p)
    p.set_defaults(handler=cmd_download)


# --------------------------------------------------------------------------

def cmd_find(env: Env, args) -> int:
    from ..store import queries

    f = filters_from(args)
    rows = queries.page(f, sort=args.sort, descending=False if args.asc else None, limit=args.limit)
    erp = load_settings().erp_integration
    if env.json:
        doc = {"invoices": [invoice_dict(r, env.clock, erp=erp) for r in rows]}
        if args.counts:
            doc["counts"] = queries.counts_by_status(f)
        env.print(dumps(doc))
        return EXIT_OK
    env.print(table(
        [[r.number, r.account.name[:32], r.customer_class.name, S.label(S.INVOICE_STATUSES, r.status),
          format_money(r.total, r.currency),
          f"closes {r.issue_date}" if r.status == S.OPEN else r.issue_date.isoformat(),
          _deadline_text(env, r), str(r.risk_score or ""), compact(r.flags, 28)] for r in rows],
        ["Number", "Account", "Class", "Status", "Total", "Issued", "Deadline", "Risk", "Flags"], right={4, 7}))
    if args.counts:
        counts = queries.counts_by_status(f)
        env.print("\n" + "  ".join(f"{S.INVOICE_STATUSES[k]}: {v:,}" for k, v in counts.items()))
    return EXIT_OK


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
        doc = invoice_dict(inv, env.clock, erp=erp, reporting=reporting)
        doc["charges"] = [{"position": c.position, "description": c.description, "quantity": str(c.quantity),
                           "discount": str(c.discount.quantize(_q(cur))), "amount": str(c.amount.quantize(_q(cur)))}
                          for c in d.charges]
        doc["subscriptions"] = [{"id": s.id, "name": s.name, "status": s.status,
                                 "status_label": S.label(S.SUBSCRIPTION_STATUSES, s.status)} for s in d.subscriptions]
        doc["payments"] = ([{"id": p.id, "description": p.description, "created_at": iso_time(env.clock, p.created_at),
                             "due_date": p.due_date.isoformat() if p.due_date else None, "status": p.status,
                             "amount": str(p.amount.quantize(_q(cur)))} for p in d.payments]
                           if d.closed else None)
        doc["corrections"] = [{"position": c.position, "kind": c.kind, "description": c.description,
                               "amount": str(c.amount.quantize(_q(cur))),
                               "current_debt_changed": format_debt_change(c.amount, cur),
                               "approved_at": iso_time(env.clock, c.approved_at)} for c in d.corrections]
        doc["taxes"] = [{"position": t.position, "name": t.name, "description": t.description,
                         "amount": str(t.amount.quantize(_q(cur)))} for t in d.taxes]
        doc["audit"] = [{"at": iso_time(env.clock, a.at), "actor": a.actor, "action": a.action,
                         "before_status": a.before_status, "after_status": a.after_status} for a in d.audit]
        doc["changes_since_review"] = changes_dict(d.changes, cur)
        env.print(dumps(doc))
        return EXIT_OK
    from ..present import status_text

    lines = [
        f"Invoice number  {inv.number}",
        f"Account         {inv.account.name} ({inv.account.account_type}, {inv.customer_class.name})",
        f"Total           {format_money(inv.total, cur)}   outstanding {format_money(inv.outstanding, cur)}",
        "Expected        " + (format_money(inv.expected_total, cur) if inv.expected_total is not None
                              else "— (no history to go by)"),
    ]
    if erp:
        ext = format_money(inv.external_total, inv.external_currency or cur) if inv.external_total is not None else "—"
        lines.append(f"External total  {ext}")
        lines.append(f"Approval date   {iso_time(env.clock, inv.approved_at) or '—'}")
    lines += [
        f"Payment model   {S.label(S.PAYMENT_MODELS, inv.payment_model)}",
        f"Status          {status_text(inv)}" + (" (closed)" if d.closed and inv.payment_model == 'postpay' else ""),
        f"From            {inv.period_from}",
        f"To              {inv.period_to}",
        f"Issue date      {inv.issue_date if inv.status != S.OPEN else '— (closes ' + str(inv.issue_date) + ')'}",
        f"Due date        {inv.due_date or '—'}",
        f"Review deadline {env.clock.local(inv.review_deadline).strftime('%Y-%m-%d %H:%M') if inv.review_deadline else '—'}",
        f"Revision        {inv.revision}",
        "Risk            " + " · ".join(
            (["flagged"] if d.flagged else ["not flagged"] + ([] if d.flags else ["no flags"]))
            + ([f"{format_money(inv.risk_at_stake, reporting)} at stake if the flags are right"]
               if d.flagged and inv.risk_at_stake is not None else [])
            + [f"risk score {inv.risk_score or 0}"]),
    ]
    if inv.held_at is not None:
        lines.append(f"Held            {env.clock.local(inv.held_at).strftime('%Y-%m-%d %H:%M')}: "
                     + ("waits for a person (not auto-approved at the end of its hold)" if d.held
                        else "held for a person at the end of its hold"))
    if d.flags:
        lines += ["", "Risk flags", *("  " + text for text in flags_text(d.flags))]
    if d.changes is not None:
        lines += ["", *changes_text(d.changes, cur)]
    lines += [
        "",
        "Charges",
        table([[str(c.position), c.description, f"{c.quantity:,.3f}", _m(c.discount, cur), _m(c.amount, cur)]
               for c in d.charges], ["#", "Description", "Quantity", "Discount", "Amount"], right={0, 2, 3, 4}),
    ]
    if d.subscriptions:
        lines += ["", "Subscriptions", table([[str(s.id), s.name, S.label(S.SUBSCRIPTION_STATUSES, s.status)]
                                              for s in d.subscriptions], ["ID", "Name", "Status"], right={0})]
    lines += ["", "Payments"]
    if d.closed:
        lines.append(table([[str(p.id), p.description, env.clock.local(p.created_at).strftime("%Y-%m-%d"),
                             str(p.due_date or "—"), S.label(S.PAYMENT_STATUSES, p.status), _m(p.amount, cur)]
                            for p in d.payments], ["ID", "Description", "Created at", "Due date", "Status", "Amount"],
                           right={0, 5}))
    else:
        lines.append(d.payments_note)
    if d.corrections:
        lines += ["", "Corrections", table(
            [[str(c.position), c.description, format_debt_change(c.amount, cur),
              env.clock.local(c.approved_at).strftime("%Y-%m-%d %H:%M") if c.approved_at else "—"]
             for c in d.corrections], ["#", "Description", "Current Debt Changed", "Approved at"], right={0, 2})]
    if d.taxes:
        lines += ["", "Taxes", table([[str(t.position), t.name, t.description, _m(t.amount, cur)] for t in d.taxes],
                                     ["#", "Name", "Description", "Amount"], right={0, 3})]
    env.print("\n".join(lines))
    return EXIT_OK


def _q(cur: str):
    from ..money import quantum
    return quantum(cur)


def _m(value, cur):
    from ..money import format_amount
    return format_amount(value, cur)


def _existing_refs(numbers: list[str]) -> list[int]:
    """Ids for the numbers given; an unknown number is bad input (exit 2)."""
    found = dict(Invoice.select(Invoice.number, Invoice.id).where(Invoice.number.in_(numbers)).tuples()) if numbers else {}
    missing = [n for n in numbers if n not in found]
    if missing:
        raise UsageError("invoice", f"{missing[0]} does not exist" +
                         (f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""))
    return [found[n] for n in dict.fromkeys(numbers)]


def cmd_approve(env: Env, args) -> int:
    from ..store import queries

    if args.all and args.numbers:
        raise UsageError("NUMBER", "give invoice numbers or --all, not both")
    if not args.all and not args.numbers:
        raise UsageError("NUMBER", "give invoice numbers, or --all with filters")
    if args.all and args.include_flagged:
        # A person accepts the flags of invoices they checked: named ones, never "all matching".
        raise UsageError("include-flagged", "accept flags invoice by invoice: name the flagged invoices "
                         "(approve NUMBER... --include-flagged); --all leaves flagged ones for a person")
    if args.all:
        f = filters_from(args)
        if not f.statuses:
            f = f.with_(statuses=(S.UNDER_REVIEW,))
        ids = [r.id for r in queries.ids_matching(f).order_by(Invoice.id)]
    else:
        ids = _existing_refs(args.numbers)
    if args.dry_run:
        return _approve_dry_run(env, workflow.preview_approve(ids), args.include_flagged)
    result = workflow.approve_many(env.ctx, ids, progress=env.progress("approve"),
                                   include_flagged=args.include_flagged)
    extra = None
    if result.accepted:
        extra = {"accepted_flags": [{"number": n, "flags": workflow.flag_dicts(flags)}
                                    for n, flags in result.accepted]}
        if not env.json:
            for number, flags in result.accepted:
                env.print(f"  {number}: approved accepting its flags ({compact(flags)})")
    return report_bulk(env, "approved", result, extra)


def _approve_dry_run(env: Env, preview: workflow.ApprovePreview, include_flagged: bool) -> int:
    """What approve would do now; nothing written.  Exit 0 if all would be approved."""
    from .common import EXIT_SOME_FAILED

    accepting = preview.flagged if include_flagged else []
    waiting = [] if include_flagged else preview.flagged
    if env.json:
        env.print(dumps({
            "dry_run": True,
            "would_approve": preview.ready + [f.number for f in accepting],
            "accepting_flags": [{"number": f.number, "flags": workflow.flag_dicts(f.flags)} for f in accepting],
            "needs_acceptance": [{"number": f.number, "flags": workflow.flag_dicts(f.flags), "reason": f.reason}
                                 for f in waiting],
            "refused": [{"number": n, "reason": r} for n, r in preview.refused],
        }))
    else:
        n_ready = len(preview.ready) + len(accepting)
        env.print(f"dry run: {n_ready} would be approved, {len(waiting)} need their flags accepted, "
                  f"{len(preview.refused)} would be refused; nothing was changed")
        for number in preview.ready:
            env.print(f"  approve  {number}")
        for f in accepting:
            env.print(f"  approve  {f.number}  accepting its flags:")
            for flag in f.flags:
                env.print(f"             {flag.code}: {flag.reason}")
        for f in waiting:
            print(f"  {f.number}: {f.reason}", file=sys.stderr)
            for flag in f.flags:
                print(f"      {flag.code}: {flag.reason}", file=sys.stderr)
        for number, reason in preview.refused:
            print(f"  {number}: {reason}", file=sys.stderr)
    return EXIT_OK if preview.all_ready(include_flagged) else EXIT_SOME_FAILED


def cmd_adjust(env: Env, args) -> int:
    flag, raw, kind = ("credit", args.credit, "credit") if args.credit is not None else ("charge", args.charge, "charge")
    # The console's own reading and rules: money.parse_amount in the invoice's
    # currency, then the domain's checks, so one input means one thing everywhere.
    preview = workflow.preview_adjust(args.number, kind, raw, description=args.description)
    if preview.field:
        raise UsageError(flag if preview.field == "amount" else preview.field, preview.reason)
    if args.dry_run:
        return _adjust_dry_run(env, preview)
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
        env.print(f"{inv.number}: {kind} of {format_money(preview.amount, inv.currency)} applied; "
                  f"total now {format_money(inv.total, inv.currency)} (revision {inv.revision})")
    return EXIT_OK


def _adjust_dry_run(env: Env, p: workflow.AdjustPreview) -> int:
    """What adjust would do now; nothing written.  Exit 0 if it would apply, 1 if refused."""
    from ..present import amount_str
    from .common import EXIT_SOME_FAILED

    cur = p.currency
    if env.json:
        env.print(dumps({
            "dry_run": True, "number": p.number, "kind": p.kind, "amount": amount_str(p.amount, cur),
            "currency": cur, "total_before": amount_str(p.before, cur), "correction": amount_str(p.correction, cur),
            "total_after": amount_str(p.after, cur), "would_apply": p.applies,
            "refused": [] if p.applies else [{"number": p.number, "reason": p.reason}],
        }))
    elif p.applies:
        env.print(f"dry run: {p.number}: {p.kind} of {format_money(p.amount, cur)} would take the total "
                  f"{format_money(p.before, cur)} → {format_money(p.after, cur)} "
                  f"({format_debt_change(p.correction, cur)}); nothing was changed")
    else:
        env.print(f"dry run: {p.number}: the {p.kind} would be refused; nothing was changed")
        print(f"  {p.number}: {p.reason}", file=sys.stderr)
    return EXIT_OK if p.applies else EXIT_SOME_FAILED


def _refused(env: Env, exc: workflow.Refused) -> int:
    from .common import EXIT_SOME_FAILED

    if env.json:
        env.print(dumps({"done": [], "failed": [{"number": exc.number, "reason": exc.reason}]}))
    else:
        print(f"tui-billing: refused: {exc}", file=sys.stderr)
    return EXIT_SOME_FAILED


def cmd_reissue(env: Env, args) -> int:
    ids = _existing_refs(args.numbers)
    mode = "now" if args.reissue_now else "off_peak"
    if args.dry_run:
        return _reissue_dry_run(env, workflow.preview_reissue(ids, mode, clock=env.clock))
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
        env.print(dumps({
            "dry_run": True, "mode": p.mode, "would_reissue_now": p.now, "would_queue": p.queued,
            "window_opens": opens, "refused": [{"number": n, "reason": r} for n, r in p.refused],
        }))
    else:
        env.print(f"dry run: {len(p.now)} would be reissued now, {len(p.queued)} would wait for the off-peak "
                  f"window{f' opening {opens}' if opens else ''}, {len(p.refused)} would be refused; "
                  "nothing was changed")
        for number in p.now:
            env.print(f"  reissue now  {number}")
        for number in p.queued:
            env.print(f"  queue        {number}")
        for number, reason in p.refused:
            print(f"  {number}: {reason}", file=sys.stderr)
    return EXIT_OK if p.all_apply else EXIT_SOME_FAILED


def cmd_assess(env: Env, args) -> int:
    from ..store import queries, risk_store

    if args.all and args.numbers:
        raise UsageError("NUMBER", "give invoice numbers or --all, not both")
    if not args.all and not args.numbers:
        raise UsageError("NUMBER", "give invoice numbers, or --all with filters")
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
    extra = {"files": [str(p) for p in paths]}
    if merge:
        extra["merged"] = str(merged) if merged else None
    if not env.json:
        for p in paths:
            env.print(p)
        if merged:
            env.print(merged)
    return report_bulk(env, "downloaded", result, extra)
